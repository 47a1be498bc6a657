# Bare metal (issue 12): a node is placed nothing while the data of its last bare-metal tenant is
# not wiped (Node.wipe_pending_instance); a whole-node placement takes nodes of the flavor's size
# that did not fail their last health check. capacity_place v2 (same signature) and
# capacity_place_gang v2 (a new argument, p_node_gpus: the old signature is dropped, not overloaded).

from django.db import migrations, models

from apps.capacity.sql import sql_join, sql_read, sql_replace

GANG_V1_ARGS = "bigint, bigint, int, int, boolean, int, bigint, bigint, bigint, text, uuid, timestamptz"
GANG_V2_ARGS = f"{GANG_V1_ARGS}, int"


class Migration(migrations.Migration):
    dependencies = [
        ("capacity", "0010_reservations"),
    ]

    operations = [
        migrations.AddField(
            model_name="node",
            name="wipe_pending_instance",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="node",
            name="wipe_pending_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        sql_replace("capacity_place", 2, 1),
        migrations.RunSQL(
            sql_join(
                f"DROP FUNCTION capacity_place_gang({GANG_V1_ARGS});", sql_read("capacity_place_gang", 2, create=True)
            ),
            sql_join(
                f"DROP FUNCTION capacity_place_gang({GANG_V2_ARGS});", sql_read("capacity_place_gang", 1, create=True)
            ),
        ),
    ]
