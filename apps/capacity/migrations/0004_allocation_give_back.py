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

from importlib import import_module

from django.db import migrations

GIVE_BACK_SQL = r"""
CREATE FUNCTION capacity_allocations_give_back(p_allocations bigint[])
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
-- p_allocations were just set RELEASED by the caller, in this transaction: end their live slices,
-- give their thousandths back to the GPUs and count those that became free in the summary, in one
-- statement. The statement keeps the summary itself, one row per node and model (see migration
-- 0002); the SET clause confines the setting below to this function.
BEGIN
    PERFORM set_config('capacity.nodecapacity_in_statement', 'on', true);
    WITH freed AS (
        UPDATE capacity_allocationslice s SET live = false
        WHERE s.allocation_id = ANY(p_allocations) AND s.live
        RETURNING s.gpu_id, s.milli
    ), per_gpu AS (
        SELECT gpu_id, sum(milli) AS milli FROM freed GROUP BY gpu_id
    ), given_back AS (
        UPDATE capacity_gpu g SET allocated_milli = g.allocated_milli - per_gpu.milli
        FROM per_gpu WHERE g.id = per_gpu.gpu_id
        RETURNING g.node_id, g.gpu_model_id, g.health = 'ok' AS healthy, g.mig_enabled,
                  g.allocated_milli AS after, g.allocated_milli + per_gpu.milli AS before
    )
    UPDATE capacity_nodecapacity c
       SET free_whole_gpus = c.free_whole_gpus + d.free, gpus_in_use = c.gpus_in_use - d.unheld,
           partly_held_gpus = c.partly_held_gpus + d.partly
      FROM (
        -- Per node and model, from each GPU given back (held before, so in use before): newly
        -- free whole, no longer held at all, and the change in partly held ones.
        SELECT node_id, gpu_model_id,
               count(*) FILTER (WHERE healthy AND after = 0 AND NOT mig_enabled) AS free,
               count(*) FILTER (WHERE healthy AND after = 0) AS unheld,
               count(*) FILTER (WHERE healthy AND NOT mig_enabled AND after > 0 AND after < 1000)
                 - count(*) FILTER (WHERE healthy AND NOT mig_enabled AND before < 1000) AS partly
        FROM given_back WHERE gpu_model_id IS NOT NULL GROUP BY node_id, gpu_model_id
      ) d
     WHERE c.node_id = d.node_id AND c.gpu_model_id = d.gpu_model_id AND (d.free, d.unheld, d.partly) <> (0, 0, 0);
    PERFORM set_config('capacity.nodecapacity_in_statement', 'off', true);
END $$;

CREATE OR REPLACE FUNCTION capacity_allocation_release(p_allocation bigint, p_now timestamptz)
RETURNS SETOF capacity_allocation LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
-- Compare-and-set one live allocation to RELEASED and give its capacity back; returns the
-- allocation as it is afterwards (no row: there is none). Releasing it again changes nothing.
DECLARE
    v_released bigint[];
BEGIN
    WITH released AS (
        UPDATE capacity_allocation SET state = 'released', released_at = p_now
        WHERE id = p_allocation AND state IN ('active', 'lost') RETURNING id
    )
    SELECT array_agg(id) INTO v_released FROM released;
    IF v_released IS NOT NULL THEN
        PERFORM capacity_allocations_give_back(v_released);
    END IF;
    RETURN QUERY SELECT * FROM capacity_allocation WHERE id = p_allocation;
END $$;

CREATE OR REPLACE FUNCTION capacity_allocations_release_lost(p_node uuid, p_now timestamptz)
RETURNS int LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
-- The node is back: release its LOST allocations and give their capacity back. Returns how many.
-- Two releases never wait on each other's GPU rows in opposite orders: a whole allocation's GPUs
-- are its own, and a node's lost allocations are released inside its state transition, one
-- transition at a time.
DECLARE
    v_released bigint[];
BEGIN
    WITH released AS (
        UPDATE capacity_allocation SET state = 'released', released_at = p_now
        WHERE node_id = p_node AND state = 'lost' RETURNING id
    )
    SELECT array_agg(id) INTO v_released FROM released;
    IF v_released IS NOT NULL THEN
        PERFORM capacity_allocations_give_back(v_released);
    END IF;
    RETURN coalesce(cardinality(v_released), 0);
END $$;
"""


def _previous_release_sql() -> str:
    """Migration 0003's definitions of both release functions, as CREATE OR REPLACE: read from that
    migration rather than copied here, so the reverse restores exactly what it created."""
    claim = import_module("apps.capacity.migrations.0003_allocator_claim")
    return claim.RELEASE_SQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")


GIVE_BACK_REVERSE_SQL = (
    _previous_release_sql()
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
