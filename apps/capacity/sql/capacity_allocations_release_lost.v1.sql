CREATE OR REPLACE FUNCTION capacity_allocations_release_lost(p_node uuid, p_now timestamptz)
RETURNS int LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
-- The node is back: release its LOST allocations, as above, in one statement. Returns how many.
-- Two releases never wait on each other's GPU rows in opposite orders: a whole allocation's GPUs
-- are its own, and a node's lost allocations are released inside its state transition, one
-- transition at a time.
DECLARE
    v_released int;
BEGIN
    PERFORM set_config('capacity.nodecapacity_in_statement', 'on', true);
    WITH released AS (
        UPDATE capacity_allocation SET state = 'released', released_at = p_now
        WHERE node_id = p_node AND state = 'lost' RETURNING id
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
    ), counted AS (
        UPDATE capacity_nodecapacity c
           SET free_whole_gpus = c.free_whole_gpus + d.free, gpus_in_use = c.gpus_in_use - d.unheld,
               partly_held_gpus = c.partly_held_gpus + d.partly
          FROM (
            SELECT node_id, gpu_model_id,
                   count(*) FILTER (WHERE healthy AND after = 0 AND NOT mig_enabled) AS free,
                   count(*) FILTER (WHERE healthy AND after = 0) AS unheld,
                   count(*) FILTER (WHERE healthy AND NOT mig_enabled AND after > 0 AND after < 1000)
                     - count(*) FILTER (WHERE healthy AND NOT mig_enabled AND before < 1000) AS partly
            FROM given_back WHERE gpu_model_id IS NOT NULL GROUP BY node_id, gpu_model_id
          ) d
         WHERE c.node_id = d.node_id AND c.gpu_model_id = d.gpu_model_id AND (d.free, d.unheld, d.partly) <> (0, 0, 0)
    )
    SELECT count(*) INTO v_released FROM released;
    PERFORM set_config('capacity.nodecapacity_in_statement', 'off', true);
    RETURN v_released;
END $$;
