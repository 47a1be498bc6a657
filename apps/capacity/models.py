"""What exists: nodes and their GPUs (keyed by NVML UUID), MIG devices, allocations of GPU
capacity, and quotas. The node agents report the facts; the portal keeps the source of truth.

Allocation invariants are enforced by PostgreSQL, not only by Python:
- `Gpu.allocated_milli` (thousandths of the GPU held by live allocations) is checked to stay
  within 0..1000, and the allocator only ever changes it with a compare-and-set UPDATE;
- a live whole-GPU hold and a live MIG-device hold are each unique (partial unique indexes).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

WHOLE_GPU_MILLI = 1000


class NodeState(models.TextChoices):
    READY = "ready", "Ready"
    CORDONED = "cordoned", "Cordoned"  # runs what it has, takes nothing new
    DRAINING = "draining", "Draining"  # takes nothing new; becomes maintenance when empty
    MAINTENANCE = "maintenance", "Maintenance"
    DOWN = "down", "Down"  # missed its heartbeats


class RegistrationToken(models.Model):
    """A one-time secret an operator gives a new host so its agent can register."""

    token_hash = models.CharField(max_length=64, unique=True)
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=120, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    node = models.OneToOneField(
        "Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="registration_token"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"token for {self.region.code} ({'used' if self.used_at else 'unused'})"

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.expires_at > timezone.now()


class Node(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="nodes")
    hostname = models.CharField(max_length=255)
    simulated = models.BooleanField(
        default=False, help_text="Inventory invented by the agent's --simulate; never real capacity."
    )
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.READY)
    state_reason = models.CharField(max_length=200, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    credential_hash = models.CharField(max_length=64)
    cpus = models.PositiveIntegerField(default=0)
    ram_bytes = models.BigIntegerField(default=0)
    disk_bytes = models.BigIntegerField(default=0)
    driver_version = models.CharField(max_length=32, blank=True)
    cuda_version = models.CharField(max_length=16, blank=True)
    heartbeat_interval_s = models.PositiveIntegerField(default=10)
    registered_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The agent's message counter: a message with a seq at or below this one is stale.
    last_seq = models.BigIntegerField(default=0)
    last_telemetry_seq = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["region__code", "hostname"]
        indexes = [models.Index(fields=["state", "last_heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.hostname}{' (simulated)' if self.simulated else ''}"


class NodeEvent(models.Model):
    """One row per node state transition: what, why, who."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, choices=NodeState.choices)
    to_state = models.CharField(max_length=16, choices=NodeState.choices)
    reason = models.CharField(max_length=200)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.node}: {self.from_state} → {self.to_state}"


class GpuHealth(models.TextChoices):
    OK = "ok", "OK"
    DEGRADED = "degraded", "Degraded"
    FAILED = "failed", "Failed"
    MISSING = "missing", "Missing"  # no longer reported by its node


class Gpu(models.Model):
    uuid = models.CharField(max_length=96, unique=True, help_text="NVML UUID (GPU-SIM-… when simulated)")
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=96, help_text="As NVML reports it")
    gpu_model = models.ForeignKey(
        "catalog.GpuModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="gpus"
    )
    memory_bytes = models.BigIntegerField(default=0)
    pci_bus_id = models.CharField(max_length=32, blank=True)
    mig_enabled = models.BooleanField(default=False)
    mig_pending = models.BooleanField(null=True)
    health = models.CharField(max_length=16, choices=GpuHealth.choices, default=GpuHealth.OK)
    health_reasons = models.JSONField(default=list, blank=True)
    allocated_milli = models.PositiveSmallIntegerField(default=0)
    # Latest telemetry: runtime facts, kept apart from allocation state.
    utilization_pct = models.PositiveSmallIntegerField(null=True, blank=True)
    memory_used_bytes = models.BigIntegerField(null=True, blank=True)
    temperature_c = models.SmallIntegerField(null=True, blank=True)
    power_w = models.FloatField(null=True, blank=True)  # a measurement, never money
    ecc_uncorrected_volatile = models.BigIntegerField(null=True, blank=True)
    telemetry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["node__hostname", "index"]
        constraints = [
            models.CheckConstraint(
                condition=Q(allocated_milli__gte=0, allocated_milli__lte=WHOLE_GPU_MILLI),
                name="gpu_allocated_within_one_gpu",
            ),
        ]
        indexes = [models.Index(fields=["node", "health", "allocated_milli"])]

    def __str__(self) -> str:
        return f"{self.name} #{self.index} on {self.node.hostname}"


