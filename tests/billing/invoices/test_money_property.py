"""Money, exactly: many random runs (second-resolution lengths, 6-decimal prices, some across a
month boundary, some corrected) invoiced and pushed to localstripe. Every line is rounded once,
the invoice adds up to the cent, and Stripe charges exactly the invoice's total."""

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.billing.models import InvoicedUsage, InvoiceLineKind, UsageRecord
from apps.billing.money import money_round, money_to_minor
from apps.billing.services.credits import credit_grant_create
from apps.billing.services.invoicing import invoice_monthly_create, invoice_push_run
from apps.billing.services.metering import usage_correction_add
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_record, stripe_customer_with_card

pytestmark = pytest.mark.django_db
OCT, NOV, DEC = (datetime(2025, m, 1, tzinfo=UTC) for m in (10, 11, 12))
RUNS = 500


def _random_price(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(1, 40_000_000)).scaleb(-6)  # 0.000001 … 40.000000 per hour


def test_random_usage_is_invoiced_and_charged_exactly_to_the_cent(stripe, django_capture_on_commit_callbacks):
    rng = random.Random(4242)
    account = BillingAccountFactory()
    stripe_customer_with_card(account)
    instances = [InstanceFactory(organization=account.organization) for _ in range(25)]
    prices = [_random_price(rng) for _ in range(30)]
    for n in range(RUNS):
        if n % 10 == 0:  # one in ten crosses midnight of 31 October
            start = NOV - timedelta(seconds=rng.randint(1, 6 * 3600), microseconds=rng.randint(0, 999_999))
        else:
            start = OCT + timedelta(seconds=rng.randint(0, 30 * 86400), microseconds=rng.randint(0, 999_999))
        length = timedelta(seconds=rng.randint(0, 3 * 86400), microseconds=rng.randint(0, 999_999))
        run = run_record(
            instance=rng.choice(instances), started_at=start, ended_at=start + length, hourly_amount=rng.choice(prices)
        )
        if n % 17 == 0 and run.records.exists():  # some are corrected
            record = run.records.order_by("?").first()
            usage_correction_add(record=record, seconds=-rng.randint(0, record.seconds), reason="agent gap")
    credit_grant_create(account=account, kind="promotion", amount=Decimal("123.45"), description="welcome")

    with django_capture_on_commit_callbacks(execute=False):
        october = invoice_monthly_create(account=account, month_start=OCT)
        november = invoice_monthly_create(account=account, month_start=NOV)

    for invoice, (start, end) in ((october, (OCT, NOV)), (november, (NOV, DEC))):
        # every record of the month is on this invoice, once
        month_records = UsageRecord.objects.filter(
            organization_id=account.pk, period_start__gte=start, period_start__lt=end
        )
        billed = InvoicedUsage.objects.filter(line__invoice=invoice)
        assert billed.count() == month_records.count() > 0
        seconds = defaultdict(int)
        for line_id, record_seconds in billed.values_list("line_id", "record__seconds"):
            seconds[line_id] += record_seconds
        usage = list(invoice.lines.filter(kind=InvoiceLineKind.USAGE))
        for line in usage:
            assert line.seconds == seconds[line.pk]
            assert line.amount == money_round(Decimal(line.seconds) * line.hourly_amount / Decimal(3600), "USD")
            assert line.amount.as_tuple().exponent == -2
        assert len({(line.instance_id, line.hourly_amount) for line in usage}) == len(usage)
        assert invoice.subtotal == sum(line.amount for line in usage)
        assert invoice.total == invoice.subtotal - invoice.credits_applied
        assert invoice.total == sum(line.amount for line in invoice.lines.all())

    # the credit went first to October, the rest to November, never beyond the grant
    assert october.credits_applied == Decimal("123.45") or november.credits_applied == 0
    assert october.credits_applied + november.credits_applied == min(
        Decimal("123.45"), october.subtotal + november.subtotal
    )

    for invoice in (october, november):
        pushed = invoice_push_run(invoice_id=invoice.pk)
        remote = stripe.v1.invoices.retrieve(pushed.stripe_invoice_id)
        assert remote.total == money_to_minor(pushed.total, "USD")
        assert remote.amount_paid == money_to_minor(pushed.total, "USD") and remote.status == "paid"
        remote_lines = stripe.v1.invoices.line_items.list(remote.id, params={"limit": 1000}).data
        assert sorted(li.amount for li in remote_lines) == sorted(
            money_to_minor(line.amount, "USD") for line in pushed.lines.all()
        )
