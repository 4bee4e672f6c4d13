-- AtlasCo example queries. `freshet bench schema` runs each one repeatedly and prints p50/p95
-- and its plan; each starts with a `-- name:` line and ends with a semicolon.
-- Attribute names come from the loadgen catalog: status (string), temperature (float),
-- priority (integer), active (boolean), last_seen (timestamp).

-- name: operational_filter
-- Operational: one tenant's entities matching several attributes at once. Each predicate is a
-- range of one per-type index (tenant, attribute, value, entity); the planner joins those
-- ranges on entity_id, never touching rows of other attributes or other tenants' partitions.
-- Strings are compared on left(…, 200), the indexed prefix, and then in full.
SELECT s.entity_id, t.float_value AS temperature, p.integer_value AS priority
FROM atlasco.entity_values s
JOIN atlasco.entity_values t
  ON t.tenant_id = s.tenant_id AND t.entity_id = s.entity_id
 AND t.attribute_id = (SELECT attribute_id FROM atlasco.attributes WHERE name = 'temperature')
JOIN atlasco.entity_values p
  ON p.tenant_id = s.tenant_id AND p.entity_id = s.entity_id
 AND p.attribute_id = (SELECT attribute_id FROM atlasco.attributes WHERE name = 'priority')
WHERE s.tenant_id = 7
  AND s.attribute_id = (SELECT attribute_id FROM atlasco.attributes WHERE name = 'status')
  AND left(s.string_value, 200) = 'pending' AND s.string_value = 'pending'
  AND t.float_value > 35
  AND p.integer_value >= 4
LIMIT 100;

-- name: temperature_distribution
-- Analytical: the temperature histogram per entity type across every tenant.
SELECT e.entity_type,
       width_bucket(v.float_value, -10, 50, 12) AS bucket,
       count(*) AS entities,
       round(avg(v.float_value)::numeric, 2) AS avg_temperature
FROM atlasco.entity_values v
JOIN atlasco.entities e USING (tenant_id, entity_id)
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