class MigDevice(models.Model):
    uuid = models.CharField(max_length=96, unique=True)
    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="mig_devices")
    profile = models.CharField(max_length=16, help_text="e.g. 1g.10gb")
    memory_bytes = models.BigIntegerField(default=0)
    present = models.BooleanField(default=True)

    class Meta:
        ordering = ["gpu", "profile", "uuid"]

    def __str__(self) -> str:
        return f"MIG {self.profile} on {self.gpu}"


class AllocationState(models.TextChoices):
    ACTIVE = "active", "Active"
    LOST = "lost", "Lost"  # its node went down; capacity stays held until the node is back
    RELEASED = "released", "Released"


LIVE_ALLOCATION_STATES = (AllocationState.ACTIVE, AllocationState.LOST)


class Allocation(models.Model):
    """GPU capacity held for one consumer (an instance, once instances exist)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="allocations")
    project = models.ForeignKey(
        "accounts.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="allocations"
    )
    flavor = models.ForeignKey("catalog.Flavor", on_delete=models.PROTECT, related_name="+")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="allocations")
    state = models.CharField(max_length=16, choices=AllocationState.choices, default=AllocationState.ACTIVE)
    gpu_milli = models.PositiveIntegerField(help_text="GPUs held, in thousandths, for quotas")
    holder = models.CharField(max_length=100, blank=True, help_text="What uses it, e.g. instance:<id>")
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "state"]), models.Index(fields=["node", "state"])]

    def __str__(self) -> str:
        return f"allocation {self.pk} ({self.state}) on {self.node.hostname}"


class AllocationSlice(models.Model):
    """One GPU (or part of one, or one MIG device) held by an allocation."""

    allocation = models.ForeignKey(Allocation, on_delete=models.CASCADE, related_name="slices")
    gpu = models.ForeignKey(Gpu, on_delete=models.PROTECT, related_name="slices")
    mig_device = models.ForeignKey(MigDevice, null=True, blank=True, on_delete=models.PROTECT, related_name="slices")
    milli = models.PositiveSmallIntegerField()
    live = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gpu"],
                condition=Q(live=True, milli=WHOLE_GPU_MILLI, mig_device__isnull=True),
                name="slice_one_live_whole_gpu_hold",
            ),
            models.UniqueConstraint(
                fields=["mig_device"],
                condition=Q(live=True, mig_device__isnull=False),
                name="slice_one_live_mig_device_hold",
            ),
            models.CheckConstraint(
                condition=Q(milli__gt=0, milli__lte=WHOLE_GPU_MILLI), name="slice_milli_within_one_gpu"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.milli}/1000 of {self.gpu_id}"


class Quota(models.Model):
    """GPU limits of an organization, or of one of its projects (team) when `project` is set.

    `guaranteed_gpus` is capacity held back from other tenants; `max_gpus` is the ceiling.
    """

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="quotas")
    project = models.ForeignKey(
        "accounts.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="quotas"
    )
    guaranteed_gpus = models.DecimalField(max_digits=8, decimal_places=3, default=0)
    max_gpus = models.DecimalField(max_digits=8, decimal_places=3)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization"], condition=Q(project__isnull=True), name="quota_one_per_organization"
            ),
            models.UniqueConstraint(fields=["organization", "project"], name="quota_one_per_project"),
            models.CheckConstraint(
                condition=Q(guaranteed_gpus__lte=models.F("max_gpus")), name="quota_guarantee_within_max"
            ),
        ]

    def __str__(self) -> str:
        return f"quota {self.organization} {self.project or ''}: max {self.max_gpus}"
