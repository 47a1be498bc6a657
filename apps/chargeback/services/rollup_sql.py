"""The roll-up's statements (services.rollup runs them): each folds one batch of a source into
UsageHour and UsageDay in ONE statement, set-based, adding onto existing rows (ON CONFLICT ...
DO UPDATE SET seconds = seconds + EXCLUDED.seconds, ...), so a row is never read into Python.

Every statement is `WITH src AS (<rows of the batch, one per hour and subject and price>) ...`;
`_upsert` writes the hour rows and, from the same rows, the day rows, and answers how many
source rows (records, charges, GPU-minutes) went in. The unique constraints are partial (an
instance's rows, a reservation's rows), so each ON CONFLICT names the matching predicate.

Times: hours and days are UTC whatever the session's time zone (date_trunc(..., 'UTC'),
AT TIME ZONE 'UTC').
"""

from __future__ import annotations

from apps.billing.models import MeteredRun, ReservationCharge, UsageRecord
from apps.capacity.models import Allocation, AllocationSlice, GpuSample, Reservation
from apps.catalog.models import Flavor
from apps.instances.models import Instance

from ..models import UsageDay, UsageHour

# The columns every `src` row carries, in this order, besides `n` (source rows it sums).
DIMENSIONS = (
    "organization_id, project_id, owner_id, instance_id, reservation_id, offering_id, flavor_id, region_id, "
    "hourly_amount, currency"
)
_MEASURES = ("seconds", "allocated_milli_seconds", "used_milli_seconds")

T = {
    "record": UsageRecord._meta.db_table,
    "charge": ReservationCharge._meta.db_table,
    "run": MeteredRun._meta.db_table,
    "instance": Instance._meta.db_table,
    "reservation": Reservation._meta.db_table,
    "flavor": Flavor._meta.db_table,
    "allocation": Allocation._meta.db_table,
    "slice": AllocationSlice._meta.db_table,
    "sample": GpuSample._meta.db_table,
    "hour": UsageHour._meta.db_table,
    "day": UsageDay._meta.db_table,
}


def _upsert(src: str, *, subject: str) -> str:
    """`src` (a SELECT of hour, DIMENSIONS, seconds, allocated_milli_seconds, used_milli_seconds,
    n; at most one row per hour × subject × price) added onto the hour rows and the day rows of
    `subject` ("instance" or "reservation"). Returns one row: the source rows folded."""
    add = ", ".join(f"{m} = {{table}}.{m} + EXCLUDED.{m}" for m in _MEASURES)
    columns = f"{DIMENSIONS}, {', '.join(_MEASURES)}"
    sums = ", ".join(f"SUM({m})" for m in _MEASURES)
    return f"""
        WITH src AS ({src}),
        hours AS (
            INSERT INTO {T["hour"]} (hour, {columns})
            SELECT hour, {columns} FROM src
            ON CONFLICT (hour, {subject}_id, hourly_amount) WHERE {subject}_id IS NOT NULL
            DO UPDATE SET {add.format(table=T["hour"])}
            RETURNING 1
        ),
        days AS (
            INSERT INTO {T["day"]} (day, {columns})
            SELECT (hour AT TIME ZONE 'UTC')::date, {DIMENSIONS}, {sums} FROM src
            GROUP BY (hour AT TIME ZONE 'UTC')::date, {DIMENSIONS}
            ON CONFLICT (day, {subject}_id, hourly_amount) WHERE {subject}_id IS NOT NULL
            DO UPDATE SET {add.format(table=T["day"])}
            RETURNING 1
        )
        SELECT COALESCE(SUM(n), 0)::bigint FROM src
    """


# (a) Usage records with lo < id <= hi. A record counts in the hour of its period_start, whole:
# metering cuts records at hour boundaries now, and an older record that spans one (records
# used to be cut every few seconds, so by a few seconds at most) stays with its period_start's
# hour, as the invoice puts a record in the month of its period_start. Splitting it would move
# seconds across a month boundary in the rare case and break the reconciliation to the cent.
# Share: the instance's flavor in thousandths of a GPU (%(flavor_ids)s / %(flavor_milli)s, from
# capacity's flavor_slice_milli × gpu_count, which is what its allocation's gpu_milli is made of).
# Except inside a reservation: a run on GPUs a reservation holds (metering prices it 0 with the
# note "In reservation <id>", usage_run_open) holds no GPUs of its own, since the reservation's row
# already counts all of its GPUs for the whole window; its seconds stay (they are billed, at 0) and
# its used GPU-seconds land on the instance's row (TELEMETRY_FOLD), but it allocates nothing. Told
# by the run's note, not Instance.reservation, which is cleared when the instance leaves it; a
# correction carries its own reason, so the note is read from the run, only for 0-priced records.
RECORDS_FOLD = _upsert(
    f"""
    SELECT g.hour, i.organization_id, i.project_id, i.owner_id, i.id AS instance_id,
           NULL::uuid AS reservation_id, i.offering_id, i.flavor_id, i.region_id, g.hourly_amount, g.currency,
           g.seconds, g.held_seconds * COALESCE(m.milli, 0) AS allocated_milli_seconds,
           0::bigint AS used_milli_seconds, g.n
    FROM (
        SELECT date_trunc('hour', r.period_start, 'UTC') AS hour, r.instance_id, r.hourly_amount, r.currency,
               SUM(r.seconds)::bigint AS seconds,
               SUM(CASE WHEN r.hourly_amount = 0 AND EXISTS (
                       SELECT 1 FROM {T["run"]} run WHERE run.id = r.run_id AND run.note LIKE 'In reservation %%'
                   ) THEN 0 ELSE r.seconds END)::bigint AS held_seconds,
               COUNT(*) AS n
        FROM {T["record"]} r
        WHERE r.id > %(lo)s AND r.id <= %(hi)s
        GROUP BY 1, r.instance_id, r.hourly_amount, r.currency
    ) g
    JOIN {T["instance"]} i ON i.id = g.instance_id
    LEFT JOIN unnest(%(flavor_ids)s::bigint[], %(flavor_milli)s::bigint[]) AS m(flavor_id, milli)
        ON m.flavor_id = i.flavor_id
    """,
    subject="instance",
)

