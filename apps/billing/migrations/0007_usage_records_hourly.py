"""Usage records at the hourly grain: the meter now writes one record per run and UTC clock hour
(services/metering.py); this compacts the records written before, one per meter pass (a record a
minute or less, ~43,200 a month per instance), to that grain, keeping every second.

Per run, hour, unit price, reason and invoice line (or none), the plain usage records become one
(seconds summed, period = first start .. last end); a record across an hour boundary is split at
it first (each second counts in the hour it starts, as the meter cuts). Left exactly as they are:
corrections, the records corrections point at (`corrects` stays true), and a record alone in its
hour already. Records on different invoice lines, or billed and not, never merge, so every line
keeps its records' seconds; a merged or split record's InvoicedUsage tie moves to the new rows.
Set-based SQL over temporary tables: a few statements whatever the number of records.

Merged and split records are new rows (new ids, after every existing one); the rows they replace
are deleted. Nothing references usage records but corrections (untouched) and invoice ties
(re-pointed here).
"""

from django.db import migrations, transaction

# The records that may be rewritten, cut into their hour pieces. `line_key` 0 = on no invoice line.
# A piece's seconds: the record's seconds k (0-based) whose start period_start + k lies in the
# piece, the last piece taking what is left, so the pieces always sum to the record.
PIECES = """
CREATE TEMPORARY TABLE hourly_pieces AS
SELECT p.*,
       (CASE WHEN p.piece_end = p.period_end THEN p.seconds
             ELSE LEAST(p.seconds, CEIL(EXTRACT(EPOCH FROM p.piece_end - p.period_start))::bigint) END)
     - (CASE WHEN p.piece_start = p.period_start THEN 0
             ELSE LEAST(p.seconds, CEIL(EXTRACT(EPOCH FROM p.piece_start - p.period_start))::bigint) END)
       AS piece_seconds
FROM (
    SELECT r.id AS record_id, r.run_id, r.instance_id, r.organization_id, r.project_id, r.reason,
           r.hourly_amount, r.currency, r.created_at, r.period_start, r.period_end, r.seconds,
           COALESCE(u.line_id, 0) AS line_key, h.hour,
           GREATEST(r.period_start, h.hour) AS piece_start,
           LEAST(r.period_end, h.hour + INTERVAL '1 hour') AS piece_end,
           COUNT(*) OVER (PARTITION BY r.id) AS record_pieces
    FROM billing_usagerecord r
    LEFT JOIN billing_invoicedusage u ON u.record_id = r.id
    CROSS JOIN LATERAL generate_series(
        date_trunc('hour', r.period_start, 'UTC'),
        GREATEST(r.period_end - INTERVAL '1 microsecond', r.period_start),
        INTERVAL '1 hour'
    ) AS h(hour)
    WHERE r.kind = 'usage'
      AND NOT EXISTS (SELECT 1 FROM billing_usagerecord c WHERE c.corrects_id = r.id)
) p
"""
# One row per new record: groups of more than one piece, or holding a piece of a split record.
GROUPS = """
CREATE TEMPORARY TABLE hourly_groups AS
SELECT nextval(pg_get_serial_sequence('billing_usagerecord', 'id')) AS new_id, g.*
FROM (
    SELECT run_id, hour, hourly_amount, reason, line_key, instance_id, organization_id, project_id, currency,
           MIN(piece_start) AS period_start, MAX(piece_end) AS period_end, SUM(piece_seconds) AS seconds,
           MAX(created_at) AS created_at
    FROM hourly_pieces
    GROUP BY run_id, hour, hourly_amount, reason, line_key, instance_id, organization_id, project_id, currency
    HAVING COUNT(*) > 1 OR MAX(record_pieces) > 1
) g
"""
REPLACED = """
CREATE TEMPORARY TABLE hourly_replaced AS
SELECT DISTINCT p.record_id
FROM hourly_pieces p
JOIN hourly_groups g ON (g.run_id, g.hour, g.hourly_amount, g.reason, g.line_key, g.instance_id,
                         g.organization_id, g.project_id, g.currency)
                      = (p.run_id, p.hour, p.hourly_amount, p.reason, p.line_key, p.instance_id,
                         p.organization_id, p.project_id, p.currency)
"""
INSERT_RECORDS = """
INSERT INTO billing_usagerecord (id, run_id, instance_id, organization_id, project_id, kind, corrects_id, reason,
                                 period_start, period_end, seconds, hourly_amount, currency, created_at)
SELECT new_id, run_id, instance_id, organization_id, project_id, 'usage', NULL, reason,
       period_start, period_end, seconds, hourly_amount, currency, created_at
FROM hourly_groups ORDER BY new_id
"""
UNTIE = "DELETE FROM billing_invoicedusage u USING hourly_replaced x WHERE u.record_id = x.record_id"
RETIE = """
INSERT INTO billing_invoicedusage (record_id, line_id)
SELECT new_id, line_key FROM hourly_groups WHERE line_key <> 0
"""
DELETE_RECORDS = "DELETE FROM billing_usagerecord r USING hourly_replaced x WHERE r.id = x.record_id"
TRIGGER = "billing_usage_record_immutable"  # migration 0002


def usage_records_compact(connection) -> dict[str, int]:
    """Compact the usage records in the database of `connection`, in one transaction (the
    migration's, or its own). Returns how many records were replaced and how many replace them."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        # No record may be written, billed or unbilled while the pieces are read and rewritten: the
        # meter and the invoice builder wait (a few seconds) instead of racing the compaction.
        cursor.execute("LOCK TABLE billing_usagerecord, billing_invoicedusage IN SHARE ROW EXCLUSIVE MODE")
        for sql in (PIECES, GROUPS, REPLACED):
            cursor.execute(sql)
        cursor.execute("SELECT (SELECT COUNT(*) FROM hourly_replaced), (SELECT COUNT(*) FROM hourly_groups)")
        replaced, written = cursor.fetchone()
        if replaced:
            cursor.execute(INSERT_RECORDS)
            cursor.execute(UNTIE)
            cursor.execute(RETIE)
            # Usage records are immutable (0002's trigger refuses UPDATE and DELETE): this is the
            # one sanctioned rewrite, replacing records by others holding exactly the same seconds,
            # price and invoice lines. The trigger is off only around this DELETE, in this
            # transaction, under the lock above (and ALTER TABLE's own), so no other session can
            # change or delete a record meanwhile. Deferred foreign-key checks run first: a table
            # with pending trigger events cannot be altered.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE billing_usagerecord DISABLE TRIGGER {TRIGGER}")
            cursor.execute(DELETE_RECORDS)
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE billing_usagerecord ENABLE TRIGGER {TRIGGER}")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        cursor.execute("DROP TABLE hourly_replaced, hourly_groups, hourly_pieces")
    return {"replaced": replaced, "written": written}


def forward(apps, schema_editor):
    usage_records_compact(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_metered_run_note")]
    # Irreversible in form only: the compacted records bill exactly what the old ones did.
    operations = [migrations.RunPython(forward, migrations.RunPython.noop, elidable=True)]
