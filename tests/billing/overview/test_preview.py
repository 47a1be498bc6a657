"""The billing overview's preview of this month's invoice equals, to the cent, the invoice the
real builder makes for the same records at the same moment: lines, credits and totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.models import CreditApplication, InvoiceLineKind, UsageRecord
from apps.billing.selectors.preview import invoice_preview_get
from apps.billing.services.credits import credit_grant_create
from apps.billing.services.invoicing import invoice_monthly_create
from apps.billing.services.metering import usage_correction_add, usage_open_runs_meter, usage_run_close, usage_run_meter
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_open, run_record

pytestmark = pytest.mark.django_db
OCT = datetime(2025, 10, 1, tzinfo=UTC)
# Mid-October, on a fraction of a second: the moment the preview is asked for and the invoice built.
NOW = OCT + timedelta(days=14, hours=12, microseconds=500_000)


def _usage(account):
    """Three instances: one at two prices with a run across midnight, one metered in pieces
    across midnight then stopped, one still running (part of it not yet cut into records); all
    on fractions of a second, at prices that round differently per line than per record."""
    org = account.organization
    alpha = InstanceFactory(organization=org, name="alpha")
    beta = InstanceFactory(organization=org, name="beta")
    gamma = InstanceFactory(organization=org, name="gamma", state="running")
    run_record(
        instance=alpha,
        started_at=OCT + timedelta(days=2, hours=23, minutes=59, seconds=30, microseconds=250_000),
        ended_at=OCT + timedelta(days=3, minutes=10, seconds=5, microseconds=700_000),
        hourly_amount="2.490000",
    )
    run_record(
        instance=alpha,
        started_at=OCT + timedelta(days=5, seconds=0.9),
        ended_at=OCT + timedelta(days=5, minutes=7, seconds=3.2),
        hourly_amount="3.105000",
    )
    beta_start = OCT + timedelta(days=8, hours=23, minutes=50, seconds=0.4)
    run = run_open(instance=beta, started_at=beta_start, hourly_amount="0.333333")
    usage_run_meter(run_id=run.pk, now=OCT + timedelta(days=8, hours=23, minutes=59, seconds=59.9))
    usage_run_meter(run_id=run.pk, now=OCT + timedelta(days=9, minutes=0, seconds=40.1))
    usage_run_close(instance=beta, ended_at=OCT + timedelta(days=9, hours=1, seconds=17.6), reason="stopped")
    # A correction takes 61 s off one of beta's records: the invoice counts it, so must the preview.
    usage_correction_add(record=UsageRecord.objects.filter(instance=beta).first(), seconds=-61, reason="agent gap")
    running = run_open(instance=gamma, started_at=NOW - timedelta(hours=1, seconds=0.3), hourly_amount="1.234567")
    usage_run_meter(run_id=running.pk, now=NOW - timedelta(minutes=29, seconds=50.2))
    return alpha, beta, gamma


def _grant(account, amount, days=None, description="Welcome"):
    expires = timezone.now() + timedelta(days=days) if days else None
    return credit_grant_create(account=account, kind="promotion", amount=Decimal(amount), description=description,
                               expires_at=expires)


def _built(account):
    """Meter to the same moment, then the real monthly build."""
    usage_open_runs_meter(now=NOW)
    return invoice_monthly_create(account=account, month_start=OCT, now=NOW)


def _invoice_lines(invoice):
    return [
        (line.description, line.flavor_name, line.seconds, line.hourly_amount, line.amount)
        for line in invoice.lines.filter(kind=InvoiceLineKind.USAGE).order_by("pk")
    ]


def _preview_lines(preview):
    return [(ln.instance.name, ln.flavor_name, ln.seconds, ln.hourly_amount, ln.amount) for ln in preview.lines]


def test_the_preview_is_the_invoice_the_builder_makes_with_credits_and_card():
    # Given usage on three instances and two grants, the sooner-expiring one smaller than the bill
    account = BillingAccountFactory()
    _usage(account)
    soon = _grant(account, "0.50", days=20, description="Trial")
    later = _grant(account, "1.00", description="Welcome")

    # When the preview is read, and then the month is metered and invoiced at the same moment
    preview = invoice_preview_get(account=account, now=NOW)
    invoice = _built(account)

    # Then the lines, credits and totals agree to the cent
    assert len(preview.lines) == 4  # alpha at two prices, beta, gamma
    assert _preview_lines(preview) == _invoice_lines(invoice)
    assert preview.subtotal == invoice.subtotal
    assert preview.credits_applied == invoice.credits_applied == Decimal("1.50")
    assert preview.total == invoice.total > 0
    applied = {a.grant_id: a.amount for a in CreditApplication.objects.filter(invoice=invoice)}
    assert [c.amount for c in preview.credits] == [applied[soon.pk], applied[later.pk]]
    assert [c.description for c in preview.credits] == ["Trial", "Welcome"]  # soonest-expiring first
    assert preview.credits_left == Decimal("0.00")


def test_credits_that_cover_the_month_leave_nothing_to_charge():
    # Given usage and more credit than it costs
    account = BillingAccountFactory()
    _usage(account)
    _grant(account, "25.00")

    preview = invoice_preview_get(account=account, now=NOW)
    invoice = _built(account)

    # Then nothing is charged, the rest of the credit is left, and the builder agrees
    assert preview.total == invoice.total == 0
    assert preview.covered_by_credits and preview.to_pay == 0
    assert preview.credits_applied == invoice.credits_applied == invoice.subtotal
    assert preview.credits_left == Decimal("25.00") - invoice.credits_applied


def test_records_already_on_an_invoice_are_not_previewed_again():
    # Given a month already invoiced up to now (a threshold invoice would do the same)
    account = BillingAccountFactory()
    instance = InstanceFactory(organization=account.organization, name="solo")
    run_record(instance=instance, started_at=OCT + timedelta(days=1), ended_at=OCT + timedelta(days=1, hours=2),
               hourly_amount="1.00")
    invoice_monthly_create(account=account, month_start=OCT, now=NOW)

    # Then the preview has nothing left to bill
    preview = invoice_preview_get(account=account, now=NOW)
    assert preview.lines == [] and preview.total == 0 and not preview.covered_by_credits


def test_the_preview_reads_a_fixed_number_of_queries(django_assert_num_queries):
    account = BillingAccountFactory()
    _usage(account)
    _grant(account, "0.50")
    with django_assert_num_queries(5):  # records summed, open runs, instances, reservation charges, grants
        invoice_preview_get(account=account, now=NOW)
    for n in range(5):
        more = InstanceFactory(organization=account.organization, name=f"more-{n}")
        run_record(instance=more, started_at=OCT + timedelta(days=n), ended_at=OCT + timedelta(days=n, hours=1),
                   hourly_amount="1.00")
        run_open(instance=InstanceFactory(organization=account.organization), started_at=NOW - timedelta(hours=n + 1),
                 hourly_amount="2.00")
    with django_assert_num_queries(5):
        assert len(invoice_preview_get(account=account, now=NOW).lines) == 14
