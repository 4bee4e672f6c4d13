//! The AtlasCo fixtures the Kafka and lake tests share: the schema with a small catalog, the
//! pipeline file, loadgen runs, and the source's state to compare a replay with.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value as Json;

use super::kafka::topic_lines;
use super::{Daemon, Setup};

impl Setup {
    /// The AtlasCo schema with a small catalog, and its publication for this test's slot.
    pub async fn atlasco(prefix: &str) -> Setup {
        let s = Setup::new(prefix, &super::schema_sql()).await;
        s.client
            .batch_execute(ATLASCO_FIXTURES)
            .await
            .expect("atlasco fixtures");
        s.publish_atlasco().await;
        s
    }

    pub async fn publish_atlasco(&self) {
        self.client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE atlasco.tenants, atlasco.attributes, atlasco.entities, atlasco.entity_values
                   WITH (publish_via_partition_root = true)",
                self.slot
            ))
            .await
            .expect("publication");
    }

    pub fn kafka_pipeline(
        &self,
        tables: &[&str],
        brokers: &str,
        extra: &str,
        snapshot: bool,
    ) -> PathBuf {
        let path = self.dir.path().join("pipeline.yaml");
        let mut yaml = super::kafka::pipeline_yaml(
            &self.db.url,
            &self.slot,
            &self.slot,
            tables,
            brokers,
            extra,
        );
        if !snapshot {
            yaml = yaml.replace("source:\n", "source:\n  snapshot: { mode: never }\n");
        }
        std::fs::write(&path, yaml).unwrap();
        path
    }

    pub fn start_kafka(&self, pipeline: &std::path::Path) -> Daemon {
        // A state directory that does not exist yet, as on a new install.
        super::kafka::daemon(
            pipeline,
            &self.dir.path().join("state/new"),
            &self.dir.path().join("freshet.log"),
        )
    }
}

/// Four tenants and a catalog of three attributes, one per value type the tests write.
pub const ATLASCO_FIXTURES: &str =
    "INSERT INTO atlasco.tenants (tenant_id, name) SELECT g, 'tenant-' || g FROM generate_series(1, 4) g;
     INSERT INTO atlasco.attributes (attribute_id, name, data_type) VALUES
       (1, 'status', 'string'), (2, 'temperature', 'float'), (3, 'count', 'integer');";

pub const EAV: &str =
    "transform:\n  eav:\n    values: atlasco.entity_values\n    catalog: atlasco.attributes\n";
pub const ATLASCO: [&str; 4] = [
    "atlasco.tenants",
    "atlasco.attributes",
    "atlasco.entities",
    "atlasco.entity_values",
];

pub fn atlasco_key(table: &str) -> Vec<&'static str> {
    match table {
        "tenants" => vec!["tenant_id"],
        "attributes" => vec!["attribute_id"],
        "entities" => vec!["tenant_id", "entity_id"],
        "entity_values" => vec!["tenant_id", "entity_id", "attribute_id"],
        other => panic!("unexpected table {other}"),
    }
}

/// Every topic of the AtlasCo pipeline, decoded, in one list.
pub async fn atlasco_lines(pipeline: &std::path::Path) -> Vec<Json> {
    let mut all = Vec::new();
    for t in ATLASCO {
        all.extend(topic_lines(pipeline, t).await);
    }
    all
}

/// The source tables as the replayed changes should have them: table → key → row.
pub async fn source_state(
    client: &tokio_postgres::Client,
) -> BTreeMap<String, BTreeMap<String, Json>> {
    let mut state: BTreeMap<String, BTreeMap<String, Json>> = BTreeMap::new();
    for table in ["tenants", "attributes", "entities", "entity_values"] {
        let cols = atlasco_key(table);
        let rows = client
            .query(
                &format!("SELECT to_jsonb(t)::text FROM atlasco.{table} t"),
                &[],
            )
            .await
            .unwrap();
        let entry = state.entry(table.to_string()).or_default();
        for r in rows {
            let row: Json = serde_json::from_str(&r.get::<_, String>(0)).unwrap();
            let key = cols
                .iter()
                .map(|k| row[*k].to_string())
                .collect::<Vec<_>>()
                .join(",");
            entry.insert(key, row);
        }
    }
    state
}

/// Replayed topics equal the source, table by table, row by row (timestamps compared as the
/// instants they are; numbers by value).
pub fn assert_same_state(
    got: &BTreeMap<String, BTreeMap<String, Json>>,
    want: &BTreeMap<String, BTreeMap<String, Json>>,
) {
    if let Some(d) = state_difference(got, want) {
        panic!("{d}");
    }
}

/// The first difference between a replayed state and the source's, if any.
pub fn state_difference(
    got: &BTreeMap<String, BTreeMap<String, Json>>,
    want: &BTreeMap<String, BTreeMap<String, Json>>,
) -> Option<String> {
    for (table, rows) in want {
        let have = got.get(table).cloned().unwrap_or_default();
        if have.len() != rows.len() {
            return Some(format!(
                "{table}: {} rows replayed, {} in the source",
                have.len(),
                rows.len()
            ));
        }
        for (key, row) in rows {
            let Some(h) = have.get(key) else {
                return Some(format!("{table} {key} missing"));
            };
            for (col, v) in row.as_object().unwrap() {
                let hv = &h[col];
                let equal = super::types::same(hv, v)
                    || match (hv.as_str(), v.as_str()) {
                        (Some(a), Some(b)) => instant(a).is_some() && instant(a) == instant(b),
                        _ => false,
                    };
                if !equal {
                    return Some(format!(
                        "{table} {key} {col}: replayed {hv}, the source {v}"
                    ));
                }
            }
        }
    }
    None
}

/// PostgreSQL's timestamptz text ("2026-01-01 10:00:00.5+00") and to_jsonb's
/// ("2026-01-01T10:00:00.5+00:00") as one instant.
pub fn instant(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let s = s.replace(' ', "T");
    let s = if s.len() > 3
        && (s.as_bytes()[s.len() - 3] == b'+' || s.as_bytes()[s.len() - 3] == b'-')
    {
        format!("{s}:00")
    } else {
        s
    };
    chrono::DateTime::parse_from_rfc3339(&s).ok()
}

pub fn freshet_loadgen_fill(url: &str, entities: u32) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args([
            "loadgen",
            "fill",
            "--url",
            url,
            "--tenants",
            "4",
            "--catalog",
            "8",
        ])
        .args(["--entities", &entities.to_string(), "--attributes", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `freshet loadgen run` in the background.
pub fn loadgen_spawn(url: &str, rate: u32, duration: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args([
            "loadgen",
            "run",
            "--url",
            url,
            "--rate",
            &rate.to_string(),
            "--duration",
            duration,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn finish(load: std::process::Child) {
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "loadgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lines without where they lie, so a repeat of a change compares equal to the first.
pub fn identities_only(lines: &[Json]) -> Vec<Json> {
    lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            let o = l.as_object_mut().unwrap();
            o.remove("partition");
            o.remove("offset");
            l
        })
        .collect()
}
