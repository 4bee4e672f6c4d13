//! Capture into Kafka end to end: a real PostgreSQL 15, a real Tansu broker per test, and
//! `freshet run` as a child process. What arrived in the topics is read back with Freshet's
//! own decoder (`freshet tail`'s) and compared with the source, row by row.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;
use support::atlasco::*;
use support::kafka::{topic_lines, Broker, Engine};
use support::types::{assert_types, EXPECTED_SQL, TYPES_DDL, TYPE_ROWS};
use support::{exit_status, Daemon, Setup};

impl Setup {
    /// One table (`ddl` creates it in `public`), its publication, a broker on `engine`, and
    /// `freshet run` streaming it into Kafka; `registry` adds a schema_registry.
    async fn one_table(
        prefix: &str,
        ddl: &str,
        table: &str,
        engine: Engine,
        registry: Option<&str>,
    ) -> (Setup, Broker, PathBuf, Daemon) {
        let s = Setup::new(prefix, ddl).await;
        s.publish(table).await;
        let broker = Broker::start(engine);
        let pipeline =
            s.kafka_pipeline(&[&format!("public.{table}")], &broker.brokers(), "", false);
        if let Some(url) = registry {
            with_registry(&pipeline, url);
        }
        let daemon = s.start_kafka(&pipeline);
        s.slot_ready(&daemon).await;
        (s, broker, pipeline, daemon)
    }
}

async fn wait_lines(
    pipeline: &std::path::Path,
    table: &str,
    at_least: usize,
    daemon: &Daemon,
) -> Vec<Json> {
    support::wait_for(
        &format!(
            "{at_least} records of {table} in Kafka; log:\n{}",
            daemon.log_text()
        ),
        Duration::from_secs(120),
        || async move {
            let lines = topic_lines(pipeline, table).await;
            (lines.len() >= at_least).then_some(lines)
        },
    )
    .await
}

#[tokio::test]
async fn every_type_arrives_in_kafka_equal_to_the_source_row() {
    let s = Setup::new("kafka_types", "").await;
    s.client
        .batch_execute(&TYPES_DDL.replace("PUB_PLACEHOLDER", &s.slot))
        .await
        .unwrap();
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.kafka_pipeline(&["public.all_types"], &broker.brokers(), "", false);
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    s.client.batch_execute(TYPE_ROWS).await.unwrap();
    let lines = wait_lines(&pipeline, "public.all_types", 4, &daemon).await;
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());

    s.client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
    let rows = s.client.query(EXPECTED_SQL, &[]).await.unwrap();
    assert_eq!(lines.len(), 4);
    let captured: Vec<&Json> = lines.iter().collect();
    assert!(captured.iter().all(|l| l["op"] == "c"));
    assert_types(&captured, &rows);
    // Key = primary key; the identity rides in the headers as well as the envelope.
    for l in &lines {
        assert_eq!(l["key"]["id"], l["after"]["id"], "{l}");
        assert_eq!(l["headers"]["freshet.lsn"], l["lsn"]);
        assert_eq!(l["headers"]["freshet.seq"], l["seq"].to_string());
    }
}

#[tokio::test]
async fn eav_records_carry_the_attribute_name_valid_at_their_commit() {
    let s = Setup::atlasco("kafka_eav").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.kafka_pipeline(&ATLASCO, &broker.brokers(), EAV, false);
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    let before = topic_lines(&pipeline, "atlasco.entity_values").await.len();
    assert_eq!(before, 0);
    let schemas_before = schema_count(&pipeline, "entity_values").await;
    s.client
        .batch_execute(
            "INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) VALUES (1, 10, 'sensor');
             INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, float_value) VALUES (1, 10, 2, 21.5);
             UPDATE atlasco.attributes SET name = 'temperature_c' WHERE attribute_id = 2;
             UPDATE atlasco.entity_values SET float_value = 22.0 WHERE tenant_id = 1 AND entity_id = 10 AND attribute_id = 2;
             INSERT INTO atlasco.attributes (attribute_id, name, data_type) VALUES (4, 'firmware', 'string');
             INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value) VALUES (1, 10, 4, 'v1.2');
             DELETE FROM atlasco.entity_values WHERE tenant_id = 1 AND entity_id = 10 AND attribute_id = 2;",
        )
        .await
        .unwrap();
    let mut lines = wait_lines(&pipeline, "atlasco.entity_values", 4, &daemon).await;
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    lines.sort_by_key(|l| (l["lsn"].as_str().map(lsn), l["seq"].as_u64()));
    let seen: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["op"].as_str().unwrap().to_owned(),
                l["attribute"]["name"].as_str().unwrap_or("?").to_owned(),
                l["attribute"]["data_type"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
            )
        })
        .collect();
    let want = [
        ("c", "temperature", "float"),
        ("u", "temperature_c", "float"),
        ("c", "firmware", "string"),
        ("d", "temperature_c", "float"),
    ];
    assert_eq!(
        seen,
        want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())),
        "{lines:#?}"
    );
    // The typed value columns stay typed; the key is tenant + entity.
    assert_eq!(lines[0]["after"]["float_value"], 21.5);
    assert_eq!(lines[2]["after"]["string_value"], "v1.2");
    assert_eq!(
        lines[0]["key"],
        serde_json::json!({"tenant_id": 1, "entity_id": 10})
    );
    // A new attribute is data, not a schema change.
    assert_eq!(
        schema_count(&pipeline, "entity_values").await,
        schemas_before.max(2)
    );
}

