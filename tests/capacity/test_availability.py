"""Availability: the storefront's "how many more could be placed" matches what the allocator really
places, in a fixed number of queries; the region's free capacity read from the summary equals a
recount of the GPU rows."""

import random
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext

from apps.capacity.errors import AllocationRefused
from apps.capacity.models import Gpu, GpuHealth, Node, NodeState
from apps.capacity.selectors.availability import (
    flavor_availability,
    mig_profile_milli,
    region_capacity_summary,
    region_free_milli,
)
from apps.capacity.services.allocations import allocation_create, allocation_release
from apps.capacity.services.nodes import ALLOWED_TRANSITIONS, node_state_transition
from tests.factories.accounts import OrganizationFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, GpuModelFactory, RegionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return OrganizationFactory()


def mixed_region(region, model):
    """Nodes in assorted states: free, partly held, unhealthy GPUs, not ready, MIG."""
    node_with_gpus(region, model, n=8)
    partly = node_with_gpus(region, model, n=8)
    Gpu.objects.filter(node=partly, index__in=[0, 1, 2]).update(allocated_milli=1000)
    Gpu.objects.filter(node=partly, index=3).update(allocated_milli=250)
    Gpu.objects.filter(node=partly, index=4).update(allocated_milli=500)
    sick = node_with_gpus(region, model, n=4)
    Gpu.objects.filter(node=sick, index=0).update(health=GpuHealth.FAILED)
    node_with_gpus(region, model, n=8, state=NodeState.CORDONED)
    node_with_gpus(region, model, n=8, state=NodeState.DOWN)
    node_with_gpus(region, GpuModelFactory(), n=8)
    node_with_gpus(RegionFactory(), model, n=8)
    node_with_gpus(region, model, n=2, mig_profiles=["3g.40gb", "3g.40gb", "1g.10gb"])


def place_until_refused(customer, flavor, region) -> int:
    placed = 0
    while True:
        try:
            allocation_create(organization=customer, flavor=flavor, region=region)
        except AllocationRefused as refusal:
            assert refusal.reason == "no_capacity"
            return placed
        placed += 1


def test_availability_counts(region, h100):
    mixed_region(region, h100)
    flavors = {
        "1x": FlavorFactory(gpu_model=h100, gpu_count=1),
        "2x": FlavorFactory(gpu_model=h100, gpu_count=2),
        "4x": FlavorFactory(gpu_model=h100, gpu_count=4),
        "8x": FlavorFactory(gpu_model=h100, gpu_count=8),
        "quarter": FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.25")),
        "third": FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.33")),
        "mig3": FlavorFactory(gpu_model=h100, mig=True, mig_profile="3g.40gb"),
        "mig1": FlavorFactory(gpu_model=h100, mig=True, mig_profile="1g.10gb"),
        "mig2": FlavorFactory(gpu_model=h100, mig=True, mig_profile="2g.20gb"),
        "tokens": FlavorFactory(token_endpoint=True),
    }

    available = flavor_availability(flavors=flavors.values(), region=region)

    by_name = {name: available.get(flavor.pk) for name, flavor in flavors.items()}
    # free whole GPUs per ready node: 8, 3 (partly), 3 (sick); fractions add 750 + 500 of room
    assert by_name == {
        "1x": 14,
        "2x": 4 + 1 + 1,
        "4x": 2,
        "8x": 1,
        "quarter": 14 * 4 + 3 + 2,
        "third": 14 * 3 + 2 + 1,
        "mig3": 4,
        "mig1": 2,
        "mig2": 0,
        "tokens": None,
    }


