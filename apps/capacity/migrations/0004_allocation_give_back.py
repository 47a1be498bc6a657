# The two release functions of migration 0003 (one allocation; a node's lost allocations) each
# spelled out the same chain: end the live slices, give their thousandths back to the GPUs, and
# count the GPUs that became free in NodeCapacity. That chain now lives once, in
# capacity_allocations_give_back(); each release function only picks its allocations, sets them
# RELEASED and hands their ids over, so a change to how capacity is given back is made in one place.
#
# Two statements instead of one: the compare-and-set on the allocations, then the give-back. That
# is still exact under READ COMMITTED: the first statement keeps the allocation rows locked until
# commit, every other release must win the same compare-and-set first (and then finds them
# RELEASED), and nothing else writes the slices of an allocation once it exists; the give-back's
# own claims on GPU rows re-read their latest version, as before.

from django.db import migrations

from apps.capacity.sql import sql_join, sql_read

GIVE_BACK_SQL = sql_join(
    sql_read("capacity_allocations_give_back", 1, create=True),
    sql_read("capacity_allocation_release", 2),
    sql_read("capacity_allocations_release_lost", 2),
)

# Migration 0003's definitions of both release functions, so the reverse restores exactly what it
# created.
GIVE_BACK_REVERSE_SQL = (
    sql_join(sql_read("capacity_allocation_release", 1), sql_read("capacity_allocations_release_lost", 1))
    + """
DROP FUNCTION capacity_allocations_give_back(bigint[]);
"""
)


class Migration(migrations.Migration):
    dependencies = [
        ("capacity", "0003_allocator_claim"),
    ]

    operations = [
        migrations.RunSQL(GIVE_BACK_SQL, GIVE_BACK_REVERSE_SQL),
    ]
