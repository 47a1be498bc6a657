"""Many requests at once on real PostgreSQL (READ COMMITTED): each thread has its own connection
and all start together; exactly the capacity that exists is handed out, never a slice twice."""

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from apps.capacity.errors import AllocationRefused
from apps.capacity.models import Allocation, AllocationState, Gpu
from apps.capacity.services.allocations import allocation_create
from apps.capacity.services.quotas import quota_set
from tests.factories.accounts import OrganizationFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, GpuModelFactory, RegionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

REQUESTS = 64  # PostgreSQL allows 100 connections: 64 threads and the test's own stay well below


def run_concurrently(requests: int, *, organization, flavor, region) -> Counter:
    """`requests` threads call allocation_create at the same instant; returns outcome counts."""
    barrier = threading.Barrier(requests)
    outcomes: Counter = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def request() -> None:
        try:
            barrier.wait(timeout=30)
            try:
                allocation_create(organization=organization, flavor=flavor, region=region)
                outcome = "allocated"
            except AllocationRefused as refusal:
                outcome = str(refusal.reason)
            with lock:
                outcomes[outcome] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return outcomes


def double_holds() -> list[tuple]:
    """From SQL, not from Python objects: GPUs and MIG devices held twice, GPUs over one GPU, and
    GPUs whose allocated_milli disagrees with their live slices."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT 'whole twice', gpu_id::text FROM capacity_allocationslice
             WHERE live AND mig_device_id IS NULL AND milli = 1000 GROUP BY gpu_id HAVING count(*) > 1
            UNION ALL
            SELECT 'mig twice', mig_device_id::text FROM capacity_allocationslice
             WHERE live AND mig_device_id IS NOT NULL GROUP BY mig_device_id HAVING count(*) > 1
            UNION ALL
            SELECT 'over one gpu', gpu_id::text FROM capacity_allocationslice
             WHERE live GROUP BY gpu_id HAVING sum(milli) > 1000
            UNION ALL
            SELECT 'milli drift', g.id::text FROM capacity_gpu g
             LEFT JOIN capacity_allocationslice s ON s.gpu_id = g.id AND s.live
             GROUP BY g.id, g.allocated_milli HAVING g.allocated_milli <> coalesce(sum(s.milli), 0)
            """
        )
        return cursor.fetchall()


@pytest.fixture
def region():
    return RegionFactory(code="us-east-1")


@pytest.fixture
def h100():
    return GpuModelFactory(name="NVIDIA H100 80GB")


def test_64_requests_for_8_whole_gpus(region, h100):
    node_with_gpus(region, h100, n=8)
    flavor = FlavorFactory(gpu_model=h100, gpu_count=1)

    outcomes = run_concurrently(REQUESTS, organization=OrganizationFactory(), flavor=flavor, region=region)

    assert outcomes == {"allocated": 8, "no_capacity": REQUESTS - 8}
    assert Allocation.objects.filter(state=AllocationState.ACTIVE).count() == 8
    assert set(Gpu.objects.values_list("allocated_milli", flat=True)) == {1000}
    assert double_holds() == []


def test_64_requests_for_7_mig_devices(region, h100):
    node_with_gpus(region, h100, n=1, mig_profiles=["1g.10gb"] * 7)
    flavor = FlavorFactory(gpu_model=h100, mig=True, mig_profile="1g.10gb")

    outcomes = run_concurrently(REQUESTS, organization=OrganizationFactory(), flavor=flavor, region=region)

    assert outcomes == {"allocated": 7, "no_capacity": REQUESTS - 7}
    assert Gpu.objects.get().allocated_milli == 7 * 142
    assert double_holds() == []


def test_64_requests_for_quarters_of_2_gpus(region, h100):
    node_with_gpus(region, h100, n=2)
    flavor = FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.25"))

    outcomes = run_concurrently(REQUESTS, organization=OrganizationFactory(), flavor=flavor, region=region)

    assert outcomes == {"allocated": 8, "no_capacity": REQUESTS - 8}
    assert set(Gpu.objects.values_list("allocated_milli", flat=True)) == {1000}
    assert double_holds() == []


