-- The capture benchmarks' EAV workload: the history trigger off (the rows measured are the
-- EAV rows themselves) and a procedure writing n ten-row transactions.
ALTER TABLE atlasco.entity_values DISABLE TRIGGER USER;
CREATE OR REPLACE PROCEDURE bench_small_txns(n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 0..n - 1 LOOP
        INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value, integer_value, float_value)
        SELECT 1, 2000000 + i, a, CASE WHEN a % 3 = 0 THEN 'value ' || i END,
               CASE WHEN a % 3 = 1 THEN i END, CASE WHEN a % 3 = 2 THEN i / 7.0 END
        FROM generate_series(1, 10) a;
        COMMIT;
    END LOOP;
END $$;