@pytest.mark.parametrize(
    "flavor_kwargs",
    [
        pytest.param({"gpu_count": 1}, id="1x"),
        pytest.param({"gpu_count": 2}, id="2x"),
        pytest.param({"gpu_count": 4}, id="4x"),
        pytest.param({"gpu_count": 8}, id="8x"),
        pytest.param({"fraction": True, "gpu_fraction": Decimal("0.25")}, id="quarter"),
        pytest.param({"fraction": True, "gpu_fraction": Decimal("0.33")}, id="third"),
        pytest.param({"fraction": True, "gpu_fraction": Decimal("0.50")}, id="half"),
        pytest.param({"mig": True, "mig_profile": "3g.40gb"}, id="mig3"),
        pytest.param({"mig": True, "mig_profile": "1g.10gb"}, id="mig1"),
    ],
)
def test_availability_is_what_the_allocator_can_place(customer, region, h100, flavor_kwargs):
    mixed_region(region, h100)
    flavor = FlavorFactory(gpu_model=h100, **flavor_kwargs)
    predicted = flavor_availability(flavors=[flavor], region=region)[flavor.pk]

    placed = place_until_refused(customer, flavor, region)

    assert placed == predicted > 0
    assert flavor_availability(flavors=[flavor], region=region)[flavor.pk] == 0


def test_availability_takes_a_fixed_number_of_queries(region, h100):
    flavors = [
        FlavorFactory(gpu_model=h100, gpu_count=8),
        FlavorFactory(gpu_model=h100, gpu_count=1),
        FlavorFactory(gpu_model=h100, fraction=True),
        FlavorFactory(gpu_model=h100, mig=True),
        FlavorFactory(gpu_model=GpuModelFactory(), gpu_count=2),
    ]
    counts = []
    for nodes in (1, 12):
        for _ in range(nodes):
            node_with_gpus(region, h100, n=8)
            node_with_gpus(region, h100, n=1, mig_profiles=["1g.10gb"])
        with CaptureQueriesContext(connection) as queries:
            flavor_availability(flavors=flavors, region=region)
            region_capacity_summary(region=region)
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 4


def test_region_capacity_summary(customer, region, h100):
    mixed_region(region, h100)
    allocation_create(organization=customer, flavor=FlavorFactory(gpu_model=h100, gpu_count=8), region=region)

    summary = region_capacity_summary(region=region)

    assert summary == {
        "nodes": 7,
        "nodes_ready": 5,
        "gpus": 8 + 8 + 4 + 8 + 8 + 8 + 2,
        "gpus_schedulable": 8 + 8 + 3 + 8 + 2,  # ready nodes, healthy GPUs, any model
        "allocated_milli": 3 * 1000 + 250 + 500 + 8000,
        "free_whole_gpus": 3 + 3 + 8,  # the other model's node counts too
        "free_8_gpu_nodes": 1,
    }


def test_mig_profile_milli():
    assert [mig_profile_milli(p) for p in ("1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb", "1g.20gb+me")] == [
        142,
        285,
        428,
        571,
        1000,
        142,
    ]
    with pytest.raises(ValueError):
        mig_profile_milli("unknown")


# --- region_free_milli: from the summary, equal to a recount of the GPU rows ------------------------


def gpu_rows_free_milli(region) -> int:
    """The definition, recounted from every GPU row: Σ (1000 − held) over the healthy GPUs of the
    region's READY nodes, any model (what region_free_milli answered before it read the summary)."""
    totals = Gpu.objects.filter(node__region=region, node__state=NodeState.READY, health=GpuHealth.OK).aggregate(
        held=Sum("allocated_milli"), gpus=Count("id")
    )
    return totals["gpus"] * 1000 - (totals["held"] or 0)


