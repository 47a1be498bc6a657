"""NodeCapacity, the per-node summary the allocator ranks from: it equals a recount of the GPU rows
after any write, whichever path makes it (allocator, agent reports, node transitions, plain
UPDATEs), the repair puts it right when something bypassed that, and a wrong summary never books
a GPU twice."""

import random
import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.capacity.errors import AllocationRefused
from apps.capacity.models import Allocation, AllocationState, Gpu, GpuHealth, Node, NodeCapacity, NodeState
from apps.capacity.services.allocations import allocation_create, allocation_release
from apps.capacity.services.capacity_summary import node_capacity_drift, node_capacity_repair
from apps.capacity.services.nodes import node_state_transition
from apps.capacity.services.reports import node_inventory_apply
from apps.capacity.tasks import node_capacity_repair as node_capacity_repair_task
from tests.factories.accounts import OrganizationFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, GpuModelFactory, RegionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return OrganizationFactory()


def counts(node, model) -> tuple[int, int, int]:
    """(free whole, in use, partly held) as summarised."""
    return NodeCapacity.objects.filter(node=node, gpu_model=model).values_list(
        "free_whole_gpus", "gpus_in_use", "partly_held_gpus"
    ).get()


def assert_summary_is_a_recount():
    assert node_capacity_drift() == []


