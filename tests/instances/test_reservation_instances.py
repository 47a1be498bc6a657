"""Instances launched into an active reservation run on the GPUs it holds: taken out of its held
gang on one node (never through the free pool), given back to it when they stop, taken again when
started within the window, stopped at its end; their runs cost nothing (the reservation's charge
pays for the window)."""

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.billing.models import MeteredRun, ReservationCharge, UsageRecord
from apps.billing.services.metering import usage_open_runs_meter
from apps.billing.services.reservations import reservation_charges_write
from apps.capacity.models import Allocation, AllocationState, Gpu, NodeCapacity, Reservation
from apps.capacity.services.allocations import allocations_mark_lost, allocations_release_lost
from apps.capacity.services.reservations import reservation_create, reservation_start, reservations_due_run, when
from apps.instances.models import Instance, InstanceEvent, InstanceState
from apps.instances.services.actions import instance_launch, instance_start, instance_stop
from apps.instances.services.placement import instance_schedule
from apps.instances.services.reports import workload_report_apply
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, PriceFactory
from tests.support.racing import outcomes_racing

S = InstanceState
HOURLY = Decimal("9.96")  # the 4-GPU flavor's list price


@pytest.fixture
def four(notebook_setup):
    """A 4-GPU notebook flavor of the node's model, priced."""
    base = notebook_setup["flavor"]
    flavor = FlavorFactory(offering=base.offering, gpu_model=base.gpu_model, gpu_count=4, slug="notebook-4x-h100")
    PriceFactory(flavor=flavor, amount=HOURLY)
    return flavor


def _held(org, setup, flavor) -> Reservation:
    """8 GPUs (all of the one 8-GPU node) reserved by `org` from now for 2 hours, held."""
    start = timezone.now()
    reservation = reservation_create(
        organization=org,
        flavor=flavor,
        region=setup["region"],
        gpus=8,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )
    return reservation_start(reservation_id=reservation.pk)


@pytest.fixture
def held(org, notebook_setup, four) -> Reservation:
    reservation = _held(org, notebook_setup, four)
    assert reservation.state == "active"
    return reservation


def _into(launch, reservation, four, name):
    return launch(name=name, flavor=four, reservation=reservation.pk)


def _ran(setup, instance, seq=10):
    return workload_report_apply(
        node=setup["node"],
        instance_id=instance.pk,
        seq=seq,
        state="running",
        started_at=timezone.now(),
        route_slot=f"slot-{instance.name}",
        socket=f"/run/neocloud/0123456789ab/{instance.pk.hex[:16]}/jupyter.sock",
    )


def _stopped(setup, instance, seq=20):
    return workload_report_apply(node=setup["node"], instance_id=instance.pk, seq=seq, state="stopped")


def _member(reservation) -> Allocation:
    return Allocation.objects.get(gang_id=reservation.gang_id, holder=reservation.holder, state="active")


def _free_whole(setup) -> int:
    return NodeCapacity.objects.get(node=setup["node"]).free_whole_gpus


@pytest.mark.django_db
def test_two_4_gpu_launches_fit_a_full_reservation_a_third_is_refused_and_on_demand_is_409(
    launch, notebook_setup, held, four, api_client, user, org
):
    # given one 8-GPU node, all held by the organization's active reservation
    assert _free_whole(notebook_setup) == 0
    # when two 4-GPU instances are launched into it
    a = _into(launch, held, four, "a")
    b = _into(launch, held, four, "b")
    # then both are scheduled on the node, on the reservation's GPUs (nothing came from the free pool)
    for instance in (a, b):
        assert instance.state == S.SCHEDULED and instance.node_id == notebook_setup["node"].pk
        assert instance.reservation_id == held.pk
        allocation = Allocation.objects.get(pk=instance.allocation_id)
        assert allocation.gang_id == held.gang_id and allocation.holder == f"instance:{instance.pk}"
        assert allocation.slices.filter(live=True).count() == 4
    assert _member(held).gpu_milli == 0
    assert set(Gpu.objects.values_list("allocated_milli", flat=True)) == {1000}
    # and a third is refused with the reason, nothing made
    with pytest.raises(ValidationError) as refused:
        _into(launch, held, four, "c")
    assert refused.value.message_dict["reservation"] == [
        f"All 8 GPUs of reservation {held.pk} are in use by your instances a, b."
    ]
    assert Instance.objects.count() == 2
    assert Allocation.objects.filter(state="active").count() == 3
    # and an on-demand launch is still refused: the fleet is the reservation's
    api_client.force_login(user)
    reply = api_client.post(
        f"/api/v1/organizations/{org.slug}/instances/",
        {"flavor": "notebooks/notebook-1x-h100", "image": "jupyterlab-4-host", "region": "us-east-1", "name": "od"},
        format="json",
    )
    assert reply.status_code == 409
    # and the reservation pass finds its gang whole (lent GPUs count): it stays active
    reservations_due_run()
    held.refresh_from_db()
    assert held.state == "active"


