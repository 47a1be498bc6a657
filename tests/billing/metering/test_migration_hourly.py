"""Migration 0007: records written one per meter pass (the old grain) are compacted to one per run,
clock hour, price, reason and invoice line; every second, every invoice line and every correction
stays as it was, and the records stay immutable afterwards."""

from __future__ import annotations

import importlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum

from apps.billing.models import (
    Invoice,
    InvoicedUsage,
    InvoiceKind,
    InvoiceLine,
    MeteredRun,
    UsageKind,
    UsageRecord,
)
from apps.billing.services.metering import (
    usage_correction_add,
    usage_open_runs_meter,
    usage_record_plan,
    usage_run_close,
)
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_open

pytestmark = pytest.mark.django_db
compact = importlib.import_module("apps.billing.migrations.0007_usage_records_hourly").usage_records_compact
SEP, OCT = datetime(2025, 9, 1, tzinfo=UTC), datetime(2025, 10, 1, tzinfo=UTC)


def legacy_records(run: MeteredRun, *, until: datetime, every_s: int = 60) -> list[UsageRecord]:
    """What the old meter wrote for `run` up to `until`: a record per pass, a pass every `every_s`
    seconds from the start, cut at month boundaries only (so across hours)."""
    cuts = set(range(every_s, int((until - run.started_at).total_seconds()), every_s))
    cuts.add(int((until - run.started_at).total_seconds()))
    month_edge = int((OCT - run.started_at).total_seconds())
    if 0 < month_edge < max(cuts):
        cuts.add(month_edge)
    rows, done = [], run.metered_seconds
    for upto in sorted(cuts):
        rows.append(usage_record_plan(run=run, done=done, upto=upto))  # the fields as any pass writes them
        done = upto
    created = UsageRecord.objects.bulk_create(rows)
    MeteredRun.objects.filter(pk=run.pk).update(metered_seconds=done)
    return created


def bill(account, records: list[UsageRecord], kind=InvoiceKind.MONTHLY) -> InvoiceLine:
    """An invoice with one line holding `records` (as the builder ties them)."""
    n = Invoice.objects.count() + 1
    invoice = Invoice.objects.create(
        account=account,
        number=f"INV-TEST-{n}",
        kind=kind,
        period_start=min(r.period_start for r in records),
        period_end=max(r.period_end for r in records),
        currency="USD",
        idempotency_key=f"test-{n}",
    )
    line = InvoiceLine.objects.create(
        invoice=invoice,
        instance_id=records[0].instance_id,
        project_id=records[0].project_id,
        description="usage",
        seconds=sum(r.seconds for r in records),
        hourly_amount=records[0].hourly_amount,
        amount=Decimal("0.00"),
    )
    InvoicedUsage.objects.bulk_create([InvoicedUsage(record=r, line=line) for r in records])
    return line


def seconds_by_price() -> dict:
    rows = UsageRecord.objects.values("instance_id", "hourly_amount").annotate(total=Sum("seconds"))
    return {(r["instance_id"], r["hourly_amount"]): r["total"] for r in rows}


def seconds_by_line() -> dict:
    rows = InvoicedUsage.objects.values("line_id").annotate(total=Sum("record__seconds"))
    return {r["line_id"]: r["total"] for r in rows}


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def legacy():
    """An organization's usage at the old grain, around the September/October boundary:
    - alpha: a run Sep 30 22:40:30 - Oct 1 01:15:30 at $2.49/h, a record a minute (30 s off the
      minute, so records cross hours), September invoiced on one line, Oct 1 00:00-00:20 on a
      threshold invoice's line, the rest not invoiced; one record corrected (-20 s);
    - beta: a run in a reservation ($0/h, a reason) Oct 1 00:10-02:05, a record every 7 minutes;
    - gamma: still running at $1.234567/h since Oct 1 09:03:10, metered up to 12:37:10."""
    account = BillingAccountFactory()
    org = account.organization
    alpha, beta, gamma = (InstanceFactory(organization=org, name=n) for n in ("alpha", "beta", "gamma"))

    run_a = run_open(instance=alpha, started_at=datetime(2025, 9, 30, 22, 40, 30, tzinfo=UTC), hourly_amount="2.49")
    a = legacy_records(run_a, until=datetime(2025, 10, 1, 1, 15, 30, tzinfo=UTC))
    MeteredRun.objects.filter(pk=run_a.pk).update(ended_at=datetime(2025, 10, 1, 1, 15, 30, tzinfo=UTC))
    september = bill(account, [r for r in a if r.period_start < OCT])
    early = [r for r in a if OCT <= r.period_start < OCT + timedelta(minutes=20)]
    threshold = bill(account, early, kind=InvoiceKind.THRESHOLD)
    corrected = next(r for r in a if r.period_start == datetime(2025, 9, 30, 23, 10, 30, tzinfo=UTC))
    correction = usage_correction_add(record=corrected, seconds=-20, reason="agent gap")

    run_b = run_open(instance=beta, started_at=OCT + timedelta(minutes=10), hourly_amount="0")
    MeteredRun.objects.filter(pk=run_b.pk).update(note="In reservation 7")
    run_b.refresh_from_db()
    legacy_records(run_b, until=OCT + timedelta(hours=2, minutes=5), every_s=420)
    MeteredRun.objects.filter(pk=run_b.pk).update(ended_at=OCT + timedelta(hours=2, minutes=5))

    gamma.state = "running"
    gamma.save(update_fields=["state"])
    run_g = run_open(instance=gamma, started_at=datetime(2025, 10, 1, 9, 3, 10, tzinfo=UTC), hourly_amount="1.234567")
    legacy_records(run_g, until=datetime(2025, 10, 1, 12, 37, 10, tzinfo=UTC))
    return {
        "account": account,
        "lines": (september, threshold),
        "correction": correction,
        "corrected": corrected,
        "runs": (run_a, run_b, run_g),
        "gamma": gamma,
    }


