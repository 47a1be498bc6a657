"""The node health check run before a node is handed out whole (issue 12, bare metal).

Two parts, each per GPU:
- NVML facts the agent already reads (inventory.gpu_health over nvml.py's raw read: GPU lost,
  row-remapping failure or pending, page retirement pending, uncorrected ECC errors). Anything
  but "ok" fails the check: a node with a GPU that needs a reset or a replacement is not given to
  a customer.
- On a host with real GPUs, a short CUDA matrix multiply per GPU whose result is compared with a
  CPU reference. It needs torch; where torch or CUDA is missing the CUDA part is reported as not
  run, with why, and is never faked. A simulated host never runs it (its GPUs do not exist).

Django-free and pynvml-free: it works on the raw dicts of nvml.py / simulate.py.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .inventory import HEALTH_OK, gpu_health

CUDA_PASSED = "passed"
CUDA_FAILED = "failed"
CUDA_NOT_RUN = "not_run"

MATMUL_SIZE = 1024
# fp32 with TF32 off: a correct GPU agrees with the float64 CPU product to ~1e-6 relative.
MATMUL_TOLERANCE = 1e-4
# What the portal takes (apps/capacity/api/serializers.py HealthCheckReportSerializer).
MAX_REASONS, MAX_REASON_CHARS = 64, 300


@dataclass
class GpuHealthResult:
    index: int
    uuid: str | None
    passed: bool
    reasons: list[str] = field(default_factory=list)
    cuda: str = CUDA_NOT_RUN
    cuda_max_error: float | None = None


@dataclass
class HealthResult:
    checked_at: str  # ISO-8601, UTC
    passed: bool
    simulated: bool
    cuda_ran: bool
    cuda_note: str  # why the CUDA part did or did not run
    reasons: list[str] = field(default_factory=list)  # "GPU 3 (GPU-...): ..." one per problem
    gpus: list[GpuHealthResult] = field(default_factory=list)

    def to_payload(self) -> dict:
        """The wire form: at most MAX_REASONS reasons of MAX_REASON_CHARS each (the portal's
        limits), the last one saying how many more there were; per-GPU details as they are."""
        payload = asdict(self)
        reasons = [reason[:MAX_REASON_CHARS] for reason in self.reasons]
        if len(reasons) > MAX_REASONS:
            reasons = [*reasons[:MAX_REASONS - 1], f"and {len(reasons) - MAX_REASONS + 1} more"]
        payload["reasons"] = reasons
        return payload


def node_health_check(raw_inventory: dict, *, cuda: bool = True,
                      matmul_size: int = MATMUL_SIZE) -> HealthResult:
    """Check every GPU of one raw inventory read (nvml_inventory_read / simulated_inventory_raw).

    `cuda=False` skips the matrix multiply (e.g. a quick periodic re-check); it is then reported
    as not run, never as passed.
    """
    simulated = bool(raw_inventory.get("simulated", False))
    gpus = []
    for raw_gpu in sorted(raw_inventory.get("gpus") or [], key=lambda g: g.get("index", 0)):
        state, reasons = gpu_health(raw_gpu)
        if not raw_gpu.get("uuid"):
            reasons = ["NVML could not read the GPU's UUID", *reasons]
            state = "failed"
        gpus.append(GpuHealthResult(index=int(raw_gpu.get("index", len(gpus))),
                                    uuid=raw_gpu.get("uuid"), passed=state == HEALTH_OK,
                                    reasons=list(reasons)))
    node_reasons = []
    expected = raw_inventory.get("device_count")
    if expected is not None and expected != len(gpus):
        node_reasons.append(f"NVML counts {expected} GPU(s) but {len(gpus)} could be read")
    if not gpus:
        node_reasons.append("no GPU found")

    if simulated:
        cuda_ran, cuda_note = False, "simulated host: only the simulated NVML facts were checked"
    elif not cuda:
        cuda_ran, cuda_note = False, "CUDA check not requested"
    else:
        cuda_ran, cuda_note = _cuda_check(gpus, matmul_size)

    for gpu in gpus:
        node_reasons.extend(f"GPU {gpu.index} ({gpu.uuid}): {reason}" for reason in gpu.reasons)
    return HealthResult(
        checked_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        passed=not node_reasons and all(gpu.passed for gpu in gpus),
        simulated=simulated, cuda_ran=cuda_ran, cuda_note=cuda_note,
        reasons=node_reasons, gpus=gpus,
    )


def _torch() -> Any | None:
    """torch when importable. Looked up at call time: it is heavy and only this check needs it."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def _cuda_check(gpus: list[GpuHealthResult], size: int) -> tuple[bool, str]:
    torch = _torch()
    if torch is None:
        return False, "no CUDA here: torch is not importable, the matrix multiply was not run"
    if not torch.cuda.is_available():
        return False, "no CUDA here: torch sees no CUDA device, the matrix multiply was not run"
    by_uuid = _cuda_devices_by_uuid(torch)
    matched_by = "UUID"
    if not by_uuid and torch.cuda.device_count() == len(gpus):
        # An older torch without device UUIDs: NVML's order (PCI bus) is CUDA's on a node of
        # identical GPUs; said in the note so a reader knows the match is by position.
        by_uuid = {gpu.uuid or "": gpu_position for gpu_position, gpu in enumerate(gpus)}
        matched_by = "position (torch gives no device UUIDs)"
    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would need a looser tolerance
    generator = torch.Generator().manual_seed(12)
    a = torch.randn(size, size, generator=generator, dtype=torch.float32)
    b = torch.randn(size, size, generator=generator, dtype=torch.float32)
    reference = a.double() @ b.double()
    scale = float(reference.abs().max())
    for gpu in gpus:
        # CUDA may number GPUs differently from NVML (CUDA_DEVICE_ORDER): match by UUID.
        device = by_uuid.get(gpu.uuid or "")
        if device is None:
            gpu.cuda, gpu.passed = CUDA_FAILED, False
            gpu.reasons.append("CUDA does not see this GPU (not in CUDA_VISIBLE_DEVICES, or lost)")
            continue
        try:
            product = (a.to(f"cuda:{device}") @ b.to(f"cuda:{device}")).double().cpu()
            torch.cuda.synchronize(device)
        except Exception as exc:  # a GPU that cannot run a matmul fails the check, with why
            gpu.cuda, gpu.passed = CUDA_FAILED, False
            gpu.reasons.append(f"CUDA matrix multiply raised {type(exc).__name__}: {exc}")
            continue
        error = float((product - reference).abs().max()) / scale
        gpu.cuda_max_error = error
        if error <= MATMUL_TOLERANCE:
            gpu.cuda = CUDA_PASSED
        else:
            gpu.cuda, gpu.passed = CUDA_FAILED, False
            gpu.reasons.append(f"CUDA matrix multiply ({size}x{size}) is wrong: relative error "
                               f"{error:.2e} > {MATMUL_TOLERANCE:.0e}")
    return True, (f"CUDA matrix multiply {size}x{size} fp32 run on {len(by_uuid)} device(s), "
                  f"matched to NVML by {matched_by}")


def _cuda_devices_by_uuid(torch: Any) -> dict[str, int]:
    devices = {}
    for ordinal in range(torch.cuda.device_count()):
        uuid = str(getattr(torch.cuda.get_device_properties(ordinal), "uuid", "") or "")
        if uuid:
            devices[uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"] = ordinal
    return devices
