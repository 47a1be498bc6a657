"""What node agents report: registration, heartbeats with inventory, and telemetry.

Reports carry the agent's `seq`; a report at or below the last accepted seq is stale and changes
nothing, so a delayed or replayed heartbeat can never overwrite a newer one.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.selectors import token_digest
from apps.catalog.models import GpuModel

from ..live import inventory_changed_on_commit, telemetry_changed
from ..models import Gpu, GpuHealth, MigDevice, Node, NodeState, RegistrationToken
from .capacity_summary import node_capacity_hostname_refresh
from .nodes import node_state_transition


class ReportRejected(Exception):
    """An agent report that cannot be applied; `status` is the HTTP answer the API gives."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@transaction.atomic
def node_register(*, token: str, inventory: dict[str, Any]) -> tuple[Node, str]:
    """Trade a one-time registration token for a node identity and credential."""
    record = RegistrationToken.objects.select_for_update().filter(token_hash=token_digest(token or "")).first()
    if record is None or not record.is_usable:
        raise ReportRejected("Registration token is unknown, used or expired; ask an operator for a new one.", 401)
    credential = secrets.token_urlsafe(32)
    node = Node.objects.create(
        region_id=record.region_id,
        hostname=inventory["hostname"],
        simulated=inventory["simulated"],
        credential_hash=token_digest(credential),
        heartbeat_interval_s=settings.CAPACITY_HEARTBEAT_INTERVAL_S,
        last_heartbeat_at=timezone.now(),
        state=NodeState.READY,
        state_reason="registered",
    )
    RegistrationToken.objects.filter(pk=record.pk).update(used_at=timezone.now(), node=node)
    node_inventory_apply(node=node, inventory=inventory)
    return node, credential


def node_authenticate(*, node_id: str, credential: str) -> Node | None:
    import hmac

    node = Node.objects.filter(pk=node_id).only("pk", "credential_hash", "state", "heartbeat_interval_s").first()
    if node is None or not hmac.compare_digest(node.credential_hash, token_digest(credential)):
        return None
    return node