def test_compaction_keeps_every_second_line_and_correction_at_the_hourly_grain(legacy):
    # Given the old grain: hundreds of records, many across an hour
    before_prices, before_lines = seconds_by_price(), seconds_by_line()
    before_count = UsageRecord.objects.count()
    frozen = {
        r.pk: (r.period_start, r.period_end, r.seconds, r.corrects_id)
        for r in UsageRecord.objects.filter(pk__in=[legacy["correction"].pk, legacy["corrected"].pk])
    }
    assert before_count > 350

    # When the migration's compaction runs
    result = compact(connection)

    # Then every (instance, price) and every invoice line holds the same seconds as before
    assert seconds_by_price() == before_prices
    assert seconds_by_line() == before_lines
    assert result["replaced"] + UsageRecord.objects.count() == before_count + result["written"]
    # the correction and the record it corrects are the same rows, untouched
    assert {
        r.pk: (r.period_start, r.period_end, r.seconds, r.corrects_id)
        for r in UsageRecord.objects.filter(pk__in=frozen)
    } == frozen

    # and every other usage record lies in one clock hour, one per run, hour, price, reason, line
    line_of = dict(InvoicedUsage.objects.values_list("record_id", "line_id"))
    groups = Counter()
    for r in UsageRecord.objects.filter(kind=UsageKind.USAGE).exclude(pk=legacy["corrected"].pk):
        assert hour_of(r.period_start) == hour_of(r.period_end - timedelta(microseconds=1)), r
        # a merged record's period runs from its first start to its last end, around any record
        # left apart (the corrected minute), so it holds at most its period's seconds
        assert timedelta(seconds=r.seconds) <= r.period_end - r.period_start
        groups[(r.run_id, hour_of(r.period_start), r.hourly_amount, r.reason, line_of.get(r.pk))] += 1
    assert set(groups.values()) == {1}
    assert UsageRecord.objects.count() < 25

    # alpha's Oct 1 00 o'clock hour: the threshold line's part and the unbilled rest stay apart
    run_a = legacy["runs"][0]
    september, threshold = legacy["lines"]
    midnight = UsageRecord.objects.filter(run=run_a, period_start__gte=OCT, period_start__lt=OCT + timedelta(hours=1))
    assert sorted((r.period_start.minute, r.seconds, line_of.get(r.pk)) for r in midnight) == [
        (0, 20 * 60 + 30, threshold.pk),
        (20, 40 * 60 - 30, None),
    ]
    # September's line holds one record per hour plus the corrected one and its correction
    per_line = defaultdict(list)
    for record_id, line_id in line_of.items():
        per_line[line_id].append(record_id)
    assert len(per_line[september.pk]) == 2 + 1  # 22:40:30-23:00 and 23:00-00:00, with the corrected minute
    eleven = UsageRecord.objects.get(pk__in=per_line[september.pk], period_start=OCT - timedelta(hours=1))
    assert (eleven.period_end, eleven.seconds) == (OCT, 3600 - 60)  # all but the corrected minute
    # beta keeps its reason and zero price
    run_b = legacy["runs"][1]
    assert set(UsageRecord.objects.filter(run=run_b).values_list("reason", "hourly_amount")) == {
        ("In reservation 7", Decimal(0))
    }
    assert UsageRecord.objects.filter(run=run_b).count() == 3

    # and the records are immutable again
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        UsageRecord.objects.filter(run=run_b).update(seconds=1)
    # and a second run changes nothing
    assert compact(connection) == {"replaced": 0, "written": 0}


def test_an_open_run_goes_on_metering_after_the_compaction(legacy):
    # Given gamma's per-minute records up to 12:37:10, compacted
    run_g = legacy["runs"][2]
    compact(connection)

    # When the meter passes after 13:00, and the run is stopped at 13:20
    usage_open_runs_meter(now=datetime(2025, 10, 1, 13, 0, 5, tzinfo=UTC))
    usage_run_close(instance=legacy["gamma"], ended_at=datetime(2025, 10, 1, 13, 20, tzinfo=UTC), reason="stopped")

    # Then the seconds run on without a gap: 09:03:10 - 13:20, each record in its hour
    records = UsageRecord.objects.filter(run=run_g).order_by("period_start")
    rows = list(records.values_list("period_start", "period_end"))
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False))
    assert sum(UsageRecord.objects.filter(run=run_g).values_list("seconds", flat=True)) == 4 * 3600 + 16 * 60 + 50
    assert [(s.hour, s.minute, e.hour, e.minute) for s, e in rows] == [
        (9, 3, 10, 0),
        (10, 0, 11, 0),
        (11, 0, 12, 0),
        (12, 0, 12, 37),  # compacted from the old records
        (12, 37, 13, 0),  # the meter's first record after them
        (13, 0, 13, 20),
    ]
