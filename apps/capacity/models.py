"""What exists: nodes and their GPUs (keyed by NVML UUID), MIG devices, allocations of GPU
capacity, and quotas. The node agents report the facts; the portal keeps the source of truth.

Allocation invariants are enforced by PostgreSQL, not only by Python:
- `Gpu.allocated_milli` (thousandths of the GPU held by live allocations) is checked to stay
  within 0..1000, and the allocator only ever changes it with a compare-and-set UPDATE;
- a live whole-GPU hold and a live MIG-device hold are each unique (partial unique indexes).

`NodeCapacity` is a per-node summary of the GPU rows the allocator ranks nodes from; database
triggers keep it in step with every write to `Gpu` (see the model).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
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
    # Where the node's services (SSH instances) are reached and the ports they may take there,
    # as its agent reports them (--address, --ssh-ports); empty when it reports none.
    address = models.GenericIPAddressField(null=True, blank=True)
    ssh_port_first = models.PositiveIntegerField(null=True, blank=True)
    ssh_port_last = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_interval_s = models.PositiveIntegerField(default=10)
    registered_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The agent's message counter: a message with a seq at or below this one is stale.
    last_seq = models.BigIntegerField(default=0)
    last_telemetry_seq = models.BigIntegerField(default=0)
    # The agent's last health check (provisioning/agent/health.py); null until one is reported.
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_passed = models.BooleanField(null=True, blank=True)
    health_reasons = models.JSONField(default=list, blank=True)
    health_note = models.CharField(max_length=200, blank=True)  # e.g. whether CUDA ran
    # Bare metal: the instance whose tenant data (account, home, processes) the agent has still to
    # wipe. Set in the transaction that releases that instance's allocation, cleared (with a
    # NodeEvent) when the agent reports the wipe (services/wipe.py); while set, the placement
    # functions place nothing on the node. A plain id: capacity sits below instances.
    wipe_pending_instance = models.UUIDField(null=True, blank=True)
    wipe_pending_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["region__code", "hostname"]
        indexes = [models.Index(fields=["state", "last_heartbeat_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(ssh_port_first__isnull=True, ssh_port_last__isnull=True)
                | Q(ssh_port_first__gte=1, ssh_port_first__lte=models.F("ssh_port_last"), ssh_port_last__lte=65535),
                name="node_ssh_ports_range",
            )
        ]

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
        # No index may cover allocated_milli, not even in a partial index's condition: then a
        # claim or a release, which changes only that column, is a HOT update that writes no index
        # entry (migration 0002 also leaves room on each page for it). Free and partly held GPUs
        # are found through NodeCapacity and the node's GPUs instead.
        indexes = [
            # MIG candidates start from the MIG GPUs, not from every GPU of the region.
            models.Index(fields=["gpu_model", "node"], condition=Q(mig_enabled=True), name="gpu_mig_enabled_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.index} on {self.node.hostname}"


class GpuSample(models.Model):
    """A GPU's telemetry history for charts: one row per GPU and minute, whatever the reporting
    rate. Written by the telemetry report's own statement (services.reports, an upsert: the last
    report of a minute wins), pruned after PORTAL_TELEMETRY_RETENTION_DAYS (tasks).

    Compact on purpose (about 60 bytes a row with its key, ~10,000 rows per GPU a week): the key
    is (gpu, minute), so there is no id column and no second B-tree; the prune finds old rows
    through a BRIN index on `minute`, a few pages for a table that only grows at its end."""

    pk = models.CompositePrimaryKey("gpu", "minute")
    # No index of its own: the primary key starts with it.
    gpu = models.ForeignKey(Gpu, on_delete=models.CASCADE, related_name="samples", db_index=False)
    minute = models.DateTimeField()
    utilization_pct = models.PositiveSmallIntegerField(null=True)
    memory_used_bytes = models.BigIntegerField(null=True)

    class Meta:
        indexes = [BrinIndex(fields=["minute"], name="capacity_gpusample_minute_brin")]

    def __str__(self) -> str:
        return f"GPU {self.gpu_id} at {self.minute:%Y-%m-%d %H:%M}: {self.utilization_pct} %"


class NodeCapacity(models.Model):
    """Per node and GPU model, among its healthy GPUs: those free whole (no holds, not MIG), those in
    use (any hold), and those partly held (not MIG, 0 < held < 1000: where fractions go).

    The allocator ranks nodes from this table through its indexes instead of aggregating every
    GPU per placement. PostgreSQL triggers (migration 0002) keep the counts: on `Gpu` insert and
    delete, and on every update of its node, model, health, MIG mode or allocated_milli that
    changes a count; every write, whatever path it takes (the allocator, agent reports, the admin,
    a test's `.update()`), changes the summary row in the same statement and so the same
    transaction, GPU rows first, then the summary row. (The allocator's own claim and release
    statements update it themselves, once per node rather than once per GPU: migration 0003.) A
    trigger on `Node.region` keeps `region`.

    Only a ranking: the GPU compare-and-set stays the source of truth, so a wrong row can cost a
    lost claim and a retry, never a double booking. `services.capacity_summary` recounts and
    repairs it (a periodic task).

    Not kept by a trigger on `Node`, on purpose: state transitions and inventory reports go on to
    lock GPU rows after updating the node, so such a trigger would lock summary rows before GPU
    rows, the opposite order to a claim's, and deadlock with it. So the node's state is not copied
    (the ranking reads it from the node, one index probe per candidate), and its hostname, only a
    tie-break, is copied when the row is created and refreshed by the inventory report that changes
    it (after that report has locked the node's GPU rows) or by the repair. Only `region` has a
    trigger: nothing moves a node between regions but a statement of its own.
    """

    # Every change to a count writes a new row version into each index (the counts are indexed, so
    # never a HOT update): no index beyond the key and the two the allocator reads.
    pk = models.CompositePrimaryKey("node", "gpu_model")
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="capacity", db_index=False)
    gpu_model = models.ForeignKey("catalog.GpuModel", on_delete=models.CASCADE, related_name="+", db_index=False)
    region = models.ForeignKey(  # = node.region
        "catalog.Region", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    hostname = models.CharField(max_length=255)  # = node.hostname, for best-fit's tie-break
    # No positivity checks on purpose: a summary gone wrong must never make a claim or a release fail.
    free_whole_gpus = models.IntegerField(default=0)
    gpus_in_use = models.IntegerField(default=0)
    partly_held_gpus = models.IntegerField(default=0)

    class Meta:
        indexes = [
            # Best-fit's order: fewest free whole GPUs that still fit, then the busiest node, then
            # by hostname, the order first-fit also uses.
            models.Index(
                fields=["region", "gpu_model", "free_whole_gpus", "-gpus_in_use", "hostname", "node"],
                condition=Q(free_whole_gpus__gt=0),
                name="nodecapacity_rank_idx",
            ),
            # Nodes with GPUs a fraction may share.
            models.Index(
                fields=["region", "gpu_model"], condition=Q(partly_held_gpus__gt=0), name="nodecapacity_partly_idx"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.hostname} model {self.gpu_model_id}: {self.free_whole_gpus} free, {self.gpus_in_use} in use, "
            f"{self.partly_held_gpus} partly held"
        )


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
    # Members of one gang placement (whole GPUs over several nodes, or whole nodes) share this id:
    # one allocation per member node, so `node` stays the one node whose loss marks it lost.
    gang_id = models.UUIDField(null=True, blank=True, editable=False)
    state = models.CharField(max_length=16, choices=AllocationState.choices, default=AllocationState.ACTIVE)
    gpu_milli = models.PositiveIntegerField(help_text="GPUs held, in thousandths, for quotas")
    holder = models.CharField(max_length=100, blank=True, help_text="What uses it, e.g. instance:<id>")
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "state"]),
            models.Index(fields=["node", "state"]),
            models.Index(fields=["gang_id"], condition=Q(gang_id__isnull=False), name="allocation_gang_idx"),
        ]

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


# --- reservations: capacity promised for a future window -----------------------------------------


class ReservationState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"  # booked; its window has not started
    ACTIVE = "active", "Active"  # its capacity is held (a gang allocation, holder reservation:<id>)
    SHORT = "short", "Short"  # its window started but the capacity could not be held; retried
    ENDED = "ended", "Ended"  # its window is over; capacity given back
    CANCELLED = "cancelled", "Cancelled"  # called off before it started


# States whose window counts against the region's capacity when a new reservation is booked. A
# short one still counts: it is owed capacity, and is given it as soon as some frees.
BOOKED_RESERVATION_STATES = (ReservationState.SCHEDULED, ReservationState.ACTIVE, ReservationState.SHORT)


class Reservation(models.Model):
    """`gpus` whole GPUs of the flavor's GPU model, or `whole_nodes` whole nodes, in `region` from
    `starts_at` to `ends_at`. Booked only if, at every instant of the window, it fits the region's
    capacity beside every other booked reservation (services.reservations); held as a gang
    allocation while active. `gpu_model` is the flavor's, copied so that the overlap query and the
    booking lock need no join.

    The quote (`hourly_amount` × `units`) is the flavor's list price when booked: billing charges
    the held window at it, whatever the list price does afterwards."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="reservations")
    project = models.ForeignKey("accounts.Project", on_delete=models.PROTECT, related_name="reservations")
    flavor = models.ForeignKey("catalog.Flavor", on_delete=models.PROTECT, related_name="+")
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="reservations")
    gpu_model = models.ForeignKey("catalog.GpuModel", on_delete=models.PROTECT, related_name="+")
    gpus = models.PositiveIntegerField(null=True, blank=True)
    whole_nodes = models.PositiveIntegerField(null=True, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=ReservationState.choices, default=ReservationState.SCHEDULED)
    reason = models.CharField(max_length=300, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    # The gang allocation holding it while active; null before and after.
    gang_id = models.UUIDField(null=True, blank=True, editable=False)
    # When its capacity was first held (its start, or later when it was short): billing charges from here.
    held_from = models.DateTimeField(null=True, blank=True)
    units = models.PositiveIntegerField(help_text="flavors' worth the quote counts: gpus / flavor GPUs, or nodes")
    hourly_amount = models.DecimalField(max_digits=12, decimal_places=6, help_text="per unit, when booked")
    currency = models.CharField(max_length=3)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["starts_at", "created_at"]
        indexes = [
            # The booking check: booked reservations of a region and GPU model overlapping a window.
            models.Index(
                fields=["region", "gpu_model", "starts_at", "ends_at"],
                condition=Q(state__in=["scheduled", "active", "short"]),
                name="reservation_booked_idx",
            ),
            models.Index(fields=["organization", "starts_at"]),
            # The periodic pass: what is due to start or end.
            models.Index(fields=["state", "starts_at"], name="reservation_due_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="reservation_ends_after_start"),
            models.CheckConstraint(
                condition=Q(gpus__isnull=False, gpus__gte=1, whole_nodes__isnull=True)
                | Q(gpus__isnull=True, whole_nodes__isnull=False, whole_nodes__gte=1),
                name="reservation_gpus_xor_whole_nodes",
            ),
            models.CheckConstraint(condition=Q(hourly_amount__gte=0), name="reservation_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"reservation {self.pk} ({self.state}): {self.what}"

    @property
    def what(self) -> str:
        model = self.gpu_model.name
        if self.gpus is not None:
            return f"{self.gpus} × {model} GPU{'s' if self.gpus != 1 else ''}"
        return f"{self.whole_nodes} whole {model} node{'s' if self.whole_nodes != 1 else ''}"

    @property
    def holder(self) -> str:
        return f"reservation:{self.pk}"


class ReservationEvent(models.Model):
    """One row per reservation state transition: what, why, who (null: the portal itself)."""

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, choices=ReservationState.choices, blank=True)
    to_state = models.CharField(max_length=16, choices=ReservationState.choices)
    reason = models.CharField(max_length=300)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.reservation_id}: {self.from_state or '∅'} → {self.to_state}"
