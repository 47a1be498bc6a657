"""FOCUS export: a month's rows come from its invoices (one per usage line, reservation line and
credit line, a late correction split off as ChargeClass "Correction") and add up to the invoices
to the cent; a month not invoiced yet is computed from the daily roll-up with the same rule; the
FinOps project's own validator (focus-validator, run as a tool in .venv-focus) finds no errors in
the CSV and does find them in a broken one; the API and the download are for owners, admins and
billing members only, and another tenant's slug is 404."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import Project, Role
from apps.billing.models import InvoiceLine, UsageRecord
from apps.billing.services.credits import credit_grant_create
from apps.billing.services.invoicing import invoice_monthly_create, invoice_threshold_create
from apps.billing.services.metering import usage_correction_add
from apps.chargeback.exports_focus import focus_csv
from apps.chargeback.selectors.focus import FOCUS_COLUMNS, focus_rows
from apps.chargeback.services.rollup import usage_rollup_run
from devtools import focus_validator
from tests.chargeback.conftest import reservation_held
from tests.factories.accounts import MembershipFactory, UserFactory
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_record
from tests.factories.catalog import FlavorFactory, RegionFactory
from tests.factories.chargeback import usage_day

pytestmark = pytest.mark.django_db

SEP = datetime(2025, 9, 1, tzinfo=UTC)
OCT = datetime(2025, 10, 1, tzinfo=UTC)
NOV = datetime(2025, 11, 1, tzinfo=UTC)
CENT = Decimal("0.01")


@pytest.fixture(scope="session")
def validator():
    """The validator's venv (made by `make test` already; made here if a test runs alone)."""
    return focus_validator.ensure()


class October:
    def __init__(self):
        self.account = BillingAccountFactory()
        self.org = self.account.organization
        self.owner = UserFactory()
        MembershipFactory(organization=self.org, user=self.owner, role=Role.OWNER)
        self.research = Project.objects.create(
            organization=self.org, name="Research", slug="research", labels={"cost-centre": "CC-1", "team": "ml"}
        )
        region = RegionFactory(code="eu-west", name="EU West")
        whole = FlavorFactory(gpu_count=2, name="2 × H100")
        mig = FlavorFactory(mig=True, name="MIG 1g.10gb")
        half = FlavorFactory(fraction=True, name="Half an L40S")
        self.trainer = InstanceFactory(
            organization=self.org,
            project=self.research,
            flavor=whole,
            region=region,
            name="trainer",
            labels={"cost-centre": "CC-2"},
        )
        self.slice = InstanceFactory(
            organization=self.org, project=self.research, flavor=mig, region=region, name="slice"
        )
        self.half = InstanceFactory(organization=self.org, flavor=half, region=region, name="half")
        # September is used and invoiced; a correction of it comes late and rides on October's invoice.
        run_record(
            instance=self.trainer,
            started_at=SEP + timedelta(days=28, hours=10),
            ended_at=SEP + timedelta(days=28, hours=12),
            hourly_amount="4.980000",
        )
        self.september = invoice_monthly_create(account=self.account, month_start=SEP)
        september_record = UsageRecord.objects.filter(instance=self.trainer).order_by("period_start").first()
        usage_correction_add(record=september_record, seconds=-1800, reason="node lost its GPUs for half an hour")
        # October: whole GPUs, a MIG slice, a fraction running over the month's end, a reservation
        # held over the month's end, and credits.
        run_record(
            instance=self.trainer,
            started_at=OCT + timedelta(days=1),
            ended_at=OCT + timedelta(days=1, hours=6, seconds=7),
            hourly_amount="4.980000",
        )
        run_record(
            instance=self.slice,
            started_at=OCT + timedelta(days=2),
            ended_at=OCT + timedelta(days=2, minutes=30),
            hourly_amount="0.610000",
        )
        run_record(
            instance=self.half,
            started_at=NOV - timedelta(minutes=30),
            ended_at=NOV + timedelta(minutes=30),
            hourly_amount="1.150000",
        )
        self.reservation = reservation_held(
            project=self.research,
            flavor=whole,
            region=region,
            start=NOV - timedelta(hours=26),
            end=NOV + timedelta(hours=2),
            gpus=4,
            hourly_amount="4.500000",
        )
        credit_grant_create(account=self.account, kind="promotion", amount=Decimal("5.00"), description="Welcome")
        self.invoice = invoice_monthly_create(account=self.account, month_start=OCT)


@pytest.fixture
def october():
    return October()


def _money(row, column="BilledCost") -> Decimal:
    return Decimal(row[column])


def _by(rows, **match) -> list[dict]:
    return [row for row in rows if all(row[k] == v for k, v in match.items())]


