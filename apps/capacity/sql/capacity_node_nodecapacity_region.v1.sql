CREATE OR REPLACE TRIGGER capacity_node_nodecapacity_region AFTER UPDATE OF region_id ON capacity_node
FOR EACH ROW WHEN (OLD.region_id IS DISTINCT FROM NEW.region_id)
EXECUTE FUNCTION capacity_node_nodecapacity_sync();
