-- AtlasCo example queries. `freshet bench schema` runs each one repeatedly and prints p50/p95
-- and its plan; each starts with a `-- name:` line and ends with a semicolon.
-- Attribute names come from the loadgen catalog: status (string), temperature (float),
-- priority (integer), active (boolean), last_seen (timestamp).

-- name: operational_filter
-- Operational: one tenant's entities matching several attributes at once. Each predicate is a
-- range scan of one per-type index (tenant, attribute, value, entity), the entity sets are
-- intersected, and only the hundred matches are looked up by primary key for their values.
-- (A nested-loop join that probes the typed indexes by entity would scan a whole value range
-- per probe.) Strings are compared on left(..., 200), the indexed prefix, then in full.
WITH ids AS (
  SELECT (SELECT attribute_id FROM atlasco.attributes WHERE name = 'status') AS status,
         (SELECT attribute_id FROM atlasco.attributes WHERE name = 'temperature') AS temperature,
         (SELECT attribute_id FROM atlasco.attributes WHERE name = 'priority') AS priority
), matches AS (
  SELECT v.entity_id FROM atlasco.entity_values v, ids
  WHERE v.tenant_id = 7 AND v.attribute_id = ids.status
    AND left(v.string_value, 200) = 'pending' AND v.string_value = 'pending'
  INTERSECT
  SELECT v.entity_id FROM atlasco.entity_values v, ids
  WHERE v.tenant_id = 7 AND v.attribute_id = ids.temperature AND v.float_value > 35
  INTERSECT
  SELECT v.entity_id FROM atlasco.entity_values v, ids
  WHERE v.tenant_id = 7 AND v.attribute_id = ids.priority AND v.integer_value >= 4
), page AS (
  SELECT entity_id FROM matches ORDER BY entity_id LIMIT 100
)
SELECT page.entity_id, t.float_value AS temperature, p.integer_value AS priority
FROM page, ids
JOIN atlasco.entity_values t ON t.tenant_id = 7 AND t.attribute_id = ids.temperature
JOIN atlasco.entity_values p ON p.tenant_id = 7 AND p.attribute_id = ids.priority
WHERE t.entity_id = page.entity_id AND p.entity_id = page.entity_id
ORDER BY page.entity_id;

-- name: temperature_distribution
-- Analytical: each tenant's temperature histogram and percentiles, across every tenant:
-- an index-only scan of the float index, no join.
SELECT v.tenant_id,
       width_bucket(v.float_value, -10, 50, 12) AS bucket,
       count(*) AS entities,
       round(avg(v.float_value)::numeric, 2) AS avg_temperature
FROM atlasco.entity_values v
WHERE v.attribute_id = (SELECT attribute_id FROM atlasco.attributes WHERE name = 'temperature')
  AND v.float_value IS NOT NULL
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: jsonb_entity
-- The whole entity as one document: one row of the materialized view instead of aggregating
-- up to 10k value rows.
SELECT entity_id, attrs
FROM atlasco.entity_attributes_mv
WHERE tenant_id = 7
  AND entity_id = (SELECT min(entity_id) + 41 FROM atlasco.entities WHERE tenant_id = 7);

-- name: jsonb_filter
-- Attribute-value lookup on the documents through the GIN index (containment).
SELECT entity_id, attrs ->> 'temperature' AS temperature
FROM atlasco.entity_attributes_mv
WHERE tenant_id = 7
  AND attrs @> '{"status": "pending", "priority": 5}'
LIMIT 100;
