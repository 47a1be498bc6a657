"""Reservations on real PostgreSQL: booked at once or refused with the reason; held as a gang from
the window's start to its end; launching into one checked before anything is written. Time is
passed in (`now=`), never waited for."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.accounts.models import Role
from apps.accounts.roles import OrgAccess
from apps.capacity.models import Allocation, AllocationState, Gpu, NodeState, Reservation, ReservationState
from apps.capacity.services.allocations import (
    allocation_gang_create,
    allocation_gang_release,
    allocations_mark_lost,
    allocations_release_lost,
)
from apps.capacity.services.quotas import quota_set
from apps.capacity.services.reservation_launch import reservation_launch_check
from apps.capacity.services.reservations import (
    reservation_cancel,
    reservation_create,
    reservation_end,
    reservation_request,
    reservation_start,
    reservations_due_run,
)
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, PriceFactory, RegionFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2030, 3, 2, 9, 0, tzinfo=UTC)
START = datetime(2030, 3, 3, 10, 0, tzinfo=UTC)
END = datetime(2030, 3, 3, 18, 0, tzinfo=UTC)
R = ReservationState


@pytest.fixture
def eu_west():
    return RegionFactory(code="eu-west")


@pytest.fixture
def one_gpu(h100):
    flavor = FlavorFactory(gpu_model=h100, gpu_count=1, name="1 × H100")
    PriceFactory(flavor=flavor, amount=Decimal("2.49"))
    return flavor


@pytest.fixture
def fleet(eu_west, h100):
    """12 H100 GPUs in eu-west: an 8-GPU node and a 4-GPU node."""
    return [node_with_gpus(eu_west, h100, n=8, hostname="eu-8"), node_with_gpus(eu_west, h100, n=4, hostname="eu-4")]


def book(organization, flavor, region, *, starts_at=START, ends_at=END, now=NOW, **count):
    return reservation_create(
        organization=organization, flavor=flavor, region=region, starts_at=starts_at, ends_at=ends_at, now=now, **count
    )


def held_gpus(reservation) -> int:
    return Gpu.objects.filter(slices__live=True, slices__allocation__holder=f"reservation:{reservation.pk}").count()


def test_two_overlapping_reservations_over_capacity_second_refused_held_at_start_free_after_end(
    fleet, eu_west, one_gpu
):
    # given 12 H100 GPUs in eu-west and two customers
    first_customer, second_customer = OrganizationFactory(), OrganizationFactory()

    # when the first books 8 GPUs from 10:00 to 18:00
    first = book(first_customer, one_gpu, eu_west, gpus=8)
    # and the second asks for 8 GPUs from 14:00 to 20:00, overlapping it
    with pytest.raises(ValidationError) as refused:
        book(
            second_customer,
            one_gpu,
            eu_west,
            gpus=8,
            starts_at=START + timedelta(hours=4),
            ends_at=END + timedelta(hours=2),
        )

    # then the second is refused with the reason, naming the conflicting time, and nothing is written
    assert refused.value.messages == [
        "From 2030-03-03 14:00 UTC to 2030-03-03 18:00 UTC only 4 of 12 NVIDIA H100 80GB GPUs in eu-west "
        "are not reserved; you asked for 8."
    ]
    assert list(Reservation.objects.values_list("pk", flat=True)) == [first.pk]
    assert first.state == R.SCHEDULED and held_gpus(first) == 0

    # when the window starts, its capacity is held
    counts = reservations_due_run(now=START)
    first.refresh_from_db()
    assert counts == {"ended": 0, "started": 1, "short": 0}
    assert first.state == R.ACTIVE and first.held_from == START
    assert held_gpus(first) == 8
    assert Gpu.objects.filter(allocated_milli=0).count() == 4

    # and when it ends, it is free again
    reservations_due_run(now=END)
    first.refresh_from_db()
    assert first.state == R.ENDED
    assert held_gpus(first) == 0
    assert Gpu.objects.filter(allocated_milli=0).count() == 12
    assert not Allocation.objects.filter(holder=first.holder, state=AllocationState.ACTIVE).exists()
    assert list(first.events.values_list("from_state", "to_state")) == [
        ("", R.SCHEDULED),
        (R.SCHEDULED, R.ACTIVE),
        (R.ACTIVE, R.ENDED),
    ]


def test_reservations_that_do_not_overlap_may_each_take_the_whole_fleet(fleet, eu_west, one_gpu):
    customer = OrganizationFactory()
    book(customer, one_gpu, eu_west, gpus=12)
    later = book(customer, one_gpu, eu_west, gpus=12, starts_at=END, ends_at=END + timedelta(hours=2))
    assert later.state == R.SCHEDULED


def test_whole_nodes_are_nodes_of_the_flavors_size_and_count_with_loose_gpus(fleet, eu_west, h100):
    # given 12 GPUs over an 8-GPU and a 4-GPU node, and an 8-GPU node flavor
    node_flavor = FlavorFactory(gpu_model=h100, gpu_count=8)
    PriceFactory(flavor=node_flavor, amount=Decimal("19.92"))
    small = FlavorFactory(gpu_model=h100, gpu_count=1)
    PriceFactory(flavor=small)
    customer = OrganizationFactory()
    # when two whole 8-GPU nodes are asked for, only one such node exists
    with pytest.raises(ValidationError) as refused:
        book(customer, node_flavor, eu_west, whole_nodes=2)
    assert "only 1 of 1 whole 8-GPU NVIDIA H100 80GB nodes in eu-west are not reserved" in refused.value.messages[0]
    # when one is booked, 4 loose GPUs still fit beside it, a fifth does not
    reservation = book(customer, node_flavor, eu_west, whole_nodes=1)
    book(customer, small, eu_west, gpus=4)
    with pytest.raises(ValidationError) as refused:
        book(customer, small, eu_west, gpus=1)
    assert "only 0 of 12" in refused.value.messages[0]
    # and at its start it holds the 8-GPU node, not the 4-GPU one
    reservation_start(reservation_id=reservation.pk, now=START)
    assert Allocation.objects.get(holder=reservation.holder).node == fleet[0]


def test_loose_gpus_booked_first_leave_no_whole_node(fleet, eu_west, h100, one_gpu):
    node_flavor = FlavorFactory(gpu_model=h100, gpu_count=4)
    PriceFactory(flavor=node_flavor)
    book(OrganizationFactory(), one_gpu, eu_west, gpus=9)
    with pytest.raises(ValidationError) as refused:
        book(OrganizationFactory(), node_flavor, eu_west, whole_nodes=1)
    assert "only 0 of 1 whole 4-GPU" in refused.value.messages[0]


def test_nodes_down_or_in_maintenance_are_not_counted(fleet, eu_west, one_gpu):
    fleet[1].state = NodeState.MAINTENANCE
    fleet[1].save()
    with pytest.raises(ValidationError) as refused:
        book(OrganizationFactory(), one_gpu, eu_west, gpus=9)
    assert "only 8 of 8" in refused.value.messages[0]


def test_a_reservation_whose_capacity_is_taken_at_start_goes_short_then_held_once_freed(fleet, eu_west, one_gpu):
    # given a booked reservation of all 12 GPUs and an on-demand gang holding 4 of them at its start
    customer = OrganizationFactory()
    reservation = book(customer, one_gpu, eu_west, gpus=12)
    on_demand = allocation_gang_create(organization=OrganizationFactory(), flavor=one_gpu, region=eu_west, gpus=4)

    # when its window starts, it is short, with the allocator's reason, and holds nothing
    reservations_due_run(now=START)
    reservation.refresh_from_db()
    assert reservation.state == R.SHORT
    assert reservation.reason.startswith("Its capacity could not be held: Not enough free capacity for 12")
    assert held_gpus(reservation) == 0 and reservation.held_from is None

    # when the on-demand capacity is given back, the next pass holds it, billed from then
    allocation_gang_release(gang_id=on_demand.gang_id)
    later = START + timedelta(minutes=10)
    reservations_due_run(now=later)
    reservation.refresh_from_db()
    assert reservation.state == R.ACTIVE and reservation.held_from == later and held_gpus(reservation) == 12


def test_start_and_end_are_idempotent_and_never_early(fleet, eu_west, one_gpu):
    reservation = book(OrganizationFactory(), one_gpu, eu_west, gpus=4)
    assert reservation_start(reservation_id=reservation.pk, now=START - timedelta(seconds=1)).state == R.SCHEDULED
    assert reservation_start(reservation_id=reservation.pk, now=START).state == R.ACTIVE
    assert reservation_start(reservation_id=reservation.pk, now=START).state == R.ACTIVE  # the pass racing the ETA task
    assert held_gpus(reservation) == 4
    assert Allocation.objects.filter(holder=reservation.holder).count() == 1
    assert reservation_end(reservation_id=reservation.pk, now=END - timedelta(seconds=1)).state == R.ACTIVE
    assert reservation_end(reservation_id=reservation.pk, now=END).state == R.ENDED
    assert reservation_end(reservation_id=reservation.pk, now=END).state == R.ENDED
    assert reservation.events.count() == 3


def test_a_reservation_never_started_in_its_window_just_ends(fleet, eu_west, one_gpu):
    reservation = book(OrganizationFactory(), one_gpu, eu_west, gpus=4)
    reservations_due_run(now=END + timedelta(minutes=1))
    reservation.refresh_from_db()
    assert reservation.state == R.ENDED and reservation.held_from is None


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"starts_at": NOW - timedelta(hours=2), "ends_at": NOW + timedelta(hours=2)}, "starts_at", "in the past"),
        ({"starts_at": NOW - timedelta(hours=4), "ends_at": NOW - timedelta(hours=2)}, "ends_at", "is over"),
        ({"ends_at": START - timedelta(hours=1)}, "ends_at", "end after it starts"),
        ({"ends_at": START}, "ends_at", "end after it starts"),
        ({"ends_at": START + timedelta(minutes=30)}, "ends_at", "at least one hour"),
        ({"ends_at": START + timedelta(days=91)}, "ends_at", "at most 90 days"),
        ({"starts_at": NOW + timedelta(days=400), "ends_at": NOW + timedelta(days=401)}, "starts_at", "365 days"),
        ({"gpus": 0}, "gpus", "Ask for 1"),
        ({"gpus": -3}, "gpus", "Ask for 1"),
        ({"gpus": 2, "whole_nodes": 1}, "gpus", "not both"),
        ({"gpus": None}, "gpus", "not both"),
    ],
)
def test_bad_requests_are_refused_with_the_field_and_nothing_is_written(
    fleet, eu_west, one_gpu, change, field, message
):
    request = {"starts_at": START, "ends_at": END, "gpus": 4, **change}
    with pytest.raises(ValidationError) as refused:
        reservation_create(organization=OrganizationFactory(), flavor=one_gpu, region=eu_west, now=NOW, **request)
    assert message in " ".join(refused.value.message_dict[field])
    assert not Reservation.objects.exists()


def test_fractional_mig_and_unpriced_flavors_and_no_fleet_are_refused(fleet, eu_west, h100):
    customer = OrganizationFactory()
    for flavor in (FlavorFactory(gpu_model=h100, mig=True), FlavorFactory(gpu_model=h100, fraction=True)):
        with pytest.raises(ValidationError) as refused:
            book(customer, flavor, eu_west, gpus=1)
        assert "not whole GPUs" in refused.value.message_dict["flavor"][0]
    with pytest.raises(ValidationError) as refused:
        book(customer, FlavorFactory(gpu_model=h100), eu_west, gpus=1)
    assert "no hourly price" in refused.value.message_dict["flavor"][0]
    two = FlavorFactory(gpu_model=h100, gpu_count=2)
    PriceFactory(flavor=two)
    with pytest.raises(ValidationError) as refused:
        book(customer, two, eu_west, gpus=3)
    assert "multiple of 2" in refused.value.message_dict["gpus"][0]
    elsewhere = RegionFactory(code="ap-south")
    one = FlavorFactory(gpu_model=h100)
    PriceFactory(flavor=one)
    with pytest.raises(ValidationError) as refused:
        book(customer, one, elsewhere, gpus=1)
    assert refused.value.messages == ["ap-south has no NVIDIA H100 80GB GPUs to reserve."]
    assert not Reservation.objects.exists()


def test_the_quote_is_the_list_price_per_flavor_unit(fleet, eu_west, h100):
    two = FlavorFactory(gpu_model=h100, gpu_count=2)
    PriceFactory(flavor=two, amount=Decimal("4.980000"))
    reservation = book(OrganizationFactory(), two, eu_west, gpus=6)
    assert (reservation.units, reservation.hourly_amount, reservation.currency) == (3, Decimal("4.980000"), "USD")


def test_cancel_before_start_frees_the_window_but_a_started_one_cannot_be_cancelled(fleet, eu_west, one_gpu):
    owner = UserFactory()
    customer = OrganizationFactory(owner=owner, credits=Decimal("100.00"))
    access = OrgAccess(organization=customer, role=Role.OWNER, user_id=owner.pk)
    first = reservation_request(
        access=access, flavor=one_gpu, region=eu_west, starts_at=START, ends_at=END, gpus=12, now=NOW
    )
    reservation_cancel(access=access, reservation_id=first.pk, now=NOW)
    first.refresh_from_db()
    assert first.state == R.CANCELLED
    second = book(customer, one_gpu, eu_west, gpus=12)  # the window is free again
    reservation_start(reservation_id=second.pk, now=START)
    with pytest.raises(ValidationError, match="cannot be cancelled"):
        reservation_cancel(access=access, reservation_id=second.pk, now=START)
    viewer = OrgAccess(organization=customer, role=Role.VIEWER, user_id=owner.pk)
    with pytest.raises(PermissionDenied):
        reservation_request(
            access=viewer, flavor=one_gpu, region=eu_west, starts_at=START, ends_at=END, gpus=1, now=NOW
        )


def test_launching_into_a_reservation_is_checked(fleet, eu_west, one_gpu, h100):
    customer, stranger = OrganizationFactory(), OrganizationFactory()
    reservation = book(customer, one_gpu, eu_west, gpus=4)

    def refusal(organization=customer, flavor=one_gpu, region=eu_west, now=START):
        with pytest.raises(ValidationError) as refused:
            reservation_launch_check(
                organization=organization, flavor=flavor, region=region, reservation_id=reservation.pk, now=now
            )
        return refused.value.message_dict["reservation"][0]

    assert refusal(now=NOW) == "This reservation starts at 2030-03-03 10:00 UTC; launch into it from then."
    assert refusal(organization=stranger) == "No such reservation in this organization."
    reservation_start(reservation_id=reservation.pk, now=START)
    other_model = FlavorFactory(gpu_count=1)
    assert "is not one" in refusal(flavor=other_model)
    assert "not ap-south" in refusal(region=RegionFactory(code="ap-south"))
    ok = reservation_launch_check(
        organization=customer, flavor=one_gpu, region=eu_west, reservation_id=reservation.pk, now=START
    )
    assert ok.pk == reservation.pk
    reservation_end(reservation_id=reservation.pk, now=END)
    assert refusal(now=END) == "This reservation is ended."


def test_a_start_within_the_next_pass_gets_an_eta_task_and_later_ones_wait_for_their_pass(
    fleet, eu_west, one_gpu, django_capture_on_commit_callbacks, monkeypatch
):
    # given the ETA tasks recorded instead of sent to the broker
    sent = []
    monkeypatch.setattr(
        "apps.capacity.services.reservation_hold.reservation_start_enqueue",
        lambda reservation: sent.append(reservation.pk),
    )
    # when one reservation starts in 10 s and another tomorrow
    with django_capture_on_commit_callbacks(execute=True):
        soon = book(
            OrganizationFactory(),
            one_gpu,
            eu_west,
            gpus=1,
            starts_at=NOW + timedelta(seconds=10),
            ends_at=NOW + timedelta(hours=2),
        )
        later = book(OrganizationFactory(), one_gpu, eu_west, gpus=1)
    # then only the first gets its task at booking
    assert sent == [soon.pk]
    # and the later one gets it from the pass that comes within the horizon of its start
    reservations_due_run(now=START - timedelta(seconds=20))
    assert sent == [soon.pk, later.pk]


def test_a_reservation_over_the_quota_ceiling_is_refused_at_booking(fleet, eu_west, one_gpu):
    customer = OrganizationFactory(name="Small Co")
    quota_set(organization=customer, max_gpus=Decimal("4"))
    with pytest.raises(ValidationError) as refused:
        book(customer, one_gpu, eu_west, gpus=5)
    assert refused.value.message_dict["gpus"] == [
        "Small Co may use at most 4 GPUs (its quota); this reservation needs 5."
    ]
    assert book(customer, one_gpu, eu_west, gpus=4).state == R.SCHEDULED


def test_a_hold_lost_with_a_node_is_taken_again_by_the_next_pass(fleet, eu_west, one_gpu):
    # given a reservation held on both nodes
    reservation = book(OrganizationFactory(), one_gpu, eu_west, gpus=12)
    reservations_due_run(now=START)
    reservation.refresh_from_db()
    first_gang = reservation.gang_id
    # when one node goes down and comes back (its lost allocations are released, as lost workloads' are)
    allocations_mark_lost(node_id=fleet[1].pk)
    assert reservations_due_run(now=START + timedelta(minutes=1))["short"] == 0  # lost, still held: not short
    allocations_release_lost(node_id=fleet[1].pk)
    # then the next pass finds the gang short of a node and holds the whole reservation again
    reservations_due_run(now=START + timedelta(minutes=2))
    reservation.refresh_from_db()
    assert reservation.state == R.ACTIVE and reservation.gang_id != first_gang
    assert reservation.held_from == START  # billed as held from its start, once
    assert held_gpus(reservation) == 12
    assert [e.to_state for e in reservation.events.all()] == [R.SCHEDULED, R.ACTIVE, R.SHORT, R.ACTIVE]
