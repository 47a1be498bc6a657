CREATE OR REPLACE FUNCTION chargeback_fold_records(p_lo bigint, p_hi bigint, p_flavor_ids bigint[], p_flavor_milli bigint[])
RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
-- Usage records with p_lo < id <= p_hi added onto the instances' hour and day rows: one statement
-- makes the batch's rows, chargeback_rows_add stores them; returns how many records went in.
--
-- A record counts in the hour of its period_start, whole: metering cuts records at hour
-- boundaries, and an older record that spans one (by a few seconds at most) stays with its
-- period_start's hour, as the invoice puts a record in the month of its period_start. Splitting
-- it would move seconds across a month boundary in the rare case and break the reconciliation to
-- the cent.
--
-- Share: the instance's flavor in thousandths of a GPU (p_flavor_ids / p_flavor_milli, from
-- capacity's flavor_slice_milli × gpu_count, which is what its allocation's gpu_milli is made
-- of). Except inside a reservation: a run on GPUs a reservation holds (metering prices it 0 with
-- the note 'In reservation <id>') holds no GPUs of its own, since the reservation's row already
-- counts all of its GPUs for the whole window; its seconds stay (billed, at 0) and its used
-- GPU-seconds land on the instance's row (chargeback_fold_telemetry), but it allocates nothing.
-- Told by the run's note, not the instance's reservation, which is cleared when the instance
-- leaves it; a correction carries its own reason, so the note is read from the run, and only for
-- records priced 0.
DECLARE
    v_rows chargeback_usage[];
    v_folded bigint;
BEGIN
    -- The rows, in chargeback_usage's order: hour, organization, project, owner, instance,
    -- reservation, offering, flavor, region, price, currency, seconds, allocated, used.
    SELECT array_agg(ROW(g.hour, i.organization_id, i.project_id, i.owner_id, i.id,
                         NULL, i.offering_id, i.flavor_id, i.region_id, g.hourly_amount, g.currency,
                         g.seconds, g.held_seconds * COALESCE(m.milli, 0), 0)::chargeback_usage),
           COALESCE(SUM(g.n), 0)::bigint
    INTO v_rows, v_folded
    FROM (
        SELECT date_trunc('hour', r.period_start, 'UTC') AS hour, r.instance_id, r.hourly_amount, r.currency,
               SUM(r.seconds)::bigint AS seconds,
               SUM(CASE WHEN r.hourly_amount = 0 AND EXISTS (
                       SELECT 1 FROM billing_meteredrun run WHERE run.id = r.run_id AND run.note LIKE 'In reservation %'
                   ) THEN 0 ELSE r.seconds END)::bigint AS held_seconds,
               COUNT(*) AS n
        FROM billing_usagerecord r
        WHERE r.id > p_lo AND r.id <= p_hi
        GROUP BY 1, r.instance_id, r.hourly_amount, r.currency
    ) g
    JOIN instances_instance i ON i.id = g.instance_id
    LEFT JOIN unnest(p_flavor_ids, p_flavor_milli) AS m(flavor_id, milli) ON m.flavor_id = i.flavor_id;
    PERFORM chargeback_rows_add(v_rows, 'instance_id');
    RETURN v_folded;
END $$;
