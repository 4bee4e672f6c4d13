//! TLS to PostgreSQL: a cluster with `ssl=on` and a certificate made here by openssl, signed
//! by a CA made here. `verify-full` connects and streams, every connection Freshet makes
//! speaks TLS; a host name the certificate does not list, a CA that did not sign it and a
//! server without TLS each fail with an error naming the endpoint and the cause, on the plain
//! connections and on the replication stream alike. Nothing falls back to plaintext.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use freshet::source::replication::{Capture, StreamSettings};
use support::pki::Pki;
use support::OwnCluster;

fn tls_cluster(pki: &Pki) -> OwnCluster {
    OwnCluster::start(&pki.server_settings())
}

/// `url` with host `host` and the TLS settings given.
fn with_tls(url: &str, host: &str, mode: &str, root: &Path) -> String {
    format!(
        "{}?sslmode={mode}&sslrootcert={}",
        url.replace("@127.0.0.1:", &format!("@{host}:")),
        root.display()
    )
}

fn pipeline(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("pipeline.yaml");
    std::fs::write(
        &path,
        format!(
            "name: tls\nsource:\n  url: '{url}'\n  slot: tls\n  publication: tls\n  tables: ['public.t']\n  \
             heartbeat_interval: 1s\n  status_interval: 200ms\n  snapshot: {{ mode: never }}\n"
        ),
    )
    .expect("pipeline");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_and_streams_and_every_connection_speaks_tls() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let admin = support::connect(&cluster.url).await;
    admin
        .batch_execute("CREATE TABLE public.t (id int PRIMARY KEY, v text); CREATE PUBLICATION tls FOR TABLE public.t;")
        .await
        .expect("ddl");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = with_tls(
        &cluster.url,
        "localhost",
        "verify-full",
        &pki.path("ca.pem"),
    );
    let pipeline = pipeline(dir.path(), &url);
    let out = dir.path().join("changes.jsonl");
    let mut daemon = support::Daemon::start_with(
        &pipeline,
        &["--output", &format!("jsonl:{}", out.display())],
        &dir.path().join("freshet.log"),
    );
    support::wait_for("the slot", Duration::from_secs(30), || async {
        admin
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'tls' AND active",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|_| ())
    })
    .await;
    admin
        .batch_execute("INSERT INTO public.t VALUES (1, 'over tls'), (2, 'still over tls')")
        .await
        .expect("insert");
    support::wait_for(
        "the rows in the output",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            (text.contains("over tls") && text.contains("still over tls")).then_some(())
        },
    )
    .await;
    // Every connection but this test's own speaks TLS: the stream and the plain ones.
    let rows = admin
        .query(
            "SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.pid <> pg_backend_pid() AND a.backend_type IN ('client backend', 'walsender')",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(seen.iter().any(|(t, _)| t == "walsender"), "{seen:?}");
    assert!(seen.iter().any(|(t, _)| t == "client backend"), "{seen:?}");
    assert!(
        seen.iter().all(|(_, ssl)| *ssl),
        "a connection without TLS: {seen:?}"
    );
    assert!(daemon.running(), "{}", daemon.log_text());
    drop(daemon);
}

/// The plain connections (`freshet check`) and the replication stream each refuse, naming
/// the endpoint and the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_name_an_unknown_ca_and_a_server_without_tls_are_refused_by_name() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let plain = support::cluster_url();
    let cases = [
        (
            "a host name the certificate does not list",
            with_tls(
                &cluster.url,
                "127.0.0.1",
                "verify-full",
                &pki.path("ca.pem"),
            ),
            "host name",
        ),
        (
            "a CA that did not sign it",
            with_tls(
                &cluster.url,
                "localhost",
                "verify-ca",
                &pki.path("other-ca.pem"),
            ),
            "unknown CA",
        ),
        (
            "a server without TLS",
            with_tls(&plain, "127.0.0.1", "verify-ca", &pki.path("ca.pem")),
            "does not offer TLS",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    // `verify-ca` checks the chain only: by address, the plain connections get through.
    let by_address = with_tls(&cluster.url, "127.0.0.1", "verify-ca", &pki.path("ca.pem"));
    let (_, text) = support::freshet(&[
        "check".as_ref(),
        "--pipeline".as_ref(),
        pipeline(dir.path(), &by_address).as_os_str(),
    ]);
    assert!(
        !text.contains("cannot connect") && text.contains("publication"),
        "verify-ca by address: {text}"
    );
    for (what, url, cause) in cases {
        let endpoint = format!(
            ":{}/postgres",
            support::url_port(url.split('?').next().unwrap())
        );
        let (code, text) = support::freshet(&[
            "check".as_ref(),
            "--pipeline".as_ref(),
            pipeline(dir.path(), &url).as_os_str(),
        ]);
        assert_ne!(code, Some(0), "{what}: {text}");
        assert!(
            text.contains(cause) && text.contains(&endpoint),
            "{what}: {text}"
        );

        let source_url: freshet::config::PgUrl = url.parse().expect("url");
        let settings = StreamSettings {
            slot: "tls".into(),
            publication: "tls".into(),
            status_interval: Duration::from_secs(1),
            tables: Vec::new(),
        };
        // The session connects on its first request.
        let error = match Capture::open(&source_url, &settings, None, None).await {
            Ok(mut opening) => match opening.create_slot().await {
                Ok(_) => panic!("{what}: the replication session created a slot"),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains(cause) && error.contains(&endpoint),
            "{what}, replication: {error}"
        );
        eprintln!(
            "{what}:\n  check: {}\n  replication: {error}",
            text.lines().nth(1).unwrap_or("").trim()
        );
    }
}
