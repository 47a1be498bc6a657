CREATE OR REPLACE FUNCTION chargeback_fold_charges(p_lo bigint, p_hi bigint)
RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
-- Reservation charges with p_lo < id <= p_hi added onto the reservations' hour and day rows, in
-- one statement; returns how many charges went in.
--
-- A charge is spread over the hours of its period: hour h gets the whole seconds from the
-- period's start to h's end less those to h's start (capped at the charge's seconds, the last
-- hour gets the rest), so the hours add up to the charge exactly. Share: the reservation's GPUs,
-- or its whole nodes × the flavor's (node's) GPUs, × 1000. The instances that run inside it hold
-- none of their own (chargeback_fold_records), so its GPUs are counted once.
DECLARE
    v_folded bigint;
BEGIN
    WITH src AS (
        SELECT g.hour, res.organization_id, res.project_id, res.created_by_id AS owner_id, NULL::uuid AS instance_id,
               res.id AS reservation_id, f.offering_id, res.flavor_id, res.region_id, g.hourly_amount, g.currency,
               g.seconds, g.seconds * COALESCE(res.gpus, res.whole_nodes * f.gpu_count) * 1000 AS allocated_milli_seconds,
               0::bigint AS used_milli_seconds, g.n
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
        JOIN catalog_flavor f ON f.id = res.flavor_id
    ),
    hours AS (
        INSERT INTO chargeback_usagehour (hour, organization_id, project_id, owner_id, instance_id, reservation_id,
                                          offering_id, flavor_id, region_id, hourly_amount, currency,
                                          seconds, allocated_milli_seconds, used_milli_seconds)
        SELECT hour, organization_id, project_id, owner_id, instance_id, reservation_id,
               offering_id, flavor_id, region_id, hourly_amount, currency,
               seconds, allocated_milli_seconds, used_milli_seconds
        FROM src
        ON CONFLICT (hour, reservation_id, hourly_amount) WHERE reservation_id IS NOT NULL
        DO UPDATE SET seconds = chargeback_usagehour.seconds + EXCLUDED.seconds,
                      allocated_milli_seconds = chargeback_usagehour.allocated_milli_seconds + EXCLUDED.allocated_milli_seconds,
                      used_milli_seconds = chargeback_usagehour.used_milli_seconds + EXCLUDED.used_milli_seconds
        RETURNING 1
    ),
    days AS (
        INSERT INTO chargeback_usageday (day, organization_id, project_id, owner_id, instance_id, reservation_id,
                                         offering_id, flavor_id, region_id, hourly_amount, currency,
                                         seconds, allocated_milli_seconds, used_milli_seconds)
        SELECT (hour AT TIME ZONE 'UTC')::date, organization_id, project_id, owner_id, instance_id, reservation_id,
               offering_id, flavor_id, region_id, hourly_amount, currency,
               SUM(seconds), SUM(allocated_milli_seconds), SUM(used_milli_seconds)
        FROM src
        GROUP BY (hour AT TIME ZONE 'UTC')::date, organization_id, project_id, owner_id, instance_id, reservation_id,
                 offering_id, flavor_id, region_id, hourly_amount, currency
        ON CONFLICT (day, reservation_id, hourly_amount) WHERE reservation_id IS NOT NULL
        DO UPDATE SET seconds = chargeback_usageday.seconds + EXCLUDED.seconds,
                      allocated_milli_seconds = chargeback_usageday.allocated_milli_seconds + EXCLUDED.allocated_milli_seconds,
                      used_milli_seconds = chargeback_usageday.used_milli_seconds + EXCLUDED.used_milli_seconds
        RETURNING 1
    )
    SELECT COALESCE(SUM(n), 0)::bigint INTO v_folded FROM src;
    RETURN v_folded;
END $$;
