CREATE OR REPLACE TRIGGER capacity_gpu_nodecapacity_counts
AFTER UPDATE OF health, mig_enabled, allocated_milli ON capacity_gpu
FOR EACH ROW WHEN (
    -- Every input of the three counts; not allocated_milli itself, whose changes between two
    -- partly held values (a fraction added or given back) change no count.
    OLD.node_id = NEW.node_id AND OLD.gpu_model_id = NEW.gpu_model_id
    AND (OLD.health, OLD.mig_enabled, OLD.allocated_milli = 0, OLD.allocated_milli < 1000)
        IS DISTINCT FROM (NEW.health, NEW.mig_enabled, NEW.allocated_milli = 0, NEW.allocated_milli < 1000)
    AND current_setting('capacity.nodecapacity_in_statement', true) IS DISTINCT FROM 'on'
) EXECUTE FUNCTION capacity_gpu_nodecapacity_count();
