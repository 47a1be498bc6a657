"""Reads of reservations: the fleet a reservation may count on, what is booked over a window, and
the capacity calendar (a customer's own reservations; the operators' view of every tenant).

The fleet capacity of a region and GPU model is what a reservation is booked against: whole GPUs
of the model (healthy, not MIG) on nodes that are neither down nor in maintenance. Cordoned and
draining nodes count: they are expected back, and a reservation is for later. Reads take no locks;
the booking (services.reservations) reads the same under its region+model lock.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from apps.accounts.models import Organization
from apps.catalog.models import Flavor, GpuModel, Region, SliceKind

from ..models import (
    BOOKED_RESERVATION_STATES,
    WHOLE_GPU_MILLI,
    Allocation,
    AllocationState,
    Gpu,
    GpuHealth,
    NodeState,
    Reservation,
    ReservationState,
)

OUT_OF_FLEET_NODE_STATES = (NodeState.DOWN, NodeState.MAINTENANCE)


@dataclass(frozen=True)
class FleetCapacity:
    """Whole GPUs of one model in one region a reservation may count on, per node (largest first)."""

    node_gpus: tuple[int, ...]

    @property
    def gpus(self) -> int:
        return sum(self.node_gpus)

    @property
    def nodes(self) -> int:
        return len(self.node_gpus)

    def nodes_of(self, size: int) -> int:
        """Nodes with exactly `size` GPUs of the model: what a whole-node reservation of a flavor of
        that size may be given (as bare metal is: `node_gpus`)."""
        return sum(1 for n in self.node_gpus if n == size)

    def gpus_needed(self, *, gpus: int, nodes: Mapping[int, int]) -> int | None:
        """GPUs that `gpus` loose GPUs plus whole nodes (`nodes`: node size → how many) take; None
        when there are not that many nodes of a size."""
        if any(count > self.nodes_of(size) for size, count in nodes.items() if count):
            return None
        return gpus + sum(size * count for size, count in nodes.items())

    def fits(self, *, gpus: int, nodes: Mapping[int, int]) -> bool:
        needed = self.gpus_needed(gpus=gpus, nodes=nodes)
        return needed is not None and needed <= self.gpus


def demand(reservations: Iterable[Reservation]) -> tuple[int, Counter]:
    """(loose GPUs, whole nodes by node size) that `reservations` take together; a whole-node
    reservation takes nodes of its flavor's GPU count (read with `flavor`)."""
    gpus, nodes = 0, Counter()
    for r in reservations:
        if r.gpus is not None:
            gpus += r.gpus
        else:
            nodes[r.flavor.gpu_count] += r.whole_nodes
    return gpus, nodes


def _fleet_rows(*, region_ids: Iterable[int] | None = None, gpu_model_ids: Iterable[int] | None = None):
    gpus = Gpu.objects.filter(health=GpuHealth.OK, mig_enabled=False, gpu_model__isnull=False).exclude(
        node__state__in=OUT_OF_FLEET_NODE_STATES
    )
    if region_ids is not None:
        gpus = gpus.filter(node__region_id__in=list(region_ids))
    if gpu_model_ids is not None:
        gpus = gpus.filter(gpu_model_id__in=list(gpu_model_ids))
    return gpus.values_list("node__region_id", "gpu_model_id", "node_id").annotate(n=Count("id")).order_by()


def fleet_capacity_get(*, region: Region, gpu_model: GpuModel) -> FleetCapacity:
    """One query: the per-node GPU counts of the model in the region."""
    sizes = sorted(
        (n for _r, _m, _node, n in _fleet_rows(region_ids=[region.pk], gpu_model_ids=[gpu_model.pk])), reverse=True
    )
    return FleetCapacity(node_gpus=tuple(sizes))


def fleet_capacity_map() -> dict[tuple[int, int], FleetCapacity]:
    """Every (region id, GPU model id) with capacity, in one query (the operators' calendar)."""
    sizes: dict[tuple[int, int], list[int]] = defaultdict(list)
    for region_id, model_id, _node, n in _fleet_rows():
        sizes[(region_id, model_id)].append(n)
    return {key: FleetCapacity(node_gpus=tuple(sorted(v, reverse=True))) for key, v in sizes.items()}


# What demand() reads of a reservation (with select_related("flavor")).
DEMAND_FIELDS = ("id", "starts_at", "ends_at", "gpus", "whole_nodes", "flavor__gpu_count")


def reservations_overlapping(
    *, region: Region, gpu_model: GpuModel, starts_at: datetime, ends_at: datetime, exclude_id: UUID | None = None
) -> list[Reservation]:
    """Booked reservations of the region and model whose window overlaps [starts_at, ends_at)."""
    booked = Reservation.objects.filter(
        region=region,
        gpu_model=gpu_model,
        state__in=BOOKED_RESERVATION_STATES,
        starts_at__lt=ends_at,
        ends_at__gt=starts_at,
    )
    if exclude_id is not None:
        booked = booked.exclude(pk=exclude_id)
    return list(booked.select_related("flavor").only(*DEMAND_FIELDS))


@dataclass(frozen=True)
class Shortfall:
    """The first stretch of a window where a request does not fit, and what is free there."""

    starts_at: datetime
    ends_at: datetime
    free: int  # GPUs (a GPU request) or whole nodes (a whole-node request) not reserved there
    total: int  # the fleet's GPUs or nodes


