CREATE OR REPLACE FUNCTION capacity_node_nodecapacity_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE capacity_nodecapacity SET region_id = NEW.region_id WHERE node_id = NEW.id;
    RETURN NULL;
END $$;
