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
