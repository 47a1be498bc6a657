# Gang placement (issues 12 and 16): a request for more whole GPUs than one node has free, or for
# whole nodes, is held as one allocation per member node, all carrying one gang id, placed all or
# nothing by capacity_place_gang() (apps/capacity/sql/capacity_place_gang.v1.sql).

from django.db import migrations, models

from apps.capacity.sql import sql_join, sql_read


class Migration(migrations.Migration):
    dependencies = [
        ("capacity", "0007_node_address_ssh_ports"),
    ]

    operations = [
        migrations.AddField(
            model_name="allocation",
            name="gang_id",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="allocation",
            index=models.Index(
                condition=models.Q(("gang_id__isnull", False)), fields=["gang_id"], name="allocation_gang_idx"
            ),
        ),
        migrations.RunSQL(
            sql_join(sql_read("capacity_place_gang", 1, create=True)),
            "DROP FUNCTION capacity_place_gang(bigint, bigint, int, int, boolean, int, bigint, bigint, bigint, "
            "text, uuid, timestamptz);",
        ),
    ]
