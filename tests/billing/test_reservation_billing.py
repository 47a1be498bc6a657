"""Reservations are billed for their whole held window, used or not, at the price quoted when they
were booked × their units: charges cut at month boundaries, each on the invoice of its month as
one usage line per reservation, rounded once, billed once."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from apps.billing.models import InvoicedReservationCharge, InvoiceLine, InvoiceLineKind, ReservationCharge
from apps.billing.selectors.preview import invoice_preview_get
from apps.billing.services.invoicing import invoice_monthly_create, invoices_due_create
from apps.billing.services.reservations import reservation_charges_write
from apps.capacity.models import ReservationState
from apps.capacity.services.allocations import allocation_gang_create, allocation_gang_release
from apps.capacity.services.reservations import reservation_create, reservation_start, reservations_due_run
from tests.factories.billing import BillingAccountFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory, GpuModelFactory, PriceFactory, RegionFactory

pytestmark = pytest.mark.django_db

BOOKED = datetime(2025, 10, 20, 9, 0, tzinfo=UTC)
START = datetime(2025, 10, 30, 22, 0, tzinfo=UTC)
END = datetime(2025, 11, 1, 2, 0, tzinfo=UTC)  # 28 hours, over the month's end
OCT = datetime(2025, 10, 1, tzinfo=UTC)
NOV = datetime(2025, 11, 1, tzinfo=UTC)


@pytest.fixture
def region():
    region = RegionFactory(code="eu-west")
    h100 = GpuModelFactory(name="NVIDIA H100 80GB")
    node_with_gpus(region, h100, n=8)
    return region


@pytest.fixture
def two_gpus(region):
    flavor = FlavorFactory(gpu_model=region.nodes.get().gpus.first().gpu_model, gpu_count=2, name="2 × H100")
    PriceFactory(flavor=flavor, amount=Decimal("4.980000"))
    return flavor


@pytest.fixture
def account(db):
    return BillingAccountFactory()


def book(account, flavor, region, **kw):
    return reservation_create(
        organization=account.organization,
        flavor=flavor,
        region=region,
        starts_at=START,
        ends_at=END,
        now=BOOKED,
        **kw,
    )


def test_a_held_reservation_is_charged_for_its_whole_window_on_the_invoice_of_each_month(account, two_gpus, region):
    # given 6 GPUs of a 2-GPU flavor at 4.98/h booked (3 units: 14.94/h) and held from its start
    book(account, two_gpus, region, gpus=6)
    assert reservation_charges_write() == 0  # booked, not held: nothing to charge yet
    reservations_due_run(now=START)

    # when the charges are written (twice: a racing pass writes nothing more)
    assert reservation_charges_write() == 2
    assert reservation_charges_write() == 0

    # then the window is charged whole, cut at the month boundary, never used by any instance
    charges = list(
        ReservationCharge.objects.order_by("period_start").values_list(
            "period_start", "period_end", "seconds", "hourly_amount"
        )
    )
    assert charges == [
        (START, NOV, 26 * 3600, Decimal("14.940000")),
        (NOV, END, 2 * 3600, Decimal("14.940000")),
    ]

    # and October's invoice bills its part as one usage line, rounded once
    october = invoice_monthly_create(account=account, month_start=OCT, now=NOV + timedelta(hours=3))
    [line] = october.lines.all()
    assert (line.kind, line.instance_id, line.seconds, line.hourly_amount, line.amount) == (
        InvoiceLineKind.USAGE,
        None,
        93600,
        Decimal("14.940000"),
        Decimal("388.44"),
    )
    assert line.description == (
        "Reservation: 6 × NVIDIA H100 80GB GPUs in eu-west, 2025-10-30 22:00 to 2025-11-01 00:00 UTC"
    )
    assert october.subtotal == Decimal("388.44")
    # and November's the rest
    november = invoice_monthly_create(account=account, month_start=NOV, now=datetime(2025, 12, 1, 1, tzinfo=UTC))
    assert [(x.seconds, x.amount) for x in november.lines.all()] == [(7200, Decimal("29.88"))]
    # each charge is billed once, by the database's word
    assert InvoicedReservationCharge.objects.count() == 2
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoicedReservationCharge.objects.create(charge=ReservationCharge.objects.first(), line=line)


def test_the_monthly_run_invoices_an_organization_that_only_reserved(account, region):
    # given a whole 8-GPU node reserved at its node price (one unit: 19.92/h) and held
    node_flavor = FlavorFactory(gpu_model=region.nodes.get().gpus.first().gpu_model, gpu_count=8)
    PriceFactory(flavor=node_flavor, amount=Decimal("19.920000"))
    book(account, node_flavor, region, whole_nodes=1)
    reservations_due_run(now=START)
    reservation_charges_write()
    # when last month is closed, the organization is invoiced though it ran nothing
    made = invoices_due_create(now=NOV + timedelta(hours=1))
    assert [invoice.account_id for invoice in made] == [account.pk]
    [line] = made[0].lines.all()
    assert (line.hourly_amount, line.amount) == (Decimal("19.920000"), Decimal("517.92"))


def test_a_short_reservation_is_charged_from_when_it_was_held_and_never_if_it_never_was(account, two_gpus, region):
    # given a reservation of all 8 GPUs, 2 of which an on-demand gang holds at its start
    reservation = book(account, two_gpus, region, gpus=8)
    stranger = BillingAccountFactory().organization
    on_demand = allocation_gang_create(organization=stranger, flavor=two_gpus, region=region, gpus=2)
    reservations_due_run(now=START)
    reservation.refresh_from_db()
    assert reservation.state == ReservationState.SHORT
    assert reservation_charges_write() == 0

    # when the capacity frees 7 s after its start and the next pass holds it
    allocation_gang_release(gang_id=on_demand.gang_id)
    reservation_start(reservation_id=reservation.pk, now=START + timedelta(seconds=7))
    reservation_charges_write()

    # then it is charged from then on: 7 seconds fewer, exactly
    october = invoice_monthly_create(account=account, month_start=OCT, now=NOV + timedelta(hours=3))
    [line] = october.lines.all()
    assert line.seconds == 26 * 3600 - 7
    assert line.amount == (Decimal(26 * 3600 - 7) * Decimal("19.92") / 3600).quantize(Decimal("0.01"))


def test_a_cancelled_reservation_costs_nothing(account, two_gpus, region):
    reservation = book(account, two_gpus, region, gpus=2)
    reservation.state = ReservationState.CANCELLED
    reservation.save(update_fields=["state"])
    reservations_due_run(now=START)
    assert reservation_charges_write() == 0
    assert invoice_monthly_create(account=account, month_start=OCT, now=NOV) is None
    assert not InvoiceLine.objects.exists()


def test_charges_are_immutable(account, two_gpus, region):
    book(account, two_gpus, region, gpus=2)
    reservations_due_run(now=START)
    reservation_charges_write()
    with pytest.raises(IntegrityError), transaction.atomic():
        ReservationCharge.objects.update(seconds=1)


def test_the_overview_preview_shows_the_reservation_line_the_invoice_will_have(account, two_gpus, region):
    # given a held reservation's charges written
    book(account, two_gpus, region, gpus=6)
    reservations_due_run(now=START)
    reservation_charges_write()
    # when October's invoice is previewed, then built
    preview = invoice_preview_get(account=account, now=START + timedelta(hours=1))
    october = invoice_monthly_create(account=account, month_start=OCT, now=NOV + timedelta(hours=3))
    # then the preview's line and subtotal are the invoice's, to the cent
    [planned] = preview.reservations
    [line] = october.lines.all()
    assert (planned.description, planned.seconds, planned.amount) == (line.description, line.seconds, line.amount)
    assert preview.subtotal == october.subtotal == Decimal("388.44")


def test_a_young_account_is_invoiced_at_the_threshold_for_a_reservation_once_it_is_held(two_gpus, region):
    # given a new account (young) holding a reservation charged 388.44 for October, over the threshold
    account = BillingAccountFactory(created_at=START - timedelta(days=1))
    book(account, two_gpus, region, gpus=6)
    reservations_due_run(now=START)
    reservation_charges_write()
    # when due invoices are made during the window
    made = invoices_due_create(now=START + timedelta(hours=1))
    # then a threshold invoice bills the charge that has begun (October's part), not November's
    [invoice] = made
    assert invoice.kind == "threshold"
    assert [(line.seconds, line.amount) for line in invoice.lines.all()] == [(93600, Decimal("388.44"))]
