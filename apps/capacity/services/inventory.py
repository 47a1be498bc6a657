"""Apply a node agent's inventory report (registration, or a heartbeat that carries one).

The stored rows are the comparison: a report is read against the node's row, its GPU rows and its
MIG devices, and only what differs is written. An agent sends its inventory on the first heartbeat
after every restart (and whenever NVML's answer changes), so an unchanged report must be cheap: it
costs four reads and writes nothing, announces nothing and leaves every row version as it was.
No digest column is needed, and nothing can make the comparison stale: whatever changed a row
(the admin, a test), the next report is compared with what is stored now.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q

from apps.catalog.models import GpuModel
from provisioning.protocol import F_ADDRESS, F_SSH_PORTS

from ..live import inventory_changed_on_commit
from ..models import Gpu, GpuHealth, MigDevice, Node
from .capacity_summary import node_capacity_hostname_refresh

GPU_REPORTED_FIELDS = [
    "node",
    "index",
    "name",
    "gpu_model",
    "memory_bytes",
    "pci_bus_id",
    "mig_enabled",
    "mig_pending",
    "health",
    "health_reasons",
]


def _health(value: str) -> str:
    return value if value in (GpuHealth.OK, GpuHealth.DEGRADED, GpuHealth.FAILED) else GpuHealth.DEGRADED


def _node_facts(inventory: dict[str, Any]) -> dict[str, Any]:
    ssh_ports = inventory.get(F_SSH_PORTS) or (None, None)
    return {
        "hostname": inventory["hostname"],
        "simulated": inventory["simulated"],
        "cpus": inventory["cpus"],
        "ram_bytes": inventory["ram_bytes"],
        "disk_bytes": inventory["disk_bytes"],
        "driver_version": inventory.get("driver_version") or "",
        "cuda_version": inventory.get("cuda_version") or "",
        # Optional (an older agent sends neither): not reported means the node has none now.
        "address": inventory.get(F_ADDRESS) or None,
        "ssh_port_first": ssh_ports[0],
        "ssh_port_last": ssh_ports[1],
    }


def _gpu_values(*, node: Node, report: dict[str, Any], models: dict[str, GpuModel]) -> dict[str, Any]:
    """The GPU row's fields as the report says they should be (attribute names, to compare)."""
    model = models.get(report["name"])
    return {
        "node_id": node.pk,
        "index": report["index"],
        "name": report["name"],
        "gpu_model_id": model.pk if model else None,
        "memory_bytes": report["memory_bytes"],
        "pci_bus_id": report.get("pci_bus_id") or "",
        "mig_enabled": bool(report.get("mig_mode_current")),
        "mig_pending": report.get("mig_mode_pending"),
        "health": _health(report["health"]),
        "health_reasons": report.get("health_reasons") or [],
    }


def _differs(row: Any, values: dict[str, Any]) -> bool:
    return any(getattr(row, attname) != value for attname, value in values.items())


# No savepoint of its own: its callers (registration, a heartbeat) are atomic, and a failure here
# must fail the whole report anyway; that saves two round trips per report.
@transaction.atomic(savepoint=False)
def node_inventory_apply(*, node: Node, inventory: dict[str, Any]) -> bool:
    """Make the stored inventory match what the agent reports: new GPUs appear, absent ones are
    marked missing (never deleted: allocations and history point at them), health follows.

    Returns whether anything changed. Only then are rows written and the operators' pages told."""
    facts = _node_facts(inventory)
    # One statement that writes only when some fact differs (NOT (a = … AND b = …)).
    node_changed = bool(Node.objects.filter(pk=node.pk).exclude(**facts).update(**facts))
    reported = {gpu["uuid"]: gpu for gpu in inventory["gpus"]}
    models = {m.nvml_name: m for m in GpuModel.objects.filter(nvml_name__in={g["name"] for g in reported.values()})}
    # The reported GPUs (wherever they are now) and the node's own, locked in one statement.
    existing = {gpu.uuid: gpu for gpu in Gpu.objects.select_for_update().filter(Q(uuid__in=reported) | Q(node=node))}
    to_create, to_update = [], []
    for uuid, report in reported.items():
        values = _gpu_values(node=node, report=report, models=models)
        gpu = existing.get(uuid)
        if gpu is None:
            to_create.append(Gpu(uuid=uuid, **values))
        elif _differs(gpu, values):
            for attname, value in values.items():
                setattr(gpu, attname, value)
            to_update.append(gpu)
    for uuid, gpu in existing.items():
        if uuid not in reported and gpu.node_id == node.pk and gpu.health != GpuHealth.MISSING:
            gpu.health = GpuHealth.MISSING
            gpu.health_reasons = ["no longer reported by the node's agent"]
            to_update.append(gpu)
    if to_create:
        Gpu.objects.bulk_create(to_create)  # PostgreSQL returns their ids
    if to_update:
        Gpu.objects.bulk_update(to_update, GPU_REPORTED_FIELDS)
    gpu_ids = {gpu.uuid: gpu.pk for gpu in [*existing.values(), *to_create]}
    mig_changed = _mig_devices_apply(node=node, reported=reported, gpu_ids=gpu_ids)
    changed = node_changed or bool(to_create or to_update) or mig_changed
    if changed:
        # GPU counts follow by trigger; the hostname copy (a ranking tie-break) is refreshed here,
        # now that the node's GPU rows are locked: summary rows are always locked after GPU rows.
        node_capacity_hostname_refresh(node_id=node.pk)
        inventory_changed_on_commit(node_id=node.pk)
    return changed


def _mig_devices_apply(*, node: Node, reported: dict[str, dict], gpu_ids: dict[str, int]) -> bool:
    """Reported MIG devices exist on their GPU and are present; the node's others are not present.
    Returns whether anything changed."""
    devices = {
        device["uuid"]: {
            "gpu_id": gpu_ids[gpu_uuid],
            "profile": device.get("profile") or "unknown",
            "memory_bytes": device.get("memory_bytes") or 0,
            "present": True,
        }
        for gpu_uuid, report in reported.items()
        for device in report.get("mig_devices") or []
    }
    stored = MigDevice.objects.filter(Q(uuid__in=devices) | Q(gpu__node=node, present=True))
    existing = {device.uuid: device for device in stored}
    to_create, to_update = [], []
    for uuid, values in devices.items():
        device = existing.get(uuid)
        if device is None:
            to_create.append(MigDevice(uuid=uuid, **values))
        elif _differs(device, values):
            for attname, value in values.items():
                setattr(device, attname, value)
            to_update.append(device)
    # Anything else found is one of the node's present devices that the report no longer lists.
    for uuid, device in existing.items():
        if uuid not in devices:
            device.present = False
            to_update.append(device)
    if to_create:
        MigDevice.objects.bulk_create(to_create)
    if to_update:
        MigDevice.objects.bulk_update(to_update, ["gpu", "profile", "memory_bytes", "present"])
    return bool(to_create or to_update)
