# capacity_allocations_give_back() (migration 0004) updated an allocation's GPU rows in whatever
# order its join produced. A placement takes a node's GPU rows in (index, id) order and, being a
# locking read under READ COMMITTED, keeps its lock on a row it then finds taken; so a placement
# holding GPU 3 (found taken) and waiting for GPU 4 deadlocked with the release of the
# allocation on GPUs 3 and 4 that had updated GPU 4 first and waited for GPU 3 (seen in
# tests/capacity/test_capacity_summary.py's concurrent placements and releases). The release now
# locks its GPUs first, in the allocator's order (node, index, id; see portal/db.py's lock order),
# then gives back as before.

from django.db import migrations

from apps.capacity.sql import sql_join, sql_read


class Migration(migrations.Migration):
    dependencies = [
        ("capacity", "0004_allocation_give_back"),
    ]

    operations = [
        # Reversed, it re-applies all of migration 0004's script (its give-back and, unchanged, its
        # two release functions), as this migration always has.
        migrations.RunSQL(
            sql_join(sql_read("capacity_allocations_give_back", 2)),
            sql_join(
                sql_read("capacity_allocations_give_back", 1),
                sql_read("capacity_allocation_release", 2),
                sql_read("capacity_allocations_release_lost", 2),
            ),
        ),
    ]
