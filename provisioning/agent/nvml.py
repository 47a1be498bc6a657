"""Raw reads from NVML: the only module of the agent that imports pynvml (nvidia-ml-py).

The reads return plain JSON-able dicts, close to what NVML reports (bytes, mW, °C, percent,
MHz), so that a capture from a real GPU host can be committed as a fixture and the parsers in
`inventory.py` can be tested without a GPU.

Robustness: every field is read on its own. A field NVML does not support on this GPU becomes
None silently; any other failure also becomes None and is recorded in that GPU's `errors` dict
(field -> "NVMLError_Xxx: message"), so one broken GPU or field never loses the whole report and
the parser can still see what went wrong (e.g. a GPU that fell off the bus).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

try:
    import pynvml
except ImportError:  # simulated agents and the portal's own tests run without nvidia-ml-py
    pynvml = None

RAW_FORMAT = "neocloud-nvml-raw/1"


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this host (no library, no driver, no permission)."""


@contextlib.contextmanager
def nvml_session() -> Iterator[None]:
    """Initialise NVML for the duration of the block and always shut it down.

    NVML counts nested inits, so the agent can hold one session for its whole run (cheap reads)
    while each read below opens its own (correct when called alone).
    """
    if pynvml is None:
        raise NvmlUnavailable("the Python package nvidia-ml-py (module pynvml) is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML did not initialise: {_error_text(exc)}") from exc
    try:
        yield
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def nvml_unavailable_reason() -> str | None:
    """None when NVML initialises here; otherwise one line saying why not."""
    try:
        with nvml_session():
            return None
    except NvmlUnavailable as exc:
        return str(exc)
    except OSError as exc:  # a broken libnvidia-ml.so can fail in the loader itself
        return f"NVML could not be loaded: {exc}"


def nvml_available() -> bool:
    return nvml_unavailable_reason() is None


def nvml_inventory_read() -> dict:
    """What this host's GPUs are: identity, memory, MIG layout and health counters."""
    with nvml_session():
        errors: dict[str, str] = {}
        cuda_raw = _read(errors, "cuda_driver_version", "nvmlSystemGetCudaDriverVersion_v2")
        count = _read(errors, "device_count", "nvmlDeviceGetCount")
        return {
            "format": RAW_FORMAT,
            "kind": "inventory",
            "read_at": _now_iso(),
            "pynvml_version": _pynvml_version(),
            "driver_version": _text(_read(errors, "driver_version", "nvmlSystemGetDriverVersion")),
            "cuda_driver_version_raw": cuda_raw,
            "cuda_driver_version": cuda_version_text(cuda_raw),
            "nvml_version": _text(_read(errors, "nvml_version", "nvmlSystemGetNVMLVersion")),
            "device_count": count,
            "gpus": [_gpu_inventory_read(index) for index in range(count or 0)],
            "errors": errors,
        }


def nvml_telemetry_read() -> dict:
    """How this host's GPUs are doing right now: utilisation, memory, heat, power, ECC, clocks."""
    with nvml_session():
        errors: dict[str, str] = {}
        count = _read(errors, "device_count", "nvmlDeviceGetCount")
        return {
            "format": RAW_FORMAT,
            "kind": "telemetry",
            "collected_at": _now_iso(),
            "gpus": [_gpu_telemetry_read(index) for index in range(count or 0)],
            "errors": errors,
        }


def cuda_version_text(raw: int | None) -> str | None:
    """NVML's integer CUDA driver version (12040) as people write it ("12.4")."""
    if raw is None:
        return None
    return f"{raw // 1000}.{(raw % 1000) // 10}"


# --- per GPU -----------------------------------------------------------------------------------