def _relaxed_durability() -> None:
    """Let this transaction commit without waiting for its WAL flush. A crash can lose the last
    few heartbeats or telemetry samples, which the next report replaces anyway; it saves the
    fsync wait on the most frequent writes the portal takes."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")


@transaction.atomic
def node_heartbeat_apply(*, node: Node, seq: int, inventory: dict[str, Any] | None) -> Node:
    if inventory is None:
        _relaxed_durability()
    now = timezone.now()
    interval = settings.CAPACITY_HEARTBEAT_INTERVAL_S
    accepted = Node.objects.filter(pk=node.pk, last_seq__lt=seq).update(
        last_seq=seq, last_heartbeat_at=now, heartbeat_interval_s=interval
    )
    if not accepted:
        raise ReportRejected("Stale heartbeat: a newer one was already accepted.", 409)
    node.last_seq, node.last_heartbeat_at, node.heartbeat_interval_s = seq, now, interval
    if inventory is not None:
        node_inventory_apply(node=node, inventory=inventory)
    if node.state == NodeState.DOWN:
        node_state_transition(
            node_id=node.pk,
            to_state=NodeState.READY,
            reason="heartbeats resumed",
            expected_from=[NodeState.DOWN],
        )
        node.refresh_from_db()
    return node


def _health(value: str) -> str:
    return value if value in (GpuHealth.OK, GpuHealth.DEGRADED, GpuHealth.FAILED) else GpuHealth.DEGRADED


@transaction.atomic
def node_inventory_apply(*, node: Node, inventory: dict[str, Any]) -> None:
    """Make the stored inventory match what the agent reports: new GPUs appear, absent ones are
    marked missing (never deleted: allocations and history point at them), health follows."""
    Node.objects.filter(pk=node.pk).update(
        hostname=inventory["hostname"],
        simulated=inventory["simulated"],
        cpus=inventory["cpus"],
        ram_bytes=inventory["ram_bytes"],
        disk_bytes=inventory["disk_bytes"],
        driver_version=inventory.get("driver_version") or "",
        cuda_version=inventory.get("cuda_version") or "",
    )
    models_by_nvml = {m.nvml_name: m for m in GpuModel.objects.all()}
    reported = {gpu["uuid"]: gpu for gpu in inventory["gpus"]}
    existing = {gpu.uuid: gpu for gpu in Gpu.objects.select_for_update().filter(uuid__in=reported)}
    existing.update({gpu.uuid: gpu for gpu in Gpu.objects.select_for_update().filter(node=node)})
    to_create, to_update = [], []
    for uuid, report in reported.items():
        gpu = existing.get(uuid) or Gpu(uuid=uuid)
        gpu.node = node
        gpu.index = report["index"]
        gpu.name = report["name"]
        gpu.gpu_model = models_by_nvml.get(report["name"])
        gpu.memory_bytes = report["memory_bytes"]
        gpu.pci_bus_id = report.get("pci_bus_id") or ""
        gpu.mig_enabled = bool(report.get("mig_mode_current"))
        gpu.mig_pending = report.get("mig_mode_pending")
        gpu.health = _health(report["health"])
        gpu.health_reasons = report.get("health_reasons") or []
        (to_update if gpu.pk else to_create).append(gpu)
    for uuid, gpu in existing.items():
        if uuid not in reported and gpu.node_id == node.pk and gpu.health != GpuHealth.MISSING:
            gpu.health = GpuHealth.MISSING
            gpu.health_reasons = ["no longer reported by the node's agent"]
            to_update.append(gpu)
    Gpu.objects.bulk_create(to_create)
    Gpu.objects.bulk_update(
        to_update,
        [
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
        ],
    )
    _mig_devices_apply(node=node, reported=reported)
    # GPU counts follow by trigger; the hostname copy (a ranking tie-break) is refreshed here, now
    # that the node's GPU rows are locked: summary rows are always locked after GPU rows.
    node_capacity_hostname_refresh(node_id=node.pk)
    inventory_changed_on_commit(node_id=node.pk)


def _mig_devices_apply(*, node: Node, reported: dict[str, dict]) -> None:
    gpus = {gpu.uuid: gpu for gpu in Gpu.objects.filter(node=node)}
    seen: set[str] = set()
    for gpu_uuid, report in reported.items():
        for device in report.get("mig_devices") or []:
            seen.add(device["uuid"])
            MigDevice.objects.update_or_create(
                uuid=device["uuid"],
                defaults={
                    "gpu": gpus[gpu_uuid],
                    "profile": device.get("profile") or "unknown",
                    "memory_bytes": device.get("memory_bytes") or 0,
                    "present": True,
                },
            )
    MigDevice.objects.filter(gpu__node=node, present=True).exclude(uuid__in=seen).update(present=False)


TELEMETRY_FIELDS = ["utilization_pct", "memory_used_bytes", "temperature_c", "power_w", "ecc_uncorrected_volatile"]


@transaction.atomic
def node_telemetry_apply(*, node: Node, seq: int, telemetry: dict[str, Any]) -> int:
    """Store the latest telemetry per GPU. Returns how many GPUs were updated."""
    _relaxed_durability()
    accepted = Node.objects.filter(pk=node.pk, last_telemetry_seq__lt=seq).update(last_telemetry_seq=seq)
    if not accepted:
        raise ReportRejected("Stale telemetry: newer telemetry was already accepted.", 409)
    reports = {gpu["uuid"]: gpu for gpu in telemetry["gpus"]}
    gpus = list(Gpu.objects.filter(node=node, uuid__in=reports))
    collected_at = telemetry["collected_at"]
    for gpu in gpus:
        report = reports[gpu.uuid]
        for field in TELEMETRY_FIELDS:
            setattr(gpu, field, report.get(field))
        gpu.telemetry_at = collected_at
    Gpu.objects.bulk_update(gpus, [*TELEMETRY_FIELDS, "telemetry_at"])
    transaction.on_commit(lambda: telemetry_changed(node_id=node.pk))
    return len(gpus)
