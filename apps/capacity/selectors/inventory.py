"""Reads of the operators' inventory pages: regions, nodes, one node in detail, registration tokens.

Every list is aggregated in the database (annotate, prefetch), so a page costs the same few
queries for 2 nodes or 2,000: the overview is re-rendered on every live push, per open socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

from django.db.models import (
    Avg,
    Count,
    DecimalField,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Cast, Coalesce, Greatest, Now
from django.shortcuts import get_object_or_404

from apps.catalog.models import Region

from ..models import (
    LIVE_ALLOCATION_STATES,
    WHOLE_GPU_MILLI,
    Allocation,
    AllocationSlice,
    Gpu,
    GpuHealth,
    MigDevice,
    Node,
    NodeEvent,
    NodeState,
    RegistrationToken,
)

NODE_EVENTS_SHOWN = 20
# A missing GPU is kept for history (allocations point at it) but is no longer capacity.
PRESENT_GPU = ~Q(gpus__health=GpuHealth.MISSING)
UNHEALTHY_GPU = Q(gpus__health__in=[GpuHealth.DEGRADED, GpuHealth.FAILED])


class _TrimScale(Func):
    """PostgreSQL's trim_scale (13+): 2.500 → 2.5, 8.000 → 8, so templates print GPUs plainly."""

    function = "trim_scale"
    output_field = DecimalField()


def _gpus_from_milli(milli_sum) -> _TrimScale:
    """Thousandths of a GPU, summed, as an exact number of GPUs (never a float)."""
    milli = Cast(Coalesce(milli_sum, 0), DecimalField(max_digits=14, decimal_places=0))
    return _TrimScale(milli / Value(Decimal(WHOLE_GPU_MILLI)))


# --- regions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionInventory:
    region: Region
    nodes_total: int
    nodes_by_state: dict[str, int]  # every NodeState, in its order, zeros included
    nodes_simulated: int
    gpus_total: int
    gpus_unhealthy: int
    allocated_milli: int
    allocated_gpus: Decimal
    utilization_avg_pct: float | None  # over GPUs with telemetry; None when none reported

    @property
    def is_all_simulated(self) -> bool:
        return self.nodes_total > 0 and self.nodes_simulated == self.nodes_total


def regions_inventory_list() -> list[RegionInventory]:
    """Active regions and any region that still has nodes, with node and GPU totals: one query.

    The joins go region → node → GPU, one chain, so GPU sums see each GPU once; node counts are
    DISTINCT because a node appears once per GPU.
    """
    state_counts = {
        f"nodes_{state}": Count("nodes", filter=Q(nodes__state=state), distinct=True) for state in NodeState.values
    }
    regions = (
        Region.objects.annotate(
            nodes_total=Count("nodes", distinct=True),
            nodes_simulated=Count("nodes", filter=Q(nodes__simulated=True), distinct=True),
            gpus_total=Count("nodes__gpus", filter=~Q(nodes__gpus__health=GpuHealth.MISSING)),
            gpus_unhealthy=Count(
                "nodes__gpus", filter=Q(nodes__gpus__health__in=[GpuHealth.DEGRADED, GpuHealth.FAILED])
            ),
            allocated_milli=Coalesce(Sum("nodes__gpus__allocated_milli"), 0),
            allocated_gpus=_gpus_from_milli(Sum("nodes__gpus__allocated_milli")),
            utilization_avg_pct=Avg(
                "nodes__gpus__utilization_pct", filter=~Q(nodes__gpus__health=GpuHealth.MISSING)
            ),
            **state_counts,
        )
        .filter(Q(is_active=True) | Q(nodes_total__gt=0))
        .order_by("code")
    )
    return [
        RegionInventory(
            region=region,
            nodes_total=region.nodes_total,
            nodes_by_state={state: getattr(region, f"nodes_{state}") for state in NodeState.values},
            nodes_simulated=region.nodes_simulated,
            gpus_total=region.gpus_total,
            gpus_unhealthy=region.gpus_unhealthy,
            allocated_milli=region.allocated_milli,
            allocated_gpus=region.allocated_gpus,
            utilization_avg_pct=region.utilization_avg_pct,
        )
        for region in regions
    ]


# --- nodes -------------------------------------------------------------------------------------


def _heartbeat_age() -> Greatest:
    # Heartbeats are stamped by the portal's clock and aged by the database's; NTP keeps them
    # close, and the floor at zero hides the last few milliseconds of skew.
    age = ExpressionWrapper(Now() - F("last_heartbeat_at"), output_field=DurationField())
    return Greatest(age, Value(timedelta(0)), output_field=DurationField())


