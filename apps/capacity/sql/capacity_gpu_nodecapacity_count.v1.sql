CREATE OR REPLACE FUNCTION capacity_gpu_nodecapacity_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d_free int := (NEW.health = 'ok' AND NEW.allocated_milli = 0 AND NOT NEW.mig_enabled)::int
                - (OLD.health = 'ok' AND OLD.allocated_milli = 0 AND NOT OLD.mig_enabled)::int;
    d_used int := (NEW.health = 'ok' AND NEW.allocated_milli > 0)::int
                - (OLD.health = 'ok' AND OLD.allocated_milli > 0)::int;
    d_partly int := (NEW.health = 'ok' AND NEW.allocated_milli > 0 AND NEW.allocated_milli < 1000
                     AND NOT NEW.mig_enabled)::int
                  - (OLD.health = 'ok' AND OLD.allocated_milli > 0 AND OLD.allocated_milli < 1000
                     AND NOT OLD.mig_enabled)::int;
BEGIN
    UPDATE capacity_nodecapacity
       SET free_whole_gpus = free_whole_gpus + d_free, gpus_in_use = gpus_in_use + d_used,
           partly_held_gpus = partly_held_gpus + d_partly
     WHERE node_id = NEW.node_id AND gpu_model_id = NEW.gpu_model_id;
    IF NOT FOUND THEN  -- no row yet (a repair removed it, say)
        PERFORM capacity_nodecapacity_add(NEW.node_id, NEW.gpu_model_id, d_free, d_used, d_partly, true);
    END IF;
    RETURN NULL;
END $$;
