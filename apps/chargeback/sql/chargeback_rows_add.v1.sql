CREATE OR REPLACE FUNCTION chargeback_rows_add(p_rows chargeback_usage[], p_subject text)
RETURNS void LANGUAGE plpgsql AS $$
-- The folds' rows (chargeback_fold_records, _charges, _telemetry make them: at most one per hour,
-- subject and price) added onto chargeback_usagehour and, summed by UTC day, onto
-- chargeback_usageday, in one statement: a row not there yet is made, a row there gets the
-- seconds and milli-seconds added. The one place the roll-up writes its tables.
--
-- p_subject is the column that says whose usage the rows are, 'instance_id' or 'reservation_id'
-- (every row of a call has it): each has its own partial unique index, and ON CONFLICT must name
-- the index's columns and predicate in the statement's text, hence the statement is built here
-- (from one of the two names, nothing else) and run by EXECUTE, planned for its rows every call.
BEGIN
    IF p_subject IS NULL OR p_subject NOT IN ('instance_id', 'reservation_id') THEN
        RAISE EXCEPTION 'chargeback_rows_add: subject is instance_id or reservation_id, not %', p_subject;
    END IF;
    IF p_rows IS NULL THEN  -- array_agg of no rows: nothing to add
        RETURN;
    END IF;
    EXECUTE format($sql$
    WITH src AS (
        SELECT * FROM unnest($1)
    ),
    hours AS (
        INSERT INTO chargeback_usagehour (hour, organization_id, project_id, owner_id, instance_id, reservation_id,
                                          offering_id, flavor_id, region_id, hourly_amount, currency,
                                          seconds, allocated_milli_seconds, used_milli_seconds)
        SELECT hour, organization_id, project_id, owner_id, instance_id, reservation_id,
               offering_id, flavor_id, region_id, hourly_amount, currency,
               seconds, allocated_milli_seconds, used_milli_seconds
        FROM src
        ON CONFLICT (hour, %1$I, hourly_amount) WHERE %1$I IS NOT NULL
        DO UPDATE SET seconds = chargeback_usagehour.seconds + EXCLUDED.seconds,
                      allocated_milli_seconds = chargeback_usagehour.allocated_milli_seconds + EXCLUDED.allocated_milli_seconds,
                      used_milli_seconds = chargeback_usagehour.used_milli_seconds + EXCLUDED.used_milli_seconds
        RETURNING 1
    )
    INSERT INTO chargeback_usageday (day, organization_id, project_id, owner_id, instance_id, reservation_id,
                                     offering_id, flavor_id, region_id, hourly_amount, currency,
                                     seconds, allocated_milli_seconds, used_milli_seconds)
    SELECT (hour AT TIME ZONE 'UTC')::date, organization_id, project_id, owner_id, instance_id, reservation_id,
           offering_id, flavor_id, region_id, hourly_amount, currency,
           SUM(seconds), SUM(allocated_milli_seconds), SUM(used_milli_seconds)
    FROM src
    GROUP BY (hour AT TIME ZONE 'UTC')::date, organization_id, project_id, owner_id, instance_id, reservation_id,
             offering_id, flavor_id, region_id, hourly_amount, currency
    ON CONFLICT (day, %1$I, hourly_amount) WHERE %1$I IS NOT NULL
    DO UPDATE SET seconds = chargeback_usageday.seconds + EXCLUDED.seconds,
                  allocated_milli_seconds = chargeback_usageday.allocated_milli_seconds + EXCLUDED.allocated_milli_seconds,
                  used_milli_seconds = chargeback_usageday.used_milli_seconds + EXCLUDED.used_milli_seconds
    $sql$, p_subject) USING p_rows;
END $$;