/// Schemas published for a table's topic (value and key subjects) in the schema topic.
async fn schema_count(pipeline: &std::path::Path, table: &str) -> usize {
    let p = freshet::config::load(pipeline).unwrap();
    let k = p.kafka.as_ref().unwrap();
    let topic = freshet::transform::encoding::schema_topic(&k.topic_prefix);
    freshet::kafka::tail::read_all(k, &topic)
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.value.as_ref())
        .filter_map(|v| serde_json::from_slice::<Json>(v).ok())
        .filter(|d| {
            d["subject"]
                .as_str()
                .is_some_and(|s| s.contains(&format!(".{table}-")))
        })
        .count()
}

/// How often each change identity (commit LSN, sequence) arrived.
fn identity_counts(lines: &[Json]) -> HashMap<(String, u64), usize> {
    let mut seen = HashMap::new();
    for l in lines {
        let identity = (
            l["lsn"].as_str().unwrap().to_owned(),
            l["seq"].as_u64().unwrap(),
        );
        *seen.entry(identity).or_default() += 1;
    }
    seen
}

fn lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

#[tokio::test]
async fn add_column_mid_stream_registers_a_new_version_and_both_decode() {
    let (s, _broker, pipeline, mut daemon) = Setup::one_table(
        "kafka_ddl",
        "CREATE TABLE items (id int PRIMARY KEY, name text);",
        "items",
        Engine::Memory,
        None,
    )
    .await;
    s.client
        .batch_execute(
            "INSERT INTO items VALUES (1, 'old');
             ALTER TABLE items ADD COLUMN price numeric(10,2);
             INSERT INTO items VALUES (2, 'new', 9.99);
             UPDATE items SET price = 1.50 WHERE id = 1;",
        )
        .await
        .unwrap();
    let lines = wait_lines(&pipeline, "public.items", 3, &daemon).await;
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    let mut lines = lines;
    lines.sort_by_key(|l| (l["lsn"].as_str().map(lsn), l["seq"].as_u64()));
    assert_eq!(
        lines[0]["after"],
        serde_json::json!({"id": 1, "name": "old"})
    );
    assert_eq!(
        lines[1]["after"],
        serde_json::json!({"id": 2, "name": "new", "price": "9.99"})
    );
    assert_eq!(
        lines[2]["after"],
        serde_json::json!({"id": 1, "name": "old", "price": "1.50"})
    );
    // Two value versions (and one key version, unchanged by the new column).
    assert_eq!(schema_count(&pipeline, "items").await, 3);
}

#[tokio::test]
async fn an_incompatible_type_change_stops_before_it_is_acknowledged() {
    let (s, _broker, pipeline, mut daemon) = Setup::one_table(
        "kafka_incompat",
        "CREATE TABLE gauges (id int PRIMARY KEY, reading text);",
        "gauges",
        Engine::Memory,
        None,
    )
    .await;
    s.client
        .batch_execute("INSERT INTO gauges VALUES (1, '12')")
        .await
        .unwrap();
    support::caught_up(&s.client, &s.slot, &daemon).await;
    // The ALTER's own transaction carries no row change and may be acknowledged; the first
    // record in the new shape may not.
    s.client
        .batch_execute("ALTER TABLE gauges ALTER COLUMN reading TYPE int USING reading::int")
        .await
        .unwrap();
    s.client
        .batch_execute("INSERT INTO gauges VALUES (2, 13)")
        .await
        .unwrap();
    let status = exit_status(&mut daemon).await;
    assert_eq!(status.code(), Some(1), "log:\n{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(
        log.contains("gauges-value") && log.contains("column reading"),
        "the error names the subject and the difference:\n{log}"
    );
    assert_eq!(
        unacknowledged_inserts(&s.client, &s.slot).await,
        1,
        "the slot still holds the first insert in the new shape"
    );
    assert_eq!(topic_lines(&pipeline, "public.gauges").await.len(), 1);
}

#[tokio::test]
async fn snapshot_and_stream_through_kafka_equal_the_source() {
    let s = Setup::new("kafka_snap", "").await;
    freshet_loadgen_fill(&s.db.url, 30);
    s.publish_atlasco().await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.kafka_pipeline(&ATLASCO, &broker.brokers(), EAV, true);
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    finish(loadgen_spawn(&s.db.url, 300, "8s"));
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    let lines = atlasco_lines(&pipeline).await;
    let got = support::replay(&lines, atlasco_key, false);
    assert_same_state(&got, &source_state(&s.client).await);
    assert_entity_order(&lines);
}