def test_an_invoiced_month_is_its_invoice_lines_and_adds_up_to_the_invoice_to_the_cent(october):
    # when October is exported
    rows = focus_rows(organization_id=october.org.pk, month=date(2025, 10, 15))

    # then its billed cost is the invoice's total (lines less credits), to the cent
    invoice = october.invoice
    assert invoice.credits_applied == Decimal("5.00")
    assert sum(_money(row) for row in rows) == invoice.total
    assert sum(_money(row) for row in rows if row["ChargeCategory"] == "Usage") == invoice.subtotal
    assert {row["InvoiceId"] for row in rows} == {invoice.number}
    assert {row["BillingPeriodStart"] for row in rows} == {"2025-10-01T00:00:00Z"}
    # one row per usage line, plus the late correction split off its line, plus the credit
    (credit,) = _by(rows, ChargeCategory="Credit")
    assert credit["BilledCost"] == "-5.00" and credit["SubAccountId"] is None
    trainer = _by(rows, ResourceName="trainer")
    (regular,) = [row for row in trainer if row["ChargeClass"] is None]
    (correction,) = [row for row in trainer if row["ChargeClass"] == "Correction"]
    line = invoice.lines.get(instance=october.trainer)
    assert _money(regular) + _money(correction) == line.amount
    assert _money(regular) == (Decimal(6 * 3600 + 7) * Decimal("4.98") / 3600).quantize(CENT)  # 29.89
    assert _money(correction) == Decimal("-2.49")  # half an hour of September taken off
    assert correction["ChargePeriodStart"].startswith("2025-09-29")
    # GPU-hours by share: 2 whole GPUs, a MIG 1g slice (142 thousandths), half a GPU
    assert Decimal(regular["ConsumedQuantity"]) == (Decimal(2 * (6 * 3600 + 7)) / 3600).quantize(Decimal("0.000001"))
    (mig,) = _by(rows, ResourceName="slice")
    assert Decimal(mig["ConsumedQuantity"]) == Decimal("0.071000") and mig["PricingQuantity"] == "0.500000"
    (half,) = _by(rows, ResourceName="half")
    assert half["PricingQuantity"] == "0.500000"  # only October's half hour is on October's invoice
    assert Decimal(half["ConsumedQuantity"]) == Decimal("0.250000")
    # the reservation: its own recurring row, October's 26 hours of 4 GPUs (2 units of the 2-GPU
    # flavor at 4.50/h each)
    (reservation,) = _by(rows, CapacityReservationId=str(october.reservation.pk), ResourceType="Capacity Reservation")
    assert reservation["ChargeFrequency"] == "Recurring" and reservation["BilledCost"] == "234.00"
    assert Decimal(reservation["ConsumedQuantity"]) == Decimal(4 * 26)
    # tags: the project's labels overlaid by the instance's
    assert regular["Tags"] == '{"cost-centre": "CC-2", "team": "ml"}'
    assert mig["Tags"] == '{"cost-centre": "CC-1", "team": "ml"}'
    assert regular["SubAccountName"] == "Research" and regular["BillingAccountId"] == october.org.slug
    assert regular["ProviderName"] == regular["InvoiceIssuerName"] == "Neocloud"


