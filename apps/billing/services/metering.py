"""Metering: an instance's agent-confirmed running interval becomes a MeteredRun, cut into
immutable per-second UsageRecords at UTC hour boundaries: the meter task (beat, each minute)
writes each clock hour of an open run once it is over, and the run's end writes the rest. So a
record never spans an hour (nor a month, which starts on an hour) and a month of running is ~720
records, one per hour, instead of one per pass; the seconds inside them stay exact. Provisioning
time and failed launches never open a run, so they cost nothing.

What a page or a budget shows now adds the seconds not yet written (`run_unmetered_seconds`,
`usage_cost_since`): up to an hour (plus the time until the next pass) per open run.

Locks (the order is in portal/db.py): a run is closed under its instance's row lock, which the
lifecycle took first; the metering pass takes runs and their instances together, SKIP LOCKED, so
it never waits for a stop and a stop never waits for it for long.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.models import PriceUnit
from apps.catalog.selectors import price_current
from apps.instances.hooks import InstanceTransition
from apps.instances.models import Instance, InstanceState
from portal.db import atomic_retry

from ..models import InstancePrice, MeteredRun, RunEndReason, UsageKind, UsageRecord
from ..money import usage_cost_exact

S = InstanceState
_END_REASONS = {S.STOPPING: RunEndReason.STOPPED, S.FAILED: RunEndReason.FAILED, S.LOST: RunEndReason.LOST}


def instance_price_snapshot(*, instance: Instance) -> InstancePrice:
    """Capture the flavor's current hourly price for `instance` (at launch, and again at each start).
    Refuses an unpriced flavor: nothing may run that we could not bill."""
    currency = settings.BILLING["CURRENCY"]
    price = price_current(flavor=instance.flavor, region=instance.region, unit=PriceUnit.HOUR, currency=currency)
    if price is None:
        raise ValidationError(
            {"flavor": f"{instance.flavor} has no hourly price in {currency}; it cannot be launched."}
        )
    snapshot, _ = InstancePrice.objects.update_or_create(
        instance=instance,
        defaults={
            "price": price,
            "hourly_amount": price.amount,
            "currency": price.currency,
            "captured_at": timezone.now(),
        },
    )
    return snapshot


def usage_follow_transition(*, instance: Instance, transition: InstanceTransition) -> None:
    """Capture the price when the instance is asked for (a launch, a start); open a run when the
    agent confirms it runs; close it when it stops running. Subscribed in the instance
    lifecycle's transaction (apps.billing.apps), so the run opens and closes with the state
    change, under the instance's row lock (the run comes after it in portal/db.py's order)."""
    to_state, at = transition.to_state, transition.at
    if to_state == S.REQUESTED:
        # Refuses an unpriced flavor by raising, which rolls the launch or start back.
        instance_price_snapshot(instance=instance)
    elif to_state == S.RUNNING:
        usage_run_open(instance=instance, at=at)
    elif transition.from_state == S.RUNNING and to_state in _END_REASONS:
        ended_at = at
        if to_state == S.LOST and instance.node_id and instance.node.last_heartbeat_at:
            # The node went silent at its last heartbeat; the time until it was declared down is ours.
            # usage_run_close never lets it end before the run started.
            ended_at = min(at, instance.node.last_heartbeat_at)
        usage_run_close(instance=instance, ended_at=ended_at, reason=_END_REASONS[to_state])


def _whole_second_up(moment: datetime) -> datetime:
    """Runs start on a whole second (the customer's favour, under a second), so every record cut
    ends on a whole second too and a month boundary always falls between two records."""
    if moment.microsecond == 0:
        return moment
    return moment.replace(microsecond=0) + timedelta(seconds=1)


@transaction.atomic
def usage_run_open(*, instance: Instance, at: datetime) -> MeteredRun:
    existing = MeteredRun.objects.filter(instance=instance, ended_at__isnull=True).first()
    if existing is not None:
        return existing
    snapshot = InstancePrice.objects.filter(instance=instance).first() or instance_price_snapshot(instance=instance)
    runtime = getattr(instance, "runtime", None)
    confirmed = runtime.started_at if runtime is not None and runtime.started_at else at
    # The agent's clock says when Jupyter answered; never before this start was asked for, never later than now.
    started_at = _whole_second_up(min(max(confirmed, snapshot.captured_at), at))
    hourly_amount, note = snapshot.hourly_amount, ""
    if instance.reservation_id:
        # On GPUs its reservation holds: the reservation's charge pays for the whole window
        # (services.reservations), so this run is not billed a second time per second.
        hourly_amount, note = Decimal(0), f"In reservation {instance.reservation_id}"
    return MeteredRun.objects.create(
        instance=instance,
        organization_id=instance.organization_id,
        project_id=instance.project_id,
        flavor_id=instance.flavor_id,
        hourly_amount=hourly_amount,
        currency=snapshot.currency,
        started_at=started_at,
        note=note,
    )


@transaction.atomic
def usage_run_close(*, instance: Instance, ended_at: datetime, reason: str) -> MeteredRun | None:
    """Close the open run of `instance`. The caller holds the instance's row lock (the lifecycle
    does), so this comes after it in the lock order; a metering pass holding the run is waited
    for, and never waits for us."""
    run = MeteredRun.objects.select_for_update(no_key=True).filter(instance=instance, ended_at__isnull=True).first()
    if run is None:
        return None
    ended_at = max(ended_at, run.started_at)
    _records_write(run=run, planned=_records_plan(run=run, total=_seconds_until(run, ended_at)))
    MeteredRun.objects.filter(pk=run.pk).update(ended_at=ended_at, end_reason=reason)
    run.refresh_from_db()
    return run


HOUR = timedelta(hours=1)


def _month_start_after(moment: datetime) -> datetime:
    """The first instant of the month after `moment`'s, in the current time zone (as invoices and
    budgets count months, selectors.usage.month_bounds)."""
    first = timezone.localtime(moment).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def _boundary_after(moment: datetime) -> datetime:
    """The first cut strictly after `moment`: the next UTC hour, or the next month when the time
    zone's month starts off the UTC hour (it never does in UTC; kept so a record stays in one
    invoice period whatever TIME_ZONE says)."""
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + HOUR
    return min(hour, _month_start_after(moment))


def _boundary_at_or_before(moment: datetime) -> datetime:
    """The last cut at or before `moment`: where the hours that are over end."""
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    month = timezone.localtime(moment).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max(hour, month)


def _second_at(run: MeteredRun, moment: datetime) -> int:
    """Index of the first whole second of `run` that starts at or after `moment`: a cut there puts
    every second in the hour it starts in."""
    return math.ceil((moment - run.started_at).total_seconds())


def _seconds_until(run: MeteredRun, until: datetime) -> int:
    """The whole seconds of `run` that are over at `until`."""
    return math.floor((until - run.started_at).total_seconds())


def _records_plan(*, run: MeteredRun, total: int) -> tuple[list[UsageRecord], int]:
    """The records for the whole seconds of `run` from what is metered up to `total`, cut at every
    hour boundary, and the metered seconds after them. Each record lies in one clock hour, so it
    belongs to exactly one invoice period (the month of its period_start) and one hour of the
    chargeback roll-up."""
    records = []
    done = run.metered_seconds
    while done < total:
        start = run.started_at + timedelta(seconds=done)
        upto = min(total, _second_at(run, _boundary_after(start)))
        records.append(usage_record_plan(run=run, done=done, upto=upto))
        done = upto
    return records, done


def usage_record_plan(*, run: MeteredRun, done: int, upto: int) -> UsageRecord:
    """The usage record (not saved) of `run`'s seconds from `done` to `upto` (counted from its
    start), at its price and with its note as the reason: what every meter pass writes, whatever
    its cuts (tests of migration 0007 build the old per-pass records with it)."""
    return UsageRecord(
        run_id=run.pk,
        instance_id=run.instance_id,
        organization_id=run.organization_id,
        project_id=run.project_id,
        kind=UsageKind.USAGE,
        period_start=run.started_at + timedelta(seconds=done),
        period_end=run.started_at + timedelta(seconds=upto),
        seconds=upto - done,
        hourly_amount=run.hourly_amount,
        currency=run.currency,
        reason=run.note,
    )


def _records_plan_finished(*, run: MeteredRun, now: datetime) -> tuple[list[UsageRecord], int]:
    """What a meter pass at `now` writes of an open run: only its hours that are over (the first
    from its start to the next boundary, then whole hours); the hour running now waits."""
    hours_over = _second_at(run, _boundary_at_or_before(now))
    return _records_plan(run=run, total=min(_seconds_until(run, now), hours_over))


def _records_write(*, run: MeteredRun, planned: tuple[list[UsageRecord], int]) -> list[UsageRecord]:
    """Write `planned` records of `run` and move its metered seconds. The caller holds the run's
    row lock."""
    records, done = planned
    if records:
        UsageRecord.objects.bulk_create(records)
        MeteredRun.objects.filter(pk=run.pk).update(metered_seconds=done)
        run.metered_seconds = done
    return records


def _runs_lock(*, run_ids: list[int]) -> list[MeteredRun]:
    """Lock the open runs among `run_ids` and, KEY SHARE, their instances, skipping any row
    someone else holds (a stop closing that run right now: the next pass takes it).

    Both in one statement because a run comes after its instance in the lock order, yet the pass
    starts from runs: a usage record's insert takes KEY SHARE on its instance, and waiting for
    that while holding the run closed a cycle with a stop (instance, then run). Skipping instead
    of waiting, the pass can never be part of a cycle, even with a writer that locks the instance
    plain FOR UPDATE."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r.id FROM {MeteredRun._meta.db_table} r JOIN {Instance._meta.db_table} i ON i.id = r.instance_id "
            "WHERE r.id = ANY(%s) AND r.ended_at IS NULL ORDER BY r.id "
            "FOR NO KEY UPDATE OF r SKIP LOCKED FOR KEY SHARE OF i SKIP LOCKED",
            [run_ids],
        )
        locked = [row[0] for row in cursor.fetchall()]
    return list(MeteredRun.objects.filter(pk__in=locked).order_by("pk"))


