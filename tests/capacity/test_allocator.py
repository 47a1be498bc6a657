"""The allocator on real PostgreSQL: what is eligible, best-fit packing, release, lost nodes, and
the database constraints that back it up."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from apps.capacity.errors import AllocationRefused
from apps.capacity.models import (
    Allocation,
    AllocationSlice,
    AllocationState,
    Gpu,
    GpuHealth,
    NodeCapacity,
    NodeState,
)
from apps.capacity.selectors.availability import PlacementStrategy
from apps.capacity.services.allocations import allocation_create, allocation_release, allocations_release_lost
from apps.capacity.services.capacity_summary import node_capacity_drift
from apps.capacity.services.nodes import node_state_transition
from tests.factories.accounts import OrganizationFactory
from tests.factories.capacity import MigDeviceFactory, node_with_gpus
from tests.factories.catalog import FlavorFactory, GpuModelFactory, RegionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return OrganizationFactory(name="Acme AI")


def whole(model, n: int):
    return FlavorFactory(gpu_model=model, gpu_count=n)


def place(customer, flavor, region, **kwargs) -> Allocation:
    return allocation_create(organization=customer, flavor=flavor, region=region, **kwargs)


def refusal(customer, flavor, region, **kwargs) -> AllocationRefused:
    before = (Allocation.objects.count(), sorted(Gpu.objects.values_list("pk", "allocated_milli")))
    with pytest.raises(AllocationRefused) as info:
        place(customer, flavor, region, **kwargs)
    # A refusal holds nothing.
    assert (Allocation.objects.count(), sorted(Gpu.objects.values_list("pk", "allocated_milli"))) == before
    return info.value


def held_gpus(allocation: Allocation) -> list[Gpu]:
    return list(Gpu.objects.filter(slices__allocation=allocation, slices__live=True).order_by("index"))


def assert_milli_matches_live_slices():
    for gpu in Gpu.objects.all():
        live = sum(s.milli for s in AllocationSlice.objects.filter(gpu=gpu, live=True))
        assert gpu.allocated_milli == live, gpu


# --- placement -----------------------------------------------------------------------------------


def test_a_whole_gpu_allocation_holds_its_gpus(customer, region, h100):
    node = node_with_gpus(region, h100, n=8)

    allocation = place(customer, whole(h100, 2), region, holder="instance:42")

    assert allocation.state == AllocationState.ACTIVE and allocation.node == node
    assert allocation.gpu_milli == 2000 and allocation.holder == "instance:42"
    assert [g.allocated_milli for g in held_gpus(allocation)] == [1000, 1000]
    assert {s.milli for s in allocation.slices.all()} == {1000}
    assert_milli_matches_live_slices()
    fields = [f.attname for f in Allocation._meta.concrete_fields]
    stored = Allocation.objects.get(pk=allocation.pk)
    assert [getattr(allocation, f) for f in fields] == [getattr(stored, f) for f in fields]


def test_best_fit_keeps_untouched_nodes_for_big_requests(customer, region, h100):
    busy = node_with_gpus(region, h100, n=8, hostname="node-a")
    untouched = node_with_gpus(region, h100, n=8, hostname="node-b")
    place(customer, whole(h100, 4), region)
    place(customer, whole(h100, 1), region)
    assert Gpu.objects.filter(node=busy, allocated_milli=0).count() == 3

    two = place(customer, whole(h100, 2), region)
    eight = place(customer, whole(h100, 8), region)

    assert two.node == busy
    assert eight.node == untouched


def test_best_fit_picks_the_node_with_fewest_free_gpus_not_the_first(customer, region, h100):
    node_with_gpus(region, h100, n=8, hostname="node-a")  # untouched, first by name
    tight = node_with_gpus(region, h100, n=8, hostname="node-b")
    Gpu.objects.filter(node=tight, index__lt=5).update(health=GpuHealth.FAILED)  # 3 usable

    assert place(customer, whole(h100, 2), region).node == tight


def test_first_fit_baseline_takes_the_first_node_that_fits(customer, region, h100):
    first = node_with_gpus(region, h100, n=8, hostname="node-a")
    tight = node_with_gpus(region, h100, n=8, hostname="node-b")
    Gpu.objects.filter(node=tight, index__lt=5).update(health=GpuHealth.FAILED)

    allocation = place(customer, whole(h100, 2), region, strategy=PlacementStrategy.FIRST_FIT)

    assert allocation.node == first


def test_a_multi_gpu_request_never_spans_nodes(customer, region, h100):
    for name in ("node-a", "node-b"):
        node = node_with_gpus(region, h100, n=8, hostname=name)
        Gpu.objects.filter(node=node, index__lt=5).update(allocated_milli=1000, health=GpuHealth.DEGRADED)

    refused = refusal(customer, whole(h100, 4), region)  # 6 free in the region, at most 3 per node

    assert refused.reason == "no_capacity"
    assert refused.message == f"No free {whole(h100, 4).accelerator_label} in us-east-1 right now."
    allocation = place(customer, whole(h100, 3), region)
    assert {g.node_id for g in held_gpus(allocation)} == {allocation.node_id}


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda node, gpu: Gpu.objects.filter(pk=gpu.pk).update(health=GpuHealth.DEGRADED), id="degraded"),
        pytest.param(lambda node, gpu: Gpu.objects.filter(pk=gpu.pk).update(health=GpuHealth.MISSING), id="missing"),
        pytest.param(
            lambda node, gpu: type(node).objects.filter(pk=node.pk).update(state=NodeState.CORDONED), id="cordoned"
        ),
        pytest.param(
            lambda node, gpu: type(node).objects.filter(pk=node.pk).update(state=NodeState.DRAINING), id="draining"
        ),
        pytest.param(lambda node, gpu: type(node).objects.filter(pk=node.pk).update(state=NodeState.DOWN), id="down"),
        pytest.param(
            lambda node, gpu: Gpu.objects.filter(pk=gpu.pk).update(gpu_model=GpuModelFactory()), id="other-model"
        ),
        pytest.param(
            lambda node, gpu: type(node).objects.filter(pk=node.pk).update(region=RegionFactory()), id="other-region"
        ),
        pytest.param(lambda node, gpu: Gpu.objects.filter(pk=gpu.pk).update(mig_enabled=True), id="mig-mode"),
    ],
)
def test_ineligible_gpus_are_never_allocated(customer, region, h100, spoil):
    node = node_with_gpus(region, h100, n=1)
    spoil(node, node.gpus.get())

    assert refusal(customer, whole(h100, 1), region).reason == "no_capacity"
    assert refusal(customer, FlavorFactory(gpu_model=h100, fraction=True), region).reason == "no_capacity"


def test_a_flavor_without_gpus_is_not_allocatable(customer, region, h100):
    node_with_gpus(region, h100, n=8)

    refused = refusal(customer, FlavorFactory(token_endpoint=True), region)

    assert refused.reason == "flavor_not_allocatable"
    assert refused.as_dict() == {"reason": "flavor_not_allocatable", "detail": refused.message}


def test_fractions_pack_onto_the_fullest_gpu_that_fits(customer, region, h100):
    node = node_with_gpus(region, h100, n=2)
    quarter = FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.25"))
    half = FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.50"))

    quarters = [place(customer, quarter, region) for _ in range(3)]
    assert len({held_gpus(a)[0].pk for a in quarters}) == 1  # packed, not spread
    assert quarters[0].gpu_milli == 250
    first = held_gpus(quarters[0])[0]

    after_half = place(customer, half, region)  # 750 + 500 does not fit: the other GPU
    assert held_gpus(after_half)[0] != first
    last_quarter = place(customer, quarter, region)  # fills the first GPU to exactly 1000
    assert held_gpus(last_quarter)[0] == first
    assert Gpu.objects.get(pk=first.pk).allocated_milli == 1000
    assert Gpu.objects.filter(node=node).exclude(pk=first.pk).get().allocated_milli == 500
    assert_milli_matches_live_slices()


def test_fractions_prefer_partly_used_nodes_and_never_touch_whole_held_gpus(customer, region, h100):
    node_with_gpus(region, h100, n=8, hostname="node-a")  # untouched, first by name
    used = node_with_gpus(region, h100, n=2, hostname="node-z")
    whole_allocation = place(customer, whole(h100, 1), region)
    assert whole_allocation.node == used

    fraction = place(customer, FlavorFactory(gpu_model=h100, fraction=True), region)

    assert fraction.node == used
    assert held_gpus(fraction)[0] != held_gpus(whole_allocation)[0]
    second_half = place(customer, FlavorFactory(gpu_model=h100, fraction=True), region)
    assert second_half.node == used  # the other half of the same GPU


def test_a_mig_slice_holds_one_present_device_of_its_profile(customer, region, h100):
    node = node_with_gpus(region, h100, n=1, mig_profiles=["3g.40gb", "3g.40gb", "1g.10gb"])
    gpu = node.gpus.get()
    MigDeviceFactory(gpu=gpu, profile="1g.10gb", present=False)
    three = FlavorFactory(gpu_model=h100, mig=True, mig_profile="3g.40gb")
    one = FlavorFactory(gpu_model=h100, mig=True, mig_profile="1g.10gb")
    two = FlavorFactory(gpu_model=h100, mig=True, mig_profile="2g.20gb")

    first, second = place(customer, three, region), place(customer, three, region)
    small = place(customer, one, region)

    assert first.gpu_milli == 428 and small.gpu_milli == 142
    devices = [a.slices.get().mig_device for a in (first, second, small)]
    assert len({d.pk for d in devices}) == 3 and all(d.present for d in devices)
    assert Gpu.objects.get(pk=gpu.pk).allocated_milli == 428 + 428 + 142
    assert refusal(customer, three, region).reason == "no_capacity"
    assert refusal(customer, one, region).reason == "no_capacity"  # the absent device is not offered
    assert refusal(customer, two, region).reason == "no_capacity"
    assert refusal(customer, whole(h100, 1), region).reason == "no_capacity"  # MIG GPUs are not whole
    assert_milli_matches_live_slices()


# --- release and lost nodes ------------------------------------------------------------------------


def test_release_gives_capacity_back_and_is_idempotent(customer, region, h100):
    node_with_gpus(region, h100, n=8)
    allocation = place(customer, whole(h100, 8), region)
    assert refusal(customer, whole(h100, 1), region).reason == "no_capacity"

    released = allocation_release(allocation_id=allocation.pk)
    again = allocation_release(allocation_id=allocation.pk)

    assert released.state == again.state == AllocationState.RELEASED
    assert released.released_at is not None and again.released_at == released.released_at
    assert not AllocationSlice.objects.filter(allocation=allocation, live=True).exists()
    assert set(Gpu.objects.values_list("allocated_milli", flat=True)) == {0}
    assert place(customer, whole(h100, 8), region).state == AllocationState.ACTIVE


def test_releasing_a_fraction_leaves_its_neighbours_held(customer, region, h100):
    node_with_gpus(region, h100, n=1)
    quarter = FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.25"))
    a, b = place(customer, quarter, region), place(customer, quarter, region)

    allocation_release(allocation_id=a.pk)
    allocation_release(allocation_id=a.pk)

    assert Gpu.objects.get().allocated_milli == 250
    assert Allocation.objects.get(pk=b.pk).state == AllocationState.ACTIVE
    assert_milli_matches_live_slices()


def test_a_down_node_keeps_its_capacity_held_until_it_is_back(customer, region, h100):
    node = node_with_gpus(region, h100, n=8)
    other = node_with_gpus(region, h100, n=8)
    lost = place(customer, whole(h100, 4), region)
    elsewhere = place(customer, whole(h100, 8), region)
    assert lost.node == node and elsewhere.node == other

    node_state_transition(node_id=node.pk, to_state=NodeState.DOWN, reason="missed heartbeats")

    assert Allocation.objects.get(pk=lost.pk).state == AllocationState.LOST
    assert Allocation.objects.get(pk=elsewhere.pk).state == AllocationState.ACTIVE
    assert AllocationSlice.objects.filter(allocation=lost, live=True).count() == 4
    assert Gpu.objects.filter(node=node, allocated_milli=1000).count() == 4
    assert refusal(customer, whole(h100, 1), region).reason == "no_capacity"  # down: nothing new

    node_state_transition(node_id=node.pk, to_state=NodeState.READY, reason="heartbeats resumed")

    assert Allocation.objects.get(pk=lost.pk).state == AllocationState.RELEASED
    assert Allocation.objects.get(pk=elsewhere.pk).state == AllocationState.ACTIVE
    assert Gpu.objects.filter(node=node, allocated_milli=0).count() == 8
    assert place(customer, whole(h100, 8), region).node == node
    assert_milli_matches_live_slices()


def test_releasing_a_lost_allocation_directly_also_works(customer, region, h100):
    node = node_with_gpus(region, h100, n=8)
    allocation = place(customer, whole(h100, 2), region)
    node_state_transition(node_id=node.pk, to_state=NodeState.DOWN, reason="missed heartbeats")

    assert allocation_release(allocation_id=allocation.pk).state == AllocationState.RELEASED
    node_state_transition(node_id=node.pk, to_state=NodeState.READY, reason="heartbeats resumed")

    assert Gpu.objects.filter(node=node, allocated_milli=0).count() == 8  # given back once, not twice


def test_a_node_back_releases_all_its_lost_allocations_at_once(customer, region, h100):
    # Given: a node filled by four allocations, three of them sharing one GPU (two quarters and a
    # half), which goes down; and an allocation on another node
    node = node_with_gpus(region, h100, n=3)
    quarter = FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.25"))
    half = FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.5"))
    lost = [
        place(customer, whole(h100, 2), region),
        place(customer, quarter, region),
        place(customer, quarter, region),
        place(customer, half, region),
    ]
    assert {a.node_id for a in lost} == {node.pk}
    assert sorted(Gpu.objects.filter(node=node).values_list("allocated_milli", flat=True)) == [1000, 1000, 1000]
    node_with_gpus(region, h100, n=1)
    elsewhere = place(customer, whole(h100, 1), region)
    node_state_transition(node_id=node.pk, to_state=NodeState.DOWN, reason="missed heartbeats")

    # When
    released = allocations_release_lost(node_id=node.pk)
    again = allocations_release_lost(node_id=node.pk)

    # Then: all four released in one call, each GPU given back exactly what it held, once
    assert (released, again) == (4, 0)
    assert set(Allocation.objects.filter(pk__in=[a.pk for a in lost]).values_list("state", flat=True)) == {
        AllocationState.RELEASED
    }
    assert set(Gpu.objects.filter(node=node).values_list("allocated_milli", flat=True)) == {0}
    assert Allocation.objects.get(pk=elsewhere.pk).state == AllocationState.ACTIVE
    assert [g.allocated_milli for g in held_gpus(elsewhere)] == [1000]
    assert NodeCapacity.objects.filter(node=node, gpu_model=h100).values_list(
        "free_whole_gpus", "gpus_in_use", "partly_held_gpus"
    ).get() == (3, 0, 0)
    assert node_capacity_drift() == []
    assert_milli_matches_live_slices()


# --- the database backstop -------------------------------------------------------------------------


def test_the_database_refuses_a_gpu_held_beyond_one_whole_gpu(customer, region, h100):
    node = node_with_gpus(region, h100, n=1)
    gpu = node.gpus.get()
    place(customer, FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.75")), region)

    with pytest.raises(IntegrityError, match="gpu_allocated_within_one_gpu"), transaction.atomic():
        Gpu.objects.filter(pk=gpu.pk).update(allocated_milli=1001)


def test_the_database_refuses_two_live_holds_of_one_gpu_or_mig_device(customer, region, h100):
    node_with_gpus(region, h100, n=1)
    allocation = place(customer, whole(h100, 1), region)
    held = allocation.slices.get()

    with pytest.raises(IntegrityError, match="slice_one_live_whole_gpu_hold"), transaction.atomic():
        AllocationSlice.objects.create(allocation=allocation, gpu=held.gpu, milli=1000)

    mig_node = node_with_gpus(region, h100, n=1, mig_profiles=["1g.10gb"])
    mig_allocation = place(customer, FlavorFactory(gpu_model=h100, mig=True), region)
    device = mig_allocation.slices.get().mig_device
    assert device.gpu.node == mig_node
    with pytest.raises(IntegrityError, match="slice_one_live_mig_device_hold"), transaction.atomic():
        AllocationSlice.objects.create(allocation=mig_allocation, gpu=device.gpu, mig_device=device, milli=142)
