-- AtlasCo EAV schema (PostgreSQL 15), the source Freshet captures.
--
-- Idempotent: every statement is IF NOT EXISTS, CREATE OR REPLACE, or guarded, so
-- loading this file twice (or on every deploy) is safe.
--
-- Layout
--   tenants                       one row per tenant
--   attributes                    the attribute catalog (name + data type), sized for 10k+ attributes
--   entities                      hash-partitioned by tenant_id into 16 partitions
--   entity_values                 the EAV value table, typed value columns, partitioned like entities
--   entity_value_history          append-only history, range-partitioned by day: hot / warm / cold
--   entity_attributes_mv          materialized view: one JSONB document per entity
--   publication freshet_atlasco   what Freshet captures

CREATE SCHEMA IF NOT EXISTS atlasco;
SET client_min_messages = warning;
SET search_path = atlasco, public;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname = 'atlasco' AND t.typname = 'value_type') THEN
        CREATE TYPE atlasco.value_type AS ENUM ('string', 'integer', 'float', 'boolean', 'timestamp');
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS tenants (
    tenant_id  integer     PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- int4 keys: 10k attributes today, two billion of headroom, and half the index size of int8
-- in entity_values, whose every row and every per-type index carries attribute_id.
CREATE TABLE IF NOT EXISTS attributes (
    attribute_id integer            PRIMARY KEY,
    name         text               NOT NULL UNIQUE,
    data_type    atlasco.value_type NOT NULL,
    description  text,
    created_at   timestamptz        NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS entities (
    tenant_id   integer     NOT NULL REFERENCES tenants (tenant_id),
    entity_id   bigint      NOT NULL,
    entity_type text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, entity_id)
) PARTITION BY HASH (tenant_id);

-- Exactly one typed column is set; the CHECK enforces it per row, so a reader never has to
-- guess which column holds the value and no string casting happens on the read path.
-- No foreign keys on this table: at 10k writes/s the per-row RI trigger (a FOR KEY SHARE lock
-- on the entity row) costs more than it protects; the write path owns referential integrity.
CREATE TABLE IF NOT EXISTS entity_values (
    tenant_id       integer          NOT NULL,
    entity_id       bigint           NOT NULL,
    attribute_id    integer          NOT NULL,
    string_value    text,
    integer_value   bigint,
    float_value     double precision,
    boolean_value   boolean,
    timestamp_value timestamptz,
    updated_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, entity_id, attribute_id),
    CONSTRAINT entity_values_exactly_one_value CHECK (
        num_nonnulls(string_value, integer_value, float_value, boolean_value, timestamp_value) = 1)
) PARTITION BY HASH (tenant_id);

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS atlasco.%I PARTITION OF atlasco.entities
                        FOR VALUES WITH (MODULUS 16, REMAINDER %s)', format('entities_p%s', lpad(i::text, 2, '0')), i);
        EXECUTE format('CREATE TABLE IF NOT EXISTS atlasco.%I PARTITION OF atlasco.entity_values
                        FOR VALUES WITH (MODULUS 16, REMAINDER %s)', format('entity_values_p%s', lpad(i::text, 2, '0')), i);
    END LOOP;
END $$;

-- One index per value type serves every attribute of that type: the attribute is a key column,
-- not a separate index, so 10k attributes cost five indexes, not 10k. Partial (IS NOT NULL), so
-- each index holds only its own type's rows. tenant_id leads because every operational query
-- is tenant-scoped and a hash partition holds many tenants; entity_id trails so the filter is
-- answered from the index alone (index-only scan).
-- Strings are indexed by their first 200 characters: a btree entry is capped at ~2.7 kB and
-- long values (TOASTed documents) would otherwise fail the insert. Equality queries add the
-- same left(…, 200) predicate (see queries.sql) and recheck the full value.
CREATE INDEX IF NOT EXISTS entity_values_string_idx
    ON entity_values (tenant_id, attribute_id, left(string_value, 200), entity_id)
    WHERE string_value IS NOT NULL;
CREATE INDEX IF NOT EXISTS entity_values_integer_idx
    ON entity_values (tenant_id, attribute_id, integer_value, entity_id)
    WHERE integer_value IS NOT NULL;
CREATE INDEX IF NOT EXISTS entity_values_float_idx
    ON entity_values (tenant_id, attribute_id, float_value, entity_id)
    WHERE float_value IS NOT NULL;
CREATE INDEX IF NOT EXISTS entity_values_boolean_idx
    ON entity_values (tenant_id, attribute_id, boolean_value, entity_id)
    WHERE boolean_value IS NOT NULL;
CREATE INDEX IF NOT EXISTS entity_values_timestamp_idx
    ON entity_values (tenant_id, attribute_id, timestamp_value, entity_id)
    WHERE timestamp_value IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- Value history: append-only, one daily partition per day, with a lifecycle by age.
--
--   hot   (newer than 7 days)   btree on (tenant_id, entity_id, attribute_id, changed_at) for
--                               "what did this entity look like at T" lookups, plus BRIN.
--   warm  (7 to 30 days)        the btree is dropped (it is most of the partition's size and
--                               nobody point-queries last month), BRIN on changed_at stays, so
--                               range scans still prune blocks; fillfactor 100, the rows never
--                               change again. Moved to tablespace atlasco_warm when it exists.
--   cold  (older than 30 days)  detached from the parent and moved to schema atlasco_cold, so
--                               the planner and autovacuum of the hot path never see it; still
--                               queryable directly, ready for export. Dropped once older than
--                               the retention, when one is given.
--
-- The history is written by statement-level triggers with transition tables: one INSERT …
-- SELECT per statement, so a COPY of a million rows costs one extra statement, not a million
-- trigger calls. It is not published: it is derived from entity_values, which is.
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS atlasco_cold;

CREATE TABLE IF NOT EXISTS entity_value_history (
    tenant_id       integer          NOT NULL,
    entity_id       bigint           NOT NULL,
    attribute_id    integer          NOT NULL,
    op              "char"           NOT NULL CHECK (op IN ('c', 'u', 'd')),
    string_value    text,
    integer_value   bigint,
    float_value     double precision,
    boolean_value   boolean,
    timestamp_value timestamptz,
    changed_at      timestamptz      NOT NULL DEFAULT now()
) PARTITION BY RANGE (changed_at);

-- Rows outside every daily partition (clock skew, a missed maintenance run) land here instead
-- of failing the write that produced them.
CREATE TABLE IF NOT EXISTS entity_value_history_default
    PARTITION OF entity_value_history DEFAULT;

CREATE OR REPLACE FUNCTION atlasco.history_partition_name(p_day date)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'entity_value_history_' || to_char(p_day, 'YYYYMMDD')
$$;

-- Creates the partitions from p_now's day through p_premake_days ahead, moves partitions to
-- the tier their age calls for, and retires cold ones older than p_retention. Returns what it
-- did, one row per action, so cron jobs and tests can see it. Safe to run at any frequency.
CREATE OR REPLACE FUNCTION atlasco.maintain_history_partitions(
    p_now          timestamptz DEFAULT now(),
    p_premake_days integer     DEFAULT 3,
    p_retention    interval    DEFAULT NULL)
RETURNS TABLE (partition_name text, action text)
LANGUAGE plpgsql AS $$
DECLARE
    today    date := (p_now AT TIME ZONE 'UTC')::date;
    d        date;
    part     record;
    part_day date;
    age_days integer;
    name     text;
    lo       timestamptz;
    hi       timestamptz;
BEGIN
    FOR i IN 0..p_premake_days LOOP
        d := today + i;
        name := atlasco.history_partition_name(d);
        IF to_regclass(format('atlasco.%I', name)) IS NULL
           AND to_regclass(format('atlasco_cold.%I', name)) IS NULL THEN
            lo := d::timestamp AT TIME ZONE 'UTC';
            hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
            -- Built beside the parent and attached, so rows that fell into the default
            -- partition for this day (a missed run) move in instead of blocking the attach.
            EXECUTE format('CREATE TABLE atlasco.%I (LIKE atlasco.entity_value_history INCLUDING DEFAULTS
                            INCLUDING CONSTRAINTS, CHECK (changed_at >= %L AND changed_at < %L))', name, lo, hi);
            EXECUTE format('WITH moved AS (DELETE FROM atlasco.entity_value_history_default
                            WHERE changed_at >= %L AND changed_at < %L RETURNING *)
                            INSERT INTO atlasco.%I SELECT * FROM moved', lo, hi, name);
            EXECUTE format('ALTER TABLE atlasco.entity_value_history ATTACH PARTITION atlasco.%I
                            FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
            EXECUTE format('CREATE INDEX %I ON atlasco.%I (tenant_id, entity_id, attribute_id, changed_at)',
                           name || '_entity_idx', name);
            EXECUTE format('CREATE INDEX %I ON atlasco.%I USING brin (changed_at)', name || '_brin', name);
            EXECUTE format('COMMENT ON TABLE atlasco.%I IS %L', name, 'tier=hot');
            partition_name := name; action := 'created'; RETURN NEXT;
        END IF;
    END LOOP;

    FOR part IN
        SELECT c.relname, n.nspname, coalesce(obj_description(c.oid, 'pg_class'), '') AS tier
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('atlasco', 'atlasco_cold')
          AND c.relkind = 'r'
          AND c.relname ~ '^entity_value_history_[0-9]{8}$'
        ORDER BY c.relname
    LOOP
        part_day := to_date(right(part.relname, 8), 'YYYYMMDD');
        age_days := today - part_day;

        IF p_retention IS NOT NULL AND part_day + 1 <= (p_now - p_retention)::date THEN
            IF part.nspname = 'atlasco' THEN
                EXECUTE format('ALTER TABLE atlasco.entity_value_history DETACH PARTITION atlasco.%I', part.relname);
            END IF;
            EXECUTE format('DROP TABLE %I.%I', part.nspname, part.relname);
            partition_name := part.relname; action := 'dropped'; RETURN NEXT;
        ELSIF age_days >= 30 AND part.nspname = 'atlasco' THEN
            EXECUTE format('ALTER TABLE atlasco.entity_value_history DETACH PARTITION atlasco.%I', part.relname);
            EXECUTE format('DROP INDEX IF EXISTS atlasco.%I', part.relname || '_entity_idx');
            EXECUTE format('ALTER TABLE atlasco.%I SET SCHEMA atlasco_cold', part.relname);
            EXECUTE format('COMMENT ON TABLE atlasco_cold.%I IS %L', part.relname, 'tier=cold');
            partition_name := part.relname; action := 'cold'; RETURN NEXT;
        ELSIF age_days >= 7 AND age_days < 30 AND part.tier = 'tier=hot' THEN
            EXECUTE format('DROP INDEX IF EXISTS atlasco.%I', part.relname || '_entity_idx');
            EXECUTE format('ALTER TABLE atlasco.%I SET (fillfactor = 100)', part.relname);
            IF EXISTS (SELECT 1 FROM pg_tablespace WHERE spcname = 'atlasco_warm') THEN
                EXECUTE format('ALTER TABLE atlasco.%I SET TABLESPACE atlasco_warm', part.relname);
            END IF;
            EXECUTE format('COMMENT ON TABLE atlasco.%I IS %L', part.relname, 'tier=warm');
            partition_name := part.relname; action := 'warm'; RETURN NEXT;
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION atlasco.record_value_history()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO atlasco.entity_value_history (tenant_id, entity_id, attribute_id, op, string_value,
               integer_value, float_value, boolean_value, timestamp_value)
        SELECT tenant_id, entity_id, attribute_id, 'c', string_value, integer_value, float_value,
               boolean_value, timestamp_value FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO atlasco.entity_value_history (tenant_id, entity_id, attribute_id, op, string_value,
               integer_value, float_value, boolean_value, timestamp_value)
        SELECT tenant_id, entity_id, attribute_id, 'u', string_value, integer_value, float_value,
               boolean_value, timestamp_value FROM new_rows;
    ELSE
        INSERT INTO atlasco.entity_value_history (tenant_id, entity_id, attribute_id, op)
        SELECT tenant_id, entity_id, attribute_id, 'd' FROM old_rows;
    END IF;
    RETURN NULL;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'entity_values_history_ins'
                   AND tgrelid = 'atlasco.entity_values'::regclass) THEN
        CREATE TRIGGER entity_values_history_ins AFTER INSERT ON atlasco.entity_values
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION atlasco.record_value_history();
        CREATE TRIGGER entity_values_history_upd AFTER UPDATE ON atlasco.entity_values
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION atlasco.record_value_history();
        CREATE TRIGGER entity_values_history_del AFTER DELETE ON atlasco.entity_values
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION atlasco.record_value_history();
    END IF;
END $$;

SELECT count(*) AS history_partitions_created FROM atlasco.maintain_history_partitions();

-- ---------------------------------------------------------------------------------------------
-- One JSONB document per entity, {attribute name: typed value}, for "give me the whole entity"
-- reads that would otherwise aggregate up to 10k rows. The unique index is what REFRESH …
-- CONCURRENTLY needs to diff the old and new contents without locking readers out; the GIN
-- index (jsonb_path_ops: smaller, containment only) serves attribute-value lookups.
-- ---------------------------------------------------------------------------------------------
CREATE MATERIALIZED VIEW IF NOT EXISTS entity_attributes_mv AS
SELECT v.tenant_id,
       v.entity_id,
       jsonb_object_agg(a.name, CASE a.data_type
           WHEN 'string'    THEN to_jsonb(v.string_value)
           WHEN 'integer'   THEN to_jsonb(v.integer_value)
           WHEN 'float'     THEN to_jsonb(v.float_value)
           WHEN 'boolean'   THEN to_jsonb(v.boolean_value)
           WHEN 'timestamp' THEN to_jsonb(v.timestamp_value)
       END) AS attrs,
       max(v.updated_at) AS updated_at
FROM atlasco.entity_values v
JOIN atlasco.attributes a USING (attribute_id)
GROUP BY v.tenant_id, v.entity_id;

CREATE UNIQUE INDEX IF NOT EXISTS entity_attributes_mv_pk ON entity_attributes_mv (tenant_id, entity_id);
CREATE INDEX IF NOT EXISTS entity_attributes_mv_attrs ON entity_attributes_mv USING gin (attrs jsonb_path_ops);

-- CONCURRENTLY needs a populated view, and diffing against an empty one is slow for nothing
-- (nobody reads an empty view): those refreshes are plain.
CREATE OR REPLACE FUNCTION atlasco.refresh_entity_attributes()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT relispopulated FROM pg_class WHERE oid = 'atlasco.entity_attributes_mv'::regclass)
       AND EXISTS (SELECT 1 FROM atlasco.entity_attributes_mv) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY atlasco.entity_attributes_mv;
    ELSE
        REFRESH MATERIALIZED VIEW atlasco.entity_attributes_mv;
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- CDC. publish_via_partition_root: changes to entities_p07 arrive as changes to entities, so
-- consumers see four stable tables, not 32 partitions, and repartitioning is invisible to them.
--
-- REPLICA IDENTITY
--   tenants, attributes  FULL: tiny, rarely changed tables; the whole old row in the WAL lets
--                        consumers see what a rename renamed from, at negligible cost.
--   entities,            DEFAULT (the primary key): updates and deletes carry the old key,
--   entity_values        which is all a key-based MERGE needs; FULL would write the whole old
--                        row to the WAL on every update at 10k writes/s. Identity is a
--                        per-partition property, and every partition has the primary key.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE tenants REPLICA IDENTITY FULL;
ALTER TABLE attributes REPLICA IDENTITY FULL;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'freshet_atlasco') THEN
        CREATE PUBLICATION freshet_atlasco
            FOR TABLE atlasco.tenants, atlasco.attributes, atlasco.entities, atlasco.entity_values
            WITH (publish_via_partition_root = true);
    END IF;
END $$;

RESET search_path;
RESET client_min_messages;