@atomic_retry
def usage_run_meter(*, run_id: int, now: datetime | None = None) -> list[UsageRecord]:
    """Write the finished hours of one open run up to now. Idempotent: metered seconds only move
    forward."""
    runs = _runs_lock(run_ids=[run_id])
    if not runs:
        return []
    return _records_write(run=runs[0], planned=_records_plan_finished(run=runs[0], now=now or timezone.now()))



def usage_open_runs_cut(*, organization_id: int, now: datetime) -> int:
    """Write every open run of one organization up to `now`, the running hour's seconds
    included (still cut at hour boundaries, so the hourly grain holds: one more record in that
    hour). A threshold invoice calls it first, so a young account is billed to the second and not
    only its finished hours. Runs a stop is closing right now are skipped (their close writes
    them). The caller's transaction holds; returns how many records were written."""
    run_ids = list(
        MeteredRun.objects.filter(organization_id=organization_id, ended_at__isnull=True).values_list("pk", flat=True)
    )
    written = 0
    for run in _runs_lock(run_ids=run_ids) if run_ids else []:
        written += len(_records_write(run=run, planned=_records_plan(run=run, total=_seconds_until(run, now))))
    return written

METER_BATCH = 500


def usage_open_runs_meter(*, now: datetime | None = None) -> int:
    """Write the finished hours of every open run up to `now`; returns how many records were
    written (none for a run until its first hour boundary passes). Runs are metered
    in batches, each one transaction: lock the batch (skipping runs a stop is closing right now;
    the next pass takes them), one INSERT of all its records, one UPDATE of all its counters.
    Per run, a transaction, a lock, an insert and an update cost ~10x more round trips
    (bench/metering)."""
    now = now or timezone.now()
    written = 0
    with connection.cursor() as cursor:
        # Only runs with an hour over that is not written yet: between two hour boundaries (59
        # passes in 60 at the beat's minute) this is the one query a pass makes.
        cursor.execute(
            f"SELECT id FROM {MeteredRun._meta.db_table} WHERE ended_at IS NULL "
            "AND started_at + metered_seconds * INTERVAL '1 second' < %s ORDER BY id",
            [_boundary_at_or_before(now)],
        )
        open_ids = [row[0] for row in cursor.fetchall()]
    for i in range(0, len(open_ids), METER_BATCH):
        written += _meter_batch(run_ids=open_ids[i : i + METER_BATCH], now=now)
    return written


