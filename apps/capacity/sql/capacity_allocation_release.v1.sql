CREATE OR REPLACE FUNCTION capacity_allocation_release(p_allocation bigint, p_now timestamptz)
RETURNS SETOF capacity_allocation LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
-- Compare-and-set one live allocation to RELEASED, end its live slices, give their thousandths
-- back to its GPUs and count those that became free in the summary, in one statement; returns the
-- allocation as it is afterwards (no row: there is none). Releasing it again changes nothing.
BEGIN
    -- The statement keeps the summary itself, one row per node and model (see migration 0002).
    PERFORM set_config('capacity.nodecapacity_in_statement', 'on', true);
    WITH released AS (
        UPDATE capacity_allocation SET state = 'released', released_at = p_now
        WHERE id = p_allocation AND state IN ('active', 'lost') RETURNING id
    ), freed AS (
        UPDATE capacity_allocationslice s SET live = false FROM released
        WHERE s.allocation_id = released.id AND s.live
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
    RETURN QUERY SELECT * FROM capacity_allocation WHERE id = p_allocation;
END $$;
