CREATE OR REPLACE TRIGGER capacity_gpu_nodecapacity_rows AFTER INSERT OR DELETE ON capacity_gpu
FOR EACH ROW EXECUTE FUNCTION capacity_gpu_nodecapacity_sync();