/// Within a partition, each entity's records are in commit order. A record whose identity
/// the partition already holds is a replay after a crash (consumers skip it); every other
/// record must come after the entity's last one.
fn assert_entity_order(lines: &[Json]) {
    // (table, key) → (partition, newest identity, identities seen).
    type Seen = (i64, (u64, u64), std::collections::HashSet<(u64, u64)>);
    let mut by_key: HashMap<(String, String), Seen> = HashMap::new();
    let mut sorted: Vec<&Json> = lines.iter().filter(|l| !l["key"].is_null()).collect();
    sorted.sort_by_key(|l| (l["partition"].as_i64(), l["offset"].as_i64()));
    for l in sorted {
        let key = (
            l["table"].as_str().unwrap().to_owned(),
            l["key"].to_string(),
        );
        let partition = l["partition"].as_i64().unwrap();
        let id = (lsn(l["lsn"].as_str().unwrap()), l["seq"].as_u64().unwrap());
        let entry = by_key
            .entry(key.clone())
            .or_insert_with(|| (partition, id, Default::default()));
        assert_eq!(entry.0, partition, "{key:?} moved partitions");
        if !entry.2.insert(id) {
            continue;
        }
        assert!(
            entry.1 <= id,
            "{key:?}: offset {} holds {id:?} after {:?}",
            l["offset"],
            entry.1
        );
        entry.1 = id;
    }
}

fn registry_yaml(url: &str) -> String {
    format!("  schema_registry:\n    url: {url}\n")
}

/// The pipeline file with a `schema_registry` in its kafka section.
fn with_registry(path: &std::path::Path, url: &str) {
    let yaml = std::fs::read_to_string(path).unwrap();
    let yaml = yaml.replace(
        "  topic_prefix:",
        &format!("{}  topic_prefix:", registry_yaml(url)),
    );
    std::fs::write(path, yaml).unwrap();
}

#[tokio::test]
async fn with_a_registry_records_use_the_confluent_wire_format_and_incompatible_changes_stop() {
    // The registry is a fake of the Confluent REST subset (none can run here), with real
    // BACKWARD checks: see tests/support/registry.rs.
    let registry = support::registry::FakeRegistry::start().await;
    let (s, _broker, pipeline, mut daemon) = Setup::one_table(
        "kafka_registry",
        "CREATE TABLE meters (id int PRIMARY KEY, reading text);",
        "meters",
        Engine::Memory,
        Some(&registry.url),
    )
    .await;
    s.client
        .batch_execute(
            "INSERT INTO meters VALUES (1, 'a'), (2, 'b');
             ALTER TABLE meters ADD COLUMN note text;
             INSERT INTO meters VALUES (3, 'c', 'new column');",
        )
        .await
        .unwrap();
    let lines = wait_lines(&pipeline, "public.meters", 3, &daemon).await;
    support::caught_up(&s.client, &s.slot, &daemon).await;
    let topic = format!("{}.public.meters", s.slot);
    assert_eq!(
        registry.versions(&format!("{topic}-value")),
        2,
        "ADD COLUMN is a new version"
    );
    assert_eq!(registry.versions(&format!("{topic}-key")), 1);
    let mut rows: Vec<Json> = lines.iter().map(|l| l["after"].clone()).collect();
    rows.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(
        rows,
        [
            serde_json::json!({"id": 1, "reading": "a"}),
            serde_json::json!({"id": 2, "reading": "b"}),
            serde_json::json!({"id": 3, "reading": "c", "note": "new column"}),
        ]
    );
    // The raw bytes: magic 0 and a 4-byte schema id.
    let p = freshet::config::load(&pipeline).unwrap();
    let raw = freshet::kafka::tail::read_all(p.kafka.as_ref().unwrap(), &topic)
        .await
        .unwrap();
    assert!(raw
        .iter()
        .all(|r| r.value.as_ref().is_some_and(|v| v[0] == 0 && v.len() > 5)));

    // text → int cannot read the old data: the registry refuses, Freshet stops, and nothing
    // past the change is acknowledged.
    s.client
        .batch_execute("ALTER TABLE meters ALTER COLUMN reading TYPE int USING 0")
        .await
        .unwrap();
    s.client
        .batch_execute("INSERT INTO meters VALUES (4, 4, NULL)")
        .await
        .unwrap();
    let status = exit_status(&mut daemon).await;
    assert_eq!(status.code(), Some(1), "log:\n{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(
        log.contains(&format!("{topic}-value"))
            && log.contains("column reading")
            && log.contains("409"),
        "the error names the subject, the difference and the registry's answer:\n{log}"
    );
    assert_eq!(
        unacknowledged_inserts(&s.client, &s.slot).await,
        1,
        "the slot still holds the first insert in the new shape"
    );
    assert_eq!(topic_lines(&pipeline, "public.meters").await.len(), 3);
}

#[tokio::test]
async fn a_failing_or_malformed_registry_holds_the_acknowledgement_until_it_recovers() {
    // A fake of the Confluent REST subset (see tests/support/registry.rs).
    let registry = support::registry::FakeRegistry::start().await;
    registry.set(support::registry::Behaviour::Malformed);
    let (s, _broker, pipeline, mut daemon) = Setup::one_table(
        "kafka_registry_down",
        "CREATE TABLE t (id int PRIMARY KEY);",
        "t",
        Engine::Memory,
        Some(&registry.url),
    )
    .await;
    s.client
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let wanted = format!("schema registry {}", registry.url);
    support::wait_for(
        "the registry error in the log",
        Duration::from_secs(60),
        || {
            let found = daemon.log_text().contains(&wanted);
            async move { found.then_some(()) }
        },
    )
    .await;
    registry.set(support::registry::Behaviour::Failing);
    support::wait_for("the 500 in the log", Duration::from_secs(60), || {
        let log = daemon.log_text();
        async move { log.contains("500").then_some(()) }
    })
    .await;
    let confirmed_during = support::confirmed_flush(&s.client, &s.slot).await.unwrap();
    assert!(topic_lines(&pipeline, "public.t").await.is_empty());
    registry.set(support::registry::Behaviour::Normal);
    let lines = wait_lines(&pipeline, "public.t", 1, &daemon).await;
    assert_eq!(lines[0]["after"], serde_json::json!({"id": 1}));
    // Acknowledging the insert means confirming a position past its commit record.
    let commit = lines[0]["lsn"].as_str().unwrap();
    assert!(
        lsn(&confirmed_during) <= lsn(commit),
        "the insert committed at {commit} was acknowledged ({confirmed_during}) while its schema could not be registered"
    );
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert!(daemon.running(), "recovered in-process");
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
}