def test_multi_gpu_requests_race_for_nodes(region, h100):
    for _ in range(3):
        node_with_gpus(region, h100, n=8)
    flavor = FlavorFactory(gpu_model=h100, gpu_count=4)

    outcomes = run_concurrently(32, organization=OrganizationFactory(), flavor=flavor, region=region)

    assert outcomes == {"allocated": 6, "no_capacity": 32 - 6}
    for allocation in Allocation.objects.all():
        assert set(allocation.slices.values_list("gpu__node", flat=True)) == {allocation.node_id}
    assert double_holds() == []


def test_one_organizations_concurrent_requests_cannot_both_pass_its_quota(region, h100):
    for _ in range(4):
        node_with_gpus(region, h100, n=8)
    acme = OrganizationFactory(name="Acme AI")
    quota_set(organization=acme, max_gpus=Decimal("3"))
    flavor = FlavorFactory(gpu_model=h100, gpu_count=1)

    outcomes = run_concurrently(32, organization=acme, flavor=flavor, region=region)

    assert outcomes == {"allocated": 3, "quota_exceeded": 32 - 3}
    assert double_holds() == []


# --- a node going down while a placement is in flight ---------------------------------------------


def in_thread(target, results: dict, key: str) -> threading.Thread:
    def run() -> None:
        try:
            results[key] = target()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            results[key] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_placement_in_flight_when_its_node_goes_down_is_marked_lost(region, h100, monkeypatch):
    from apps.capacity.services import allocations
    from apps.capacity.services.nodes import node_state_transition

    node = node_with_gpus(region, h100, n=8)
    claimed, proceed = threading.Event(), threading.Event()
    record = allocations._record

    def record_slowly(**kwargs):
        claimed.set()
        assert proceed.wait(10)
        return record(**kwargs)

    monkeypatch.setattr(allocations, "_record", record_slowly)
    results: dict = {}
    customer, flavor = OrganizationFactory(), FlavorFactory(gpu_model=h100)
    placing = in_thread(
        lambda: allocation_create(organization=customer, flavor=flavor, region=region), results, "allocation"
    )
    assert claimed.wait(10)
    # The node goes down while the placement has claimed its GPU but not yet committed: the
    # transition waits for it instead of missing it.
    going_down = in_thread(
        lambda: node_state_transition(node_id=node.pk, to_state="down", reason="missed heartbeats"), results, "down"
    )
    going_down.join(0.5)
    assert going_down.is_alive()
    proceed.set()
    placing.join(10)
    going_down.join(10)

    allocation = results["allocation"]
    assert isinstance(allocation, Allocation), allocation
    assert Allocation.objects.get(pk=allocation.pk).state == AllocationState.LOST
    assert double_holds() == []


def test_a_placement_racing_a_node_going_down_moves_to_another_node(region, h100):
    from django.db import transaction

    from apps.capacity.services.nodes import node_state_transition

    doomed = node_with_gpus(region, h100, n=2, hostname="node-a")  # best-fit's choice
    spare = node_with_gpus(region, h100, n=8, hostname="node-b")
    inside, commit = threading.Event(), threading.Event()
    results: dict = {}

    def go_down_slowly():
        with transaction.atomic():
            node_state_transition(node_id=doomed.pk, to_state="down", reason="missed heartbeats")
            inside.set()
            assert commit.wait(10)

    going_down = in_thread(go_down_slowly, results, "down")
    assert inside.wait(10)
    # The placement reads node-a as READY (the transition is not committed), claims a GPU there,
    # then waits for the node's placement lock; once the node is down it places elsewhere.
    customer, flavor = OrganizationFactory(), FlavorFactory(gpu_model=h100)
    placing = in_thread(
        lambda: allocation_create(organization=customer, flavor=flavor, region=region), results, "allocation"
    )
    placing.join(0.5)
    assert placing.is_alive()
    commit.set()
    going_down.join(10)
    placing.join(10)

    allocation = results["allocation"]
    assert isinstance(allocation, Allocation), allocation
    assert allocation.node_id == spare.pk
    assert Allocation.objects.get(pk=allocation.pk).state == AllocationState.ACTIVE
    assert set(Gpu.objects.filter(node=doomed).values_list("allocated_milli", flat=True)) == {0}
    assert double_holds() == []
