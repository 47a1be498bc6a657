CREATE OR REPLACE FUNCTION chargeback_fold_charges(p_lo bigint, p_hi bigint)
RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
-- Reservation charges with p_lo < id <= p_hi added onto the reservations' hour and day rows: one
-- statement makes the batch's rows, chargeback_rows_add stores them; returns how many charges
-- went in.
--
-- A charge is spread over the hours of its period: hour h gets the whole seconds from the
-- period's start to h's end less those to h's start (capped at the charge's seconds, the last
-- hour gets the rest), so the hours add up to the charge exactly. Share: the reservation's GPUs,
-- or its whole nodes × the flavor's (node's) GPUs, × 1000. The instances that run inside it hold
-- none of their own (chargeback_fold_records), so its GPUs are counted once.
DECLARE
    v_rows chargeback_usage[];
    v_folded bigint;
BEGIN
    -- The rows, in chargeback_usage's order: hour, organization, project, owner, instance,
    -- reservation, offering, flavor, region, price, currency, seconds, allocated, used.
    SELECT array_agg(ROW(g.hour, res.organization_id, res.project_id, res.created_by_id, NULL,
                         res.id, f.offering_id, res.flavor_id, res.region_id, g.hourly_amount, g.currency,
                         g.seconds, g.seconds * COALESCE(res.gpus, res.whole_nodes * f.gpu_count) * 1000, 0)::chargeback_usage),
           COALESCE(SUM(g.n), 0)::bigint
    INTO v_rows, v_folded
    FROM (
        SELECT h.hour, c.reservation_id, c.hourly_amount, c.currency,
               COUNT(*) FILTER (WHERE h.hour <= c.period_start) AS n,  -- each charge once: its first hour
               SUM(
                   CASE WHEN h.hour + interval '1 hour' >= c.period_end THEN c.seconds
                        ELSE LEAST(c.seconds, floor(extract(epoch FROM h.hour + interval '1 hour' - c.period_start)))
                   END
                   - LEAST(c.seconds, floor(extract(epoch FROM GREATEST(h.hour, c.period_start) - c.period_start)))
               )::bigint AS seconds
        FROM billing_reservationcharge c
        CROSS JOIN LATERAL generate_series(
            date_trunc('hour', c.period_start, 'UTC'), c.period_end - interval '1 microsecond',
            interval '1 hour', 'UTC'
        ) AS h(hour)
        WHERE c.id > p_lo AND c.id <= p_hi
        GROUP BY h.hour, c.reservation_id, c.hourly_amount, c.currency
    ) g
    JOIN capacity_reservation res ON res.id = g.reservation_id
    JOIN catalog_flavor f ON f.id = res.flavor_id;
    PERFORM chargeback_rows_add(v_rows, 'reservation_id');
    RETURN v_folded;
END $$;
