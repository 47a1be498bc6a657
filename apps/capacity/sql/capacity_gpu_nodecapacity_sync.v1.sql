CREATE OR REPLACE FUNCTION capacity_gpu_nodecapacity_sync() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_free int := 0; old_used int := 0; old_partly int := 0;
    new_free int := 0; new_used int := 0; new_partly int := 0;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.health = 'ok' THEN
        old_free := (OLD.allocated_milli = 0 AND NOT OLD.mig_enabled)::int;
        old_used := (OLD.allocated_milli > 0)::int;
        old_partly := (OLD.allocated_milli > 0 AND OLD.allocated_milli < 1000 AND NOT OLD.mig_enabled)::int;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.health = 'ok' THEN
        new_free := (NEW.allocated_milli = 0 AND NOT NEW.mig_enabled)::int;
        new_used := (NEW.allocated_milli > 0)::int;
        new_partly := (NEW.allocated_milli > 0 AND NEW.allocated_milli < 1000 AND NOT NEW.mig_enabled)::int;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.gpu_model_id IS NOT NULL AND (old_free + old_used + old_partly) > 0 THEN
        PERFORM capacity_nodecapacity_add(OLD.node_id, OLD.gpu_model_id, -old_free, -old_used, -old_partly, false);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.gpu_model_id IS NOT NULL THEN
        PERFORM capacity_nodecapacity_add(NEW.node_id, NEW.gpu_model_id, new_free, new_used, new_partly, true);
    END IF;
    RETURN NULL;
END $$;