@pytest.mark.django_db
def test_the_api_refusal_names_the_instances_using_the_reservation(launch, held, four, api_client, user, org):
    _into(launch, held, four, "a")
    _into(launch, held, four, "b")
    api_client.force_login(user)
    reply = api_client.post(
        f"/api/v1/organizations/{org.slug}/instances/",
        {
            "flavor": f"{four.offering.slug}/{four.slug}",
            "image": "jupyterlab-4-host",
            "region": "us-east-1",
            "name": "c",
            "reservation": str(held.pk),
        },
        format="json",
    )
    assert reply.status_code == 400, reply.json()
    assert reply.json()["reservation"] == [f"All 8 GPUs of reservation {held.pk} are in use by your instances a, b."]
    assert not Instance.objects.filter(name="c").exists()


@pytest.mark.django_db
def test_a_stopped_instance_gives_its_gpus_back_to_the_reservation_and_takes_them_again_when_started(
    launch, notebook_setup, held, four
):
    setup = notebook_setup
    a = _into(launch, held, four, "a")
    b = _into(launch, held, four, "b")
    _ran(setup, a)
    # when a is stopped (the agent confirms)
    instance_stop(access=setup["access"], instance=Instance.objects.get(pk=a.pk))
    _stopped(setup, a)
    # then its GPUs are the reservation's again, never free in between
    assert Allocation.objects.get(pk=a.allocation_id).state == AllocationState.RELEASED
    assert _member(held).gpu_milli == 4000
    assert _free_whole(setup) == 0
    assert set(Gpu.objects.values_list("allocated_milli", flat=True)) == {1000}
    # and a new launch into the reservation gets them
    c = _into(launch, held, four, "c")
    assert c.state == S.SCHEDULED and _member(held).gpu_milli == 0
    # and once c stops too, a started again takes them from the reservation again
    instance_stop(access=setup["access"], instance=Instance.objects.get(pk=c.pk))
    _stopped(setup, c)
    instance_start(access=setup["access"], instance=Instance.objects.get(pk=a.pk))
    again = instance_schedule(instance_id=a.pk)
    assert again.state == S.SCHEDULED and again.reservation_id == held.pk
    assert Allocation.objects.get(pk=again.allocation_id).gang_id == held.gang_id
    assert _member(held).gpu_milli == 0
    assert Instance.objects.get(pk=b.pk).state == S.SCHEDULED


@pytest.mark.django_db
def test_starting_again_when_the_reservation_is_full_fails_with_the_reason(launch, notebook_setup, held, four):
    setup = notebook_setup
    a = _into(launch, held, four, "a")
    instance_stop(access=setup["access"], instance=Instance.objects.get(pk=a.pk))
    _stopped(setup, a)
    _into(launch, held, four, "b")
    _into(launch, held, four, "c")
    instance_start(access=setup["access"], instance=Instance.objects.get(pk=a.pk))
    failed = instance_schedule(instance_id=a.pk)
    assert failed.state == S.FAILED
    assert failed.state_reason == f"All 8 GPUs of reservation {held.pk} are in use by your instances b, c."


@pytest.mark.django_db
def test_at_the_end_of_the_window_its_instances_are_stopped_with_the_reason_and_the_node_is_free(
    launch, notebook_setup, held, four
):
    setup = notebook_setup
    a = _into(launch, held, four, "a")
    b = _into(launch, held, four, "b")
    _ran(setup, a)
    # when the reservation pass runs at the window's end
    reservations_due_run(now=held.ends_at)
    # then its instances are stopped with the reason, the reservation ended and the node is free
    reason = f"Stopped: the window of reservation {held.pk} ended at {when(held.ends_at)}"
    for instance in (a, b):
        instance.refresh_from_db()
        assert instance.state in (S.STOPPING, S.STOPPED)
        assert InstanceEvent.objects.filter(instance=instance, message=reason).exists()
    held.refresh_from_db()
    assert held.state == "ended"
    assert set(Gpu.objects.values_list("allocated_milli", flat=True)) == {0}
    assert _free_whole(setup) == 8
    assert not Allocation.objects.filter(state="active").exists()
    # and the agent's confirmation afterwards changes nothing more
    assert _stopped(setup, a).state == S.STOPPED
    assert set(Gpu.objects.values_list("allocated_milli", flat=True)) == {0}


@pytest.mark.django_db
def test_started_again_after_the_window_it_runs_on_demand_and_is_billed_as_such(launch, notebook_setup, held, four):
    setup = notebook_setup
    a = _into(launch, held, four, "a")
    reservations_due_run(now=held.ends_at)
    assert _stopped(setup, a).state == S.STOPPED
    instance_start(access=setup["access"], instance=Instance.objects.get(pk=a.pk))
    placed = instance_schedule(instance_id=a.pk)
    assert placed.state == S.SCHEDULED and placed.reservation_id is None
    assert Allocation.objects.get(pk=placed.allocation_id).gang_id is None


