"""Gang placement on real PostgreSQL: whole GPUs over several nodes of one region, or whole nodes,
all or nothing; packing; release of every member; and many gangs racing (threads, each with its own
connection) never leave a partial gang nor hold more than exists."""

import threading
from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from apps.capacity.errors import AllocationRefused
from apps.capacity.models import Allocation, AllocationSlice, AllocationState, Gpu, GpuHealth, NodeState
from apps.capacity.selectors.availability import PlacementStrategy
from apps.capacity.services.allocations import (
    allocation_create,
    allocation_gang_create,
    allocation_gang_release,
)
from apps.capacity.services.capacity_summary import node_capacity_drift
from apps.capacity.services.quotas import quota_set
from tests.factories.accounts import OrganizationFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return OrganizationFactory(name="Acme AI")


def whole(model, n: int = 1):
    return FlavorFactory(gpu_model=model, gpu_count=n)


def snapshot() -> tuple:
    return (Allocation.objects.count(), sorted(Gpu.objects.values_list("pk", "allocated_milli")))


def gang_refusal(**kwargs) -> AllocationRefused:
    before = snapshot()
    with pytest.raises(AllocationRefused) as info:
        allocation_gang_create(**kwargs)
    assert snapshot() == before  # a refused gang holds nothing
    return info.value


def held_per_node(gang) -> dict[str, int]:
    return {
        a.node.hostname: AllocationSlice.objects.filter(allocation=a, live=True, milli=1000).count()
        for a in gang.allocations
    }


def test_a_gang_of_12_gpus_spans_two_nodes_as_one_member_each(customer, region, h100):
    # given two free 8-GPU nodes
    for name in ("node-a", "node-b"):
        node_with_gpus(region, h100, n=8, hostname=name)

    # when 12 GPUs are asked for
    gang = allocation_gang_create(organization=customer, flavor=whole(h100, 12), region=region, holder="ray:1")

    # then one node is taken whole and 4 GPUs of the other, all members carrying the gang's id
    assert sorted(held_per_node(gang).values()) == [4, 8]
    assert {a.gang_id for a in gang.allocations} == {gang.gang_id}
    assert {a.holder for a in gang.allocations} == {"ray:1"}
    assert gang.gpu_milli == 12_000
    assert Gpu.objects.filter(allocated_milli=1000).count() == 12
    assert node_capacity_drift() == []


def test_the_last_member_fills_a_partly_used_node_before_opening_an_untouched_one(customer, region, h100):
    # given a node with 4 of 8 GPUs held and two untouched nodes
    used = node_with_gpus(region, h100, n=8, hostname="node-a-used")
    node_with_gpus(region, h100, n=8, hostname="node-b")
    node_with_gpus(region, h100, n=8, hostname="node-c")
    allocation_create(organization=customer, flavor=whole(h100, 4), region=region)
    assert Gpu.objects.filter(node=used, allocated_milli=1000).count() == 4  # best-fit started on a node

    # when 12 GPUs are asked for
    gang = allocation_gang_create(organization=customer, flavor=whole(h100, 12), region=region)

    # then: two nodes (the fewest), one taken whole, and the rest fills the partly used one
    assert held_per_node(gang)[used.hostname] == 4
    assert sorted(held_per_node(gang).values()) == [4, 8]
    assert Gpu.objects.filter(allocated_milli=0).count() == 8  # one node left whole


def test_first_fit_baseline_takes_nodes_by_hostname(customer, region, h100):
    node_with_gpus(region, h100, n=8, hostname="node-a")
    node_with_gpus(region, h100, n=8, hostname="node-b")

    gang = allocation_gang_create(
        organization=customer, flavor=whole(h100), gpus=10, region=region, strategy=PlacementStrategy.FIRST_FIT
    )

    assert held_per_node(gang) == {"node-a": 8, "node-b": 2}


