"""The desired-state version of each node's workloads as a column of its own (NodeWorkloads),
bumped at commit by a deferred trigger from the changes a transaction recorded
(NodeWorkloadsChange). Nodes that already have instances start at version 1, so an agent that
long-polls with 0 gets their list at once."""

import django.db.models.deletion
from django.db import migrations, models

BUMP = """
CREATE FUNCTION instances_node_workloads_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Runs at commit (deferred), so the node's version row is the transaction's last lock.
    INSERT INTO instances_nodeworkloads (node_id, version) VALUES (NEW.node_id, 1)
    ON CONFLICT (node_id) DO UPDATE SET version = instances_nodeworkloads.version + 1;
    DELETE FROM instances_nodeworkloadschange WHERE id = NEW.id;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER instances_node_workloads_bump
    AFTER INSERT ON instances_nodeworkloadschange
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION instances_node_workloads_bump();
INSERT INTO instances_nodeworkloads (node_id, version)
    SELECT DISTINCT node_id, 1 FROM instances_instance WHERE node_id IS NOT NULL;
"""

UNBUMP = """
DROP TRIGGER IF EXISTS instances_node_workloads_bump ON instances_nodeworkloadschange;
DROP FUNCTION IF EXISTS instances_node_workloads_bump();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("capacity", "0001_initial"),
        ("instances", "0002_runtime_socket"),
    ]

    operations = [
        migrations.CreateModel(
            name="NodeWorkloads",
            fields=[
                (
                    "node",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="capacity.node",
                    ),
                ),
                ("version", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="NodeWorkloadsChange",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("node_id", models.UUIDField()),
            ],
        ),
        migrations.RunSQL(BUMP, UNBUMP),
    ]