def window_shortfall(
    *,
    fleet: FleetCapacity,
    booked: Sequence[Reservation],
    starts_at: datetime,
    ends_at: datetime,
    gpus: int | None,
    whole_nodes: int | None,
    node_gpus: int = 0,
) -> Shortfall | None:
    """None when `gpus` (or `whole_nodes` nodes of `node_gpus` GPUs) fit beside `booked` at every
    instant of the window; else the first stretch where they do not. A sweep over the window's
    change points: between two of them the set of overlapping reservations is constant."""
    points = sorted(
        {starts_at, ends_at} | {t for r in booked for t in (r.starts_at, r.ends_at) if starts_at < t < ends_at}
    )
    failing: list[tuple[datetime, datetime, int]] = []
    for left, right in zip(points, points[1:], strict=False):
        taken_gpus, taken_nodes = demand(r for r in booked if r.starts_at < right and r.ends_at > left)
        asked = taken_nodes + Counter({node_gpus: whole_nodes or 0})
        if fleet.fits(gpus=taken_gpus + (gpus or 0), nodes=asked):
            if failing:
                break
            continue
        free = _free(
            fleet=fleet, taken_gpus=taken_gpus, taken_nodes=taken_nodes, node_gpus=node_gpus if whole_nodes else 0
        )
        failing.append((left, right, free))
    if not failing:
        return None
    return Shortfall(
        starts_at=failing[0][0],
        ends_at=failing[-1][1],
        free=min(f for _l, _r, f in failing),
        total=fleet.nodes_of(node_gpus) if whole_nodes is not None else fleet.gpus,
    )


def _free(*, fleet: FleetCapacity, taken_gpus: int, taken_nodes: Counter, node_gpus: int) -> int:
    """How many more GPUs (or, with `node_gpus`, whole nodes of that size) still fit beside what is taken."""
    if not node_gpus:
        needed = fleet.gpus_needed(gpus=taken_gpus, nodes=taken_nodes)
        return 0 if needed is None else max(fleet.gpus - needed, 0)
    free = 0
    while fleet.fits(gpus=taken_gpus, nodes=taken_nodes + Counter({node_gpus: free + 1})):
        free += 1
    return free


# --- the calendar --------------------------------------------------------------------------------


def reservations_list(*, organization: Organization) -> QuerySet[Reservation]:
    """A customer's reservations, newest window first; related rows joined (no query per row)."""
    return (
        Reservation.objects.filter(organization=organization)
        .select_related("flavor__offering", "region", "gpu_model", "project")
        .order_by("-starts_at", "-created_at")
    )


def reservation_get(*, organization: Organization, reservation_id: UUID) -> Reservation:
    """One of the organization's reservations; another tenant's is a 404."""
    reservation = reservations_list(organization=organization).filter(pk=reservation_id).first()
    if reservation is None:
        raise Http404("No such reservation.")
    return reservation


def reservations_all_list(*, since: datetime, until: datetime) -> QuerySet[Reservation]:
    """Every tenant's reservations overlapping [since, until) (operators only)."""
    return (
        Reservation.objects.filter(starts_at__lt=until, ends_at__gt=since)
        .select_related("organization", "flavor__offering", "region", "gpu_model", "project")
        .order_by("region__code", "gpu_model__name", "starts_at")
    )


# --- launching into one --------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchableReservation:
    reservation: Reservation
    gpus_free: int  # whole GPUs it holds and has not lent to instances

    @property
    def gpus(self) -> int:
        """Its size in GPUs (a whole-node reservation: nodes of its flavor's size)."""
        r = self.reservation
        return r.gpus if r.gpus is not None else r.whole_nodes * r.flavor.gpu_count


def reservations_launchable_list(
    *, organization: Organization, flavor: Flavor, now: datetime | None = None
) -> list[LaunchableReservation]:
    """The organization's reservations an instance of `flavor` may be launched into now: active
    (holding capacity), inside their window, of the flavor's GPU model; region and model joined,
    soonest end first, each with its `gpus_free`: whole GPUs its own members still hold, not
    lent to instances (services.reservation_gpus moves lent GPUs to the instance's allocation).
    One query, however many. A snapshot for the launch form: the launch checks again under locks."""
    if flavor.gpu_model_id is None or flavor.slice_kind != SliceKind.WHOLE:
        return []
    now = now or timezone.now()
    # A gang belongs to one reservation, so its members named "reservation:…" are the reservation's own.
    own_milli = (
        Allocation.objects.filter(
            gang_id=OuterRef("gang_id"), holder__startswith="reservation:", state=AllocationState.ACTIVE
        )
        .values("gang_id")
        .annotate(milli=Sum("gpu_milli"))
        .values("milli")
    )
    rows = (
        Reservation.objects.filter(
            organization=organization,
            gpu_model_id=flavor.gpu_model_id,
            region__is_active=True,
            state=ReservationState.ACTIVE,
            gang_id__isnull=False,
            starts_at__lte=now,
            ends_at__gt=now,
        )
        .select_related("region", "gpu_model", "flavor")
        .annotate(held_milli=Coalesce(Subquery(own_milli, output_field=IntegerField()), 0))
        .order_by("ends_at", "id")
    )
    return [LaunchableReservation(reservation=r, gpus_free=r.held_milli // WHOLE_GPU_MILLI) for r in rows]
