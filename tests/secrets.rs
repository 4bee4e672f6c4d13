//! Secrets stay secret: canary values for the PostgreSQL password (source, warehouse and the
//! router's replica, checked by scram-sha-256 on a cluster of the test's own), the Kafka
//! password (SASL SCRAM-SHA-512, checked by Tansu) and the S3 secret key (signing every
//! request to moto, which checks no signature) drive a whole run, source → Kafka → S3 → the
//! warehouse, and are then searched for in every log line, every record of every topic, every
//! object (Parquet decoded by pyarrow), a dump of every database, the state directory and the
//! HTTP API's answers. A refused login's message is searched too.

mod support;

use std::process::Command;
use std::time::Duration;

use support::atlasco::{ATLASCO, ATLASCO_FIXTURES, EAV};
use support::kafka::Broker;
use support::lake::MotoS3;
use support::{Daemon, OwnCluster};

const PG_CANARY: &str = "canary-pg-7c1f3e9a";
const S3_CANARY: &str = "canary-s3-4b8d2f61";
const KAFKA_CANARY: &str = "canary-kafka-93e05ab2";
const KAFKA_SECURITY: &str = "  security:\n    protocol: sasl_plaintext\n    sasl:\n      mechanism: scram-sha-512\n      username: freshet\n      password: ${CANARY_KAFKA_PASSWORD}\n";

