"""An explicitly SIMULATED GPU host, for development and scale tests on machines without GPUs.

`--simulate 8xH100-80GB` makes the agent report eight H100s that do not exist. It produces the
same raw dicts as `nvml.py` (so the same parsers build the payload) with `"simulated": True`,
which the payload carries as `simulated: true` for the portal to label and never sell.

Spec grammar:  <count>x<MODEL>[,mig=<profile>[*<n>][+<profile>[*<n>]...]][,bad=<i>[+<i>...]]
               [,late_bad=<i>[+<i>...]]
    8xH100-80GB   4xH200-141GB   8xA100-80GB   2xL40S-48GB   8xH100-80GB,mig=1g.10gb*7
    2xH100-80GB,mig=3g.40gb+2g.20gb+1g.10gb*2      (the same MIG layout on every GPU)
    8xH100-80GB,bad=3      (GPU 3 reports a row-remapping failure and uncorrected ECC errors)
    8xH100-80GB,late_bad=0 (GPU 0 looks healthy to the inventory and the node's first health
                            check, and fails every later check: one before a bare-metal hand-over)

UUIDs are derived from hostname and index and start with `GPU-SIM-` / `MIG-SIM-`: real NVML
UUIDs are `GPU-` + hex, and "SIM" is not hex, so a simulated GPU can never collide with a real one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .nvml import RAW_FORMAT

_MIB = 1024**2
_GIB = 1024**3
MAX_GPUS_PER_NODE = 16
_MIG_COMPUTE_SLICES = 7
_MIG_MEMORY_SLICES = 8


@dataclass(frozen=True)
class MigProfile:
    compute_slices: int
    memory_slices: int
    max_count: int
    memory_bytes: int


@dataclass(frozen=True)
class GpuModel:
    key: str  # as written in a spec: "H100-80GB"
    nvml_name: str  # exactly what nvmlDeviceGetName says on the real part
    memory_bytes: int  # what NVML reports as total, a little under the marketing size
    power_limit_mw: int
    idle_power_mw: int
    cuda_capability: str
    memory_clock_mhz: int
    mig_profiles: dict[str, MigProfile] = field(default_factory=dict)


def _mig_table(memory_per_slice_gb: tuple[int, int, int, int, int, int]) -> dict[str, MigProfile]:
    """The six GPU-instance profiles of an A100/H100-class GPU, named by its memory sizes."""
    g1, g1_big, g2, g3, g4, g7 = memory_per_slice_gb
    return {
        f"1g.{g1}gb": MigProfile(1, 1, 7, g1 * _GIB),
        f"1g.{g1_big}gb": MigProfile(1, 2, 4, g1_big * _GIB),
        f"2g.{g2}gb": MigProfile(2, 2, 3, g2 * _GIB),
        f"3g.{g3}gb": MigProfile(3, 4, 2, g3 * _GIB),
        f"4g.{g4}gb": MigProfile(4, 4, 1, g4 * _GIB),
        f"7g.{g7}gb": MigProfile(7, 8, 1, g7 * _GIB),
    }


GPU_MODELS: dict[str, GpuModel] = {
    model.key: model
    for model in (
        GpuModel("H100-80GB", "NVIDIA H100 80GB HBM3", 81559 * _MIB, 700_000, 70_000, "9.0", 2619,
                 _mig_table((10, 20, 20, 40, 40, 80))),
        GpuModel("H200-141GB", "NVIDIA H200", 143771 * _MIB, 700_000, 75_000, "9.0", 3201,
                 _mig_table((18, 35, 35, 71, 71, 141))),
        GpuModel("A100-80GB", "NVIDIA A100-SXM4-80GB", 81920 * _MIB, 400_000, 60_000, "8.0", 1593,
                 _mig_table((10, 20, 20, 40, 40, 80))),
        GpuModel("L40S-48GB", "NVIDIA L40S", 46068 * _MIB, 350_000, 35_000, "8.9", 9001),
    )
}

# PCI bus numbers of the eight GPUs of a typical HGX board.
_HGX_PCI_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)

SIMULATED_DRIVER_VERSION = "580.159.04"
SIMULATED_CUDA_VERSION = "13.0"


@dataclass(frozen=True)
class SimulationSpec:
    text: str
    model: GpuModel
    gpu_count: int
    mig_layout: tuple[tuple[str, int], ...] = ()  # ((profile, count), ...) on every GPU
    # GPU indexes given broken health counters (bad=3+5), so a failed health check is testable
    bad_gpus: tuple[int, ...] = ()
    # GPU indexes that break after the node's first health check (late_bad=0): the inventory and
    # the check at registration see them healthy, every later check (the one before a bare-metal
    # hand-over included) sees them as bad_gpus. So a check failing only at hand-over is testable.
    late_bad_gpus: tuple[int, ...] = ()


def simulation_spec_parse(text: str) -> SimulationSpec:
    """Parse `8xH100-80GB[,mig=...]`; anything else raises ValueError saying what is wrong."""
    parts = [part.strip() for part in text.strip().split(",")]
    match = re.fullmatch(r"(\d+)\s*[xX]\s*([A-Za-z0-9-]+)", parts[0])
    if not match:
        raise ValueError(
            f"bad --simulate spec {text!r}: expected <count>x<model> such as 8xH100-80GB "
            f"(models: {', '.join(GPU_MODELS)})"
        )
    count = int(match.group(1))
    model = _model_lookup(match.group(2), text)
    if not 1 <= count <= MAX_GPUS_PER_NODE:
        raise ValueError(f"bad --simulate spec {text!r}: GPU count must be 1..{MAX_GPUS_PER_NODE}")

    mig_layout: tuple[tuple[str, int], ...] = ()
    bad_gpus: tuple[int, ...] = ()
    late_bad_gpus: tuple[int, ...] = ()
    for option in parts[1:]:
        key, _, value = option.partition("=")
        key = key.strip().lower()
        if key not in ("mig", "bad", "late_bad") or not value.strip():
            raise ValueError(f"bad --simulate spec {text!r}: unknown option {option!r} "
                             "(options: mig=<profile>*<n>[+...], bad=<gpu index>[+...], "
                             "late_bad=<gpu index>[+...])")
        if key == "late_bad":
            if late_bad_gpus:
                raise ValueError(f"bad --simulate spec {text!r}: late_bad= given twice")
            late_bad_gpus = _bad_gpus_parse(value.strip(), count, text, key="late_bad")
            continue
        if key == "bad":
            if bad_gpus:
                raise ValueError(f"bad --simulate spec {text!r}: bad= given twice")
            bad_gpus = _bad_gpus_parse(value.strip(), count, text)
            continue
        if mig_layout:
            raise ValueError(f"bad --simulate spec {text!r}: mig= given twice")
        mig_layout = _mig_layout_parse(value.strip(), model, text)
    return SimulationSpec(text=text, model=model, gpu_count=count, mig_layout=mig_layout,
                          bad_gpus=bad_gpus, late_bad_gpus=late_bad_gpus)


def _bad_gpus_parse(value: str, count: int, text: str, key: str = "bad") -> tuple[int, ...]:
    indexes = []
    for item in value.split("+"):
        if not item.strip().isdigit() or int(item) >= count:
            raise ValueError(f"bad --simulate spec {text!r}: {key}= takes GPU indexes 0..{count - 1} "
                             f"joined by '+', not {item!r}")
        indexes.append(int(item))
    return tuple(sorted(set(indexes)))


def simulated_uuid(hostname: str, index: int) -> str:
    return "GPU-SIM-" + _uuid_shaped_digest(f"{hostname}/gpu/{index}")


def simulated_mig_uuid(hostname: str, index: int, slot: int) -> str:
    return "MIG-SIM-" + _uuid_shaped_digest(f"{hostname}/gpu/{index}/mig/{slot}")


def simulated_inventory_raw(spec: SimulationSpec, hostname: str) -> dict:
    """A raw inventory read, shaped like `nvml_inventory_read()`'s, of GPUs that do not exist."""
    return {
        "format": RAW_FORMAT,
        "kind": "inventory",
        "simulated": True,
        "simulation_spec": spec.text,
        "read_at": _now_iso(),
        "pynvml_version": None,
        "driver_version": SIMULATED_DRIVER_VERSION,
        "cuda_driver_version_raw": 13000,
        "cuda_driver_version": SIMULATED_CUDA_VERSION,
        "nvml_version": None,
        "device_count": spec.gpu_count,
        "gpus": [_gpu_raw(spec, hostname, index) for index in range(spec.gpu_count)],
        "errors": {},
    }