#[tokio::test]
async fn kill_9_under_load_loses_nothing_and_repeats_only_unconfirmed_changes() {
    let s = Setup::new("kafka_kill", "").await;
    freshet_loadgen_fill(&s.db.url, 30);
    s.publish_atlasco().await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.kafka_pipeline(&ATLASCO, &broker.brokers(), EAV, true);
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    let load = loadgen_spawn(&s.db.url, 1500, "24s");
    let mut crash_positions = Vec::new();
    for pause in [3u64, 5, 4, 6] {
        tokio::time::sleep(Duration::from_secs(pause)).await;
        daemon.kill9();
        crash_positions.push(support::confirmed_flush(&s.client, &s.slot).await.unwrap());
        daemon = s.start_kafka(&pipeline);
    }
    finish(load);
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());

    let lines = identities_only(&atlasco_lines(&pipeline).await);
    // by_identity panics if a repeated identity differs in content.
    let unique = support::by_identity(&lines).len();
    let seen = identity_counts(&lines);
    let earliest_crash = crash_positions.iter().map(|c| lsn(c)).min().unwrap();
    for ((at, seq), n) in &seen {
        if *n > 1 {
            assert!(
                lsn(at) >= earliest_crash,
                "{at}/{seq} was repeated {n} times, yet it was confirmed before any crash ({crash_positions:?})"
            );
        }
    }
    assert!(unique > 1000, "a real load was captured: {unique} changes");
    let got = support::replay(&lines, atlasco_key, false);
    assert_same_state(&got, &source_state(&s.client).await);
    assert_entity_order(&atlasco_lines(&pipeline).await);
}

/// `freshet status --ready` (the container health check) against the process on `port`.
/// `freshet run` into Kafka with `FRESHET_STOP_TIMEOUT` set.
fn start_bounded(s: &Setup, pipeline: &std::path::Path, bound: &str) -> Daemon {
    Daemon::start_env(
        pipeline,
        &[
            "--state-dir",
            &s.dir.path().join("state").display().to_string(),
        ],
        &s.dir.path().join("freshet.log"),
        &[("FRESHET_STOP_TIMEOUT", bound.to_string())],
    )
}

/// The position the last clean stop's log line says it confirmed.
fn logged_confirmed(log: &str) -> Option<String> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("capture stopped cleanly"))?;
    let at = line.split("confirmed=").nth(1)?;
    Some(at.split_whitespace().next()?.to_string())
}

#[tokio::test]
async fn sigterm_under_load_stops_within_the_bound_confirms_what_it_produced_and_repeats_nothing() {
    let s = Setup::new("kafka_sigterm", "").await;
    freshet_loadgen_fill(&s.db.url, 30);
    s.publish_atlasco().await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.kafka_pipeline(&ATLASCO, &broker.brokers(), EAV, true);
    let bound = Duration::from_secs(10);
    let mut daemon = start_bounded(&s, &pipeline, "10s");
    s.slot_ready(&daemon).await;
    let load = loadgen_spawn(&s.db.url, 1500, "20s");
    for pause in [3u64, 5, 4] {
        tokio::time::sleep(Duration::from_secs(pause)).await;
        let began = std::time::Instant::now();
        assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
        let took = began.elapsed();
        assert!(
            took < bound,
            "SIGTERM took {took:?}, the bound is {bound:?}"
        );
        // The stop's log line says where the next start reads from, and the slot agrees.
        let logged = logged_confirmed(&daemon.log_text()).expect("the clean stop's log line");
        let slot = support::confirmed_flush(&s.client, &s.slot).await.unwrap();
        assert_eq!(lsn(&slot), lsn(&logged), "the slot's confirmed position");
        daemon = start_bounded(&s, &pipeline, "10s");
    }
    finish(load);
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());

    let lines = identities_only(&atlasco_lines(&pipeline).await);
    // A clean stop confirms exactly what Kafka holds: no change is read, or written, twice.
    let seen = identity_counts(&lines);
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "repeated after clean stops: {repeated:?}"
    );
    assert!(
        lines.len() > 1000,
        "a real load was captured: {}",
        lines.len()
    );
    let got = support::replay(&lines, atlasco_key, false);
    assert_same_state(&got, &source_state(&s.client).await);
}