def _live_allocations_count() -> Subquery:
    # A subquery, not a join: joining allocations next to GPUs would multiply the GPU sums.
    return Subquery(
        Allocation.objects.filter(node=OuterRef("pk"), state__in=LIVE_ALLOCATION_STATES)
        .order_by()
        .values("node")
        .annotate(n=Count("pk"))
        .values("n"),
        output_field=IntegerField(),
    )


def nodes_list(*, region: Region | None = None, state: str | None = None) -> QuerySet[Node]:
    """Nodes with their GPU count and model, allocation and utilisation aggregates: one query.

    Annotations: gpu_count, gpus_unhealthy, gpu_name (the model NVML reports; gpu_names_mixed
    when a node's GPUs differ), allocated_milli_total, allocated_gpus (exact Decimal),
    utilization_avg_pct (None without telemetry), allocations_live, heartbeat_age (timedelta).
    """
    nodes = Node.objects.select_related("region").annotate(
        gpu_count=Count("gpus", filter=PRESENT_GPU),
        gpus_unhealthy=Count("gpus", filter=UNHEALTHY_GPU),
        gpu_name=Min("gpus__name", filter=PRESENT_GPU),
        gpu_name_last=Max("gpus__name", filter=PRESENT_GPU),
        allocated_milli_total=Coalesce(Sum("gpus__allocated_milli"), 0),
        allocated_gpus=_gpus_from_milli(Sum("gpus__allocated_milli")),
        utilization_avg_pct=Avg("gpus__utilization_pct", filter=PRESENT_GPU),
        allocations_live=Coalesce(_live_allocations_count(), 0),
        heartbeat_age=_heartbeat_age(),
    )
    if region is not None:
        nodes = nodes.filter(region=region)
    if state:
        nodes = nodes.filter(state=state)
    return nodes.order_by("region__code", "hostname")


# --- one node ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeDetail:
    node: Node
    gpus: list[Gpu]  # each with `mig_devices_present` (list) and latest telemetry fields
    allocations: list[Allocation]  # live ones, each with `slices_live` (list, GPU loaded)
    events: list[NodeEvent]  # newest first, at most NODE_EVENTS_SHOWN

    @property
    def gpu_count(self) -> int:
        return sum(1 for gpu in self.gpus if gpu.health != GpuHealth.MISSING)

    @property
    def allocated_milli(self) -> int:
        return sum(gpu.allocated_milli for gpu in self.gpus)

    @property
    def allocated_gpus(self) -> Decimal:
        return Decimal(self.allocated_milli) / WHOLE_GPU_MILLI  # exact: 2500 → 2.5, 8000 → 8


def node_get(*, node_id: UUID | str) -> Node:
    """One node (with `heartbeat_age`), or 404."""
    nodes = Node.objects.select_related("region").annotate(heartbeat_age=_heartbeat_age())
    return get_object_or_404(nodes, pk=node_id)


def node_detail_get(*, node_id: UUID | str) -> NodeDetail:
    """One node with GPUs, MIG devices, live allocations and recent events: 6 queries; 404 if unknown."""
    node = node_get(node_id=node_id)
    gpus = list(
        Gpu.objects.filter(node=node)
        .select_related("gpu_model")
        .prefetch_related(
            Prefetch("mig_devices", queryset=MigDevice.objects.filter(present=True), to_attr="mig_devices_present")
        )
        .order_by("index", "uuid")
    )
    allocations = list(
        Allocation.objects.filter(node=node, state__in=LIVE_ALLOCATION_STATES)
        .select_related("organization", "project", "flavor")
        .prefetch_related(
            Prefetch(
                "slices",
                queryset=AllocationSlice.objects.filter(live=True).select_related("gpu", "mig_device"),
                to_attr="slices_live",
            )
        )
        .order_by("created_at", "pk")
    )
    events = list(NodeEvent.objects.filter(node=node).select_related("actor")[:NODE_EVENTS_SHOWN])
    return NodeDetail(node=node, gpus=gpus, allocations=allocations, events=events)


# --- registration tokens -----------------------------------------------------------------------


def registration_tokens_list() -> QuerySet[RegistrationToken]:
    """Tokens newest first, with region, creator and the node each one registered (if any)."""
    return RegistrationToken.objects.select_related("region", "created_by", "node").order_by("-created_at", "-pk")