def simulated_telemetry_raw(
    spec: SimulationSpec,
    hostname: str,
    utilization_pct: dict[int, int] | None = None,
    collected_at: str | None = None,
) -> dict:
    """A raw telemetry read: idle (0 %) unless `utilization_pct` says otherwise per GPU index.

    Values are plausible and deterministic for a given host, GPU and load (a small per-GPU offset
    keeps a rack of simulated GPUs from being identical).
    """
    load = utilization_pct or {}
    model = spec.model
    gpus = []
    for index in range(spec.gpu_count):
        wobble = int(_uuid_shaped_digest(f"{hostname}/gpu/{index}")[:4], 16) % 8
        util = max(0, min(100, int(load.get(index, 0))))
        # NVML has no whole-GPU utilisation while MIG is enabled; mirror that.
        util_reported = None if spec.mig_layout else util
        power = model.idle_power_mw + wobble * 1000
        power += (model.power_limit_mw - power) * util // 100
        gpus.append({
            "index": index,
            "uuid": simulated_uuid(hostname, index),
            "utilization_gpu_pct": util_reported,
            "utilization_memory_pct": None if spec.mig_layout else util // 2,
            "memory_used_bytes": 512 * _MIB + (model.memory_bytes - 512 * _MIB) * util // 100,
            "memory_total_bytes": model.memory_bytes,
            "temperature_c": 28 + wobble + util * 45 // 100,
            "power_usage_mw": power,
            "power_limit_mw": model.power_limit_mw,
            "ecc_uncorrected_volatile": 0,
            "clock_sm_mhz": 345 + 1635 * util // 100,
            "clock_memory_mhz": model.memory_clock_mhz,
            "xid_errors": None,
            "errors": {},
        })
    return {
        "format": RAW_FORMAT,
        "kind": "telemetry",
        "simulated": True,
        "collected_at": collected_at or _now_iso(),
        "gpus": gpus,
        "errors": {},
    }