def test_a_gang_that_does_not_fit_holds_nothing(customer, region, h100):
    # given 8 + 8 GPUs, 3 of them held by someone else: 13 free
    for name in ("node-a", "node-b"):
        node_with_gpus(region, h100, n=8, hostname=name)
    allocation_create(organization=OrganizationFactory(), flavor=whole(h100, 3), region=region)

    refused = gang_refusal(organization=customer, flavor=whole(h100, 14), region=region)

    assert refused.reason == "no_capacity"
    assert "14" in refused.message and region.code in refused.message
    # and 13 still fit
    assert allocation_gang_create(organization=customer, flavor=whole(h100, 13), region=region).gpu_milli == 13_000


def test_a_gang_over_quota_holds_nothing(customer, region, h100):
    for name in ("node-a", "node-b"):
        node_with_gpus(region, h100, n=8, hostname=name)
    quota_set(organization=customer, max_gpus=10)

    assert gang_refusal(organization=customer, flavor=whole(h100, 12), region=region).reason == "quota_exceeded"
    assert gang_refusal(organization=customer, flavor=whole(h100), whole_nodes=2, region=region).reason == (
        "quota_exceeded"
    )
    assert (
        len(allocation_gang_create(organization=customer, flavor=whole(h100), whole_nodes=1, region=region).allocations)
        == 1
    )


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param("one_gpu_held", id="one-gpu-held"),
        pytest.param(
            lambda node: type(node).objects.filter(pk=node.pk).update(state=NodeState.CORDONED), id="cordoned"
        ),
        pytest.param(lambda node: type(node).objects.filter(pk=node.pk).update(state=NodeState.DOWN), id="down"),
        pytest.param(
            lambda node: Gpu.objects.filter(node=node, index=5).update(health=GpuHealth.DEGRADED), id="unhealthy-gpu"
        ),
        pytest.param(lambda node: Gpu.objects.filter(node=node, index=2).update(mig_enabled=True), id="mig-gpu"),
    ],
)
def test_whole_nodes_skip_a_node_that_is_not_entirely_free_and_ready(customer, region, h100, spoil):
    # given three 8-GPU nodes, the first by hostname spoiled
    spoiled = node_with_gpus(region, h100, n=8, hostname="node-a")
    node_with_gpus(region, h100, n=8, hostname="node-b")
    node_with_gpus(region, h100, n=8, hostname="node-c")
    if spoil == "one_gpu_held":
        allocation_create(organization=OrganizationFactory(), flavor=whole(h100), region=region)
        assert Gpu.objects.filter(node=spoiled, allocated_milli=1000).count() == 1
    else:
        spoil(spoiled)

    # when two whole nodes are asked for, they are the other two, every GPU of each held
    gang = allocation_gang_create(organization=customer, flavor=whole(h100), whole_nodes=2, region=region)
    assert held_per_node(gang) == {"node-b": 8, "node-c": 8}

    # and a third whole node is refused, holding nothing
    assert gang_refusal(organization=customer, flavor=whole(h100), whole_nodes=1, region=region).reason == (
        "no_capacity"
    )


def test_bad_requests_are_refused_clearly(customer, region, h100):
    node_with_gpus(region, h100, n=8)
    with pytest.raises(ValidationError):
        allocation_gang_create(organization=customer, flavor=whole(h100), gpus=2, whole_nodes=1, region=region)
    with pytest.raises(ValidationError):
        allocation_gang_create(organization=customer, flavor=whole(h100), gpus=0, region=region)
    fraction = FlavorFactory(gpu_model=h100, fraction=True)
    assert gang_refusal(organization=customer, flavor=fraction, region=region).reason == "flavor_not_allocatable"


def test_releasing_a_gang_frees_every_member_and_is_idempotent(customer, region, h100):
    for name in ("node-a", "node-b", "node-c"):
        node_with_gpus(region, h100, n=8, hostname=name)
    gang = allocation_gang_create(organization=customer, flavor=whole(h100, 20), region=region)
    assert len(gang.allocations) == 3

    assert allocation_gang_release(gang_id=gang.gang_id) == 3

    assert set(Allocation.objects.filter(gang_id=gang.gang_id).values_list("state", flat=True)) == {
        AllocationState.RELEASED
    }
    assert not AllocationSlice.objects.filter(live=True).exists()
    assert not Gpu.objects.exclude(allocated_milli=0).exists()
    assert node_capacity_drift() == []
    assert allocation_gang_release(gang_id=gang.gang_id) == 0


