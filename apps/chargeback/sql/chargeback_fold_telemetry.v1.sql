CREATE OR REPLACE FUNCTION chargeback_fold_telemetry(p_start timestamptz, p_end timestamptz)
RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
-- Telemetry of the hours in [p_start, p_end) (whole hours) added onto the instances' hour and
-- day rows: one statement makes the rows, chargeback_rows_add stores them; returns how many
-- GPU-minutes × slices went in.
--
-- For each instance's run (its price) and each allocation the instance held ('instance:<id>'),
-- the held GPUs' per-minute utilisation × the slice's share × the seconds of that minute inside
-- the run, the allocation's life and the window. Lands on the instance's row of that hour at the
-- run's price (made, with no seconds yet, if its record is not folded yet: the record then adds
-- onto it). A run inside a reservation is priced 0: its use lands on the instance's row at 0,
-- beside no GPUs of its own (chargeback_fold_records).
DECLARE
    v_rows chargeback_usage[];
    v_folded bigint;
BEGIN
    -- The rows, in chargeback_usage's order: hour, organization, project, owner, instance,
    -- reservation, offering, flavor, region, price, currency, seconds, allocated, used.
    SELECT array_agg(ROW(g.hour, i.organization_id, i.project_id, i.owner_id, i.id,
                         NULL, i.offering_id, i.flavor_id, i.region_id, g.hourly_amount, g.currency,
                         0, 0, round(g.used / 100)::bigint)::chargeback_usage),
           COALESCE(SUM(g.n), 0)::bigint
    INTO v_rows, v_folded
    FROM (
        SELECT date_trunc('hour', s.minute, 'UTC') AS hour, w.instance_id, w.hourly_amount, w.currency,
               SUM(s.utilization_pct::numeric * w.milli * extract(
                   epoch FROM LEAST(s.minute + interval '1 minute', w.until) - GREATEST(s.minute, w.since)
               )) AS used,
               COUNT(*) AS n
        FROM (
            SELECT r.instance_id, r.hourly_amount, r.currency, sl.gpu_id, sl.milli,
                   GREATEST(r.started_at, a.created_at, p_start) AS since,
                   LEAST(COALESCE(r.ended_at, 'infinity'), COALESCE(a.released_at, 'infinity'), p_end) AS until
            FROM billing_meteredrun r
            JOIN capacity_allocation a ON a.holder = 'instance:' || r.instance_id::text
            JOIN capacity_allocationslice sl ON sl.allocation_id = a.id
            WHERE r.started_at < p_end AND (r.ended_at IS NULL OR r.ended_at > p_start)
              AND a.created_at < p_end AND (a.released_at IS NULL OR a.released_at > p_start)
              AND a.holder LIKE 'instance:%'
        ) w
        JOIN capacity_gpusample s ON s.gpu_id = w.gpu_id
            AND s.minute > w.since - interval '1 minute' AND s.minute < w.until
        WHERE w.since < w.until AND s.utilization_pct IS NOT NULL
        GROUP BY 1, w.instance_id, w.hourly_amount, w.currency
    ) g
    JOIN instances_instance i ON i.id = g.instance_id;
    PERFORM chargeback_rows_add(v_rows, 'instance_id');
    RETURN v_folded;
END $$;