#[tokio::test]
async fn a_stop_that_cannot_drain_exits_at_the_bound_and_the_next_start_loses_nothing() {
    let s = Setup::new("kafka_stop_bound", "").await;
    freshet_loadgen_fill(&s.db.url, 20);
    s.publish_atlasco().await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.kafka_pipeline(&ATLASCO, &broker.brokers(), EAV, true);
    let mut daemon = start_bounded(&s, &pipeline, "5s");
    s.slot_ready(&daemon).await;
    let load = loadgen_spawn(&s.db.url, 1000, "8s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A frozen broker: nothing produced from now on is acknowledged, so the drain cannot end.
    broker.signal("STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let confirmed_before = support::confirmed_flush(&s.client, &s.slot).await.unwrap();
    let began = std::time::Instant::now();
    let code = daemon.terminate();
    let took = began.elapsed();
    let log = daemon.log_text();
    assert_eq!(code, Some(75), "log:\n{log}");
    assert!(
        took < Duration::from_secs(9),
        "took {took:?} with a 5s bound"
    );
    assert!(log.contains("not stopped within the stop timeout"), "{log}");
    // Nothing unacknowledged was confirmed on the way out.
    let confirmed_after = support::confirmed_flush(&s.client, &s.slot).await.unwrap();
    assert_eq!(lsn(&confirmed_after), lsn(&confirmed_before));
    broker.signal("CONT");
    finish(load);
    let mut daemon = start_bounded(&s, &pipeline, "5s");
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    let lines = identities_only(&atlasco_lines(&pipeline).await);
    let got = support::replay(&lines, atlasco_key, false);
    assert_same_state(&got, &source_state(&s.client).await);
}

#[tokio::test]
async fn a_30s_broker_outage_refused_black_holed_and_frozen_loses_nothing_without_a_restart() {
    let s = Setup::new("kafka_outage", "").await;
    freshet_loadgen_fill(&s.db.url, 20);
    s.publish_atlasco().await;
    let (broker_port, proxy_port) = (support::kafka::free_port(), support::kafka::free_port());
    let broker = Broker::start_advertising(Engine::Memory, broker_port, proxy_port);
    let proxy = support::kafka::Proxy::start(proxy_port, broker_port).await;
    let pipeline = s.kafka_pipeline(&ATLASCO, &broker.brokers(), EAV, true);
    let (mut daemon, metrics_port) = s.start_listening(&pipeline, &[]);
    s.slot_ready(&daemon).await;
    let load = loadgen_spawn(&s.db.url, 400, "45s");
    tokio::time::sleep(Duration::from_secs(4)).await;
    use support::kafka::Mode;
    let (status, body) = support::http_get(metrics_port, "/readyz");
    assert_eq!(status, 200, "ready before the outage: {body}");
    for (mode, secs) in [
        (Mode::Refuse, 10u64),
        (Mode::Forward, 3),
        (Mode::BlackHole, 10),
        (Mode::Forward, 3),
    ] {
        proxy.set(mode);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        if mode == Mode::Refuse {
            // Commits have waited 10 s for Kafka: more than three 1 s heartbeats, 5 s at least.
            let (status, body) = support::http_get(metrics_port, "/readyz");
            assert_eq!(
                status, 503,
                "not ready while nothing is acknowledged: {body}"
            );
            assert!(body.contains("for its acknowledgement"), "{body}");
            // The container health check says the same, by its exit code.
            let (code, text) = support::status(metrics_port, "--ready");
            assert_eq!(code, Some(1), "{text}");
            assert!(text.contains("for its acknowledgement"), "{text}");
        }
    }
    let stalled_at = support::confirmed_flush(&s.client, &s.slot).await.unwrap();
    broker.signal("STOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = support::confirmed_flush(&s.client, &s.slot).await.unwrap();
    broker.signal("CONT");
    finish(load);
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert!(
        daemon.running(),
        "freshet rode out the outage without exiting; log:\n{}",
        daemon.log_text()
    );
    let (status, body) = support::http_get(metrics_port, "/readyz");
    assert_eq!(
        status, 200,
        "ready again once acknowledgements flow: {body}"
    );
    assert_eq!(support::status(metrics_port, "--ready").0, Some(0));
    let metrics = support::scrape(metrics_port);
    let event = |kind: &str| support::events(&metrics, kind, "kafka");
    // A restart is counted under the half's name, whichever it is.
    let restarts =
        support::sample(&metrics, "freshet_events_total{kind=\"restarted\"").unwrap_or(0.0);
    assert_eq!(
        restarts, 0.0,
        "librdkafka's retries carried the outage, no pipeline restart:\n{metrics}"
    );
    assert!(
        event("stalled") >= 1.0 && event("recovered") >= 1.0,
        "the stall and its end were reported:\n{metrics}"
    );
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    // The acknowledgement never moves backwards, through an outage included.
    assert!(support::lsn_ge(&during, &stalled_at));
    let lines = atlasco_lines(&pipeline).await;
    let got = support::replay(&identities_only(&lines), atlasco_key, false);
    assert_same_state(&got, &source_state(&s.client).await);
    assert_entity_order(&lines);
}

#[tokio::test]
async fn a_broker_killed_and_restarted_on_its_durable_engine_loses_nothing() {
    let (s, mut broker, pipeline, mut daemon) = Setup::one_table(
        "kafka_durable",
        "CREATE TABLE events (id int PRIMARY KEY, payload text);",
        "events",
        Engine::Sqlite,
        None,
    )
    .await;
    for i in 0..60 {
        s.client
            .execute(
                "INSERT INTO events VALUES ($1, $2)",
                &[&i, &format!("before {i}")],
            )
            .await
            .unwrap();
    }
    support::caught_up(&s.client, &s.slot, &daemon).await;
    broker.kill9();
    // Written while the broker is down: held, not acknowledged, delivered after the restart.
    for i in 60..120 {
        s.client
            .execute(
                "INSERT INTO events VALUES ($1, $2)",
                &[&i, &format!("during {i}")],
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart();
    for i in 120..150 {
        s.client
            .execute(
                "INSERT INTO events VALUES ($1, $2)",
                &[&i, &format!("after {i}")],
            )
            .await
            .unwrap();
    }
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert!(daemon.running(), "log:\n{}", daemon.log_text());
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    let lines = topic_lines(&pipeline, "public.events").await;
    let mut ids: Vec<i64> = support::by_identity(&identities_only(&lines))
        .iter()
        .map(|l| l["after"]["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..150).collect::<Vec<_>>());
}

/// Inserts the slot would send again: those not acknowledged (the publication is named after
/// the slot in these tests). The slot must be inactive.
async fn unacknowledged_inserts(client: &tokio_postgres::Client, slot: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1::text::name, NULL, NULL,
               'proto_version', '1', 'publication_names', $1::text)
             WHERE substring(data FROM 1 FOR 1) = 'I'::bytea",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn after_a_restart_eav_names_are_the_ones_valid_at_the_resume_position() {
    let s = Setup::atlasco("kafka_eav_restart").await;
    let broker = Broker::start(Engine::Memory);
    // Without a snapshot the catalog's own topic never holds attribute 2 (as after its
    // retention): the names come from Freshet's state topic alone.
    let pipeline = s.kafka_pipeline(&ATLASCO, &broker.brokers(), EAV, false);
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute(
            "INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) VALUES (2, 20, 'sensor');
             INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, float_value) VALUES (2, 20, 2, 1.0);",
        )
        .await
        .unwrap();
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    // While Freshet is down: a change under the old name, the rename, a change under the new.
    s.client
        .batch_execute(
            "UPDATE atlasco.entity_values SET float_value = 2.0 WHERE tenant_id = 2 AND entity_id = 20;
             UPDATE atlasco.attributes SET name = 'temp_c' WHERE attribute_id = 2;
             UPDATE atlasco.entity_values SET float_value = 3.0 WHERE tenant_id = 2 AND entity_id = 20;",
        )
        .await
        .unwrap();
    let mut daemon = s.start_kafka(&pipeline);
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    assert!(
        daemon.log_text().contains("attribute catalog restored"),
        "{}",
        daemon.log_text()
    );
    let mut lines: Vec<Json> = topic_lines(&pipeline, "atlasco.entity_values")
        .await
        .into_iter()
        // The initial snapshot may read the first row too (`r`, after its `c`).
        .filter(|l| l["key"]["entity_id"] == 20 && l["op"] != "r")
        .collect();
    lines.sort_by_key(|l| (l["lsn"].as_str().map(lsn), l["seq"].as_u64()));
    let names: Vec<(f64, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["after"]["float_value"].as_f64().unwrap(),
                l["attribute"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [(1.0, "temperature"), (2.0, "temperature"), (3.0, "temp_c")]
    );
}

#[tokio::test]
async fn the_attribute_catalog_is_read_as_of_the_slots_start() {
    let s = Setup::atlasco("kafka_eav_slot_start").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.kafka_pipeline(&ATLASCO, &broker.brokers(), EAV, false);
    // A rename still open when Freshet starts: creating the slot waits for it to end, and it
    // commits before the slot's consistent point, so the stream never carries it.
    let renamer = s.db.client().await;
    renamer
        .batch_execute(
            "BEGIN; UPDATE atlasco.attributes SET name = 'temp_c' WHERE attribute_id = 2",
        )
        .await
        .unwrap();
    let mut daemon = s.start_kafka(&pipeline);
    support::wait_for(
        "the slot to be in creation",
        Duration::from_secs(60),
        || async {
            s.client
                .query_opt(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                    &[&s.slot],
                )
                .await
                .unwrap()
        },
    )
    .await;
    renamer.batch_execute("COMMIT").await.unwrap();
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute(
            "INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) VALUES (2, 20, 'sensor');
             INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, float_value) VALUES (2, 20, 2, 1.0);",
        )
        .await
        .unwrap();
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    let lines = topic_lines(&pipeline, "atlasco.entity_values").await;
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["attribute"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["temp_c"],
        "the name committed before the slot's start"
    );
}

#[tokio::test]
async fn check_reports_the_brokers_and_the_topics_it_will_create() {
    let s = Setup::new("kafka_check", "CREATE TABLE t (id int PRIMARY KEY);").await;
    s.publish("t").await;
    let check = |pipeline: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_freshet"))
            .args(["check", "--pipeline"])
            .arg(pipeline)
            .output()
            .unwrap()
    };
    let broker = Broker::start(Engine::Memory);
    let out = check(&s.kafka_pipeline(&["public.t"], &broker.brokers(), "", false));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 broker(s) answer"), "{text}");
    assert!(
        text.contains(&format!("creates the others ({}.public.t)", s.slot)),
        "{text}"
    );

    let dead = format!("127.0.0.1:{}", support::kafka::free_port());
    let out = check(&s.kafka_pipeline(&["public.t"], &dead, "", false));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("FIX   kafka {dead}")), "{text}");
}

#[tokio::test]
async fn an_incompatible_change_made_while_freshet_was_down_is_caught_too() {
    let (s, _broker, pipeline, mut daemon) = Setup::one_table(
        "kafka_incompat_down",
        "CREATE TABLE dials (id int PRIMARY KEY, reading text);",
        "dials",
        Engine::Memory,
        None,
    )
    .await;
    s.client
        .batch_execute("INSERT INTO dials VALUES (1, 'x')")
        .await
        .unwrap();
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    // The next run's first version of the table is compared with what the schema topic has.
    s.client
        .batch_execute(
            "ALTER TABLE dials ALTER COLUMN reading TYPE int USING 0;
             INSERT INTO dials VALUES (2, 2);",
        )
        .await
        .unwrap();
    let mut daemon = s.start_kafka(&pipeline);
    let status = exit_status(&mut daemon).await;
    assert_eq!(status.code(), Some(1), "log:\n{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(
        log.contains(&format!("{}.public.dials-value", s.slot)) && log.contains("earlier run"),
        "{log}"
    );
    assert_eq!(unacknowledged_inserts(&s.client, &s.slot).await, 1);
    assert_eq!(topic_lines(&pipeline, "public.dials").await.len(), 1);
}

#[tokio::test]
async fn truncate_is_one_record_ordered_by_identity_and_keyless_tables_keep_one_partition() {
    let s = Setup::new(
        "kafka_truncate",
        "CREATE TABLE readings (id int PRIMARY KEY, v text);
         CREATE TABLE log (line text);
         ALTER TABLE log REPLICA IDENTITY FULL;",
    )
    .await;
    s.publish("readings, log").await;
    let broker = Broker::start(Engine::Memory);
    let pipeline = s.kafka_pipeline(
        &["public.readings", "public.log"],
        &broker.brokers(),
        "",
        false,
    );
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute(
            "INSERT INTO readings SELECT g, 'v' || g FROM generate_series(1, 20) g;
             INSERT INTO log SELECT 'line ' || g FROM generate_series(1, 10) g;
             TRUNCATE readings;
             INSERT INTO readings VALUES (100, 'after');",
        )
        .await
        .unwrap();
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());

    let readings = topic_lines(&pipeline, "public.readings").await;
    let truncates: Vec<&Json> = readings.iter().filter(|l| l["op"] == "t").collect();
    assert_eq!(
        truncates.len(),
        1,
        "one TRUNCATE record per table: {truncates:?}"
    );
    assert_eq!(truncates[0]["partition"], 0);
    assert!(truncates[0]["key"].is_null());
    // Replayed in change-identity order across partitions (as Freshet's own sink orders
    // them), the topic leaves only the row written after the TRUNCATE.
    let state = support::replay(&identities_only(&readings), |_| vec!["id"], true);
    assert_eq!(state["readings"].len(), 1, "{:?}", state["readings"]);
    assert!(state["readings"].contains_key("100"));
    // Keyed records sit where Kafka's default partitioner (the Java client's) puts their key.
    let p = freshet::config::load(&pipeline).unwrap();
    let raw = freshet::kafka::tail::read_all(
        p.kafka.as_ref().unwrap(),
        &format!("{}.public.readings", s.slot),
    )
    .await
    .unwrap();
    let keyed: Vec<_> = raw.iter().filter(|r| r.key.is_some()).collect();
    assert_eq!(keyed.len(), 21);
    for r in keyed {
        let key = r.key.as_deref().unwrap();
        assert_eq!(
            r.partition,
            freshet::kafka::partition::for_key(key, 4),
            "{key:?}"
        );
    }

    let log = topic_lines(&pipeline, "public.log").await;
    assert_eq!(log.len(), 10);
    assert!(
        log.iter()
            .all(|l| l["partition"] == 0 && l["key"].is_null()),
        "no key: one partition, in order"
    );
    let lines: Vec<&str> = log
        .iter()
        .map(|l| l["after"]["line"].as_str().unwrap())
        .collect();
    assert_eq!(
        lines,
        (1..=10).map(|g| format!("line {g}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_update_that_moves_a_row_to_another_key_is_a_delete_a_tombstone_and_a_create() {
    let (s, _broker, pipeline, mut daemon) = Setup::one_table(
        "kafka_rekey",
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text);",
        "accounts",
        Engine::Memory,
        None,
    )
    .await;
    s.client
        .batch_execute(
            "INSERT INTO accounts VALUES (1, 'a');
             UPDATE accounts SET id = 2 WHERE id = 1;
             INSERT INTO accounts VALUES (1, 'b');",
        )
        .await
        .unwrap();
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "log:\n{}", daemon.log_text());
    let lines = topic_lines(&pipeline, "public.accounts").await;
    let history = |id: i64| -> Vec<(String, Json)> {
        let mut h: Vec<&Json> = lines.iter().filter(|l| l["key"]["id"] == id).collect();
        h.sort_by_key(|l| l["offset"].as_i64());
        h.iter()
            .map(|l| {
                let row = if l["op"] == "d" {
                    &l["before"]
                } else {
                    &l["after"]
                };
                (l["op"].as_str().unwrap().to_owned(), row["owner"].clone())
            })
            .collect()
    };
    // Key 1's partition: the insert, the move away as a delete, the new insert; key 2's the
    // create the move made there.
    assert_eq!(
        history(1),
        [
            ("c".to_owned(), Json::from("a")),
            ("d".to_owned(), Json::Null),
            ("c".to_owned(), Json::from("b"))
        ]
    );
    assert_eq!(history(2), [("c".to_owned(), Json::from("a"))]);
    // Raw records: the delete, then its tombstone, on key 1's partition, each naming the new
    // key; the create on key 2's, naming the old one. Both keep the move's identity.
    let p = freshet::config::load(&pipeline).unwrap();
    let k = p.kafka.as_ref().unwrap();
    let raw = freshet::kafka::tail::read_all(k, &format!("{}.public.accounts", s.slot))
        .await
        .unwrap();
    let mut schemas = freshet::kafka::tail::Schemas::new(k).unwrap();
    let mut key_ids = Vec::new();
    for r in &raw {
        let (schema, value) = schemas.decode(k, r.key.as_deref().unwrap()).await.unwrap();
        key_ids.push(freshet::transform::decode::key_json(&schema, &value).unwrap()["id"].clone());
    }
    let key_id = |r: &freshet::kafka::tail::Raw| {
        key_ids[raw
            .iter()
            .position(|x| x.offset == r.offset && x.partition == r.partition)
            .unwrap()]
        .clone()
    };
    let header = |r: &freshet::kafka::tail::Raw, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let moved: Vec<&freshet::kafka::tail::Raw> = raw
        .iter()
        .filter(|r| {
            header(r, "__debezium.newkey").is_some() || header(r, "__debezium.oldkey").is_some()
        })
        .collect();
    assert_eq!(moved.len(), 3, "delete, tombstone, create");
    // By role: the keys' partitions, not the roles, order the raw records.
    let tombstone = *moved
        .iter()
        .find(|r| r.value.is_none())
        .expect("the tombstone");
    let delete = *moved
        .iter()
        .find(|r| r.value.is_some() && header(r, "__debezium.newkey").is_some())
        .expect("the delete");
    let create = *moved
        .iter()
        .find(|r| header(r, "__debezium.oldkey").is_some())
        .expect("the create");
    assert!(delete.value.is_some() && tombstone.value.is_none() && create.value.is_some());
    assert_eq!(delete.partition, tombstone.partition);
    assert_eq!(tombstone.offset, delete.offset + 1);
    assert_eq!(key_id(delete), 1);
    assert_eq!(key_id(tombstone), 1);
    assert_eq!(key_id(create), 2);
    assert_eq!(
        delete.partition,
        freshet::kafka::partition::for_key(delete.key.as_deref().unwrap(), 4)
    );
    assert_eq!(
        create.partition,
        freshet::kafka::partition::for_key(create.key.as_deref().unwrap(), 4)
    );
    // The headers hold the other key's record key bytes, as the key converter wrote them.
    assert_eq!(
        header(delete, "__debezium.newkey").unwrap().as_slice(),
        create.key.as_deref().unwrap()
    );
    assert_eq!(
        header(create, "__debezium.oldkey").unwrap().as_slice(),
        delete.key.as_deref().unwrap()
    );
    for r in [delete, tombstone, create] {
        assert_eq!(header(r, "freshet.lsn"), header(delete, "freshet.lsn"));
        assert_eq!(header(r, "freshet.seq"), header(delete, "freshet.seq"));
    }
}

#[tokio::test]
async fn a_changed_partition_count_stops_capture_and_a_restart_refuses_until_told() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let (s, broker, pipeline, mut daemon) = Setup::one_table(
        "kafka_partitions",
        "CREATE TABLE t (id int PRIMARY KEY)",
        "t",
        Engine::Memory,
        None,
    )
    .await;
    s.client
        .batch_execute("INSERT INTO t SELECT generate_series(1, 10)")
        .await
        .unwrap();
    support::caught_up(&s.client, &s.slot, &daemon).await;
    let topic = format!("{}.public.t", s.slot);
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    // Tansu has no CreatePartitions: the topic is made again with 8, as an operator might.
    let deleted = admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
    let made = admin
        .create_topics(
            &[NewTopic::new(&topic, 8, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(made.iter().all(|r| r.is_ok()), "{made:?}");
    let said =
        format!("kafka topic {topic} has 8 partitions, but Freshet has been writing it with 4");
    let status = support::wait_for(
        "freshet to notice the new partitions and exit",
        Duration::from_secs(120),
        || {
            let exited = daemon.child.try_wait().ok().flatten();
            async move { exited }
        },
    )
    .await;
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&said), "{log}");

    // A restart refuses too, until the operator says to move on by deleting the record.
    let mut daemon = s.start_kafka(&pipeline);
    let status = exit_status(&mut daemon).await;
    assert_eq!(status.code(), Some(1), "{}", daemon.log_text());
    let record = s
        .dir
        .path()
        .join(format!("state/new/{}.topics.json", s.slot));
    assert!(daemon.log_text().contains(&record.display().to_string()));
    std::fs::remove_file(&record).unwrap();
    let mut daemon = s.start_kafka(&pipeline);
    s.slot_ready(&daemon).await;
    s.client
        .batch_execute("INSERT INTO t VALUES (11)")
        .await
        .unwrap();
    support::caught_up(&s.client, &s.slot, &daemon).await;
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log_text());
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(recorded[&topic], 8, "the new count is recorded: {recorded}");
}