# (b) Reservation charges with lo < id <= hi, spread over the hours of their period: hour h gets
# the whole seconds from the period's start to h's end less those to h's start (capped at the
# charge's seconds, the last hour gets the rest), so the hours add up to the charge exactly.
# Share: the reservation's GPUs, or its whole nodes × the flavor's (node's) GPUs, × 1000.
CHARGES_FOLD = _upsert(
    f"""
    SELECT g.hour, res.organization_id, res.project_id, res.created_by_id AS owner_id, NULL::uuid AS instance_id,
           res.id AS reservation_id, f.offering_id, res.flavor_id, res.region_id, g.hourly_amount, g.currency,
           g.seconds, g.seconds * COALESCE(res.gpus, res.whole_nodes * f.gpu_count) * 1000 AS allocated_milli_seconds,
           0::bigint AS used_milli_seconds, g.n
    FROM (
        SELECT h.hour, c.reservation_id, c.hourly_amount, c.currency,
               COUNT(*) FILTER (WHERE h.hour <= c.period_start) AS n,  -- each charge once: its first hour
               SUM(
                   CASE WHEN h.hour + interval '1 hour' >= c.period_end THEN c.seconds
                        ELSE LEAST(c.seconds, floor(extract(epoch FROM h.hour + interval '1 hour' - c.period_start)))
                   END
                   - LEAST(c.seconds, floor(extract(epoch FROM GREATEST(h.hour, c.period_start) - c.period_start)))
               )::bigint AS seconds
        FROM {T["charge"]} c
        CROSS JOIN LATERAL generate_series(
            date_trunc('hour', c.period_start, 'UTC'), c.period_end - interval '1 microsecond',
            interval '1 hour', 'UTC'
        ) AS h(hour)
        WHERE c.id > %(lo)s AND c.id <= %(hi)s
        GROUP BY h.hour, c.reservation_id, c.hourly_amount, c.currency
    ) g
    JOIN {T["reservation"]} res ON res.id = g.reservation_id
    JOIN {T["flavor"]} f ON f.id = res.flavor_id
    """,
    subject="reservation",
)

# (c) Telemetry of the hours in [%(start)s, %(end)s) (whole hours): for each instance's run (its
# price) and each allocation the instance held ("instance:<id>"), the held GPUs' per-minute
# utilisation × the slice's share × the seconds of that minute inside the run, the allocation's
# life and the window. Lands on the instance's row of that hour at the run's price (made, with
# no seconds yet, if its record is not folded yet: the record then adds onto it).
TELEMETRY_FOLD = _upsert(
    f"""
    SELECT g.hour, i.organization_id, i.project_id, i.owner_id, i.id AS instance_id,
           NULL::uuid AS reservation_id, i.offering_id, i.flavor_id, i.region_id, g.hourly_amount, g.currency,
           0::bigint AS seconds, 0::bigint AS allocated_milli_seconds,
           round(g.used / 100)::bigint AS used_milli_seconds, g.n
    FROM (
        SELECT date_trunc('hour', s.minute, 'UTC') AS hour, w.instance_id, w.hourly_amount, w.currency,
               SUM(s.utilization_pct::numeric * w.milli * extract(
                   epoch FROM LEAST(s.minute + interval '1 minute', w.until) - GREATEST(s.minute, w.since)
               )) AS used,
               COUNT(*) AS n
        FROM (
            SELECT r.instance_id, r.hourly_amount, r.currency, sl.gpu_id, sl.milli,
                   GREATEST(r.started_at, a.created_at, %(start)s) AS since,
                   LEAST(COALESCE(r.ended_at, 'infinity'), COALESCE(a.released_at, 'infinity'), %(end)s) AS until
            FROM {T["run"]} r
            JOIN {T["allocation"]} a ON a.holder = 'instance:' || r.instance_id::text
            JOIN {T["slice"]} sl ON sl.allocation_id = a.id
            WHERE r.started_at < %(end)s AND (r.ended_at IS NULL OR r.ended_at > %(start)s)
              AND a.created_at < %(end)s AND (a.released_at IS NULL OR a.released_at > %(start)s)
              AND a.holder LIKE 'instance:%%'
        ) w
        JOIN {T["sample"]} s ON s.gpu_id = w.gpu_id
            AND s.minute > w.since - interval '1 minute' AND s.minute < w.until
        WHERE w.since < w.until AND s.utilization_pct IS NOT NULL
        GROUP BY 1, w.instance_id, w.hourly_amount, w.currency
    ) g
    JOIN {T["instance"]} i ON i.id = g.instance_id
    """,
    subject="instance",
)
