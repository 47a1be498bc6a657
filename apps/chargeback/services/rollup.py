"""The roll-up: billing's usage records and reservation charges, and capacity's GPU telemetry,
folded incrementally into UsageHour and UsageDay (Celery beat, tasks.usage_rollup).

Three sources, each with a RollupCursor:
- "usage_records": UsageRecords (usage and corrections) with id > position;
- "reservation_charges": ReservationCharges with id > position, spread over their hours;
- "telemetry": for each hour from `until` that has been over for TELEMETRY_LAG (late reports),
  the used share of the GPUs each running instance held (capacity GpuSample).
Each batch is one call of a server-side function (apps/chargeback/sql/: chargeback_fold_records,
chargeback_fold_charges, chargeback_fold_telemetry; README.md there says what each folds):
set-based, the batch's rows made in one statement and added onto the hour and day rows by
chargeback_rows_add (the one upsert), answering how many source rows went in. This module keeps
the batching, the cursors, the lock and the horizon.

Exactly once. Each batch is one transaction that adds its rows and moves its cursor past them,
so a crash leaves both or neither, and a run repeated finds nothing more to add. Runs never
interleave: each batch holds a transaction-level advisory lock and reads its cursor under it (a
second run skips rather than waits; the first does the work).

No record is skipped for good by its id. Ids come from a sequence when a row is inserted, but a
transaction that took a low id may commit after one with a higher id is visible; moving the
cursor past the higher id would leave the lower one behind forever. So the cursor only moves to
a *committed horizon* (`_committed_horizon`): the highest id visible now, once every transaction
that was writing into the table at that moment has ended. Any transaction holding an id at or
below that one took it inside an INSERT into the table, so it held the table's RowExclusiveLock
then, and still holds it until it ends: it is among the writers seen in pg_locks just after, and
the fold waits for all of them (briefly; a writer still busy after HORIZON_WAIT leaves the
source for the next run, it never guesses). After they end, every id up to the horizon is
committed (and visible to the fold's next statement) or rolled back (never to appear). New
writers are never blocked: this reads pg_locks, it takes no table lock. A time-based margin
(records created more than N seconds ago) was not chosen: created_at is set in Python before
the INSERT, and a transaction slower than the margin would lose its records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.billing.models import MeteredRun, ReservationCharge, UsageRecord
from apps.capacity.selectors.availability import flavor_slice_milli
from apps.catalog.models import Flavor

from ..models import RollupCursor, UsageDay, UsageHour

logger = logging.getLogger(__name__)

RECORDS = "usage_records"
CHARGES = "reservation_charges"
TELEMETRY = "telemetry"

# pg_advisory_xact_lock namespace of "the roll-up is folding" (one lock for all sources).
ROLLUP_LOCK = 7314
# Ids per transaction: bounds a batch's time and memory however far behind the roll-up is.
RECORDS_BATCH = 250_000
CHARGES_BATCH = 20_000
# An hour's telemetry is folded once it has been over this long (agents report every few seconds;
# a report later than this is not counted).
TELEMETRY_LAG = timedelta(minutes=5)
TELEMETRY_HOURS_BATCH = 24
# How long a run waits for the writers seen at the horizon to end before leaving that source to
# the next run. Metering's transactions take milliseconds.
HORIZON_WAIT_S = 2.0

# The folds (apps/chargeback/sql/, installed by migration 0002), one call per batch.
RECORDS_FOLD = "SELECT chargeback_fold_records(%(lo)s, %(hi)s, %(flavor_ids)s::bigint[], %(flavor_milli)s::bigint[])"
CHARGES_FOLD = "SELECT chargeback_fold_charges(%(lo)s, %(hi)s)"
TELEMETRY_FOLD = "SELECT chargeback_fold_telemetry(%(start)s, %(end)s)"


@dataclass(frozen=True)
class RollupResult:
    records: int = 0  # usage records folded
    charges: int = 0  # reservation charges folded
    samples: int = 0  # telemetry folded: GPU samples (one GPU, one minute) × the slices holding that GPU
    telemetry_until: datetime | None = None  # hours before this have their telemetry
    busy: bool = False  # another run held the lock; this one did nothing


class _Busy(Exception):
    pass


def _committed_horizon(table: str) -> int | None:
    """The highest id of `table` below which every id is committed or rolled back for good; None
    when a writer seen at the horizon is still busy after HORIZON_WAIT_S. Read without a
    transaction of its own (module docstring)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")  # noqa: S608 (a model's table name)
        (top,) = cursor.fetchone()
        writers_sql = (
            "SELECT COALESCE(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks "
            "WHERE locktype = 'relation' AND relation = %s::regclass AND mode = 'RowExclusiveLock' "
            "AND pid IS DISTINCT FROM pg_backend_pid()"  # a prepared transaction has no pid: counted
        )
        cursor.execute(writers_sql, [table])
        (writers,) = cursor.fetchone()
        deadline = time.monotonic() + HORIZON_WAIT_S
        while writers:
            if time.monotonic() > deadline:
                logger.warning("roll-up: %d writer(s) of %s still busy; left for the next run", len(writers), table)
                return None
            time.sleep(0.01)
            cursor.execute(writers_sql + " AND virtualtransaction = ANY(%s)", [table, writers])
            (writers,) = cursor.fetchone()
    return top