@atomic_retry
def _meter_batch(*, run_ids: list[int], now: datetime) -> int:
    records, advanced = [], []
    for run in _runs_lock(run_ids=run_ids):
        planned, done = _records_plan_finished(run=run, now=now)
        if planned:
            records.extend(planned)
            advanced.append((run.pk, done))
    if not records:
        return 0
    UsageRecord.objects.bulk_create(records, batch_size=METER_BATCH * 2)
    with connection.cursor() as cursor:
        # Only forward: a pass with an older `now` than the last one never takes seconds back.
        cursor.execute(
            "UPDATE billing_meteredrun AS r SET metered_seconds = v.done FROM unnest(%s::bigint[], %s::bigint[]) "
            "AS v(id, done) WHERE r.id = v.id AND r.metered_seconds < v.done",
            [[pk for pk, _ in advanced], [done for _, done in advanced]],
        )
    return len(records)


@transaction.atomic
def usage_correction_add(*, record: UsageRecord, seconds: int, reason: str) -> UsageRecord:
    """Correct a record by adding another (negative `seconds` take time off). The original stays."""
    if not reason.strip():
        raise ValidationError({"reason": "Say why the usage is corrected."})
    already = sum(record.corrections.values_list("seconds", flat=True))
    if record.seconds + already + seconds < 0:
        raise ValidationError({"seconds": "A correction cannot take off more time than was recorded."})
    return UsageRecord.objects.create(
        run_id=record.run_id,
        instance_id=record.instance_id,
        organization_id=record.organization_id,
        project_id=record.project_id,
        kind=UsageKind.CORRECTION,
        corrects=record,
        reason=reason[:500],
        period_start=record.period_start,
        period_end=record.period_end,
        seconds=seconds,
        hourly_amount=record.hourly_amount,
        currency=record.currency,
    )


def run_unmetered_seconds(
    *, run: MeteredRun, now: datetime, start: datetime | None = None, end: datetime | None = None
) -> int:
    """Whole seconds of `run` up to `now` (or its end) not yet written as records, those in
    [start, end) when given: exactly what the records will hold for that period once written
    (each second counts where it starts, as a record cut at hour boundaries does), so a period
    starting on an hour (a day, a month in UTC) gets the same figure before and after the pass."""
    first = run.metered_seconds
    last = _seconds_until(run, run.ended_at or now)
    if start is not None:
        first = max(first, _second_at(run, start))
    if end is not None:
        last = min(last, _second_at(run, end))
    return max(last - first, 0)


def usage_cost_since(
    *, run: MeteredRun, now: datetime, start: datetime | None = None, end: datetime | None = None
) -> Decimal:
    """Unrounded cost of a run's seconds not yet cut into records (for live running cost), those
    in [start, end) when given (see run_unmetered_seconds)."""
    seconds = run_unmetered_seconds(run=run, now=now, start=start, end=end)
    return usage_cost_exact(seconds=seconds, hourly_amount=run.hourly_amount)
