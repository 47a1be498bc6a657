CREATE OR REPLACE FUNCTION capacity_nodecapacity_add(
    p_node uuid, p_model bigint, p_free int, p_used int, p_partly int, p_create boolean
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE capacity_nodecapacity
       SET free_whole_gpus = free_whole_gpus + p_free, gpus_in_use = gpus_in_use + p_used,
           partly_held_gpus = partly_held_gpus + p_partly
     WHERE node_id = p_node AND gpu_model_id = p_model;
    IF NOT FOUND AND p_create THEN
        INSERT INTO capacity_nodecapacity
            (node_id, gpu_model_id, region_id, hostname, free_whole_gpus, gpus_in_use, partly_held_gpus)
        SELECT n.id, p_model, n.region_id, n.hostname, p_free, p_used, p_partly
        FROM capacity_node n WHERE n.id = p_node
        ON CONFLICT (node_id, gpu_model_id) DO UPDATE
           SET free_whole_gpus = capacity_nodecapacity.free_whole_gpus + p_free,
               gpus_in_use = capacity_nodecapacity.gpus_in_use + p_used,
               partly_held_gpus = capacity_nodecapacity.partly_held_gpus + p_partly;
    END IF;
END $$;
