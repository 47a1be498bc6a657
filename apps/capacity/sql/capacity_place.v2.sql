CREATE OR REPLACE FUNCTION capacity_place(
    p_region bigint, p_model bigint, p_kind text, p_count int, p_milli int, p_profile text,
    p_best_fit boolean, p_reads int, p_nodes int, p_gpus int,
    p_organization bigint, p_project bigint, p_flavor bigint, p_holder text, p_now timestamptz,
    OUT out_status text, OUT out_allocation bigint, OUT out_node uuid
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
-- Places p_count whole GPUs of one node (p_kind 'whole'), p_milli thousandths of one GPU
-- ('fraction') or one MIG device of profile p_profile ('mig') in the region, best candidate first,
-- and records the allocation. out_status: 'placed' (out_allocation is written, the GPU rows hold
-- it, and the node's placement lock is held, shared, until the transaction ends), 'no_capacity'
-- (a fresh read found no candidate), or 'busy' (p_reads reads in a row lost every race).
-- v2: a node whose last bare-metal tenant's data is not wiped yet (capacity_node.
-- wipe_pending_instance, set in the transaction that released that tenant's allocation) is not
-- a candidate, and a placement recorded on one is undone ('node no longer ready').
DECLARE
    v_room int := 1000 - p_milli;
    v_nodes uuid[];  -- candidate nodes, best first: claim p_count empty GPUs of one of them
    v_ids bigint[];  -- or candidate GPUs (fractions) or MIG devices, best first: claim one
    v_tries int;
    v_wait boolean;
    v_node uuid;
    v_gpu bigint;
    v_device bigint;
    v_gpus bigint[];
BEGIN
    out_status := 'busy';
    FOR v_read IN 1..p_reads LOOP
        -- 1. Candidates, read without locks: each claim below re-checks its rows on their latest
        -- version. Eligible: READY node in the region, healthy GPU of the model. Best-fit reads
        -- walk the summary's index in order and check each node's state with a subquery, one
        -- index probe per candidate: as a join, a generic plan may hash every node of the region.
        v_nodes := NULL;
        v_ids := NULL;
        IF p_kind = 'mig' THEN
            -- Present, unheld devices of the profile; best-fit prefers GPUs, then nodes, already
            -- partly used, keeping untouched MIG GPUs free.
            IF p_best_fit THEN
                v_ids := ARRAY(
                    SELECT d.id
                    FROM capacity_gpu g JOIN capacity_node n ON n.id = g.node_id
                    JOIN capacity_migdevice d ON d.gpu_id = g.id
                    WHERE g.mig_enabled AND g.gpu_model_id = p_model AND g.health = 'ok'
                      AND n.region_id = p_region AND n.state = 'ready' AND n.wipe_pending_instance IS NULL AND d.present AND d.profile = p_profile
                      AND g.allocated_milli + p_milli <= 1000
                      AND NOT EXISTS (SELECT 1 FROM capacity_allocationslice s WHERE s.mig_device_id = d.id AND s.live)
                    ORDER BY g.allocated_milli DESC,
                             (SELECT sum(o.allocated_milli) FROM capacity_gpu o WHERE o.node_id = g.node_id) DESC,
                             n.hostname, g.index, d.uuid
                    LIMIT p_gpus);
            ELSE
                v_ids := ARRAY(
                    SELECT d.id
                    FROM capacity_gpu g JOIN capacity_node n ON n.id = g.node_id
                    JOIN capacity_migdevice d ON d.gpu_id = g.id
                    WHERE g.mig_enabled AND g.gpu_model_id = p_model AND g.health = 'ok'
                      AND n.region_id = p_region AND n.state = 'ready' AND n.wipe_pending_instance IS NULL AND d.present AND d.profile = p_profile
                      AND g.allocated_milli + p_milli <= 1000
                      AND NOT EXISTS (SELECT 1 FROM capacity_allocationslice s WHERE s.mig_device_id = d.id AND s.live)
                    ORDER BY n.hostname, g.index, d.uuid LIMIT p_gpus);
            END IF;
        ELSIF p_kind = 'fraction' AND p_best_fit THEN
            -- The fullest partly held GPU that still fits: fractions are packed together. Partly
            -- held GPUs are found through the nodes the summary says have some.
            v_ids := ARRAY(
                SELECT g.id FROM capacity_nodecapacity c JOIN capacity_gpu g ON g.node_id = c.node_id
                WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.partly_held_gpus > 0
                  AND (SELECT n.state FROM capacity_node n WHERE n.id = c.node_id AND n.region_id = p_region AND n.wipe_pending_instance IS NULL) = 'ready'
                  AND g.gpu_model_id = p_model AND g.health = 'ok' AND NOT g.mig_enabled
                  AND g.allocated_milli > 0 AND g.allocated_milli <= v_room
                ORDER BY g.allocated_milli DESC, g.node_id, g.index LIMIT p_gpus);
        ELSIF p_kind = 'fraction' THEN
            -- First-fit: the first GPUs with room by hostname and index, partly held or empty.
            v_ids := ARRAY(
                SELECT e.id FROM (
                    (SELECT g.id, n.hostname, g.index FROM capacity_nodecapacity c
                     JOIN capacity_node n ON n.id = c.node_id JOIN capacity_gpu g ON g.node_id = c.node_id
                     WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.partly_held_gpus > 0
                       AND n.region_id = p_region AND n.state = 'ready' AND n.wipe_pending_instance IS NULL
                       AND g.gpu_model_id = p_model AND g.health = 'ok' AND NOT g.mig_enabled
                       AND g.allocated_milli > 0 AND g.allocated_milli <= v_room
                     ORDER BY n.hostname, g.index LIMIT p_gpus)
                    UNION ALL
                    (SELECT g.id, f.hostname, g.index FROM (
                         SELECT c.node_id, c.hostname FROM capacity_nodecapacity c
                         JOIN capacity_node n ON n.id = c.node_id
                         WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.free_whole_gpus > 0
                           AND n.region_id = p_region AND n.state = 'ready' AND n.wipe_pending_instance IS NULL
                         ORDER BY c.hostname, c.node_id LIMIT p_gpus) f
                     JOIN capacity_gpu g ON g.node_id = f.node_id
                     WHERE g.gpu_model_id = p_model AND g.health = 'ok' AND NOT g.mig_enabled AND g.allocated_milli = 0)
                ) e ORDER BY e.hostname, e.index, e.id LIMIT p_gpus);
        END IF;
        IF p_kind = 'whole' OR (p_kind = 'fraction' AND p_best_fit AND cardinality(v_ids) = 0) THEN
            -- Whole GPUs, or a fraction that fits no partly held GPU (it opens an empty GPU where
            -- best-fit would put one whole GPU, so that untouched nodes stay whole): nodes with at
            -- least n empty GPUs (a request never spans nodes), from the summary's index.
            IF NOT p_best_fit THEN
                v_nodes := ARRAY(
                    SELECT c.node_id FROM capacity_nodecapacity c JOIN capacity_node n ON n.id = c.node_id
                    WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.free_whole_gpus > 0
                      AND c.free_whole_gpus >= p_count AND n.region_id = p_region AND n.state = 'ready' AND n.wipe_pending_instance IS NULL
                    ORDER BY c.hostname, c.node_id LIMIT p_nodes);
            ELSIF p_count = 1 THEN
                -- Fewest empty GPUs first (untouched nodes last), then the busiest, then by hostname.
                v_nodes := ARRAY(
                    SELECT c.node_id FROM capacity_nodecapacity c
                    WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.free_whole_gpus > 0
                      AND (SELECT n.state FROM capacity_node n WHERE n.id = c.node_id AND n.region_id = p_region AND n.wipe_pending_instance IS NULL) = 'ready'
                    ORDER BY c.free_whole_gpus, c.gpus_in_use DESC, c.hostname, c.node_id LIMIT p_nodes);
            ELSE
                -- The same order, but after the best the others are shuffled among equals: requests
                -- that lost the best to a concurrent one (which read the same ranking) spread out
                -- instead of queueing on the same next node. (One GPU needs no shuffle: concurrent
                -- requests take different GPUs of the best node.)
                v_nodes := ARRAY(
                    SELECT s.node_id FROM (
                        SELECT c.node_id, c.free_whole_gpus, c.gpus_in_use, c.hostname
                        FROM capacity_nodecapacity c
                        WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.free_whole_gpus > 0
                          AND c.free_whole_gpus >= p_count
                          AND (SELECT n.state FROM capacity_node n WHERE n.id = c.node_id AND n.region_id = p_region AND n.wipe_pending_instance IS NULL) = 'ready'
                        ORDER BY c.free_whole_gpus, c.gpus_in_use DESC, c.hostname, c.node_id LIMIT p_nodes
                    ) s
                    ORDER BY row_number() OVER (
                                 ORDER BY s.free_whole_gpus, s.gpus_in_use DESC, s.hostname, s.node_id) > 1,
                             s.free_whole_gpus, s.gpus_in_use DESC, random());
            END IF;
            v_tries := cardinality(v_nodes);
        ELSE
            v_tries := CASE WHEN cardinality(v_ids) > 0 THEN 1 ELSE 0 END;
        END IF;
        IF v_tries = 0 THEN
            out_status := 'no_capacity';
            RETURN;
        END IF;

        -- 2. Each candidate in turn, skipping rows other requests are claiming right now; then the
        -- best once more, waiting for them (it may still fit once they commit). A claimed row
        -- takes its node's placement lock, shared, in the same statement. Each try is a
        -- subtransaction, rolled back unless it places: that undoes a partial claim (fewer than
        -- n GPUs), a claim whose node stopped being READY, and the row locks a locking read keeps
        -- on rows it then found changed (kept, they would deadlock with other requests' tries).
        FOR v_try IN 1..v_tries + 1 LOOP
            v_wait := v_try > v_tries;
            BEGIN
                v_gpus := NULL;
                v_device := NULL;
                IF v_nodes IS NOT NULL THEN
                    v_node := v_nodes[CASE WHEN v_wait THEN 1 ELSE v_try END];
                    -- n empty GPUs of one node: the summary row is updated once below, for all of
                    -- them, rather than once per GPU by the counts trigger (see migration 0002).
                    PERFORM set_config('capacity.nodecapacity_in_statement', 'on', true);
                    IF v_wait THEN
                        WITH chosen AS (
                            SELECT g.id FROM capacity_gpu g
                            WHERE g.node_id = v_node AND g.gpu_model_id = p_model AND g.health = 'ok'
                              AND NOT g.mig_enabled AND g.allocated_milli = 0
                            ORDER BY g.index, g.id LIMIT p_count FOR UPDATE
                        ), claimed AS (
                            UPDATE capacity_gpu g SET allocated_milli = p_milli FROM chosen
                            WHERE g.id = chosen.id AND g.health = 'ok' AND NOT g.mig_enabled AND g.allocated_milli = 0
                            RETURNING g.id, pg_advisory_xact_lock_shared(1852793957, hashtext(g.node_id::text))
                        )
                        SELECT array_agg(claimed.id) INTO v_gpus FROM claimed;
                    ELSE
                        WITH chosen AS (
                            SELECT g.id FROM capacity_gpu g
                            WHERE g.node_id = v_node AND g.gpu_model_id = p_model AND g.health = 'ok'
                              AND NOT g.mig_enabled AND g.allocated_milli = 0
                            ORDER BY g.index, g.id LIMIT p_count FOR UPDATE SKIP LOCKED
                        ), claimed AS (
                            UPDATE capacity_gpu g SET allocated_milli = p_milli FROM chosen
                            WHERE g.id = chosen.id AND g.health = 'ok' AND NOT g.mig_enabled AND g.allocated_milli = 0
                            RETURNING g.id, pg_advisory_xact_lock_shared(1852793957, hashtext(g.node_id::text))
                        )
                        SELECT array_agg(claimed.id) INTO v_gpus FROM claimed;
                    END IF;
                    PERFORM set_config('capacity.nodecapacity_in_statement', 'off', true);
                    IF cardinality(v_gpus) = p_count THEN
                        -- Each was free whole and is now in use; partly held too if a fraction.
                        UPDATE capacity_nodecapacity
                           SET free_whole_gpus = free_whole_gpus - p_count, gpus_in_use = gpus_in_use + p_count,
                               partly_held_gpus = partly_held_gpus + CASE WHEN p_milli < 1000 THEN p_count ELSE 0 END
                         WHERE node_id = v_node AND gpu_model_id = p_model;
                        IF NOT FOUND THEN
                            PERFORM capacity_nodecapacity_add(v_node, p_model, -p_count, p_count,
                                                              CASE WHEN p_milli < 1000 THEN p_count ELSE 0 END, true);
                        END IF;
                    END IF;
                ELSIF p_kind = 'mig' THEN
                    IF v_wait THEN
                        WITH device AS (
                            SELECT d.id, d.gpu_id FROM capacity_migdevice d
                            WHERE d.id = ANY(v_ids) AND d.present
                              AND NOT EXISTS (SELECT 1 FROM capacity_allocationslice s WHERE s.mig_device_id = d.id AND s.live)
                            ORDER BY array_position(v_ids, d.id) LIMIT 1 FOR UPDATE
                        ), claimed AS (
                            UPDATE capacity_gpu g SET allocated_milli = g.allocated_milli + p_milli FROM device
                            WHERE g.id = device.gpu_id AND g.health = 'ok' AND g.mig_enabled AND g.allocated_milli <= v_room
                            RETURNING g.id, g.node_id, device.id AS device_id,
                                      pg_advisory_xact_lock_shared(1852793957, hashtext(g.node_id::text))
                        )
                        SELECT ARRAY[claimed.id], claimed.node_id, claimed.device_id INTO v_gpus, v_node, v_device
                        FROM claimed;
                    ELSE
                        WITH device AS (
                            SELECT d.id, d.gpu_id FROM capacity_migdevice d
                            WHERE d.id = ANY(v_ids) AND d.present
                              AND NOT EXISTS (SELECT 1 FROM capacity_allocationslice s WHERE s.mig_device_id = d.id AND s.live)
                            ORDER BY array_position(v_ids, d.id) LIMIT 1 FOR UPDATE SKIP LOCKED
                        ), claimed AS (
                            UPDATE capacity_gpu g SET allocated_milli = g.allocated_milli + p_milli FROM device
                            WHERE g.id = device.gpu_id AND g.health = 'ok' AND g.mig_enabled AND g.allocated_milli <= v_room
                            RETURNING g.id, g.node_id, device.id AS device_id,
                                      pg_advisory_xact_lock_shared(1852793957, hashtext(g.node_id::text))
                        )
                        SELECT ARRAY[claimed.id], claimed.node_id, claimed.device_id INTO v_gpus, v_node, v_device
                        FROM claimed;
                    END IF;
                    -- "Unheld" was read from that statement's snapshot; with the device row locked,
                    -- this new statement sees any hold committed before the lock was granted
                    -- (every claimer locks the device first).
                    IF EXISTS (SELECT 1 FROM capacity_allocationslice s WHERE s.mig_device_id = v_device AND s.live) THEN
                        v_gpus := NULL;
                    END IF;
                ELSE
                    IF v_wait THEN
                        WITH chosen AS (
                            SELECT g.id FROM capacity_gpu g
                            WHERE g.id = ANY(v_ids) AND g.health = 'ok' AND NOT g.mig_enabled
                              AND g.allocated_milli <= v_room
                            ORDER BY array_position(v_ids, g.id) LIMIT 1 FOR UPDATE
                        ), claimed AS (
                            UPDATE capacity_gpu g SET allocated_milli = g.allocated_milli + p_milli FROM chosen
                            WHERE g.id = chosen.id AND g.health = 'ok' AND NOT g.mig_enabled AND g.allocated_milli <= v_room
                            RETURNING g.id, g.node_id, pg_advisory_xact_lock_shared(1852793957, hashtext(g.node_id::text))
                        )
                        SELECT ARRAY[claimed.id], claimed.node_id INTO v_gpus, v_node FROM claimed;
                    ELSE
                        WITH chosen AS (
                            SELECT g.id FROM capacity_gpu g
                            WHERE g.id = ANY(v_ids) AND g.health = 'ok' AND NOT g.mig_enabled
                              AND g.allocated_milli <= v_room
                            ORDER BY array_position(v_ids, g.id) LIMIT 1 FOR UPDATE SKIP LOCKED
                        ), claimed AS (
                            UPDATE capacity_gpu g SET allocated_milli = g.allocated_milli + p_milli FROM chosen
                            WHERE g.id = chosen.id AND g.health = 'ok' AND NOT g.mig_enabled AND g.allocated_milli <= v_room
                            RETURNING g.id, g.node_id, pg_advisory_xact_lock_shared(1852793957, hashtext(g.node_id::text))
                        )
                        SELECT ARRAY[claimed.id], claimed.node_id INTO v_gpus, v_node FROM claimed;
                    END IF;
                END IF;
                IF coalesce(cardinality(v_gpus), 0) < p_count THEN
                    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'lost race';
                END IF;

                -- 3. Record it, if the node is still READY. The claim took the node's placement
                -- lock (allocations_mark_lost takes it exclusively): this new statement's snapshot
                -- sees a state change committed while that lock was awaited.
                WITH allocation AS (
                    INSERT INTO capacity_allocation
                        (organization_id, project_id, flavor_id, node_id, state, gpu_milli, holder, created_at,
                         released_at)
                    SELECT p_organization, p_project, p_flavor, v_node, 'active', p_milli * p_count, p_holder,
                           p_now, NULL
                    WHERE EXISTS (SELECT 1 FROM capacity_node n WHERE n.id = v_node AND n.state = 'ready' AND n.wipe_pending_instance IS NULL)
                    RETURNING id
                ), slices AS (
                    INSERT INTO capacity_allocationslice (allocation_id, gpu_id, mig_device_id, milli, live)
                    SELECT allocation.id, t.id, v_device, p_milli, true FROM allocation, unnest(v_gpus) AS t(id)
                )
                SELECT allocation.id INTO out_allocation FROM allocation;
                IF out_allocation IS NULL THEN
                    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'node no longer ready';
                END IF;
                out_status := 'placed';
                out_node := v_node;
                RETURN;
            EXCEPTION
                -- Lost to a concurrent request (or to the node's state). Deadlocks are not
                -- expected (locks are taken in one order), but one that picked this try is a lost
                -- race too.
                WHEN raise_exception OR deadlock_detected THEN
                    out_allocation := NULL;
            END;
        END LOOP;
    END LOOP;
END $$;