def _lock_and_cursor(source: str) -> RollupCursor:
    """Inside the batch's transaction: the roll-up lock (or _Busy), then `source`'s cursor."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", [ROLLUP_LOCK])
        (got,) = cursor.fetchone()
    if not got:
        raise _Busy
    cursor_row, _ = RollupCursor.objects.get_or_create(source=source)
    return cursor_row


def _flavor_shares() -> dict[str, list[int]]:
    """Every flavor's GPUs in thousandths (capacity's rule: what its allocations hold)."""
    ids, milli = [], []
    for flavor in Flavor.objects.only("id", "gpu_model_id", "gpu_count", "slice_kind", "gpu_fraction", "mig_profile"):
        ids.append(flavor.pk)
        milli.append((flavor_slice_milli(flavor) or 0) * flavor.gpu_count)
    return {"flavor_ids": ids, "flavor_milli": milli}


def _fold_ids(*, source: str, table: str, sql: str, batch: int, params: dict | None = None) -> int:
    """Fold `source` batch by batch up to its committed horizon; how many rows were folded."""
    horizon = _committed_horizon(table)
    if horizon is None:
        return 0
    folded = 0
    while True:
        with transaction.atomic():
            cursor_row = _lock_and_cursor(source)
            lo = cursor_row.position
            hi = min(horizon, lo + batch)
            if hi <= lo:
                return folded
            with connection.cursor() as cursor:
                cursor.execute(sql, {"lo": lo, "hi": hi, **(params or {})})
                folded += cursor.fetchone()[0]
            cursor_row.position = hi
            cursor_row.save(update_fields=["position", "updated_at"])


def _telemetry_start(*, end: datetime) -> datetime:
    """Where telemetry starts when its cursor is new: the first run's hour, but no earlier than
    the telemetry kept (CAPACITY_TELEMETRY_RETENTION_DAYS)."""
    kept = end - timedelta(days=settings.CAPACITY_TELEMETRY_RETENTION_DAYS)
    first = MeteredRun.objects.order_by("started_at").values_list("started_at", flat=True).first()
    start = max(first, kept) if first is not None else end
    return min(start.replace(minute=0, second=0, microsecond=0), end)


def _fold_telemetry(*, now: datetime) -> tuple[int, datetime | None]:
    end = (now - TELEMETRY_LAG).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    samples = 0
    while True:
        with transaction.atomic():
            cursor_row = _lock_and_cursor(TELEMETRY)
            start = cursor_row.until or _telemetry_start(end=end)
            if start >= end:
                if cursor_row.until is None:
                    cursor_row.until = start
                    cursor_row.save(update_fields=["until", "updated_at"])
                return samples, cursor_row.until
            upto = min(end, start + timedelta(hours=TELEMETRY_HOURS_BATCH))
            with connection.cursor() as cursor:
                cursor.execute(TELEMETRY_FOLD, {"start": start, "end": upto})
                samples += cursor.fetchone()[0]
            cursor_row.until = upto
            cursor_row.save(update_fields=["until", "updated_at"])


def usage_rollup_run(*, now: datetime | None = None) -> RollupResult:
    """Fold what is new since the last run into UsageHour and UsageDay. Idempotent; safe to run
    concurrently (a run that finds another folding returns busy=True and changes nothing)."""
    now = now or timezone.now()
    try:
        records = _fold_ids(
            source=RECORDS, table=UsageRecord._meta.db_table, sql=RECORDS_FOLD, batch=RECORDS_BATCH,
            params=_flavor_shares(),
        )
        charges = _fold_ids(
            source=CHARGES, table=ReservationCharge._meta.db_table, sql=CHARGES_FOLD, batch=CHARGES_BATCH
        )
        samples, until = _fold_telemetry(now=now)
    except _Busy:
        return RollupResult(busy=True)
    return RollupResult(records=records, charges=charges, samples=samples, telemetry_until=until)


@transaction.atomic
def usage_rollup_reset(*, telemetry: bool = False) -> None:
    """Empty the roll-ups and move the cursors back, for a rebuild from scratch (the backfill
    command then runs usage_rollup_run). Telemetry is kept only CAPACITY_TELEMETRY_RETENTION_DAYS,
    so by default the used GPU-seconds already folded are kept (rows are zeroed, not deleted,
    and refilled from the records); `telemetry=True` drops them too and refolds what is kept."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [ROLLUP_LOCK])
    if telemetry:
        UsageHour.objects.all().delete()
        UsageDay.objects.all().delete()
        RollupCursor.objects.all().delete()
        return
    UsageHour.objects.update(seconds=0, allocated_milli_seconds=0)
    UsageDay.objects.update(seconds=0, allocated_milli_seconds=0)
    RollupCursor.objects.filter(source__in=[RECORDS, CHARGES]).delete()