/// Where each canary turned up in `text`, by name of the place.
fn leaks(place: &str, text: &str, found: &mut Vec<String>) {
    for canary in [PG_CANARY, S3_CANARY, KAFKA_CANARY] {
        if let Some(at) = text.find(canary) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(80)
                .map_or(0, |(i, _)| i);
            let to = (at + canary.len() + 80).min(text.len());
            let to = (to..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            found.push(format!("{place}: …{}…", &text[from..to]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_reach_no_log_record_object_or_table() {
    let dir = tempfile::tempdir().unwrap();
    // Password logins for every role but the test's own superuser.
    let hba = dir.path().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host replication postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host replication all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let cluster = OwnCluster::start(&["wal_level=logical", &format!("hba_file={}", hba.display())]);
    let admin = support::connect(&cluster.url).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE canary LOGIN SUPERUSER REPLICATION PASSWORD '{PG_CANARY}'"
        ))
        .await
        .expect("role");
    admin
        .batch_execute("CREATE DATABASE atlasco OWNER canary")
        .await
        .expect("database");
    let db_url = support::with_dbname(&cluster.url, "atlasco");
    let client = support::connect(&db_url).await;
    client
        .batch_execute(&format!(
            "{}\n{ATLASCO_FIXTURES}\nCREATE PUBLICATION canary FOR TABLE {} WITH (publish_via_partition_root = true);",
            support::schema_sql(),
            ATLASCO.join(", ")
        ))
        .await
        .expect("schema");
    // The password reaches Freshet only through the environment, as in production.
    let port = support::url_port(&db_url);
    let canary_url =
        format!("postgresql://canary:${{CANARY_PG_PASSWORD}}@127.0.0.1:{port}/atlasco");

    let broker = Broker::start_scram("freshet", KAFKA_CANARY);
    let s3 = MotoS3::start();
    s3.create_bucket("lake");
    let mut env = s3.env();
    env.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY", S3_CANARY.to_string()));
    env.push(("CANARY_PG_PASSWORD", PG_CANARY.to_string()));
    env.push(("CANARY_KAFKA_PASSWORD", KAFKA_CANARY.to_string()));

    let source = support::kafka::pipeline_yaml(
        &canary_url,
        "canary",
        "canary",
        &ATLASCO,
        &broker.brokers(),
        KAFKA_SECURITY,
    );
    let yaml = format!(
        "{source}{EAV}batcher:\n  store: s3://lake/cdc\n  s3:\n    endpoint: {}\n    path_style: true\n    region: us-east-1\n  rotation:\n    max_rows: 400\n    max_age: 1s\n{}router:\n  replicas:\n    - name: replica\n      url: {canary_url}\n",
        s3.endpoint(),
        support::warehouse::warehouse_yaml(&canary_url, &ATLASCO, "2s"),
    );
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, yaml).unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("freshet.log");

    let mut found = Vec::new();
    let (accepted, check_text) = check(&pipeline, &env, &[]);
    assert!(accepted, "{check_text}");
    leaks("freshet check", &check_text, &mut found);

    let http = support::kafka::free_port();
    let mut daemon = Daemon::start_env(
        &pipeline,
        &[
            "--state-dir",
            &state.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{http}"),
        ],
        &log,
        &env,
    );
    client
        .batch_execute(
            "INSERT INTO atlasco.entities (tenant_id, entity_id, entity_type) SELECT 1 + g % 4, g, 'device' FROM generate_series(1, 200) g;
             INSERT INTO atlasco.entity_values (tenant_id, entity_id, attribute_id, string_value) SELECT 1 + g % 4, g, 1, 'status-' || g FROM generate_series(1, 200) g;",
        )
        .await
        .expect("rows");
    // Everything loaded: the PostgreSQL and Kafka canaries were used (a wrong one fails the
    // login, below). moto checks no signature: the S3 canary only had the chance to leak.
    support::warehouse::wait_equal(&client, &ATLASCO, Duration::from_secs(120)).await;
    for path in [
        "/metrics",
        "/v1/freshness",
        "/readyz",
        "/v1/route?table=atlasco.entities&max_lag_ms=0",
    ] {
        let (_, body) = support::http_get(http, path);
        leaks(path, &body, &mut found);
    }
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log_text());

    // A refused login names the user (or the mechanism), not the password it tried.
    for (variable, canary, says) in [
        ("CANARY_PG_PASSWORD", PG_CANARY, "canary"),
        ("CANARY_KAFKA_PASSWORD", KAFKA_CANARY, "SASL"),
    ] {
        let wrong = [(variable, format!("{canary}-wrong"))];
        let (accepted, text) = check(&pipeline, &env, &wrong);
        assert!(!accepted, "a wrong {variable} was accepted: {text}");
        assert!(
            text.contains(says),
            "the message says whose login failed: {text}"
        );
        leaks(&format!("a refused login ({variable})"), &text, &mut found);
    }

    let log_text = daemon.log_text();
    assert!(log_text.lines().count() > 10, "{log_text}");
    leaks("the log", &log_text, &mut found);

    let topics = Command::new(support::lake::python())
        .arg(support::repo().join("tests/secrets/dump_topics.py"))
        .arg(broker.brokers())
        .args(["freshet", KAFKA_CANARY])
        .output()
        .unwrap();
    assert!(
        topics.status.success(),
        "{}",
        String::from_utf8_lossy(&topics.stderr)
    );
    let records = String::from_utf8_lossy(&topics.stdout).into_owned();
    assert!(
        records.lines().count() > 400,
        "every record was read: {}",
        records.lines().count()
    );
    leaks("Kafka", &records, &mut found);

    let lake = support::lake::read_s3(&s3, "lake", "cdc");
    assert!(
        lake.rows.len() >= 400,
        "{} rows in the lake",
        lake.rows.len()
    );
    leaks("S3", &format!("{lake:?}"), &mut found);

    for db in ["atlasco", "postgres"] {
        let dump = Command::new("pg_dump")
            .arg(support::with_dbname(&cluster.url, db))
            .output()
            .expect("pg_dump");
        assert!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        let text = String::from_utf8_lossy(&dump.stdout).into_owned();
        leaks(&format!("database {db}"), &text, &mut found);
    }
    let state_files = walk(&state);
    assert!(!state_files.is_empty(), "no state file to search");
    for entry in state_files {
        leaks(
            &entry.display().to_string(),
            &String::from_utf8_lossy(&std::fs::read(&entry).unwrap()),
            &mut found,
        );
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}

/// `freshet check` with `env` and `overrides`: whether it passed, and what it printed.
fn check(
    pipeline: &std::path::Path,
    env: &[(&str, String)],
    overrides: &[(&str, String)],
) -> (bool, String) {
    let env: Vec<(&str, String)> = env.iter().chain(overrides).cloned().collect();
    let (code, text) = support::check_env(pipeline, &env);
    (code == Some(0), text)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