# --- many gangs at once ------------------------------------------------------------------------


def live_gangs() -> dict:
    """Gang id -> (live members, GPUs held by their live slices), from the database."""
    gangs: dict = {}
    for allocation in Allocation.objects.filter(state=AllocationState.ACTIVE, gang_id__isnull=False):
        members, gpus = gangs.get(allocation.gang_id, (0, 0))
        live = AllocationSlice.objects.filter(allocation=allocation, live=True, milli=1000).count()
        assert live * 1000 == allocation.gpu_milli  # every member holds all it says
        gangs[allocation.gang_id] = (members + 1, gpus + live)
    return gangs


def overbooked() -> list:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT gpu_id FROM capacity_allocationslice WHERE live GROUP BY gpu_id HAVING sum(milli) > 1000
            UNION ALL
            SELECT g.id FROM capacity_gpu g LEFT JOIN capacity_allocationslice s ON s.gpu_id = g.id AND s.live
             GROUP BY g.id, g.allocated_milli HAVING g.allocated_milli <> coalesce(sum(s.milli), 0)
            """
        )
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mix", [(12, 8, 4), (16, 4, 4), (8, 12, 8)], ids=["mixed", "mostly-gpus", "mostly-nodes"])
def test_many_gangs_racing_never_leave_a_partial_gang_nor_overbook(region, h100, mix):
    # given 6 nodes × 8 GPUs = 48 GPUs, and 28 requests asking for far more: 12-GPU gangs (2
    # nodes), gangs of 2 whole nodes, and single-node requests of 4 GPUs
    for i in range(6):
        node_with_gpus(region, h100, n=8, hostname=f"node-{i}")
    organization = OrganizationFactory()
    one_gpu, four_gpus = whole(h100), whole(h100, 4)  # made here: the threads only read flavors
    gpu_gangs, node_gangs, singles = mix
    requests = [{"gpus": 12}] * gpu_gangs + [{"whole_nodes": 2}] * node_gangs + [{"single": 4}] * singles
    asked = {i: (r.get("gpus") or 8 * r.get("whole_nodes", 0) or r["single"]) for i, r in enumerate(requests)}
    barrier = threading.Barrier(len(requests))
    outcomes: Counter = Counter()
    placed: dict = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def request(i: int, spec: dict) -> None:
        try:
            barrier.wait(timeout=30)
            try:
                if "single" in spec:
                    allocation_create(organization=organization, flavor=four_gpus, region=region)
                    with lock:
                        outcomes["single placed"] += 1
                    return
                gang = allocation_gang_create(organization=organization, flavor=one_gpu, region=region, **spec)
                with lock:
                    outcomes["gang placed"] += 1
                    placed[gang.gang_id] = (len(gang.allocations), gang.gpu_milli // 1000, asked[i])
            except AllocationRefused as refusal:
                with lock:
                    outcomes[str(refusal.reason)] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(i, r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    # then every request got an answer, never more GPUs are held than exist, none twice
    assert not errors, errors
    assert sum(outcomes.values()) == len(requests)
    assert set(outcomes) <= {"gang placed", "single placed", "no_capacity"}
    held = Gpu.objects.filter(allocated_milli=1000).count()
    assert held <= 48
    assert overbooked() == []
    # and every gang placed is whole: all its members, each holding all its GPUs, adding up to
    # what was asked; no allocation of a refused gang is left
    gangs = live_gangs()
    assert set(gangs) == set(placed)
    for gang_id, (members, gpus) in gangs.items():
        assert (members, gpus) == placed[gang_id][:2]
        assert gpus == placed[gang_id][2]
    assert held == sum(g for _, g in gangs.values()) + 4 * outcomes["single placed"]
    assert outcomes["gang placed"] >= 1 and outcomes["no_capacity"] >= 1
    assert node_capacity_drift() == []

    # when every gang is released, only the single-node requests' GPUs stay held
    for gang_id in placed:
        allocation_gang_release(gang_id=gang_id)
    assert Gpu.objects.filter(allocated_milli=1000).count() == 4 * outcomes["single placed"]
    assert not live_gangs()
    assert node_capacity_drift() == []
