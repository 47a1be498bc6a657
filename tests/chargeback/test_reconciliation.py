"""Reconciliation: a generated month of one organization (several projects and users, whole-GPU,
MIG and fraction instances, runs over both month boundaries, a correction before invoicing,
credits, reservations), invoiced by billing's own builder and rolled up by the chargeback job,
reads back through chargeback_report in every grouping (each dimension alone and every pair)
with group costs that add up to the invoice's subtotal to the cent, and cost − credits = the
invoice's total. Each subject (instance or reservation) costs exactly its invoice line."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.accounts.models import Project
from apps.billing.models import InvoicedReservationCharge, InvoiceLineKind, UsageRecord
from apps.billing.services.credits import credit_grant_create
from apps.billing.services.invoicing import invoice_monthly_create
from apps.billing.services.metering import usage_correction_add
from apps.chargeback.selectors.report import DIMENSIONS, ChargebackQuery, chargeback_report
from apps.chargeback.services.rollup import usage_rollup_run
from tests.chargeback.conftest import reservation_held
from tests.factories.accounts import MembershipFactory, UserFactory
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_record
from tests.factories.catalog import FlavorFactory, RegionFactory

pytestmark = pytest.mark.django_db

SEP = datetime(2025, 9, 1, tzinfo=UTC)
OCT = datetime(2025, 10, 1, tzinfo=UTC)
NOV = datetime(2025, 11, 1, tzinfo=UTC)
GROUPINGS = [(d,) for d in (*DIMENSIONS, "label:cost-centre")] + list(
    itertools.combinations((*DIMENSIONS, "label:cost-centre"), 2)
)


@pytest.fixture
def month(django_capture_on_commit_callbacks):
    """October for one organization, invoiced (September first, so October's invoice holds only
    October), then rolled up. Returns (account, october invoice)."""
    rng = random.Random(14)
    account = BillingAccountFactory()
    org = account.organization
    projects = [org.projects.get()] + [
        Project.objects.create(organization=org, name=f"Team {n}", slug=f"team-{n}", labels={"cost-centre": f"CC-{n}"})
        for n in (101, 102)
    ]
    users = [MembershipFactory(organization=org, user=UserFactory()).user for _ in range(4)]
    regions = [RegionFactory(), RegionFactory()]
    flavors = [  # (flavor, its odd hourly price: half-cents appear in the line amounts)
        (FlavorFactory(gpu_count=1), "2.490000"),
        (FlavorFactory(gpu_count=2), "4.985000"),
        (FlavorFactory(mig=True), "0.367000"),
        (FlavorFactory(fraction=True), "1.125500"),
    ]
    instances = []
    for n in range(10):
        flavor, price = flavors[n % len(flavors)]
        instance = InstanceFactory(
            organization=org, project=projects[n % 3], owner=users[n % 4], flavor=flavor, region=regions[n % 2],
            labels={"cost-centre": "CC-900"} if n % 5 == 0 else {},
        )
        instances.append((instance, price))
        for _ in range(3):  # runs of odd lengths anywhere in October
            start = OCT + timedelta(seconds=rng.randrange(0, 29 * 86400))
            run_record(
                instance=instance, started_at=start, ended_at=start + timedelta(seconds=rng.randrange(61, 40 * 3600)),
                hourly_amount=price,
            )
    # Runs over each month boundary: their other month's seconds are not October's.
    run_record(instance=instances[0][0], started_at=OCT - timedelta(hours=2, seconds=17),
               ended_at=OCT + timedelta(hours=3, minutes=31), hourly_amount=instances[0][1])
    run_record(instance=instances[3][0], started_at=NOV - timedelta(minutes=41, seconds=3),
               ended_at=NOV + timedelta(hours=1, minutes=7), hourly_amount=instances[3][1])
    # Reservations: one inside October, one over its end.
    big, big_price = flavors[1]
    reservation_held(project=projects[1], flavor=big, region=regions[0], start=OCT + timedelta(days=20, hours=9),
                     end=OCT + timedelta(days=22, hours=17, minutes=45), gpus=4, hourly_amount=big_price,
                     created_by=users[1])
    reservation_held(project=projects[2], flavor=flavors[0][0], region=regions[1], start=NOV - timedelta(hours=4),
                     end=NOV + timedelta(hours=6), gpus=3, hourly_amount=flavors[0][1], created_by=users[2])
    with django_capture_on_commit_callbacks(execute=False):  # the Stripe push is not under test
        invoice_monthly_create(account=account, month_start=SEP, now=OCT + timedelta(hours=6))
        # A correction before October is invoiced, and credits to spend on it.
        record = UsageRecord.objects.filter(period_start__gte=OCT, seconds__gt=1000).order_by("id").first()
        usage_correction_add(record=record, seconds=-997, reason="agent reported a late stop")
        credit_grant_create(account=account, kind="promotion", amount=Decimal("123.45"), description="Grant")
        invoice = invoice_monthly_create(account=account, month_start=OCT, now=NOV + timedelta(days=1))
    usage_rollup_run(now=NOV + timedelta(days=2))
    return account, invoice


def _query(account, group_by=()) -> ChargebackQuery:
    return ChargebackQuery(organization_id=account.pk, start=OCT.date(), end=NOV.date(), group_by=group_by)


def test_the_month_is_what_its_invoice_bills(month):
    # given October's invoice and roll-up (the fixture)
    account, invoice = month
    usage_lines = list(invoice.lines.filter(kind=InvoiceLineKind.USAGE))
    assert len(usage_lines) >= 11 and invoice.credits_applied > 0  # instances, a reservation, credits

    # when the month is read without grouping
    total = chargeback_report(query=_query(account)).total

    # then its cost is the invoice's subtotal, its seconds the lines', and cost − credits the total
    assert total.cost == invoice.subtotal
    assert total.seconds == sum(line.seconds for line in usage_lines)
    assert total.cost - invoice.credits_applied == invoice.total


def test_each_instance_and_reservation_costs_its_invoice_line(month):
    # given the invoice's lines by subject (an instance, or the reservation its charges belong to)
    account, invoice = month
    lines: dict[str, Decimal] = defaultdict(Decimal)
    for line in invoice.lines.filter(kind=InvoiceLineKind.USAGE):
        if line.instance_id is not None:
            lines[str(line.instance_id)] += line.amount
        else:
            charge = InvoicedReservationCharge.objects.filter(line=line).select_related("charge").first()
            lines[f"reservation:{charge.charge.reservation_id}"] += line.amount

    # when the month is grouped by instance
    report = chargeback_report(query=_query(account, ("instance",)))

    # then every subject's cost is its line's amount, to the cent
    assert {row.keys[0].value: row.cost for row in report.rows} == dict(lines)


@pytest.mark.parametrize("group_by", GROUPINGS, ids=["+".join(g) for g in GROUPINGS])
def test_every_grouping_adds_up_to_the_invoice(month, group_by):
    # given October's invoice and roll-up
    account, invoice = month

    # when the month is grouped by one dimension or a pair
    report = chargeback_report(query=_query(account, group_by))

    # then the groups' costs add up to the subtotal to the cent, and less the credits to the total
    assert len(report.rows) > 1
    assert sum(row.cost for row in report.rows) == invoice.subtotal == report.total.cost
    assert sum(row.cost for row in report.rows) - invoice.credits_applied == invoice.total
