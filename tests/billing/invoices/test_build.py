"""Building invoices from usage records: lines per (instance, unit price), rounding once per line,
credits before the card, every record billed once, one monthly invoice per account and month."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.test import override_settings

from apps.billing.models import (
    BillingEvent,
    CreditApplication,
    Invoice,
    InvoicedUsage,
    InvoiceKind,
    InvoiceLine,
    InvoiceLineKind,
    InvoiceStatus,
    UsageRecord,
)
from apps.billing.money import money_round
from apps.billing.services.credits import credit_grant_create
from apps.billing.services.invoicing import (
    invoice_monthly_create,
    invoice_threshold_create,
    invoices_due_create,
)
from apps.billing.services.invoicing.build import young_accounts_over_threshold
from apps.billing.services.metering import usage_correction_add
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_open, run_record

pytestmark = pytest.mark.django_db
OCT = datetime(2025, 10, 1, tzinfo=UTC)
NOV = datetime(2025, 11, 1, tzinfo=UTC)


@pytest.fixture
def account():
    return BillingAccountFactory()


def _instance(account, **kw):
    return InstanceFactory(organization=account.organization, **kw)


def test_one_line_per_instance_and_unit_price_rounded_once(account):
    # given two instances, one of them run at two prices (started again after a price change)
    a, b = _instance(account, name="alpha"), _instance(account, name="beta")
    run_record(
        instance=a,
        started_at=OCT + timedelta(hours=1),
        ended_at=OCT + timedelta(hours=2, seconds=7),
        hourly_amount="2.490000",
    )
    run_record(
        instance=a,
        started_at=OCT + timedelta(days=3),
        ended_at=OCT + timedelta(days=3, seconds=1),
        hourly_amount="2.490000",
    )
    run_record(
        instance=a,
        started_at=OCT + timedelta(days=5),
        ended_at=OCT + timedelta(days=5, minutes=10),
        hourly_amount="3.100000",
    )
    run_record(
        instance=b,
        started_at=OCT + timedelta(days=9),
        ended_at=OCT + timedelta(days=9, seconds=1),
        hourly_amount="0.000001",
    )

    # when October is invoiced
    invoice = invoice_monthly_create(account=account, month_start=OCT)

    # then
    lines = {(line.description, line.hourly_amount): line for line in invoice.lines.all()}
    assert set(lines) == {("alpha", Decimal("2.49")), ("alpha", Decimal("3.1")), ("beta", Decimal("0.000001"))}
    first = lines[("alpha", Decimal("2.49"))]
    assert first.seconds == 3600 + 7 + 1
    assert first.amount == money_round(Decimal(3608) * Decimal("2.49") / 3600, "USD") == Decimal("2.50")
    assert lines[("alpha", Decimal("3.1"))].amount == Decimal("0.52")  # 600 s × 3.10/h = 0.51666…
    assert lines[("beta", Decimal("0.000001"))].amount == Decimal("0.00")
    assert invoice.subtotal == sum(line.amount for line in lines.values()) == Decimal("3.02")
    assert invoice.total == invoice.subtotal and invoice.kind == InvoiceKind.MONTHLY
    assert invoice.period_start == OCT and invoice.period_end == NOV
    assert invoice.status == InvoiceStatus.DRAFT
    # every record is tied to the line that billed it
    assert InvoicedUsage.objects.filter(line__invoice=invoice).count() == UsageRecord.objects.count()
    assert invoice.number.startswith("INV-") and len(invoice.number) == len("INV-2026-11-000123")


def test_the_month_is_invoiced_once_and_a_record_is_billed_once(account):
    run_record(instance=_instance(account), started_at=OCT, ended_at=OCT + timedelta(hours=5), hourly_amount="1.00")
    first = invoice_monthly_create(account=account, month_start=OCT)

    again = invoice_monthly_create(account=account, month_start=OCT + timedelta(days=12))

    assert again.pk == first.pk and Invoice.objects.count() == 1
    # the database itself refuses a second line for a billed record, and a second monthly invoice
    record = UsageRecord.objects.first()
    other = Invoice.objects.create(
        account=account,
        number="INV-X",
        kind=InvoiceKind.THRESHOLD,
        period_start=OCT,
        period_end=NOV,
        currency="USD",
        idempotency_key="x",
    )
    line = InvoiceLine.objects.create(invoice=other, description="x", amount=Decimal("1.00"))
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoicedUsage.objects.create(record=record, line=line)
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(
            account=account,
            number="INV-Y",
            kind=InvoiceKind.MONTHLY,
            period_start=OCT,
            period_end=NOV,
            currency="USD",
            idempotency_key="y",
        )


def test_only_records_starting_before_the_month_end_are_billed(account):
    # a run across midnight of Oct 31 → its November seconds wait for November's invoice
    instance = _instance(account)
    run_record(
        instance=instance,
        started_at=NOV - timedelta(seconds=100),
        ended_at=NOV + timedelta(seconds=50),
        hourly_amount="36.00",
    )

    invoice = invoice_monthly_create(account=account, month_start=OCT)

    assert invoice.lines.get().seconds == 100 and invoice.subtotal == Decimal("1.00")
    assert UsageRecord.objects.filter(period_start__gte=NOV).get().seconds == 50


def test_a_late_correction_goes_on_the_next_invoice(account):
    instance = _instance(account)
    run_record(instance=instance, started_at=OCT, ended_at=OCT + timedelta(hours=2), hourly_amount="3.60")
    october = invoice_monthly_create(account=account, month_start=OCT)
    run_record(instance=instance, started_at=NOV, ended_at=NOV + timedelta(hours=1), hourly_amount="3.60")

    usage_correction_add(
        record=UsageRecord.objects.filter(period_start__lt=NOV).first(), seconds=-1800, reason="agent reported late"
    )
    november = invoice_monthly_create(account=account, month_start=NOV)

    assert october.subtotal == Decimal("7.20")
    assert november.lines.get().seconds == 3600 - 1800 and november.subtotal == Decimal("1.80")


def test_credits_are_applied_soonest_expiring_first_and_never_beyond_the_subtotal(account):
    # given 10.00 of usage and three grants
    run_record(instance=_instance(account), started_at=OCT, ended_at=OCT + timedelta(hours=10), hourly_amount="1.00")
    later = credit_grant_create(
        account=account,
        kind="promotion",
        amount=Decimal("8.00"),
        description="later",
        expires_at=datetime.now(UTC) + timedelta(days=60),
    )
    sooner = credit_grant_create(
        account=account,
        kind="grant",
        amount=Decimal("3.00"),
        description="sooner",
        expires_at=datetime.now(UTC) + timedelta(days=5),
    )
    never = credit_grant_create(account=account, kind="adjustment", amount=Decimal("50.00"), description="never")

    invoice = invoice_monthly_create(account=account, month_start=OCT)

    applied = {a.grant_id: a.amount for a in CreditApplication.objects.filter(invoice=invoice)}
    assert applied == {sooner.pk: Decimal("3.00"), later.pk: Decimal("7.00")}
    assert never.pk not in applied
    assert invoice.credits_applied == Decimal("10.00") and invoice.total == Decimal("0.00")
    credit_line = invoice.lines.get(kind=InvoiceLineKind.CREDIT)
    assert credit_line.amount == Decimal("-10.00")
    # nothing to charge: paid without Stripe
    assert invoice.status == InvoiceStatus.PAID and invoice.stripe_invoice_id is None and invoice.paid_at
    assert BillingEvent.objects.filter(account=account, kind="invoice.paid").count() == 1


def test_partial_credit_leaves_the_rest_for_the_card(account):
    run_record(instance=_instance(account), started_at=OCT, ended_at=OCT + timedelta(hours=10), hourly_amount="1.00")
    credit_grant_create(account=account, kind="promotion", amount=Decimal("2.50"), description="welcome")

    invoice = invoice_monthly_create(account=account, month_start=OCT)

    assert (invoice.subtotal, invoice.credits_applied, invoice.total) == (
        Decimal("10.00"),
        Decimal("2.50"),
        Decimal("7.50"),
    )
    assert invoice.status == InvoiceStatus.DRAFT


def test_a_grant_that_expired_before_the_period_is_not_applied(account):
    run_record(instance=_instance(account), started_at=OCT, ended_at=OCT + timedelta(hours=1), hourly_amount="1.00")
    grant = credit_grant_create(
        account=account,
        kind="promotion",
        amount=Decimal("5.00"),
        description="old",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    type(grant).objects.filter(pk=grant.pk).update(expires_at=OCT - timedelta(days=1))

    invoice = invoice_monthly_create(account=account, month_start=OCT)

    assert invoice.credits_applied == Decimal("0.00") and invoice.total == Decimal("1.00")


@override_settings(BILLING={**__import__("django.conf").conf.settings.BILLING, "THRESHOLD_AMOUNT": Decimal("50.00")})
def test_a_young_account_is_invoiced_when_its_usage_reaches_the_threshold(account):
    now = datetime.now(UTC).replace(microsecond=0)
    instance = _instance(account)
    run_record(
        instance=instance, started_at=now - timedelta(hours=3), ended_at=now - timedelta(hours=2), hourly_amount="49.99"
    )
    assert invoice_threshold_create(account=account, now=now) is None  # 49.99 < 50

    run_record(
        instance=instance,
        started_at=now - timedelta(hours=1),
        ended_at=now - timedelta(seconds=3564),
        hourly_amount="1.00",
    )  # +0.01 (36 s)
    invoice = invoice_threshold_create(account=account, now=now)

    assert invoice.kind == InvoiceKind.THRESHOLD and invoice.subtotal == Decimal("50.00")
    assert invoice_threshold_create(account=account, now=now) is None  # nothing unbilled left


@override_settings(BILLING={**__import__("django.conf").conf.settings.BILLING, "THRESHOLD_AMOUNT": Decimal("50.00")})
def test_a_young_account_running_mid_hour_is_invoiced_to_the_second(account):
    # Given a run open since 30 min 36 s ago at 100.00/h (50.00 + 0.01 with nothing written yet:
    # the meter writes finished hours only) on a clock 30 min past the hour
    now = datetime(2026, 10, 14, 12, 30, tzinfo=UTC)
    instance = _instance(account)
    run_open(instance=instance, started_at=now - timedelta(seconds=30 * 60 + 36), hourly_amount="100.00", currency="USD")

    # When the due invoices are looked for and the threshold invoice is made
    assert account.pk in young_accounts_over_threshold(now=now)
    invoice = invoice_threshold_create(account=account, now=now)

    # Then it bills every second up to now, cut at the hour boundary (two records)
    assert invoice.kind == InvoiceKind.THRESHOLD and invoice.subtotal == Decimal("51.00")
    records = UsageRecord.objects.filter(instance=instance).order_by("period_start")
    assert [(r.seconds, r.period_end) for r in records] == [(36, now - timedelta(minutes=30)), (1800, now)]


@override_settings(BILLING={**__import__("django.conf").conf.settings.BILLING, "THRESHOLD_AMOUNT": Decimal("1.00")})
def test_an_old_account_waits_for_the_month(account):
    type(account).objects.filter(pk=account.pk).update(created_at=datetime.now(UTC) - timedelta(days=400))
    account.refresh_from_db()
    now = datetime.now(UTC).replace(microsecond=0)
    run_record(instance=_instance(account), started_at=now - timedelta(hours=2), ended_at=now, hourly_amount="9.00")

    assert invoice_threshold_create(account=account, now=now) is None


def test_invoices_due_closes_last_month_once_for_every_account(django_capture_on_commit_callbacks):
    # given two accounts that ran in October and one that did not
    ran = [BillingAccountFactory(), BillingAccountFactory()]
    idle = BillingAccountFactory()
    for account in ran:
        run_record(
            instance=_instance(account),
            started_at=OCT + timedelta(days=2),
            ended_at=OCT + timedelta(days=2, hours=1),
            hourly_amount="2.00",
        )
    now = NOV + timedelta(hours=3)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        made = invoices_due_create(now=now)
        again = invoices_due_create(now=now)

    assert sorted(i.account_id for i in made) == sorted(a.pk for a in ran) and again == []
    assert not Invoice.objects.filter(account=idle).exists()
    assert Invoice.objects.filter(kind=InvoiceKind.MONTHLY, period_start=OCT).count() == 2
    assert len(callbacks) >= 2  # a push is queued after commit for each invoice to charge
