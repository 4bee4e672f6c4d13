use std::collections::HashMap;
use std::path::Path;

use super::*;

const FILE: &str = "pipelines/test.yaml";

fn env() -> HashMap<String, String> {
    HashMap::from([(
        "PG_URL".to_string(),
        "postgresql://u:hunter2@127.0.0.1:5432/db".to_string(),
    )])
}

const VALID: &str = "\
name: t
source:
  url: ${PG_URL}
  tables: [atlasco.entity_values, atlasco.attributes]
  heartbeat_interval: 2s
tables:
  atlasco.entity_values: { freshness: analytics }
";

fn problems(yaml: &str) -> Vec<Problem> {
    match parse(Path::new(FILE), yaml, env()) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.problems().to_vec(),
    }
}

/// Asserts exactly one problem at `line` with `key`, whose message contains `needle`.
fn assert_one(yaml: &str, line: u64, key: &str, needle: &str) {
    let found = problems(yaml);
    assert_eq!(found.len(), 1, "{found:#?}");
    let p = &found[0];
    assert_eq!((p.line, p.key.as_str()), (line, key), "{p}");
    assert!(
        p.message.contains(needle),
        "message {:?} lacks {needle:?}",
        p.message
    );
    let shown = p.to_string();
    assert!(shown.starts_with(&format!("{FILE}:{line}:")), "{shown}");
}