def double_holds() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT 'over one gpu', gpu_id FROM capacity_allocationslice WHERE live
             GROUP BY gpu_id HAVING sum(milli) > 1000
            UNION ALL
            SELECT 'milli drift', g.id FROM capacity_gpu g
              LEFT JOIN capacity_allocationslice s ON s.gpu_id = g.id AND s.live
             GROUP BY g.id, g.allocated_milli HAVING g.allocated_milli <> coalesce(sum(s.milli), 0)
            """
        )
        return cursor.fetchall()


# --- kept by every write ---------------------------------------------------------------------------


def test_new_gpus_are_counted_per_node_and_model(region, h100):
    a100 = GpuModelFactory()
    node = node_with_gpus(region, h100, n=8)
    Gpu.objects.filter(node=node, index__in=[6, 7]).update(gpu_model=a100)
    Gpu.objects.filter(node=node, index=5).update(health=GpuHealth.FAILED)
    mig = node_with_gpus(region, h100, n=2, mig_profiles=["1g.10gb"])

    assert counts(node, h100) == (5, 0, 0)
    assert counts(node, a100) == (2, 0, 0)
    assert counts(mig, h100) == (0, 0, 0)  # MIG GPUs are never free whole
    assert NodeCapacity.objects.get(node=node, gpu_model=h100).region_id == region.pk
    assert_summary_is_a_recount()


def test_claims_and_releases_move_the_counts(customer, region, h100):
    node = node_with_gpus(region, h100, n=8)
    quarter = FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.25"))

    four = allocation_create(organization=customer, flavor=FlavorFactory(gpu_model=h100, gpu_count=4), region=region)
    assert counts(node, h100) == (4, 4, 0)
    quarters = [allocation_create(organization=customer, flavor=quarter, region=region) for _ in range(4)]
    assert counts(node, h100) == (3, 5, 0)  # four quarters fill one GPU: partly held on the way, not at the end
    allocation_release(allocation_id=quarters[0].pk)
    assert counts(node, h100) == (3, 5, 1)
    allocation_release(allocation_id=four.pk)
    assert counts(node, h100) == (7, 1, 1)
    for allocation in quarters[1:]:
        allocation_release(allocation_id=allocation.pk)
    assert counts(node, h100) == (8, 0, 0)
    assert_summary_is_a_recount()


def test_random_claims_releases_health_and_state_changes_keep_it_equal_to_a_recount(customer, region, h100):
    rng = random.Random(7)
    a100 = GpuModelFactory()
    nodes = [node_with_gpus(region, model, n=8) for model in (h100, h100, h100, a100)]
    nodes.append(node_with_gpus(region, h100, n=2, mig_profiles=["3g.40gb", "3g.40gb", "1g.10gb"]))
    flavors = [
        *(FlavorFactory(gpu_model=model, gpu_count=n) for model in (h100, a100) for n in (1, 2, 4, 8)),
        *(FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal(f)) for f in ("0.25", "0.5", "0.75")),
        FlavorFactory(gpu_model=h100, mig=True, mig_profile="3g.40gb"),
        FlavorFactory(gpu_model=h100, mig=True, mig_profile="1g.10gb"),
    ]
    held: list[Allocation] = []
    for step in range(300):
        action = rng.random()
        if action < 0.55:
            try:
                held.append(allocation_create(organization=customer, flavor=rng.choice(flavors), region=region))
            except AllocationRefused:
                pass
        elif action < 0.85 and held:
            allocation_release(allocation_id=held.pop(rng.randrange(len(held))).pk)
        elif action < 0.93:
            gpu = rng.choice(list(Gpu.objects.filter(node__in=nodes)))
            health = rng.choice([GpuHealth.OK, GpuHealth.OK, GpuHealth.DEGRADED, GpuHealth.FAILED])
            Gpu.objects.filter(pk=gpu.pk).update(health=health)
        else:
            node = Node.objects.get(pk=rng.choice(nodes).pk)
            target = {NodeState.READY: NodeState.DOWN, NodeState.DOWN: NodeState.READY}[node.state]
            node_state_transition(node_id=node.pk, to_state=target, reason=f"step {step}")
            if target == NodeState.READY:  # what was lost there is released now
                held = [a for a in held if Allocation.objects.get(pk=a.pk).state != AllocationState.RELEASED]
        assert_summary_is_a_recount()
    assert double_holds() == []


def test_gpus_that_move_between_nodes_or_models_or_disappear(region, h100):
    a100 = GpuModelFactory()
    first, second = node_with_gpus(region, h100, n=4), node_with_gpus(region, h100, n=4)
    gpus = list(first.gpus.order_by("index"))

    Gpu.objects.filter(pk=gpus[0].pk).update(node=second)
    Gpu.objects.filter(pk=gpus[1].pk).update(gpu_model=a100, allocated_milli=500)
    Gpu.objects.filter(pk=gpus[2].pk).update(gpu_model=None)
    Gpu.objects.filter(pk=gpus[3].pk).delete()

    assert counts(first, h100) == (0, 0, 0)
    assert counts(second, h100) == (5, 0, 0)
    assert counts(first, a100) == (0, 1, 1)
    assert_summary_is_a_recount()


def test_deleting_a_gpu_model_or_a_node_takes_its_rows_away(region, h100):
    doomed_model = GpuModelFactory()
    node = node_with_gpus(region, doomed_model, n=2)
    other = node_with_gpus(region, h100, n=2)

    gone = [node.pk, other.pk]

    doomed_model.delete()
    other.delete()

    assert not NodeCapacity.objects.filter(node__in=gone).exists()
    assert set(Gpu.objects.filter(node=node).values_list("gpu_model", flat=True)) == {None}
    connection.check_constraints()  # the deferred foreign keys hold
    assert_summary_is_a_recount()


def test_an_inventory_report_updates_health_and_hostname(region, h100):
    node = node_with_gpus(region, h100, n=2, hostname="old-name")
    gpus = list(node.gpus.order_by("index"))
    report = {
        "hostname": "new-name", "simulated": True, "cpus": 8, "ram_bytes": 2**30, "disk_bytes": 2**30,
        "gpus": [
            {"uuid": gpus[0].uuid, "index": 0, "name": h100.nvml_name, "memory_bytes": 2**30, "health": "ok"},
            {"uuid": gpus[1].uuid, "index": 1, "name": h100.nvml_name, "memory_bytes": 2**30, "health": "failed"},
            {"uuid": "GPU-SIM-new", "index": 2, "name": h100.nvml_name, "memory_bytes": 2**30, "health": "ok"},
        ],
    }

    node_inventory_apply(node=node, inventory=report)

    assert counts(node, h100) == (2, 0, 0)
    assert NodeCapacity.objects.get(node=node, gpu_model=h100).hostname == "new-name"
    assert_summary_is_a_recount()


def test_a_node_moved_to_another_region_takes_its_rows_along(customer, region, h100):
    node = node_with_gpus(region, h100, n=2)
    elsewhere = RegionFactory()

    Node.objects.filter(pk=node.pk).update(region=elsewhere)

    assert NodeCapacity.objects.get(node=node).region_id == elsewhere.pk
    with pytest.raises(AllocationRefused):
        allocation_create(organization=customer, flavor=FlavorFactory(gpu_model=h100), region=region)
    assert allocation_create(organization=customer, flavor=FlavorFactory(gpu_model=h100), region=elsewhere).node == node


def test_the_allocators_own_summary_updates_leave_the_triggers_on_afterwards(customer, region, h100):
    node = node_with_gpus(region, h100, n=4)
    with transaction.atomic():
        allocation = allocation_create(organization=customer, flavor=FlavorFactory(gpu_model=h100, gpu_count=2),
                                       region=region)
        allocation_release(allocation_id=allocation.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('capacity.nodecapacity_in_statement', true)")
            assert cursor.fetchone()[0] != "on"
        Gpu.objects.filter(node=node, index=0).update(allocated_milli=1000)  # a write the triggers must see
        assert counts(node, h100) == (3, 1, 0)
    assert_summary_is_a_recount()


# --- the repair ------------------------------------------------------------------------------------


def corrupt(node, model, **fields):
    NodeCapacity.objects.filter(node=node, gpu_model=model).update(**fields)


def test_the_repair_fixes_a_corrupted_summary(customer, region, h100):
    a100 = GpuModelFactory()
    nodes = [node_with_gpus(region, h100, n=8, hostname=f"node-{i}") for i in range(3)]
    spare = node_with_gpus(region, a100, n=2)
    allocation_create(organization=customer, flavor=FlavorFactory(gpu_model=h100, gpu_count=3), region=region)
    assert node_capacity_repair() == 0  # nothing to do

    corrupt(nodes[0], h100, free_whole_gpus=8, gpus_in_use=0, partly_held_gpus=5)
    corrupt(nodes[1], h100, hostname="stale", region=RegionFactory())
    NodeCapacity.objects.filter(node=nodes[2]).delete()
    NodeCapacity.objects.create(node=spare, gpu_model=h100, region=region, hostname="ghost", free_whole_gpus=4)
    drifted = node_capacity_drift()
    assert {(d.node_id, d.gpu_model_id) for d in drifted} == {
        (nodes[0].pk, h100.pk), (nodes[1].pk, h100.pk), (nodes[2].pk, h100.pk), (spare.pk, h100.pk),
    }

    assert node_capacity_repair() == 4

    assert_summary_is_a_recount()
    assert not NodeCapacity.objects.filter(node=spare, gpu_model=h100).exists()
    assert counts(nodes[2], h100) == (8, 0, 0)
    assert NodeCapacity.objects.get(node=nodes[1], gpu_model=h100).hostname == "node-1"
    assert node_capacity_repair() == 0


def test_the_repair_can_be_limited_to_some_nodes(region, h100):
    first, second = node_with_gpus(region, h100, n=2), node_with_gpus(region, h100, n=2)
    corrupt(first, h100, free_whole_gpus=0)
    corrupt(second, h100, free_whole_gpus=0)

    assert node_capacity_repair(node_ids=[first.pk]) == 1

    assert counts(first, h100) == (2, 0, 0) and counts(second, h100) == (0, 0, 0)
    assert node_capacity_repair_task() == 1  # the periodic task repairs everything
    assert_summary_is_a_recount()


def test_rows_missing_before_a_write_are_recreated_by_it(customer, region, h100):
    node = node_with_gpus(region, h100, n=2)
    NodeCapacity.objects.all().delete()

    Gpu.objects.filter(node=node, index=0).update(allocated_milli=1000)

    # Created from the change alone: the repair completes it.
    assert counts(node, h100) == (-1, 1, 0)
    assert node_capacity_repair() == 1
    assert counts(node, h100) == (1, 1, 0)


def test_a_wrong_summary_costs_a_refusal_never_a_double_booking(customer, region, h100):
    full = node_with_gpus(region, h100, n=2, hostname="node-a")
    free = node_with_gpus(region, h100, n=2, hostname="node-b")
    Gpu.objects.filter(node=full).update(allocated_milli=1000)
    corrupt(full, h100, free_whole_gpus=2, gpus_in_use=0)  # says free: it is not
    corrupt(free, h100, free_whole_gpus=0, gpus_in_use=2)  # says full: it is not
    two = FlavorFactory(gpu_model=h100, gpu_count=2)

    with pytest.raises(AllocationRefused) as refused:
        allocation_create(organization=customer, flavor=two, region=region)

    assert refused.value.reason == "no_capacity"
    assert set(Gpu.objects.filter(node=full).values_list("allocated_milli", flat=True)) == {1000}
    assert not Allocation.objects.exists()
    node_capacity_repair()
    assert allocation_create(organization=customer, flavor=two, region=region).node == free


# --- under concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_concurrent_placements_and_releases_keep_it_equal_to_a_recount():
    region, h100 = RegionFactory(), GpuModelFactory()
    for _ in range(6):
        node_with_gpus(region, h100, n=8)
    node_with_gpus(region, h100, n=2, mig_profiles=["1g.10gb"] * 7)
    customer = OrganizationFactory()
    flavors = [
        *(FlavorFactory(gpu_model=h100, gpu_count=n) for n in (1, 2, 4, 8)),
        FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.25")),
        FlavorFactory(gpu_model=h100, fraction=True, gpu_fraction=Decimal("0.5")),
        FlavorFactory(gpu_model=h100, mig=True, mig_profile="1g.10gb"),
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def client(seed: int) -> None:
        rng, mine = random.Random(seed), []
        try:
            barrier.wait(timeout=30)
            for _ in range(40):
                if mine and rng.random() < 0.4:
                    allocation_release(allocation_id=mine.pop(rng.randrange(len(mine))))
                    continue
                try:
                    mine.append(allocation_create(organization=customer, flavor=rng.choice(flavors), region=region).pk)
                except AllocationRefused:
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)

    assert not errors, errors
    assert_summary_is_a_recount()
    assert double_holds() == []
