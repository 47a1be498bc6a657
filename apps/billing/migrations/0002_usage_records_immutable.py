"""Usage records are facts: PostgreSQL refuses to change or delete one, so no code path (nor an
operator at a SQL prompt by mistake) can rewrite what was billed. Corrections are new rows."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION billing_usage_record_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'usage records are immutable: add a correction record instead'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER billing_usage_record_immutable
    BEFORE UPDATE OR DELETE ON billing_usagerecord
    FOR EACH ROW EXECUTE FUNCTION billing_usage_record_immutable();
"""
BACKWARD = """
DROP TRIGGER IF EXISTS billing_usage_record_immutable ON billing_usagerecord;
DROP FUNCTION IF EXISTS billing_usage_record_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