def test_region_free_milli_equals_a_recount_of_the_gpu_rows_on_a_mixed_inventory(customer, region, h100):
    # Given: the mixed region (free, partly and wholly held, a failed GPU, cordoned and down nodes,
    # another model, another region, idle MIG GPUs)…
    mixed_region(region, h100)
    # …a quarter packed onto its half-held GPU (500 → 750) and a 1g MIG slice held (142)…
    allocation_create(
        organization=customer,
        flavor=FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.25")),
        region=region,
    )
    allocation_create(organization=customer, flavor=FlavorFactory(gpu_model=h100, mig=True), region=region)
    # …GPUs that hold capacity but have errors (never free, whatever they hold)…
    errors = node_with_gpus(region, h100, n=3)
    Gpu.objects.filter(node=errors, index=0).update(allocated_milli=500, health=GpuHealth.FAILED)
    Gpu.objects.filter(node=errors, index=1).update(allocated_milli=1000, health=GpuHealth.DEGRADED)
    Gpu.objects.filter(node=errors, index=2).update(health=GpuHealth.MISSING)
    # …held capacity on a down node and on a cordoned one…
    held_down = node_with_gpus(region, h100, n=2, state=NodeState.DOWN)
    Gpu.objects.filter(node=held_down).update(allocated_milli=250)
    held_cordoned = node_with_gpus(region, h100, n=2, state=NodeState.CORDONED)
    Gpu.objects.filter(node=held_cordoned, index=0).update(allocated_milli=750)
    # …and GPUs of no known model (their model deleted), which have no summary row: one idle, one
    # half held, one in MIG mode with a quarter held.
    unknown = node_with_gpus(region, None, n=3)
    Gpu.objects.filter(node=unknown, index=1).update(allocated_milli=500)
    Gpu.objects.filter(node=unknown, index=2).update(allocated_milli=250, mig_enabled=True)

    # When
    free = region_free_milli(region=region)

    # Then: the GPU rows' own answer, which is (ready nodes only, healthy GPUs only)
    assert free == gpu_rows_free_milli(region)
    room = {
        "the free node": 8000,
        "the partly held node: 3 free, 3 held whole, a quarter, a half now ¾": 3000 + 750 + 250,
        "the node with a failed GPU: 3 healthy": 3000,
        "the other model's node": 8000,
        "the MIG GPUs, one 1g slice held": 2000 - 142,
        "the GPUs of no known model: idle, half held, MIG with a quarter held": 1000 + 500 + 750,
    }
    assert free == sum(room.values())


def test_region_free_milli_stays_equal_to_a_recount_through_random_changes(customer, region, h100):
    # Given: two models, MIG GPUs, and a fixed-seed sequence of claims, releases, health changes,
    # node state changes and GPUs losing or regaining their model
    rng = random.Random(11)
    a100 = GpuModelFactory()
    nodes = [node_with_gpus(region, model, n=8) for model in (h100, h100, a100)]
    nodes.append(node_with_gpus(region, h100, n=2, mig_profiles=["3g.40gb", "3g.40gb", "1g.10gb"]))
    node_with_gpus(RegionFactory(), h100, n=8)  # another region: never counted
    flavors = [
        *(FlavorFactory(gpu_model=model, gpu_count=n) for model in (h100, a100) for n in (1, 2, 4)),
        *(FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal(f)) for f in ("0.25", "0.5", "0.75")),
        FlavorFactory(gpu_model=h100, mig=True, mig_profile="3g.40gb"),
        FlavorFactory(gpu_model=h100, mig=True, mig_profile="1g.10gb"),
    ]
    held = []
    for step in range(200):
        # When
        action = rng.random()
        if action < 0.5:
            try:
                held.append(allocation_create(organization=customer, flavor=rng.choice(flavors), region=region))
            except AllocationRefused:
                pass
        elif action < 0.75 and held:
            allocation_release(allocation_id=held.pop(rng.randrange(len(held))).pk)
        elif action < 0.85:
            gpu = rng.choice(list(Gpu.objects.filter(node__in=nodes)))
            health = rng.choice([GpuHealth.OK, GpuHealth.OK, GpuHealth.DEGRADED, GpuHealth.FAILED])
            Gpu.objects.filter(pk=gpu.pk).update(health=health)
        elif action < 0.9:
            gpu = rng.choice(list(Gpu.objects.filter(node__in=nodes)))
            Gpu.objects.filter(pk=gpu.pk).update(gpu_model=rng.choice([None, h100, h100]))
        else:
            node = Node.objects.get(pk=rng.choice(nodes).pk)
            targets = sorted({NodeState.READY, NodeState.CORDONED, NodeState.DOWN} & ALLOWED_TRANSITIONS[node.state])
            node_state_transition(node_id=node.pk, to_state=rng.choice(targets), reason=f"step {step}")

        # Then
        assert region_free_milli(region=region) == gpu_rows_free_milli(region), f"step {step}"


def test_region_free_milli_is_one_query(region, h100):
    # Given
    mixed_region(region, h100)

    # When
    with CaptureQueriesContext(connection) as queries:
        region_free_milli(region=region)

    # Then
    assert len(queries) == 1
