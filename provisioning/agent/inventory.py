"""The wire format the portal accepts, and pure parsers from the raw dicts of `nvml.py`.

The parsers take plain dicts (a live NVML read, a committed capture, or `simulate.py`'s fake
read) and never touch NVML, so they are unit-tested against fixtures captured on real GPUs.

Units on the wire: bytes, percent, °C, watts (a measurement, so float is fine), counts.
A value NVML could not give is null, never a made-up zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

HEALTH_OK = "ok"
HEALTH_DEGRADED = "degraded"
HEALTH_FAILED = "failed"

# Errors on these fields mean we do not really know what the GPU is.
_CORE_FIELDS = ("uuid", "name", "memory")


@dataclass
class MigDeviceInventory:
    uuid: str
    profile: str | None  # "1g.10gb"; None when neither NVML's profile nor the name told us
    memory_bytes: int | None


@dataclass
class GpuInventory:
    uuid: str
    index: int
    name: str | None
    memory_bytes: int | None
    pci_bus_id: str | None
    mig_mode_current: bool | None  # None: the GPU has no MIG
    mig_mode_pending: bool | None  # differs from current until the GPU is reset
    mig_devices: list[MigDeviceInventory] = field(default_factory=list)
    health: str = HEALTH_OK
    health_reasons: list[str] = field(default_factory=list)


@dataclass
class NodeInventory:
    hostname: str
    cpus: int
    ram_bytes: int
    disk_bytes: int
    driver_version: str | None
    cuda_version: str | None
    simulated: bool
    gpus: list[GpuInventory] = field(default_factory=list)
    # Where the node's services are reached and the ports its SSH instances may take
    # (provisioning/protocol.py F_ADDRESS, F_SSH_PORTS); None when the agent was given none.
    address: str | None = None
    ssh_ports: list[int] | None = None

    def to_payload(self) -> dict:
        return asdict(self)


@dataclass
class GpuTelemetry:
    uuid: str
    utilization_pct: int | None
    memory_used_bytes: int | None
    temperature_c: int | None
    power_w: float | None
    power_limit_w: float | None
    ecc_uncorrected_volatile: int | None
    xid_errors: int | None  # None: not observable yet (NVML reports XIDs only as events)


@dataclass
class NodeTelemetry:
    collected_at: str  # ISO-8601, UTC
    gpus: list[GpuTelemetry] = field(default_factory=list)

    def to_payload(self) -> dict:
        return asdict(self)


# --- parsers -----------------------------------------------------------------------------------


def inventory_from_nvml(raw: dict, host: dict) -> NodeInventory:
    """Build the inventory payload from one raw NVML inventory read and the host facts.

    A GPU whose UUID could not be read is left out: the portal keys GPUs by UUID, and a GPU that
    vanishes from the inventory is exactly what it should notice (lost) and show.
    """
    gpus = [
        _gpu_inventory_from_nvml(raw_gpu)
        for raw_gpu in raw.get("gpus") or []
        if raw_gpu.get("uuid")
    ]
    return NodeInventory(
        hostname=host["hostname"],
        cpus=int(host["cpus"]),
        ram_bytes=int(host["ram_bytes"]),
        disk_bytes=int(host["disk_bytes"]),
        driver_version=raw.get("driver_version"),
        cuda_version=raw.get("cuda_driver_version"),
        # Only simulate.py sets this; a real NVML read never does.
        simulated=bool(raw.get("simulated", False)),
        gpus=sorted(gpus, key=lambda gpu: gpu.index),
        address=host.get("address"),
        ssh_ports=list(host["ssh_ports"]) if host.get("ssh_ports") else None,
    )


def telemetry_from_nvml(raw: dict) -> NodeTelemetry:
    gpus = [
        GpuTelemetry(
            uuid=raw_gpu["uuid"],
            utilization_pct=raw_gpu.get("utilization_gpu_pct"),
            memory_used_bytes=raw_gpu.get("memory_used_bytes"),
            temperature_c=raw_gpu.get("temperature_c"),
            power_w=_milliwatts_to_watts(raw_gpu.get("power_usage_mw")),
            power_limit_w=_milliwatts_to_watts(raw_gpu.get("power_limit_mw")),
            ecc_uncorrected_volatile=raw_gpu.get("ecc_uncorrected_volatile"),
            xid_errors=raw_gpu.get("xid_errors"),
        )
        for raw_gpu in sorted(raw.get("gpus") or [], key=lambda gpu: gpu.get("index", 0))
        if raw_gpu.get("uuid")
    ]
    return NodeTelemetry(collected_at=raw["collected_at"], gpus=gpus)


def gpu_health(raw_gpu: dict) -> tuple[str, list[str]]:
    """("ok" | "degraded" | "failed", reasons) from one raw GPU's health counters.

    failed: the GPU cannot be trusted with work even after a reset (row remapping failed, the
    GPU is lost). degraded: usable after attention, e.g. uncorrected ECC errors since the driver
    loaded, or retired pages / remapped rows that take effect only at the next reset.
    """
    failed: list[str] = []
    degraded: list[str] = []
    errors = raw_gpu.get("errors") or {}

    lost = any(str(message).startswith("NVMLError_GpuIsLost") for message in errors.values())
    if lost:
        failed.append("NVML reports the GPU is lost (fallen off the bus): the host needs attention")
    rows = raw_gpu.get("remapped_rows") or {}
    if rows.get("failure"):
        failed.append("row remapping failed: GPU memory can no longer be repaired "
                      "(replace the GPU)")
    if rows.get("pending"):
        degraded.append("row remapping pending: reset the GPU to apply it")
    if raw_gpu.get("retired_pages_pending"):
        degraded.append("page retirement pending: reset the GPU to apply it")
    ecc_volatile = raw_gpu.get("ecc_uncorrected_volatile")
    if ecc_volatile:
        degraded.append(f"{ecc_volatile} uncorrected ECC error(s) since the driver was loaded")
    # A lost GPU fails every read; its field errors would only repeat that.
    for core_field in _CORE_FIELDS:
        if core_field in errors and not lost:
            degraded.append(f"NVML could not read {core_field}: {errors[core_field]}")

    if failed:
        return HEALTH_FAILED, failed + degraded
    if degraded:
        return HEALTH_DEGRADED, degraded
    return HEALTH_OK, []


def _gpu_inventory_from_nvml(raw_gpu: dict) -> GpuInventory:
    health, reasons = gpu_health(raw_gpu)
    return GpuInventory(
        uuid=raw_gpu["uuid"],
        index=int(raw_gpu["index"]),
        name=raw_gpu.get("name"),
        memory_bytes=raw_gpu.get("memory_total_bytes"),
        pci_bus_id=raw_gpu.get("pci_bus_id"),
        mig_mode_current=_mode(raw_gpu.get("mig_mode_current")),
        mig_mode_pending=_mode(raw_gpu.get("mig_mode_pending")),
        mig_devices=[
            MigDeviceInventory(
                uuid=mig["uuid"],
                profile=mig.get("profile"),
                memory_bytes=mig.get("memory_total_bytes"),
            )
            for mig in raw_gpu.get("mig_devices") or []
            if mig.get("uuid")
        ],
        health=health,
        health_reasons=reasons,
    )


def _mode(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _milliwatts_to_watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000
