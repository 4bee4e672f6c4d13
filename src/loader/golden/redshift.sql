CREATE SCHEMA IF NOT EXISTS "analytics";

CREATE SCHEMA IF NOT EXISTS "analytics_freshet";

CREATE TABLE IF NOT EXISTS "analytics_freshet"._freshet_ledger (table_name character varying(1024) NOT NULL, kafka_partition integer NOT NULL, first_offset bigint NOT NULL, last_offset bigint NOT NULL, object_key character varying(1024) NOT NULL, loaded_at timestamp with time zone NOT NULL);

CREATE TABLE IF NOT EXISTS "analytics_freshet"._freshet_tables (table_name character varying(1024) NOT NULL, barrier_lsn bigint NOT NULL, barrier_sequence bigint NOT NULL);

CREATE TABLE IF NOT EXISTS "analytics_freshet"._freshet_numbers (n integer NOT NULL) DISTSTYLE ALL SORTKEY(n);

INSERT INTO "analytics_freshet"._freshet_numbers WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 65536) SELECT n FROM r WHERE NOT EXISTS (SELECT 1 FROM "analytics_freshet"._freshet_numbers);

CREATE TABLE IF NOT EXISTS "analytics_freshet"."entity_values" ("tenant_id" integer NOT NULL, "entity_id" bigint NOT NULL, "attribute_id" integer NOT NULL, "string_value" character varying(65535), "integer_value" bigint, "float_value" double precision, "boolean_value" boolean, "timestamp_value" timestamp with time zone, "updated_at" timestamp with time zone, _freshet_attribute_name character varying(65535), _freshet_attribute_type character varying(65535), _freshet_deleted boolean NOT NULL, _freshet_commit_lsn bigint NOT NULL, _freshet_sequence bigint NOT NULL, _freshet_commit_ts timestamp with time zone NOT NULL) DISTKEY("entity_id") SORTKEY("tenant_id", "entity_id", "attribute_id");

INSERT INTO "analytics_freshet"._freshet_tables (table_name, barrier_lsn, barrier_sequence) SELECT 'atlasco.entity_values', 0, 0 WHERE NOT EXISTS (SELECT 1 FROM "analytics_freshet"._freshet_tables WHERE table_name = 'atlasco.entity_values');

CREATE OR REPLACE VIEW "analytics"."entity_values" AS SELECT r."tenant_id", r."entity_id", r."attribute_id", r."string_value", r."integer_value", r."float_value", r."boolean_value", r."timestamp_value", r."updated_at" FROM "analytics_freshet"."entity_values" r CROSS JOIN "analytics_freshet"._freshet_tables b WHERE b.table_name = 'atlasco.entity_values' AND NOT r._freshet_deleted AND (r._freshet_commit_lsn > b.barrier_lsn OR (r._freshet_commit_lsn = b.barrier_lsn AND r._freshet_sequence > b.barrier_sequence));

CREATE TEMP TABLE freshet_stage ("tenant_id" integer, "entity_id" bigint, "attribute_id" integer, "string_value" character varying(65535), "integer_value" bigint, "float_value" double precision, "boolean_value" boolean, "timestamp_value" timestamp with time zone, "updated_at" timestamp with time zone, _freshet_op character varying(1), _freshet_commit_lsn bigint, _freshet_sequence bigint, _freshet_commit_ts timestamp with time zone, _freshet_kafka_partition integer, _freshet_kafka_offset bigint, _freshet_unchanged character varying(65535), _freshet_exact character varying(65535), _freshet_before character varying(65535), _freshet_attribute_name character varying(65535), _freshet_attribute_type character varying(65535));

COPY freshet_stage FROM 's3://lake/cdc/atlasco.entity_values/dt=2026-11-30/_3-1200-1399.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/freshet-copy' FORMAT AS PARQUET MANIFEST;