def _gpu_inventory_read(index: int) -> dict:
    errors: dict[str, str] = {}
    gpu: dict[str, Any] = {"index": index, "uuid": None, "errors": errors}
    handle = _read(errors, "handle", "nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return gpu
    gpu["uuid"] = _text(_read(errors, "uuid", "nvmlDeviceGetUUID", handle))
    gpu["name"] = _text(_read(errors, "name", "nvmlDeviceGetName", handle))
    memory = _read(errors, "memory", "nvmlDeviceGetMemoryInfo", handle)
    gpu["memory_total_bytes"] = int(memory.total) if memory is not None else None
    pci = _read(errors, "pci", "nvmlDeviceGetPciInfo", handle)
    gpu["pci_bus_id"] = _text(pci.busId) if pci is not None else None
    capability = _read(errors, "cuda_capability", "nvmlDeviceGetCudaComputeCapability", handle)
    gpu["cuda_compute_capability"] = f"{capability[0]}.{capability[1]}" if capability else None

    mig_mode = _read(errors, "mig_mode", "nvmlDeviceGetMigMode", handle)
    gpu["mig_mode_current"] = int(mig_mode[0]) if mig_mode is not None else None
    gpu["mig_mode_pending"] = int(mig_mode[1]) if mig_mode is not None else None
    gpu["mig_devices"] = _mig_devices_read(handle, errors) if gpu["mig_mode_current"] == 1 else []

    ecc_mode = _read(errors, "ecc_mode", "nvmlDeviceGetEccMode", handle)
    gpu["ecc_mode_current"] = int(ecc_mode[0]) if ecc_mode is not None else None
    gpu["ecc_mode_pending"] = int(ecc_mode[1]) if ecc_mode is not None else None
    gpu.update(_ecc_counters_read(handle, errors))
    gpu["retired_pages_pending"] = _read(
        errors, "retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus", handle
    )
    rows = _read(errors, "remapped_rows", "nvmlDeviceGetRemappedRows", handle)
    gpu["remapped_rows"] = (
        {
            "correctable": int(rows[0]),
            "uncorrectable": int(rows[1]),
            "pending": bool(rows[2]),
            "failure": bool(rows[3]),
        }
        if rows is not None
        else None
    )
    # NVML has no XID counter: XIDs arrive only as events on an event set that someone must be
    # waiting on. Until the agent keeps such a listener, say "unknown" rather than "zero".
    gpu["xid_errors"] = None
    return gpu


def _ecc_counters_read(handle: Any, errors: dict[str, str]) -> dict:
    kinds = {
        "uncorrected": pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        "corrected": pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
    }
    counters = {"volatile": pynvml.NVML_VOLATILE_ECC, "aggregate": pynvml.NVML_AGGREGATE_ECC}
    values = {}
    for kind_name, kind in kinds.items():
        for counter_name, counter in counters.items():
            field = f"ecc_{kind_name}_{counter_name}"
            values[field] = _read(
                errors, field, "nvmlDeviceGetTotalEccErrors", handle, kind, counter
            )
    return values


def _mig_devices_read(handle: Any, errors: dict[str, str]) -> list[dict]:
    slots = _read(errors, "mig_device_count", "nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    devices = []
    for slot in range(slots):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except pynvml.NVMLError_NotFound:
            continue  # an empty slot: fewer instances exist than the GPU could hold
        except Exception as exc:  # recorded, the other slots still count
            errors[f"mig_device[{slot}]"] = _error_text(exc)
            continue
        mig_errors: dict[str, str] = {}
        name = _text(_read(mig_errors, "name", "nvmlDeviceGetName", mig))
        memory = _read(mig_errors, "memory", "nvmlDeviceGetMemoryInfo", mig)
        gpu_instance_id = _read(mig_errors, "gpu_instance_id", "nvmlDeviceGetGpuInstanceId", mig)
        devices.append(
            {
                "slot": slot,
                "uuid": _text(_read(mig_errors, "uuid", "nvmlDeviceGetUUID", mig)),
                "name": name,
                "profile": _mig_profile_read(handle, gpu_instance_id, mig_errors)
                or mig_profile_from_name(name),
                "memory_total_bytes": int(memory.total) if memory is not None else None,
                "gpu_instance_id": gpu_instance_id,
                "compute_instance_id": _read(
                    mig_errors, "compute_instance_id", "nvmlDeviceGetComputeInstanceId", mig
                ),
                "errors": mig_errors,
            }
        )
    return devices


def _mig_profile_read(handle: Any, gpu_instance_id: int | None, errors: dict) -> str | None:
    """The GPU instance's profile name ("1g.10gb"), which needs a privileged NVML call."""
    if gpu_instance_id is None:
        return None
    instance = _read(
        errors, "gpu_instance", "nvmlDeviceGetGpuInstanceById", handle, gpu_instance_id
    )
    if instance is None:
        return None
    info = _read(errors, "gpu_instance_info", "nvmlGpuInstanceGetInfo", instance)
    if info is None:
        return None
    profile = _read(
        errors, "gpu_instance_profile", "nvmlDeviceGetGpuInstanceProfileInfoById", handle,
        info.profileId,
    )
    if profile is None:
        return None
    return mig_profile_from_name(_text(profile.name))


def mig_profile_from_name(name: str | None) -> str | None:
    """ "NVIDIA H100 80GB HBM3 MIG 1g.10gb" or "MIG 1g.10gb" -> "1g.10gb"."""
    if not name:
        return None
    match = re.search(r"MIG\s+(\S+)\s*$", name)
    return match.group(1) if match else None


def _gpu_telemetry_read(index: int) -> dict:
    errors: dict[str, str] = {}
    gpu: dict[str, Any] = {"index": index, "uuid": None, "errors": errors}
    handle = _read(errors, "handle", "nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return gpu
    gpu["uuid"] = _text(_read(errors, "uuid", "nvmlDeviceGetUUID", handle))
    # With MIG enabled the parent GPU's utilisation is NotSupported: None, not 0.
    utilization = _read(errors, "utilization", "nvmlDeviceGetUtilizationRates", handle)
    gpu["utilization_gpu_pct"] = int(utilization.gpu) if utilization is not None else None
    gpu["utilization_memory_pct"] = int(utilization.memory) if utilization is not None else None
    memory = _read(errors, "memory", "nvmlDeviceGetMemoryInfo", handle)
    gpu["memory_used_bytes"] = int(memory.used) if memory is not None else None
    gpu["memory_total_bytes"] = int(memory.total) if memory is not None else None
    gpu["temperature_c"] = _read(
        errors, "temperature", "nvmlDeviceGetTemperature", handle, pynvml.NVML_TEMPERATURE_GPU
    )
    gpu["power_usage_mw"] = _read(errors, "power_usage", "nvmlDeviceGetPowerUsage", handle)
    gpu["power_limit_mw"] = _read(errors, "power_limit", "nvmlDeviceGetEnforcedPowerLimit", handle)
    gpu["ecc_uncorrected_volatile"] = _read(
        errors, "ecc_uncorrected_volatile", "nvmlDeviceGetTotalEccErrors", handle,
        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC,
    )
    gpu["clock_sm_mhz"] = _read(errors, "clock_sm", "nvmlDeviceGetClockInfo", handle,
                                pynvml.NVML_CLOCK_SM)
    gpu["clock_memory_mhz"] = _read(errors, "clock_memory", "nvmlDeviceGetClockInfo", handle,
                                    pynvml.NVML_CLOCK_MEM)
    gpu["xid_errors"] = None  # see _gpu_inventory_read: NVML offers XIDs only as events
    return gpu


# --- helpers -----------------------------------------------------------------------------------


def _read(errors: dict[str, str], field: str, function: str, *args: Any) -> Any:
    """Call one pynvml function; NotSupported -> None, any other failure -> None + recorded."""
    call = getattr(pynvml, function, None)
    if call is None:
        errors[field] = f"{function} is missing from this nvidia-ml-py"
        return None
    try:
        value = call(*args)
    except pynvml.NVMLError_NotSupported:
        return None
    except Exception as exc:  # one field must never sink the whole report
        errors[field] = _error_text(exc)
        return None
    return int(value) if isinstance(value, bool) else value


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _pynvml_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("nvidia-ml-py")
    except Exception:  # an informational field only
        return None
