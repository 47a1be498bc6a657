# The roll-up's three folds as server-side functions, their text in apps/chargeback/sql/ (the
# house rule: SQL that matters lives in versioned .sql files, not Python strings). rollup.py
# used to send the same statements as text; it now calls the functions, one call per batch as
# before, in the batch's transaction. To change a fold, add its next version there and a
# migration that applies it (sql_replace; apps/chargeback/sql/README.md).

from django.db import migrations

from apps.chargeback.sql import sql_join, sql_read

FOLDS_SQL = sql_join(
    sql_read("chargeback_fold_records", 1, create=True),
    sql_read("chargeback_fold_charges", 1, create=True),
    sql_read("chargeback_fold_telemetry", 1, create=True),
)

FOLDS_REVERSE_SQL = """
DROP FUNCTION chargeback_fold_telemetry(timestamptz, timestamptz);
DROP FUNCTION chargeback_fold_charges(bigint, bigint);
DROP FUNCTION chargeback_fold_records(bigint, bigint, bigint[], bigint[]);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("chargeback", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(FOLDS_SQL, FOLDS_REVERSE_SQL),
    ]
