CREATE OR REPLACE TRIGGER capacity_gpu_nodecapacity_moved
AFTER UPDATE OF node_id, gpu_model_id ON capacity_gpu
FOR EACH ROW WHEN (OLD.node_id IS DISTINCT FROM NEW.node_id OR OLD.gpu_model_id IS DISTINCT FROM NEW.gpu_model_id)
EXECUTE FUNCTION capacity_gpu_nodecapacity_sync();