def test_the_focus_validator_finds_no_error_in_the_export_and_finds_them_in_a_broken_file(october, validator, tmp_path):
    # given October's export as CSV, its invoice with a line made by hand besides (an adjustment)
    InvoiceLine.objects.create(
        invoice=october.invoice, description="Goodwill: node maintenance", amount=Decimal("-1.50")
    )
    rows = focus_rows(organization_id=october.org.pk, month=date(2025, 10, 1))
    (adjustment,) = _by(rows, ChargeCategory="Adjustment")
    assert adjustment["BilledCost"] == "-1.50" and adjustment["InvoiceId"] == october.invoice.number
    good = tmp_path / "focus.csv"
    good.write_text(focus_csv(rows=rows))

    # when the FinOps validator reads it
    verdict = focus_validator.validate(good)

    # then it reports no error (losing branches of a passing OR rule are not errors)
    print(verdict.output)
    assert verdict.summary.startswith("Total:"), verdict.output
    assert verdict.ok, f"{verdict.errors}\n{verdict.output}"
    assert validator["focus"] in {"1.2", "1.0"} and verdict.focus_version == validator["focus"]

    # and a file with a required column missing and a cost that is not a number fails
    table = list(csv.DictReader(io.StringIO(good.read_text())))
    broken_columns = [c for c in FOCUS_COLUMNS if c != "ChargeCategory"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, broken_columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({**row, "BilledCost": "twelve dollars"})
    broken = tmp_path / "broken.csv"
    broken.write_text(buffer.getvalue())
    bad = focus_validator.validate(broken)
    assert not bad.ok
    assert any(rule.startswith(("CostAndUsage-D-008", "BilledCost")) for rule in bad.errors), bad.errors


def test_a_month_not_invoiced_yet_is_computed_from_the_roll_up_with_the_invoice_rule(validator, tmp_path):
    # given November's daily roll-up rows (no invoice yet): a price that needs rounding once
    account = BillingAccountFactory()
    a = InstanceFactory(organization=account.organization, name="a", flavor=FlavorFactory(fraction=True))
    usage_day(instance=a, day=date(2025, 11, 3), seconds=1000, hourly_amount="1.000000", gpus="0.5")
    usage_day(instance=a, day=date(2025, 11, 4), seconds=1000, hourly_amount="1.000000", gpus="0.5")
    usage_day(instance=a, day=date(2025, 12, 1), seconds=3600, hourly_amount="1.000000")  # December

    rows = focus_rows(organization_id=account.organization.pk, month=date(2025, 11, 1))

    # then one row: 2000 s at 1.00/h rounded once (0.56), not per day (0.28 + 0.28)
    (row,) = rows
    assert row["BilledCost"] == "0.56" and row["InvoiceId"] is None
    assert row["ChargePeriodStart"] == "2025-11-03T00:00:00Z" and row["ChargePeriodEnd"] == "2025-11-05T00:00:00Z"
    assert Decimal(row["ConsumedQuantity"]) == (Decimal(1000) / 3600).quantize(Decimal("0.000001"))
    path = tmp_path / "november.csv"
    path.write_text(focus_csv(rows=rows))
    verdict = focus_validator.validate(path)
    assert verdict.ok, f"{verdict.errors}\n{verdict.output}"


def test_the_estimate_from_the_roll_up_is_what_the_invoice_then_says_to_the_cent():
    # given October used (whole GPUs, a MIG slice, a fraction and a reservation both over the
    # month's end) and rolled up by the roll-up job, not invoiced yet
    account = BillingAccountFactory()
    org = account.organization
    region = RegionFactory()
    whole, mig, half = FlavorFactory(gpu_count=2), FlavorFactory(mig=True), FlavorFactory(fraction=True)
    runs = [
        (whole, OCT + timedelta(days=3, minutes=7), OCT + timedelta(days=4, hours=5, seconds=13), "4.980000"),
        (mig, OCT + timedelta(days=9), OCT + timedelta(days=9, minutes=47, seconds=3), "0.610000"),
        (half, NOV - timedelta(hours=2, minutes=11), NOV + timedelta(hours=3), "1.150000"),
    ]
    for flavor, start, end, price in runs:
        instance = InstanceFactory(organization=org, flavor=flavor, region=region)
        run_record(instance=instance, started_at=start, ended_at=end, hourly_amount=price)
    project = Project.objects.get(organization=org, slug="default")
    reservation_held(
        project=project,
        flavor=whole,
        region=region,
        start=NOV - timedelta(hours=5, minutes=30),
        end=NOV + timedelta(hours=2),
        gpus=2,
        hourly_amount="3.333333",
    )
    usage_rollup_run(now=NOV + timedelta(days=2))
    estimate = focus_rows(organization_id=org.pk, month=date(2025, 10, 1))
    assert {row["InvoiceId"] for row in estimate} == {None}

    # when October is invoiced
    invoice = invoice_monthly_create(account=account, month_start=OCT)
    invoiced = focus_rows(organization_id=org.pk, month=date(2025, 10, 1))

    # then every instance and the reservation cost the same in both, and both add up to the invoice
    def costs(rows):
        return {row["ResourceId"]: Decimal(row["BilledCost"]) for row in rows}

    assert costs(estimate) == costs(invoiced) and len(estimate) == 4
    # and the GPU-hours by share agree too (the roll-up's allocated share, the invoice's flavor share)
    gpu_hours = [{row["ResourceId"]: row["ConsumedQuantity"] for row in rows} for rows in (estimate, invoiced)]
    assert gpu_hours[0] == gpu_hours[1]
    assert sum(costs(estimate).values()) == invoice.subtotal == invoice.total
    assert {row["InvoiceId"] for row in invoiced} == {invoice.number}


def test_a_month_with_a_threshold_invoice_adds_up_to_both_invoices():
    # given a young account invoiced at the threshold on October 10th, then at the month's end
    account = BillingAccountFactory()
    instance = InstanceFactory(organization=account.organization, name="big")
    run_record(instance=instance, started_at=OCT, ended_at=OCT + timedelta(hours=100), hourly_amount="1.500000")
    threshold = invoice_threshold_create(account=account, now=OCT + timedelta(days=10))
    run_record(
        instance=instance,
        started_at=OCT + timedelta(days=20),
        ended_at=OCT + timedelta(days=20, minutes=20),
        hourly_amount="1.500000",
    )
    monthly = invoice_monthly_create(account=account, month_start=OCT, now=NOV + timedelta(hours=1))
    assert threshold is not None and monthly is not None

    rows = focus_rows(organization_id=account.organization.pk, month=date(2025, 10, 1))

    # then both invoices' lines are there, each row with its own invoice, adding up to both totals
    assert sum(Decimal(row["BilledCost"]) for row in rows) == threshold.total + monthly.total == Decimal("150.50")
    assert sorted(row["InvoiceId"] for row in rows) == sorted([threshold.number, monthly.number])


def _invoiced_month(instances: int):
    account = BillingAccountFactory()
    for n in range(instances):
        flavor = FlavorFactory(mig=True) if n % 2 else FlavorFactory()
        instance = InstanceFactory(organization=account.organization, flavor=flavor)
        run_record(
            instance=instance,
            started_at=OCT + timedelta(days=n),
            ended_at=OCT + timedelta(days=n, hours=1),
            hourly_amount="1.230000",
        )
    invoice_monthly_create(account=account, month_start=OCT)
    return account.organization


def test_the_export_reads_a_fixed_number_of_queries_whatever_its_rows():
    # given a month of 2 instances and one of 8, both invoiced
    small, big = _invoiced_month(2), _invoiced_month(8)

    # when each is exported, then both take the same few queries
    counts = []
    for org in (small, big):
        with CaptureQueriesContext(connection) as queries:
            rows = focus_rows(organization_id=org.pk, month=date(2025, 10, 1))
        counts.append((len(rows), len(queries)))
    assert counts[0][0] == 2 and counts[1][0] == 8
    assert counts[0][1] == counts[1][1] <= 8, counts


# --- the API and the download: who may ----------------------------------------------------------


def _api(october, **params):
    return f"/api/v1/organizations/{october.org.slug}/chargeback/focus/", {"month": "2025-10", **params}


def test_the_api_pages_the_rows_and_gives_the_csv(october, api_client):
    api_client.force_authenticate(october.owner)
    path, params = _api(october, limit=2)

    first = api_client.get(path, params).json()
    assert first["count"] >= 5 and len(first["results"]) == 2 and first["focus_version"] == "1.2"
    assert first["invoiced"] is True and first["month"] == "2025-10"
    walked, offset = [], 0
    while True:
        page = api_client.get(path, {**params, "offset": offset}).json()
        walked += page["results"]
        if not page["next"]:
            break
        offset += 2
    assert sum(Decimal(r["BilledCost"]) for r in walked) == october.invoice.total

    response = api_client.get(path, {"month": "2025-10", "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(table[0]) == list(FOCUS_COLUMNS)
    assert sum(Decimal(r["BilledCost"]) for r in table) == october.invoice.total


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.BILLING, 200), (Role.MEMBER, 403), (Role.VIEWER, 403)],
)
def test_only_roles_that_see_billing_may_export(october, api_client, client, role, status):
    user = UserFactory()
    MembershipFactory(organization=october.org, user=user, role=role)
    api_client.force_authenticate(user)
    path, params = _api(october)
    assert api_client.get(path, params).status_code == status
    client.force_login(user)
    download = client.get(f"/orgs/{october.org.slug}/chargeback/focus.csv", {"month": "2025-10"})
    assert download.status_code == status
    if status == 200:
        assert download["Content-Disposition"] == f'attachment; filename="focus-{october.org.slug}-2025-10.csv"'
        assert download.content.decode().splitlines()[0].startswith("BillingAccountId,")


def test_another_tenant_is_404_and_a_bad_month_is_400(october, api_client, client):
    stranger = BillingAccountFactory()
    MembershipFactory(organization=stranger.organization, user=(outsider := UserFactory()), role=Role.OWNER)
    api_client.force_authenticate(outsider)
    client.force_login(outsider)
    path, params = _api(october)
    assert api_client.get(path, params).status_code == 404
    refused = api_client.get(path, {**params, "format": "csv"})
    assert refused.status_code == 404 and refused["Content-Type"] == "application/json"
    assert client.get(f"/orgs/{october.org.slug}/chargeback/focus.csv", params).status_code == 404

    api_client.force_authenticate(october.owner)
    client.force_login(october.owner)
    for month in ["", "2025-13", "october", "2025-1"]:
        answer = api_client.get(path, {"month": month})
        assert answer.status_code == 400 and "month" in answer.json()
        assert client.get(f"/orgs/{october.org.slug}/chargeback/focus.csv", {"month": month}).status_code == 400
