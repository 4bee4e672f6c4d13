//! `freshet check` against live servers whose setup is wrong in one way each.

mod support;

use support::{OwnCluster, TestDb};

fn write_pipeline(
    dir: &tempfile::TempDir,
    url: &str,
    slot: &str,
    publication: &str,
    tables: &[&str],
    create_publication: bool,
) -> std::path::PathBuf {
    let mut yaml = support::pipeline_yaml(url, slot, publication, tables, "10s");
    yaml = yaml.replace(
        "source:\n",
        &format!("source:\n  create_publication: {create_publication}\n"),
    );
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test]
async fn a_ready_database_passes() {
    let db = TestDb::new("check_ok").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(&dir, &db.url, &db.name, &db.name, &["public.t"], true);
    let (code, out) = support::check(&p);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ready to run"), "{out}");
}

#[tokio::test]
async fn missing_publication_and_uncapturable_updates_are_reported() {
    let db = TestDb::new("check_bad").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE keyless (v int); CREATE TABLE other (id int PRIMARY KEY);")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(
        &dir,
        &db.url,
        &db.name,
        "nope",
        &["public.keyless", "public.other"],
        false,
    );
    let (code, out) = support::check(&p);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FIX   publication \"nope\" does not exist"),
        "{out}"
    );
    assert!(
        out.contains("public.keyless: updates and deletes of keyless cannot be captured"),
        "{out}"
    );
    assert!(out.contains("REPLICA IDENTITY FULL"), "{out}");
    assert!(out.contains("ok    public.other"), "{out}");

    // A publication that misses a table is named with the statement that fixes it.
    db.client()
        .await
        .batch_execute("CREATE PUBLICATION nope FOR TABLE other")
        .await
        .unwrap();
    let (_, out) = support::check(&p);
    assert!(
        out.contains("ALTER PUBLICATION \"nope\" ADD TABLE public.keyless"),
        "{out}"
    );
}

#[tokio::test]
async fn wal_level_replica_and_no_free_slot_are_reported() {
    let replica = OwnCluster::start(&["wal_level=replica"]);
    let dir = tempfile::tempdir().unwrap();
    let client = support::connect(&replica.url).await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let p = write_pipeline(&dir, &replica.url, "s", "p", &["public.t"], true);
    let (code, out) = support::check(&p);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FIX   wal_level = replica"), "{out}");

    let full = OwnCluster::start(&["max_replication_slots=1"]);
    let client = support::connect(&full.url).await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('someone_else', 'pgoutput')")
        .await
        .unwrap();
    let p = write_pipeline(&dir, &full.url, "mine", "p", &["public.t"], true);
    let (code, out) = support::check(&p);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("replication slots: all 1 are used"), "{out}");
}
