CREATE OR REPLACE FUNCTION capacity_place_gang(
    p_region bigint, p_model bigint, p_gpus int, p_whole_nodes int, p_best_fit boolean, p_reads int,
    p_organization bigint, p_project bigint, p_flavor bigint, p_holder text, p_gang uuid, p_now timestamptz,
    p_node_gpus int,
    OUT out_status text, OUT out_allocations bigint[], OUT out_nodes uuid[]
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
-- Gang placement: p_gpus whole GPUs of model p_model in the region, over as many nodes as needed
-- (p_whole_nodes = 0), or p_whole_nodes whole nodes (p_gpus = 0: every GPU of each node healthy,
-- of the model, not MIG and free, and the node READY). All or nothing: one allocation per member
-- node, all carrying p_gang, written in one go, or none. out_status: 'placed' (out_allocations and
-- out_nodes, in node order; the nodes' placement locks are held, shared, until the transaction
-- ends), 'no_capacity' (a fresh read found not enough), or 'busy' (p_reads reads lost their races).
--
-- v2 (bare metal, issue 12): p_node_gpus > 0 takes only whole nodes of exactly that many GPUs
-- (a flavor of 8 GPUs is never given a 4-GPU node); a whole node must also not have failed its
-- last stored health check (capacity_node.health_passed). No node waiting for the wipe of its
-- last bare-metal tenant's data (capacity_node.wipe_pending_instance) is placed anything.
--
-- Policy (p_best_fit), for p_gpus:
--   1. Fewest nodes. Nodes ranked by free whole GPUs, most first, are taken until they hold
--      p_gpus: the shortest such prefix is the least number of nodes that can hold the gang.
--   2. Least fragmentation. Every member but the last takes all the free GPUs of its node, so a
--      free node is used up whole, never split. The last member takes only the rest r, and it
--      is moved to the node that fits r most tightly (fewest free whole GPUs >= r, then the busiest,
--      the same order as capacity_place's best fit): a partly used node is filled up before an
--      untouched one is opened, and untouched nodes stay whole for the next whole-node request.
--   Ties (equally free nodes) are broken by hostname on the first read and at random on later
--   ones, so that gangs that lost a race to each other spread over equal nodes instead of
--   queueing on the same ones. Whole nodes: every candidate is equal by this measure; hostname
--   first, then random, likewise.
-- First fit (not p_best_fit, the baseline of bench/allocator_gang.py): nodes by hostname, each
-- member taking what its node has free until p_gpus are held.
--
-- Claims and locks follow portal/db.py's order: GPU rows first, for all members, in (node, index,
-- id) order (members are sorted by node id), then the nodes' placement locks, then the summary
-- rows, then the allocation rows are inserted. Each try is a subtransaction: a member that cannot
-- claim all its GPUs (a concurrent request took one, a GPU went unhealthy) or a node that left
-- READY rolls back every member's claim, so no partial gang is ever left. A try first skips rows
-- being claimed by others; a plan that lost that way is tried once more waiting for them.
-- 1852793957 is allocations.NODE_PLACEMENT_LOCK; 1000 is models.WHOLE_GPU_MILLI.
DECLARE
    v_nodes uuid[];   -- the plan: member nodes ...
    v_counts int[];   -- ... and GPUs each member takes
    v_k int;
    v_rest int;
    v_last uuid;
    v_gpus bigint[];
    v_all_gpus bigint[];
    v_all_nodes uuid[];
    v_node uuid;
    v_wait boolean;
BEGIN
    out_status := 'busy';
    IF (coalesce(p_gpus, 0) > 0) = (coalesce(p_whole_nodes, 0) > 0) THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'capacity_place_gang: give p_gpus or p_whole_nodes';
    END IF;
    FOR v_read IN 1..p_reads LOOP
        -- 1. The plan, read without locks; the claims below re-check every row.
        v_nodes := NULL;
        v_counts := NULL;
        IF p_whole_nodes > 0 THEN
            SELECT array_agg(s.node_id ORDER BY s.o), array_agg(s.free ORDER BY s.o) INTO v_nodes, v_counts
            FROM (
                SELECT c.node_id, c.free_whole_gpus AS free,
                       row_number() OVER (ORDER BY CASE WHEN v_read > 1 THEN random() END, c.hostname, c.node_id) AS o
                FROM capacity_nodecapacity c
                WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.free_whole_gpus > 0
                  AND (coalesce(p_node_gpus, 0) = 0 OR c.free_whole_gpus = p_node_gpus)
                  AND c.gpus_in_use = 0 AND c.partly_held_gpus = 0
                  AND (SELECT n.state FROM capacity_node n WHERE n.id = c.node_id AND n.region_id = p_region
                         AND n.wipe_pending_instance IS NULL AND n.health_passed IS NOT FALSE) = 'ready'
                  -- Every GPU of the node: none unhealthy, MIG, held or of another model.
                  AND NOT EXISTS (SELECT 1 FROM capacity_gpu g WHERE g.node_id = c.node_id
                                    AND (g.health <> 'ok' OR g.mig_enabled OR g.allocated_milli > 0
                                         OR g.gpu_model_id IS DISTINCT FROM p_model))
                ORDER BY CASE WHEN v_read > 1 THEN random() END, c.hostname, c.node_id
                LIMIT p_whole_nodes
            ) s;
            IF coalesce(cardinality(v_nodes), 0) < p_whole_nodes THEN
                out_status := 'no_capacity';
                RETURN;
            END IF;
        ELSE
            -- The shortest prefix of the ranking that holds p_gpus (every node, if none does).
            SELECT array_agg(r.node_id ORDER BY r.o), array_agg(r.free ORDER BY r.o), max(r.cum)
              INTO v_nodes, v_counts, v_rest
            FROM (
                SELECT s.node_id, s.free, s.o, sum(s.free) OVER (ORDER BY s.o ROWS UNBOUNDED PRECEDING) AS cum
                FROM (
                    SELECT c.node_id, c.free_whole_gpus AS free,
                           row_number() OVER (
                               ORDER BY CASE WHEN p_best_fit THEN -c.free_whole_gpus END,
                                        CASE WHEN p_best_fit THEN -c.gpus_in_use END,
                                        CASE WHEN p_best_fit AND v_read > 1 THEN random() END,
                                        c.hostname, c.node_id) AS o
                    FROM capacity_nodecapacity c
                    WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.free_whole_gpus > 0
                      AND (SELECT n.state FROM capacity_node n WHERE n.id = c.node_id AND n.region_id = p_region AND n.wipe_pending_instance IS NULL) = 'ready'
                ) s
            ) r
            WHERE r.cum - r.free < p_gpus;
            IF coalesce(v_rest, 0) < p_gpus THEN  -- v_rest: GPUs the whole prefix has free
                out_status := 'no_capacity';
                RETURN;
            END IF;
            v_k := cardinality(v_nodes);
            v_rest := p_gpus - coalesce((SELECT sum(x) FROM unnest(v_counts[1:v_k - 1]) AS x), 0);
            v_counts[v_k] := v_rest;
            IF p_best_fit THEN
                -- The last member, on the tightest node that fits the rest (the k-th of the
                -- ranking always does, so this finds one unless it just changed).
                SELECT c.node_id INTO v_last
                FROM capacity_nodecapacity c
                WHERE c.region_id = p_region AND c.gpu_model_id = p_model AND c.free_whole_gpus >= v_rest
                  AND c.node_id <> ALL(v_nodes[1:v_k - 1])
                  AND (SELECT n.state FROM capacity_node n WHERE n.id = c.node_id AND n.region_id = p_region AND n.wipe_pending_instance IS NULL) = 'ready'
                ORDER BY c.free_whole_gpus, c.gpus_in_use DESC, CASE WHEN v_read > 1 THEN random() END,
                         c.hostname, c.node_id
                LIMIT 1;
                IF v_last IS NOT NULL THEN
                    v_nodes[v_k] := v_last;
                END IF;
            END IF;
        END IF;
        -- Members in node order: the order their GPU rows are locked in (portal/db.py).
        SELECT array_agg(m.n ORDER BY m.n), array_agg(m.c ORDER BY m.n) INTO v_nodes, v_counts
        FROM unnest(v_nodes, v_counts) AS m(n, c);

        -- 2. Claim every member's GPUs, skipping rows being claimed, then once more waiting.
        FOR v_try IN 1..2 LOOP
            v_wait := v_try = 2;
            BEGIN
                v_all_gpus := '{}';
                v_all_nodes := '{}';
                -- The summary rows are updated below, once per member, after the placement locks.
                PERFORM set_config('capacity.nodecapacity_in_statement', 'on', true);
                FOR v_i IN 1..cardinality(v_nodes) LOOP
                    v_gpus := NULL;
                    IF v_wait THEN
                        WITH chosen AS (
                            SELECT g.id FROM capacity_gpu g
                            WHERE g.node_id = v_nodes[v_i] AND g.gpu_model_id = p_model AND g.health = 'ok'
                              AND NOT g.mig_enabled AND g.allocated_milli = 0
                            ORDER BY g.index, g.id LIMIT v_counts[v_i] FOR UPDATE
                        ), claimed AS (
                            UPDATE capacity_gpu g SET allocated_milli = 1000 FROM chosen
                            WHERE g.id = chosen.id AND g.health = 'ok' AND NOT g.mig_enabled AND g.allocated_milli = 0
                            RETURNING g.id
                        )
                        SELECT array_agg(claimed.id) INTO v_gpus FROM claimed;
                    ELSE
                        WITH chosen AS (
                            SELECT g.id FROM capacity_gpu g
                            WHERE g.node_id = v_nodes[v_i] AND g.gpu_model_id = p_model AND g.health = 'ok'
                              AND NOT g.mig_enabled AND g.allocated_milli = 0
                            ORDER BY g.index, g.id LIMIT v_counts[v_i] FOR UPDATE SKIP LOCKED
                        ), claimed AS (
                            UPDATE capacity_gpu g SET allocated_milli = 1000 FROM chosen
                            WHERE g.id = chosen.id AND g.health = 'ok' AND NOT g.mig_enabled AND g.allocated_milli = 0
                            RETURNING g.id
                        )
                        SELECT array_agg(claimed.id) INTO v_gpus FROM claimed;
                    END IF;
                    IF coalesce(cardinality(v_gpus), 0) < v_counts[v_i] THEN
                        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'lost race';
                    END IF;
                    v_all_gpus := v_all_gpus || v_gpus;
                    v_all_nodes := v_all_nodes || array_fill(v_nodes[v_i], ARRAY[v_counts[v_i]]);
                END LOOP;
                PERFORM set_config('capacity.nodecapacity_in_statement', 'off', true);
                -- A whole node is every GPU of it: one that changed since the read (went
                -- unhealthy, was added) was not claimed, and the node is no longer whole.
                IF p_whole_nodes > 0 AND EXISTS (
                    SELECT 1 FROM capacity_gpu g WHERE g.node_id = ANY(v_nodes) AND g.id <> ALL(v_all_gpus)
                ) THEN
                    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'node no longer whole';
                END IF;

                -- 3. The placement locks, in node order, then the summary rows.
                FOREACH v_node IN ARRAY v_nodes LOOP
                    PERFORM pg_advisory_xact_lock_shared(1852793957, hashtext(v_node::text));
                END LOOP;
                FOR v_i IN 1..cardinality(v_nodes) LOOP
                    UPDATE capacity_nodecapacity
                       SET free_whole_gpus = free_whole_gpus - v_counts[v_i], gpus_in_use = gpus_in_use + v_counts[v_i]
                     WHERE node_id = v_nodes[v_i] AND gpu_model_id = p_model;
                    IF NOT FOUND THEN
                        PERFORM capacity_nodecapacity_add(v_nodes[v_i], p_model, -v_counts[v_i], v_counts[v_i], 0, true);
                    END IF;
                END LOOP;

                -- 4. Record every member, if every node is still READY: this new statement's
                -- snapshot sees a state change committed while a placement lock was awaited.
                IF EXISTS (SELECT 1 FROM capacity_node n WHERE n.id = ANY(v_nodes)
                                   AND (n.state <> 'ready' OR n.wipe_pending_instance IS NOT NULL)) THEN
                    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'node no longer ready';
                END IF;
                WITH allocation AS (
                    INSERT INTO capacity_allocation
                        (organization_id, project_id, flavor_id, node_id, gang_id, state, gpu_milli, holder,
                         created_at, released_at)
                    SELECT p_organization, p_project, p_flavor, m.n, p_gang, 'active', 1000 * m.c, p_holder, p_now, NULL
                    FROM unnest(v_nodes, v_counts) AS m(n, c)
                    RETURNING id, node_id
                ), slices AS (
                    INSERT INTO capacity_allocationslice (allocation_id, gpu_id, mig_device_id, milli, live)
                    SELECT allocation.id, s.g, NULL, 1000, true
                    FROM allocation JOIN unnest(v_all_gpus, v_all_nodes) AS s(g, n) ON s.n = allocation.node_id
                )
                SELECT array_agg(allocation.id ORDER BY allocation.node_id), array_agg(allocation.node_id ORDER BY allocation.node_id)
                  INTO out_allocations, out_nodes
                FROM allocation;
                out_status := 'placed';
                RETURN;
            EXCEPTION
                -- Lost to a concurrent request or to a node's state: every member's claim is
                -- undone with the subtransaction (the setting above too).
                WHEN raise_exception OR deadlock_detected THEN
                    out_allocations := NULL;
                    out_nodes := NULL;
            END;
        END LOOP;
    END LOOP;
END $$;
