"""What a customer launched: the instance, its lifecycle state, the event log of every state
change, and the runtime facts its node agent reports (kept apart from the lifecycle state)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class InstanceState(models.TextChoices):
    # Waiting for capacity the caller chose to wait for: it holds nothing (no allocation, no
    # node, no metered run) and is placed in FIFO order per region and flavor as capacity frees.
    QUEUED = "queued", "Queued"
    REQUESTED = "requested", "Requested"
    SCHEDULED = "scheduled", "Scheduled"
    PROVISIONING = "provisioning", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost"
    TERMINATED = "terminated", "Deleted"


# States of an instance that is not over, so its name is taken in its organization. All but
# QUEUED hold (or are about to hold) capacity: a requested instance holds its allocation from the
# launch's own transaction; a queued one holds nothing, is on no node's list and is never metered.
ACTIVE_STATES = (
    InstanceState.QUEUED,
    InstanceState.REQUESTED,
    InstanceState.SCHEDULED,
    InstanceState.PROVISIONING,
    InstanceState.RUNNING,
    InstanceState.STOPPING,
)
# The states services.actions.instance_stop_request stops from: a queued launch too, so that a
# reached hard cap or a suspended account also takes launches out of the queue.
STOPPABLE_STATES = (
    InstanceState.QUEUED,
    InstanceState.REQUESTED,
    InstanceState.SCHEDULED,
    InstanceState.PROVISIONING,
    InstanceState.RUNNING,
)
# The states an agent should keep a workload running in.
WANTED_RUNNING_STATES = (InstanceState.SCHEDULED, InstanceState.PROVISIONING, InstanceState.RUNNING)


class Instance(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="instances")
    project = models.ForeignKey("accounts.Project", on_delete=models.PROTECT, related_name="instances")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="instances")
    name = models.CharField(max_length=63)
    offering = models.ForeignKey("catalog.Offering", on_delete=models.PROTECT, related_name="+")
    flavor = models.ForeignKey("catalog.Flavor", on_delete=models.PROTECT, related_name="+")
    image = models.ForeignKey("catalog.Image", on_delete=models.PROTECT, related_name="+")
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=InstanceState.choices, default=InstanceState.REQUESTED)
    state_reason = models.CharField(max_length=500, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    allocation = models.ForeignKey(
        "capacity.Allocation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    node = models.ForeignKey("capacity.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The reservation it was launched into: it runs on GPUs the reservation holds (lent to its
    # allocation, apps/capacity/services/reservation_gpus.py) and takes them again when started
    # within the window; cleared when it is placed on other capacity once the window is over.
    # Billing reads it: its runs are paid by the reservation's charge, not per second.
    reservation = models.ForeignKey(
        "capacity.Reservation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # key=value pairs for chargeback, over its project's (apps.accounts.labels).
    labels = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Idle culling: when the owner was warned that the notebook will be stopped.
    idle_warned_at = models.DateTimeField(null=True, blank=True)
    # An SSH instance's (gpu_slice) public key lines, copied from the owner's keys at launch: a
    # copy, not a relation, so that deleting or renaming a key later never changes who may log
    # in to an instance that is already running. Empty for other kinds.
    ssh_authorized_keys = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["state", "state_changed_at"]),
            models.Index(fields=["node", "state"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class InstanceEvent(models.Model):
    """One row per lifecycle change (and notable steps): who or what, when, why."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, choices=InstanceState.choices, blank=True)
    to_state = models.CharField(max_length=16, choices=InstanceState.choices, blank=True)
    message = models.CharField(max_length=500)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, default="portal", help_text="user, portal, agent or reconciler")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.instance_id}: {self.message}"


class InstanceRuntime(models.Model):
    """What the node agent last reported about the workload. Facts, not intentions: the
    lifecycle state lives on Instance and changes only through apps.instances.services."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, primary_key=True, related_name="runtime")
    process_state = models.CharField(max_length=16, blank=True, help_text="starting, running, stopped, failed")
    last_seq = models.BigIntegerField(default=0)
    # Where the front proxy sends /nb/<route_slot>/…: the Unix socket of the notebook server on
    # its node, which only the server's own account and the proxy may connect to (no token).
    route_slot = models.CharField(max_length=64, null=True, blank=True, unique=True)
    socket = models.CharField(max_length=107, blank=True)
    pooled = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True, help_text="agent-confirmed: Jupyter answered")
    stopped_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    kernels = models.PositiveIntegerField(default=0)
    busy_kernels = models.PositiveIntegerField(default=0)
    # Where an SSH workload (a gpu_slice instance) is reached, as its agent reported it while it
    # runs (provisioning.protocol.SSH_ENDPOINT_FIELDS); null for notebooks and once it stopped.
    # The host key lets the instance page offer a known_hosts line instead of trust on first use.
    # All four null together (not "" for the strings), so "no endpoint" reads one way.
    ssh_host = models.GenericIPAddressField(null=True, blank=True)
    ssh_port = models.PositiveIntegerField(null=True, blank=True)
    ssh_user = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    ssh_host_key = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"runtime of {self.instance_id}: {self.process_state}"


class NodeWorkloads(models.Model):
    """The version of one node's desired workloads, which its agent long-polls with.

    It changes exactly when that list changes: `services.desired` records a change in the
    transaction that changes an instance's desired state, and a deferred trigger (migration 0003)
    adds one here when that transaction commits. Taking this row's lock at commit, after every
    other lock of the transaction, keeps it last in portal/db.py's lock order: a budget pass that
    stops several instances of one node cannot hold it while it waits for another instance."""

    # No database foreign key: the row is written at commit by the trigger, and a key check would
    # take KEY SHARE on the node row that heartbeats update.
    node = models.OneToOneField(
        "capacity.Node", primary_key=True, on_delete=models.CASCADE, db_constraint=False, related_name="+"
    )
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"workloads of node {self.node_id}: version {self.version}"


class NodeWorkloadsChange(models.Model):
    """A change of a node's desired workloads not committed yet; the trigger turns it into a
    version bump at commit and deletes it, so the table is empty outside open transactions."""

    id = models.BigAutoField(primary_key=True)
    node_id = models.UUIDField()

    def __str__(self) -> str:
        return f"change of node {self.node_id}'s workloads"