# --- helpers -----------------------------------------------------------------------------------


def _model_lookup(key: str, text: str) -> GpuModel:
    for model_key, model in GPU_MODELS.items():
        if model_key.lower() == key.lower():
            return model
    raise ValueError(f"bad --simulate spec {text!r}: unknown GPU model {key!r} "
                     f"(models: {', '.join(GPU_MODELS)})")


def _mig_layout_parse(value: str, model: GpuModel, text: str) -> tuple[tuple[str, int], ...]:
    if not model.mig_profiles:
        raise ValueError(f"bad --simulate spec {text!r}: {model.key} does not support MIG")
    layout: dict[str, int] = {}
    for item in value.split("+"):
        match = re.fullmatch(r"\s*(\d+g\.\d+gb)\s*(?:\*\s*(\d+))?\s*", item)
        if not match:
            raise ValueError(f"bad --simulate spec {text!r}: MIG item {item!r} should look like "
                             "1g.10gb*7")
        profile, count = match.group(1).lower(), int(match.group(2) or 1)
        if profile not in model.mig_profiles:
            raise ValueError(f"bad --simulate spec {text!r}: {model.key} has no MIG profile "
                             f"{profile!r} (profiles: {', '.join(model.mig_profiles)})")
        if count < 1:
            raise ValueError(f"bad --simulate spec {text!r}: MIG count must be at least 1")
        layout[profile] = layout.get(profile, 0) + count
    for profile, count in layout.items():
        if count > model.mig_profiles[profile].max_count:
            raise ValueError(f"bad --simulate spec {text!r}: at most "
                             f"{model.mig_profiles[profile].max_count} x {profile} fit one GPU")
    compute = sum(model.mig_profiles[p].compute_slices * n for p, n in layout.items())
    memory = sum(model.mig_profiles[p].memory_slices * n for p, n in layout.items())
    if compute > _MIG_COMPUTE_SLICES or memory > _MIG_MEMORY_SLICES:
        raise ValueError(f"bad --simulate spec {text!r}: that MIG layout does not fit one GPU "
                         f"({compute}/{_MIG_COMPUTE_SLICES} compute and "
                         f"{memory}/{_MIG_MEMORY_SLICES} memory slices)")
    return tuple(layout.items())


def _gpu_raw(spec: SimulationSpec, hostname: str, index: int) -> dict:
    model = spec.model
    mig_devices = []
    for profile, count in spec.mig_layout:
        for _ in range(count):
            slot = len(mig_devices)
            mig_devices.append({
                "slot": slot,
                "uuid": simulated_mig_uuid(hostname, index, slot),
                "name": f"{model.nvml_name} MIG {profile}",
                "profile": profile,
                "memory_total_bytes": model.mig_profiles[profile].memory_bytes,
                "gpu_instance_id": slot + 1,
                "compute_instance_id": 0,
                "errors": {},
            })
    mig_supported = bool(model.mig_profiles)
    mig_mode = (1 if spec.mig_layout else 0) if mig_supported else None
    raw = {
        "index": index,
        "uuid": simulated_uuid(hostname, index),
        "name": model.nvml_name,
        "memory_total_bytes": model.memory_bytes,
        "pci_bus_id": f"00000000:{_HGX_PCI_BUSES[index % 8] + index // 8:02X}:00.0",
        "cuda_compute_capability": model.cuda_capability,
        "mig_mode_current": mig_mode,
        "mig_mode_pending": mig_mode,
        "mig_devices": mig_devices,
        "ecc_mode_current": 1,
        "ecc_mode_pending": 1,
        "ecc_uncorrected_volatile": 0,
        "ecc_uncorrected_aggregate": 0,
        "ecc_corrected_volatile": 0,
        "ecc_corrected_aggregate": 0,
        "retired_pages_pending": None,
        "remapped_rows": {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False},
        "xid_errors": None,
        "errors": {},
    }
    if index in spec.bad_gpus:
        # What a GPU with worn-out HBM reports: rows could not be remapped, ECC errors counted.
        raw["ecc_uncorrected_volatile"] = 2
        raw["ecc_uncorrected_aggregate"] = 2
        raw["remapped_rows"] = {"correctable": 0, "uncorrectable": 2, "pending": False,
                                "failure": True}
    return raw


def _uuid_shaped_digest(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