#[test]
fn valid_file_parses_with_defaults() {
    let p = parse(Path::new(FILE), VALID, env()).expect("valid");
    assert_eq!(p.source.slot, DEFAULT_SLOT);
    assert_eq!(p.source.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(p.source.status_interval, DEFAULT_STATUS_INTERVAL);
    assert_eq!(
        p.source.tables[0].value.to_string(),
        "atlasco.entity_values"
    );
    assert_eq!(p.freshness_classes["exports"], Duration::from_secs(900));
    assert_eq!(
        p.source.url.expose(),
        "postgresql://u:hunter2@127.0.0.1:5432/db"
    );
    // The password must not be printable by accident.
    assert!(!format!("{p:?}").contains("hunter2"));
}

#[test]
fn unknown_key_names_line_and_path() {
    let yaml = VALID.replace(
        "  heartbeat_interval: 2s",
        "  heartbeat_interval: 2s\n  slot_nmae: x",
    );
    assert_one(&yaml, 6, "source.slot_nmae", "unknown field");
}

#[test]
fn wrong_type_names_line_and_path() {
    let yaml = format!("{VALID}kafka:\n  brokers: b:9092\n  topics:\n    partitions: many\n");
    assert_one(&yaml, 11, "kafka.topics.partitions", "");
}

#[test]
fn missing_variable_names_line_and_path() {
    let yaml = VALID.replace("${PG_URL}", "${NOT_SET_ANYWHERE}");
    assert_one(&yaml, 3, "source.url", "NOT_SET_ANYWHERE is not set");
}

#[test]
fn bad_duration_names_line_and_path() {
    let yaml = VALID.replace("heartbeat_interval: 2s", "heartbeat_interval: 2 fortnights");
    assert_one(&yaml, 5, "source.heartbeat_interval", "invalid duration");
}

#[test]
fn bad_connection_string_does_not_echo_the_password() {
    let yaml = VALID.replace("${PG_URL}", "postgresql://u:hunter2@host:notaport/db");
    let found = problems(&yaml);
    assert_eq!(found[0].key, "source.url");
    assert!(!found[0].to_string().contains("hunter2"), "{}", found[0]);
}

#[test]
fn unknown_freshness_class_and_uncaptured_table_are_all_reported() {
    let yaml = VALID.replace(
        "  atlasco.entity_values: { freshness: analytics }",
        "  atlasco.entity_values: { freshness: realtime }\n  atlasco.nope: { freshness: exports }",
    );
    let found = problems(&yaml);
    assert_eq!(found.len(), 2, "{found:#?}");
    let by_key: HashMap<_, _> = found.iter().map(|p| (p.key.as_str(), p)).collect();
    let class = by_key["tables.atlasco.entity_values.freshness"];
    assert_eq!(class.line, 7);
    assert!(class.message.contains("realtime"), "{class}");
    let table = by_key["tables.atlasco.nope"];
    assert_eq!(table.line, 8);
    assert!(table.message.contains("not in source.tables"), "{table}");
}

#[test]
fn out_of_range_values_are_caught_where_written() {
    assert_one(
        &VALID.replace("heartbeat_interval: 2s", "status_interval: 90s"),
        5,
        "source.status_interval",
        "out of range",
    );
    assert_one(
        &VALID.replace(
            "  tables: [atlasco.entity_values, atlasco.attributes]",
            "  tables: []",
        ),
        4,
        "source.tables",
        "at least one",
    );
    let store = format!("{VALID}batcher:\n  store: ftp://x\n");
    assert_one(&store, 9, "batcher.store", "neither file");
    let wh = format!("{VALID}warehouse:\n  driver: redshift_data\n");
    assert_one(&wh, 9, "warehouse.driver", "warehouse.redshift_data");
}

#[test]
fn msk_iam_needs_tls_and_no_password() {
    let kafka = |protocol: &str, extra: &str| {
        format!(
            "{VALID}kafka:\n  brokers: b:9098\n  security:\n    protocol: {protocol}\n    sasl:\n      mechanism: aws-msk-iam\n{extra}"
        )
    };
    let ok = kafka("sasl_ssl", "      region: eu-west-1\n");
    parse(Path::new(FILE), &ok, env()).expect("valid");
    assert_one(
        &kafka("sasl_plaintext", ""),
        13,
        "kafka.security.protocol",
        "aws-msk-iam needs protocol sasl_ssl",
    );
    assert_one(
        &kafka("sasl_ssl", "      username: freshet\n"),
        13,
        "kafka.security.sasl",
        "remove username and password",
    );
}

#[test]
fn shipped_pipelines_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let env = HashMap::from([
        (
            "FRESHET_SOURCE_URL".to_string(),
            "postgresql://postgres@127.0.0.1:5432/atlasco".to_string(),
        ),
        (
            "FRESHET_KAFKA_BROKERS".to_string(),
            "127.0.0.1:9092".to_string(),
        ),
        // RDS endpoint names: the IAM logins read their region off them.
        (
            "ATLASCO_PG_HOST".to_string(),
            "atlasco-prod.c9akciq32.eu-central-1.rds.amazonaws.com".to_string(),
        ),
        (
            "ATLASCO_MSK_BROKERS".to_string(),
            "b-1.example:9098".to_string(),
        ),
        ("ATLASCO_PG_USER".to_string(), "freshet".to_string()),
        (
            "ATLASCO_PG_CA".to_string(),
            "/etc/freshet/rds-global-bundle.pem".to_string(),
        ),
        (
            "ATLASCO_PG_REPLICA_HOST".to_string(),
            "atlasco-prod-replica.c9akciq32.eu-central-1.rds.amazonaws.com".to_string(),
        ),
        ("ATLASCO_REGION".to_string(), "eu-west-1".to_string()),
        (
            "ATLASCO_REDSHIFT_CLUSTER".to_string(),
            "atlasco-prod".to_string(),
        ),
        (
            "ATLASCO_LAKE_BUCKET".to_string(),
            "atlasco-lake".to_string(),
        ),
        (
            "ATLASCO_REDSHIFT_SECRET_ARN".to_string(),
            "arn:aws:secretsmanager:eu-west-1:1:secret:x".to_string(),
        ),
        (
            "ATLASCO_REDSHIFT_COPY_ROLE".to_string(),
            "arn:aws:iam::1:role/copy".to_string(),
        ),
    ]);
    for name in ["dev.yaml", "prod.yaml"] {
        let file = root.join(name);
        let text = std::fs::read_to_string(&file).expect("read");
        if let Err(e) = parse(&file, &text, env.clone()) {
            panic!("{name}: {e}");
        }
    }
    // Every AWS name in prod.yaml comes from the environment, expanded.
    let file = root.join("prod.yaml");
    let prod = parse(&file, &std::fs::read_to_string(&file).unwrap(), env).unwrap();
    let kafka = prod.kafka.as_ref().unwrap();
    let sasl = kafka.security.sasl.as_ref().unwrap();
    assert_eq!(sasl.region.as_deref(), Some("eu-west-1"));
    let s3 = &prod.batcher.as_ref().unwrap().s3;
    assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
    let redshift = &prod
        .warehouse
        .as_ref()
        .unwrap()
        .redshift_data
        .as_ref()
        .unwrap()
        .value;
    assert_eq!(redshift.region.as_deref(), Some("eu-west-1"));
    assert_eq!(redshift.cluster_identifier.as_deref(), Some("atlasco-prod"));
    // The IAM login's region is the RDS endpoint name's.
    assert_eq!(
        prod.source.url.to_config().rds_iam.map(|i| i.region),
        Some("eu-central-1".to_string())
    );
}