@pytest.mark.django_db
def test_its_runs_cost_nothing_for_the_gpus_and_the_reservation_charge_is_unchanged(
    launch, notebook_setup, held, four, client, user, org
):
    setup = notebook_setup
    a = _into(launch, held, four, "a")
    charged_before = reservation_charges_write()
    charges = list(ReservationCharge.objects.values_list("seconds", "hourly_amount"))
    # when a runs and is metered
    _ran(setup, a)
    run = MeteredRun.objects.get(instance=a)
    # (the meter writes an hour once it is over: its first one ends at the next UTC hour)
    hour_over = run.started_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    usage_open_runs_meter(now=hour_over + timedelta(seconds=5))
    # then its run is priced 0 with the reason on its usage lines
    assert run.hourly_amount == Decimal(0) and run.note == f"In reservation {held.pk}"
    records = list(UsageRecord.objects.filter(instance=a))
    assert records and sum(r.seconds for r in records) == (hour_over - run.started_at).total_seconds()
    assert {(r.hourly_amount, r.reason) for r in records} == {(Decimal(0), f"In reservation {held.pk}")}
    # and its page says why it costs nothing
    client.force_login(user)
    html = client.get(f"/orgs/{org.slug}/instances/{a.pk}/").content.decode()
    assert f'<span data-testid="run-note">in reservation {held.pk}</span>: billed with it' in html
    # and the reservation is charged as before: its whole window at 2 units of the quoted price
    assert charged_before >= 1 and reservation_charges_write() == 0
    assert list(ReservationCharge.objects.values_list("seconds", "hourly_amount")) == charges
    assert {amount for _, amount in charges} == {HOURLY * 2}


# --- real concurrency: two launches into the last room ---------------------------------------------


def _launch_concurrently(setup, flavor, reservation, names: list[str]) -> Counter:
    """Each launch into `reservation` in its own thread and connection, all at the same instant."""

    def one(name: str) -> str:
        try:
            instance_launch(
                access=setup["access"],
                flavor=flavor,
                image=setup["image"],
                region=setup["region"],
                name=name,
                reservation=reservation.pk,
            )
        except ValidationError as refused:
            return "refused" if "in use by your instances" in str(refused) else str(refused)
        return "launched"

    return outcomes_racing(one, names, join_timeout_s=90)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_two_launches_racing_for_the_last_room_of_a_reservation_one_wins_nothing_over_held(org, notebook_setup, four):
    s = notebook_setup
    reservation = _held(org, s, four)
    for round_ in range(3):
        # given 4 of its 8 GPUs in use by an instance
        first = instance_launch(
            access=s["access"],
            flavor=four,
            image=s["image"],
            region=s["region"],
            name=f"first-{round_}",
            reservation=reservation.pk,
        )
        # when two launches take the last 4 at the same instant
        outcomes = _launch_concurrently(s, four, reservation, [f"race-{round_}-{n}" for n in range(2)])
        # then one wins and the other is refused, and every GPU is held exactly once
        assert outcomes == Counter({"launched": 1, "refused": 1}), outcomes
        lent = Allocation.objects.filter(gang_id=reservation.gang_id, state="active").exclude(holder=reservation.holder)
        assert lent.count() == 2
        assert sum(a.gpu_milli for a in lent) == 8000 and _member(reservation).gpu_milli == 0
        assert set(Gpu.objects.values_list("allocated_milli", flat=True)) == {1000}
        # (the next round starts from an empty reservation: both stopped, the agent confirming).
        # A Celery worker of the session may have scheduled them meanwhile (their provision tasks
        # are enqueued on commit): the state after the stop says whether the agent must confirm.
        for instance in Instance.objects.filter(state__in=[S.REQUESTED, S.SCHEDULED]):
            instance_stop(access=s["access"], instance=instance)
            instance.refresh_from_db()
            if instance.state == S.STOPPING:
                workload_report_apply(node=s["node"], instance_id=instance.pk, seq=99, state="stopped")
        assert _member(reservation).gpu_milli == 8000
        assert Instance.objects.get(pk=first.pk).state == S.STOPPED


@pytest.mark.django_db
def test_a_reservation_gone_short_leaves_the_gpus_it_lent_to_a_running_instance_held(launch, notebook_setup, org, four):
    # given a second 8-GPU node, 16 GPUs reserved over both and an instance on 4 of them
    setup = notebook_setup
    other = node_with_gpus(setup["region"], four.gpu_model, n=8)
    start = timezone.now()
    reservation = reservation_create(
        organization=org,
        flavor=four,
        region=setup["region"],
        gpus=16,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )
    reservation = reservation_start(reservation_id=reservation.pk)
    a = _into(launch, reservation, four, "a")
    lent = Allocation.objects.get(pk=a.allocation_id)
    # when the node a is not on goes down and comes back (its members lost, then released)
    down = other if lent.node_id != other.pk else setup["node"]
    allocations_mark_lost(node_id=down.pk)
    allocations_release_lost(node_id=down.pk)
    reservations_due_run()
    # then the reservation is short and gave back its own GPUs, while a keeps the 4 it runs on
    reservation.refresh_from_db()
    assert reservation.state == "short"
    lent.refresh_from_db()
    assert lent.state == AllocationState.ACTIVE
    assert Gpu.objects.filter(node_id=lent.node_id, allocated_milli=1000).count() == 4
