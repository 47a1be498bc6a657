# The allocator's placement (candidate read, claim and record) as one server-side function, and
# the release of allocations as others (apps/capacity/services/allocations.py calls them and
# explains the design).
#
# Why functions: a placement used to be ~9 round trips, each statement parsed and planned anew,
# and planning the candidate read cost more than running it. PL/pgSQL keeps each statement's plan
# for the session; plan_cache_mode = force_generic_plan makes those generic at once (the custom
# plans PostgreSQL would otherwise try first are the same plans, planned on every call). A read
# that loses every race reads again inside the function, without another round trip.
#
# The functions' text is in apps/capacity/sql/ (capacity_place.v1.sql and the release functions'
# v1 files): to change the ranking, add the function's next version there and a migration that
# applies it (sql_replace). 1852793957 is allocations.NODE_PLACEMENT_LOCK (0x6E6F6465); 1000 is
# models.WHOLE_GPU_MILLI.

from django.db import migrations

from apps.capacity.sql import sql_join, sql_read

CLAIM_SQL = sql_join(sql_read("capacity_place", 1, create=True))

RELEASE_SQL = sql_join(
    sql_read("capacity_allocation_release", 1, create=True),
    sql_read("capacity_allocations_release_lost", 1, create=True),
)

CLAIM_REVERSE_SQL = """
DROP FUNCTION capacity_place(bigint, bigint, text, int, int, text, boolean, int, int, int, bigint, bigint, bigint, text,
                             timestamptz);
"""

RELEASE_REVERSE_SQL = """
DROP FUNCTION capacity_allocations_release_lost(uuid, timestamptz);
DROP FUNCTION capacity_allocation_release(bigint, timestamptz);
"""


class Migration(migrations.Migration):

    dependencies = [
        ('capacity', '0002_node_capacity'),
    ]

    operations = [
        migrations.RunSQL(CLAIM_SQL, CLAIM_REVERSE_SQL),
        migrations.RunSQL(RELEASE_SQL, RELEASE_REVERSE_SQL),
    ]
