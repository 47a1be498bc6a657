# The roll-up's three folds as server-side functions, their text in apps/chargeback/sql/ (the
# house rule: SQL that matters lives in versioned .sql files, not Python strings). rollup.py
# used to send the same statements as text; it now calls the functions, one call per batch as
# before, in the batch's transaction. To change a fold, add its next version there and a
# migration that applies it (sql_replace; apps/chargeback/sql/README.md).
#
# Each fold makes its batch's rows (an array of chargeback_usage) and hands them to
# chargeback_rows_add, the one upsert into the hour and day tables. chargeback_usage is a type,
# not a function, so it is made here rather than in a file: CREATE TYPE has no OR REPLACE, and a
# change of it is a change of every function's signature that names it (a DROP and CREATE in a
# migration of its own). Edited in place before release (no database outside this repository had
# run this migration): the upsert was written out in each of the three folds.

from django.db import migrations

from apps.chargeback.sql import sql_join, sql_read

USAGE_TYPE_SQL = """
CREATE TYPE chargeback_usage AS (
    hour timestamptz, organization_id bigint, project_id bigint, owner_id bigint,
    instance_id uuid, reservation_id uuid, offering_id bigint, flavor_id bigint, region_id bigint,
    hourly_amount numeric(12, 6), currency varchar(3),
    seconds bigint, allocated_milli_seconds bigint, used_milli_seconds bigint
);
"""

FOLDS_SQL = sql_join(
    USAGE_TYPE_SQL,
    sql_read("chargeback_rows_add", 1, create=True),
    sql_read("chargeback_fold_records", 1, create=True),
    sql_read("chargeback_fold_charges", 1, create=True),
    sql_read("chargeback_fold_telemetry", 1, create=True),
)

FOLDS_REVERSE_SQL = """
DROP FUNCTION chargeback_fold_telemetry(timestamptz, timestamptz);
DROP FUNCTION chargeback_fold_charges(bigint, bigint);
DROP FUNCTION chargeback_fold_records(bigint, bigint, bigint[], bigint[]);
DROP FUNCTION chargeback_rows_add(chargeback_usage[], text);
DROP TYPE chargeback_usage;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("chargeback", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(FOLDS_SQL, FOLDS_REVERSE_SQL),
    ]
