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