DELETE FROM freshet_stage USING "analytics_freshet"._freshet_ledger l WHERE l.table_name = 'atlasco.entity_values' AND freshet_stage._freshet_kafka_partition = l.kafka_partition AND freshet_stage._freshet_kafka_offset BETWEEN l.first_offset AND l.last_offset;

UPDATE "analytics_freshet"._freshet_tables SET barrier_lsn = n.lsn, barrier_sequence = n.seq FROM (SELECT _freshet_commit_lsn AS lsn, _freshet_sequence AS seq FROM freshet_stage WHERE _freshet_op = 't' ORDER BY _freshet_commit_lsn DESC, _freshet_sequence DESC LIMIT 1) n WHERE table_name = 'atlasco.entity_values' AND (n.lsn > barrier_lsn OR (n.lsn = barrier_lsn AND n.seq > barrier_sequence));

DELETE FROM freshet_stage USING "analytics_freshet"._freshet_tables b WHERE b.table_name = 'atlasco.entity_values' AND (freshet_stage._freshet_op = 't' OR NOT (freshet_stage._freshet_commit_lsn > b.barrier_lsn OR (freshet_stage._freshet_commit_lsn = b.barrier_lsn AND freshet_stage._freshet_sequence > b.barrier_sequence)));

CREATE TEMP TABLE freshet_newest AS SELECT * FROM (SELECT "tenant_id", "entity_id", "attribute_id", FIRST_VALUE("string_value") OVER (PARTITION BY "tenant_id", "entity_id", "attribute_id" ORDER BY CASE WHEN POSITION('"string_value"' IN COALESCE(freshet_stage._freshet_unchanged, '')) > 0 THEN 1 ELSE 0 END, _freshet_commit_lsn DESC, _freshet_sequence DESC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS "string_value", MIN(CASE WHEN POSITION('"string_value"' IN COALESCE(freshet_stage._freshet_unchanged, '')) > 0 THEN 1 ELSE 0 END) OVER (PARTITION BY "tenant_id", "entity_id", "attribute_id") AS _freshet_keep_3, "integer_value", "float_value", "boolean_value", "timestamp_value", "updated_at", _freshet_op = 'd' AS _freshet_deleted, _freshet_commit_lsn, _freshet_sequence, _freshet_commit_ts, _freshet_attribute_name, _freshet_attribute_type, ROW_NUMBER() OVER (PARTITION BY "tenant_id", "entity_id", "attribute_id" ORDER BY _freshet_commit_lsn DESC, _freshet_sequence DESC) AS _freshet_rank FROM freshet_stage) ranked WHERE _freshet_rank = 1;

DELETE FROM freshet_newest USING "analytics_freshet"."entity_values" t WHERE t."tenant_id" = freshet_newest."tenant_id" AND t."entity_id" = freshet_newest."entity_id" AND t."attribute_id" = freshet_newest."attribute_id" AND (t._freshet_commit_lsn > freshet_newest._freshet_commit_lsn OR (t._freshet_commit_lsn = freshet_newest._freshet_commit_lsn AND t._freshet_sequence >= freshet_newest._freshet_sequence));

MERGE INTO "analytics_freshet"."entity_values" t USING freshet_newest s ON t."tenant_id" = s."tenant_id" AND t."entity_id" = s."entity_id" AND t."attribute_id" = s."attribute_id" WHEN MATCHED THEN UPDATE SET "string_value" = CASE WHEN s._freshet_keep_3 = 1 THEN t."string_value" ELSE s."string_value" END, "integer_value" = s."integer_value", "float_value" = s."float_value", "boolean_value" = s."boolean_value", "timestamp_value" = s."timestamp_value", "updated_at" = s."updated_at", _freshet_deleted = s._freshet_deleted, _freshet_commit_lsn = s._freshet_commit_lsn, _freshet_sequence = s._freshet_sequence, _freshet_commit_ts = s._freshet_commit_ts, _freshet_attribute_name = s._freshet_attribute_name, _freshet_attribute_type = s._freshet_attribute_type WHEN NOT MATCHED THEN INSERT ("tenant_id", "entity_id", "attribute_id", "string_value", "integer_value", "float_value", "boolean_value", "timestamp_value", "updated_at", _freshet_deleted, _freshet_commit_lsn, _freshet_sequence, _freshet_commit_ts, _freshet_attribute_name, _freshet_attribute_type) VALUES (s."tenant_id", s."entity_id", s."attribute_id", s."string_value", s."integer_value", s."float_value", s."boolean_value", s."timestamp_value", s."updated_at", s._freshet_deleted, s._freshet_commit_lsn, s._freshet_sequence, s._freshet_commit_ts, s._freshet_attribute_name, s._freshet_attribute_type);

DROP TABLE freshet_newest;

INSERT INTO "analytics_freshet"._freshet_ledger (table_name, kafka_partition, first_offset, last_offset, object_key, loaded_at) VALUES ('atlasco.entity_values', 3, 1200, 1399, 'atlasco.entity_values/dt=2026-11-30/3-1200-1399.parquet', CAST('2026-11-30T18:00:00+00:00' AS timestamp with time zone));

DROP TABLE freshet_stage;

DELETE FROM "analytics_freshet"."entity_values" USING "analytics_freshet"._freshet_tables b WHERE b.table_name = 'atlasco.entity_values' AND (("analytics_freshet"."entity_values"._freshet_deleted AND "analytics_freshet"."entity_values"._freshet_commit_ts < CAST('2026-11-30T18:00:00+00:00' AS timestamp with time zone)) OR NOT ("analytics_freshet"."entity_values"._freshet_commit_lsn > b.barrier_lsn OR ("analytics_freshet"."entity_values"._freshet_commit_lsn = b.barrier_lsn AND "analytics_freshet"."entity_values"._freshet_sequence > b.barrier_sequence)));

CREATE TABLE IF NOT EXISTS "analytics_freshet"."notes" ("n" integer, "body" character varying(65535), _freshet_delta integer NOT NULL, _freshet_commit_lsn bigint NOT NULL, _freshet_sequence bigint NOT NULL, _freshet_commit_ts timestamp with time zone NOT NULL) DISTSTYLE AUTO SORTKEY(_freshet_commit_lsn, _freshet_sequence);

INSERT INTO "analytics_freshet"._freshet_tables (table_name, barrier_lsn, barrier_sequence) SELECT 'public.notes', 0, 0 WHERE NOT EXISTS (SELECT 1 FROM "analytics_freshet"._freshet_tables WHERE table_name = 'public.notes');

DROP VIEW IF EXISTS "analytics"."notes";

CREATE VIEW "analytics"."notes" AS SELECT g."n", g."body" FROM (SELECT r."n", r."body", SUM(r._freshet_delta) AS _freshet_count FROM "analytics_freshet"."notes" r CROSS JOIN "analytics_freshet"._freshet_tables b WHERE b.table_name = 'public.notes' AND (r._freshet_commit_lsn > b.barrier_lsn OR (r._freshet_commit_lsn = b.barrier_lsn AND r._freshet_sequence > b.barrier_sequence)) GROUP BY r."n", r."body") g JOIN "analytics_freshet"._freshet_numbers n ON n.n <= g._freshet_count;

CREATE TEMP TABLE freshet_stage ("n" integer, "body" character varying(65535), _freshet_op character varying(1), _freshet_commit_lsn bigint, _freshet_sequence bigint, _freshet_commit_ts timestamp with time zone, _freshet_kafka_partition integer, _freshet_kafka_offset bigint, _freshet_unchanged character varying(65535), _freshet_exact character varying(65535), _freshet_before character varying(65535));

COPY freshet_stage FROM 's3://lake/cdc/public.notes/dt=2026-11-30/_3-1200-1399.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/freshet-copy' FORMAT AS PARQUET MANIFEST;

DELETE FROM freshet_stage USING "analytics_freshet"._freshet_ledger l WHERE l.table_name = 'public.notes' AND freshet_stage._freshet_kafka_partition = l.kafka_partition AND freshet_stage._freshet_kafka_offset BETWEEN l.first_offset AND l.last_offset;

UPDATE "analytics_freshet"._freshet_tables SET barrier_lsn = n.lsn, barrier_sequence = n.seq FROM (SELECT _freshet_commit_lsn AS lsn, _freshet_sequence AS seq FROM freshet_stage WHERE _freshet_op = 't' ORDER BY _freshet_commit_lsn DESC, _freshet_sequence DESC LIMIT 1) n WHERE table_name = 'public.notes' AND (n.lsn > barrier_lsn OR (n.lsn = barrier_lsn AND n.seq > barrier_sequence));

DELETE FROM freshet_stage USING "analytics_freshet"._freshet_tables b WHERE b.table_name = 'public.notes' AND (freshet_stage._freshet_op = 't' OR NOT (freshet_stage._freshet_commit_lsn > b.barrier_lsn OR (freshet_stage._freshet_commit_lsn = b.barrier_lsn AND freshet_stage._freshet_sequence > b.barrier_sequence)));

DELETE FROM freshet_stage USING "analytics_freshet"."notes" a WHERE a._freshet_commit_lsn = freshet_stage._freshet_commit_lsn AND a._freshet_sequence = freshet_stage._freshet_sequence;

INSERT INTO "analytics_freshet"."notes" ("n", "body", _freshet_commit_lsn, _freshet_sequence, _freshet_commit_ts, _freshet_delta) SELECT o."n", CASE WHEN POSITION('"body"' IN COALESCE(o._freshet_unchanged, '')) > 0 THEN CAST(JSON_EXTRACT_PATH_TEXT(o._freshet_before, 'body') AS character varying(65535)) ELSE o."body" END, o._freshet_commit_lsn, o._freshet_sequence, o._freshet_commit_ts, CASE WHEN o._freshet_op = 'd' THEN -1 ELSE 1 END FROM (SELECT * FROM (SELECT freshet_stage.*, ROW_NUMBER() OVER (PARTITION BY _freshet_commit_lsn, _freshet_sequence ORDER BY _freshet_kafka_offset) AS _freshet_rank FROM freshet_stage) r WHERE _freshet_rank = 1) o UNION ALL SELECT CAST(JSON_EXTRACT_PATH_TEXT(o._freshet_before, 'n') AS integer), CAST(JSON_EXTRACT_PATH_TEXT(o._freshet_before, 'body') AS character varying(65535)), o._freshet_commit_lsn, o._freshet_sequence, o._freshet_commit_ts, -1 FROM (SELECT * FROM (SELECT freshet_stage.*, ROW_NUMBER() OVER (PARTITION BY _freshet_commit_lsn, _freshet_sequence ORDER BY _freshet_kafka_offset) AS _freshet_rank FROM freshet_stage) r WHERE _freshet_rank = 1) o WHERE o._freshet_op = 'u';

INSERT INTO "analytics_freshet"._freshet_ledger (table_name, kafka_partition, first_offset, last_offset, object_key, loaded_at) VALUES ('public.notes', 3, 1200, 1399, 'public.notes/dt=2026-11-30/3-1200-1399.parquet', CAST('2026-11-30T18:00:00+00:00' AS timestamp with time zone));

DROP TABLE freshet_stage;

DELETE FROM "analytics_freshet"."notes" USING "analytics_freshet"._freshet_tables b WHERE b.table_name = 'public.notes' AND NOT ("analytics_freshet"."notes"._freshet_commit_lsn > b.barrier_lsn OR ("analytics_freshet"."notes"._freshet_commit_lsn = b.barrier_lsn AND "analytics_freshet"."notes"._freshet_sequence > b.barrier_sequence));

ALTER TABLE "analytics_freshet"."entity_values" ADD COLUMN "unit" character varying(65535);

