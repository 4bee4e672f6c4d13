//! IAM authentication to AWS's services: the tokens Freshet signs equal the ones AWS's own
//! libraries build (the MSK signer for Python, botocore's RDS token), and librdkafka is handed
//! a new MSK token before the one it holds expires.
//!
//! No MSK or RDS runs here, and no broker or server on this machine checks a SigV4 token, so
//! the tokens are compared with AWS's reference implementations instead, at the same instant.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

const ACCESS_KEY: &str = "AKIAFRESHETEXAMPLE01";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFRESHETKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEFRESHET//session+token/example==";

fn credentials() -> Credentials {
    Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        Some(SESSION_TOKEN.into()),
        None,
        "test",
    )
}

/// AWS's token for the same credentials and arguments, signed at the X-Amz-Date of Freshet's.
fn aws_token(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new(support::lake::python())
        .arg(support::repo().join("tests/aws_auth/tokens.py"))
        .args(args)
        .envs(aws_env())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "tokens.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    (
        v["freshet"].as_str().expect("freshet").to_owned(),
        v["aws"].as_str().expect("aws").to_owned(),
    )
}

/// A presigned URL's address and its query parameters, decoded.
fn parts(url: &str) -> (String, BTreeMap<String, String>) {
    let (address, query) = url.split_once('?').expect("a query");
    let params = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (address.to_owned(), params)
}

#[tokio::test]
async fn the_msk_iam_token_equals_the_one_awss_python_signer_builds() {
    let region = "eu-west-1";
    let signed = SystemTime::now();
    let (token, expiry_ms) = freshet::kafka::msk_iam::sign(region, &credentials())
        .await
        .expect("signed");
    let (ours, theirs) = aws_token(&["msk", region, &token]);
    let (our_address, mut our_params) = parts(&ours);
    let (their_address, mut their_params) = parts(&theirs);
    assert_eq!(our_address, "https://kafka.eu-west-1.amazonaws.com/");
    assert_eq!(our_address, their_address);
    // Each library names itself; everything signed must be the same.
    let our_agent = our_params.remove("User-Agent").expect("our User-Agent");
    let their_agent = their_params.remove("User-Agent").expect("their User-Agent");
    assert!(
        our_agent.starts_with("aws-msk-iam-sasl-signer-rs/"),
        "{our_agent}"
    );
    assert!(
        their_agent.starts_with("aws-msk-iam-sasl-signer-python/"),
        "{their_agent}"
    );
    assert_eq!(
        our_params, their_params,
        "\nfreshet: {ours}\naws:     {theirs}"
    );
    assert_eq!(our_params["Action"], "kafka-cluster:Connect");
    assert_eq!(our_params["X-Amz-Expires"], "900");
    assert_eq!(our_params["X-Amz-Security-Token"], SESSION_TOKEN);
    assert!(our_params["X-Amz-Credential"].starts_with(&format!("{ACCESS_KEY}/")));
    assert_eq!(our_params["X-Amz-Signature"].len(), 64);
    // The expiry librdkafka is told is the signature's: 15 minutes from the signing.
    let signed_ms = signed
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (expiry_ms - signed_ms - 900_000).abs() <= 2_000,
        "expiry {expiry_ms} vs signed {signed_ms}"
    );
}

/// Fresh credentials at every call, each good for `life`: an ECS task role's, sped up.
#[derive(Debug)]
struct ShortLived {
    life: Duration,
    issued: AtomicUsize,
}

impl ProvideCredentials for ShortLived {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        future::ProvideCredentials::ready(Ok(Credentials::new(
            format!("AKIAFRESHETROTATE{n:03}"),
            SECRET_KEY,
            Some(format!("session-{n}")),
            Some(SystemTime::now() + self.life),
            "test",
        )))
    }
}

/// What a real librdkafka client asked of Freshet's context and reported back.
struct Watch {
    freshet: freshet::kafka::Context,
    handed: Arc<Mutex<Vec<(SystemTime, String, i64)>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Watch {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let token = self.freshet.generate_oauth_token(config)?;
        self.handed.lock().unwrap().push((
            SystemTime::now(),
            token.token.clone(),
            token.lifetime_ms,
        ));
        Ok(token)
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.errors
            .lock()
            .unwrap()
            .push(format!("{error}: {reason}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_is_handed_a_new_msk_token_before_the_credentials_expire() {
    // librdkafka asks again at 80% of a token's life and checks once a second: 12 s leaves
    // more than a second between its ask and the expiry.
    let life = Duration::from_secs(12);
    let chain = freshet::aws::Chain::new(Some(SharedCredentialsProvider::new(ShortLived {
        life,
        issued: AtomicUsize::new(0),
    })));
    let iam = freshet::kafka::msk_iam::MskIam::start("us-east-1".into(), Some(chain)).unwrap();
    let handed = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let watch = Watch {
        freshet: freshet::kafka::Context::with_iam(iam),
        handed: handed.clone(),
        errors: errors.clone(),
    };
    // No broker is needed: librdkafka asks for a token when the client starts and again at
    // 80% of the token's lifetime, connected or not.
    let producer: FutureProducer<Watch> = ClientConfig::new()
        .set(
            "bootstrap.servers",
            format!("127.0.0.1:{}", support::kafka::free_port()),
        )
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "OAUTHBEARER")
        .create_with_context(watch)
        .expect("producer");
    let started = Instant::now();
    support::wait_for("three tokens", Duration::from_secs(45), || {
        let n = handed.lock().unwrap().len();
        async move { (n >= 3).then_some(()) }
    })
    .await;
    drop(producer);
    let handed = handed.lock().unwrap().clone();
    let errors = errors.lock().unwrap().clone();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "three tokens took {:?}",
        started.elapsed()
    );
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    for (i, (at, token, lifetime_ms)) in handed.iter().enumerate() {
        // The lifetime is the credentials' (12 s), not the signature's 15 minutes.
        let left = lifetime_ms - ms(*at);
        assert!(
            left > 0 && left <= life.as_millis() as i64 + 1_000,
            "token {i}: {left} ms left when handed"
        );
        if let Some((next_at, next_token, _)) = handed.get(i + 1) {
            assert!(
                ms(*next_at) < *lifetime_ms,
                "token {} came {} ms after token {i} expired",
                i + 1,
                ms(*next_at) - lifetime_ms
            );
            assert_ne!(token, next_token, "token {} repeats token {i}", i + 1);
        }
    }
    assert!(
        !errors
            .iter()
            .any(|e| e.contains("OAUTHBEARER") || e.contains("token")),
        "librdkafka refused a token: {errors:?}"
    );
}

#[tokio::test]
async fn expired_credentials_are_refused_by_name() {
    #[derive(Debug)]
    struct Expired;
    impl ProvideCredentials for Expired {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKIAFRESHETEXPIRED01",
                SECRET_KEY,
                None,
                Some(SystemTime::now() - Duration::from_secs(1)),
                "test",
            )))
        }
    }
    let chain = freshet::aws::Chain::new(Some(SharedCredentialsProvider::new(Expired)));
    let err = freshet::kafka::msk_iam::issue("us-east-1", &chain)
        .await
        .err()
        .expect("refused");
    assert!(
        err.why.contains("AKIAFRESHETEXPIRED01") && err.why.contains("expired"),
        "{err}"
    );
    // The chain may have renewed them by the next ask.
    assert!(err.transient);
}

#[test]
fn the_rds_token_equals_the_one_botocore_builds() {
    let (host, port, user, region) = (
        "atlasco.c9akciq32xyz.eu-west-1.rds.amazonaws.com",
        5432,
        "freshet+cdc~x",
        "eu-west-1",
    );
    let token =
        freshet::pg::rds_iam::token(host, port, user, region, &credentials(), SystemTime::now())
            .expect("signed");
    let (ours, theirs) = aws_token(&["rds", region, host, &port.to_string(), user, &token]);
    // Written as botocore writes it, piece by piece (its order is its own).
    let pieces = |t: &str| {
        let mut p: Vec<String> = t.split(['?', '&']).map(str::to_owned).collect();
        p.sort();
        p
    };
    assert_eq!(pieces(&ours), pieces(&theirs));
    let (our_address, our_params) = parts(&ours);
    let (their_address, their_params) = parts(&theirs);
    // No scheme: the token is the URL without `https://`, as botocore's.
    assert_eq!(our_address, format!("{host}:{port}/"));
    assert_eq!(our_address, their_address);
    assert_eq!(
        our_params, their_params,
        "\nfreshet: {ours}\naws:     {theirs}"
    );
    assert_eq!(our_params["Action"], "connect");
    assert_eq!(our_params["DBUser"], user);
    assert_eq!(our_params["X-Amz-Expires"], "900");
    assert!(our_params["X-Amz-Credential"].ends_with("/eu-west-1/rds-db/aws4_request"));
}

/// RDS's check of an IAM login, run here: tests/aws_auth/rds_ldap.py, which PostgreSQL's
/// `ldap` authentication asks, accepts a password only if botocore would have signed it for
/// that user, host and port with the environment's credentials, within its 15 minutes.
struct TokenCheck {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl TokenCheck {
    fn start(dir: &std::path::Path, port: u16, region: &str, endpoint: &str) -> TokenCheck {
        use std::io::BufRead;
        let log = dir.join(format!("binds-{port}.jsonl"));
        let mut child = std::process::Command::new(support::lake::python())
            .arg(support::repo().join("tests/aws_auth/rds_ldap.py"))
            .args([
                &port.to_string(),
                &log.display().to_string(),
                region,
                endpoint,
            ])
            .envs(aws_env())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("rds_ldap.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening");
        TokenCheck { child, log }
    }

    fn binds(&self) -> Vec<serde_json::Value> {
        support::read_jsonl(&self.log)
    }
}

impl Drop for TokenCheck {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment both Freshet and AWS's libraries take the test's credentials from, and
/// only them: no profile or metadata endpoint of this machine.
fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN.into()),
        ("AWS_REGION", "eu-west-1".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_login_is_a_fresh_rds_token_that_aws_would_accept() {
    let pki = support::pki::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    // The cluster's port is known once it runs; the hba file names the checker's.
    let hba = dir.path().join("pg_hba.conf");
    let ldap_port = support::kafka::free_port();
    let ldap = format!(
        "ldap ldapserver=127.0.0.1 ldapport={ldap_port} ldapprefix=\"cn=\" ldapsuffix=\"\""
    );
    std::fs::write(
        &hba,
        format!(
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host replication postgres 127.0.0.1/32 trust\n\
             hostssl all freshet 127.0.0.1/32 {ldap}\n\
             hostssl replication freshet 127.0.0.1/32 {ldap}\n"
        ),
    )
    .unwrap();
    let mut settings = pki.server_settings();
    settings.push("wal_level=logical".into());
    settings.push(format!("hba_file={}", hba.display()));
    let cluster = support::OwnCluster::start(&settings);
    let pg_port = support::url_port(&cluster.url);
    let endpoint = format!("localhost:{pg_port}");
    let check = TokenCheck::start(dir.path(), ldap_port, "eu-west-1", &endpoint);

    let admin = support::connect(&cluster.url).await;
    admin
        .batch_execute(
            "CREATE ROLE freshet LOGIN SUPERUSER REPLICATION;
             CREATE TABLE public.t (id int PRIMARY KEY, v text);
             INSERT INTO public.t SELECT g, 'before ' || g FROM generate_series(1, 50) g;
             CREATE PUBLICATION iam FOR TABLE public.t;",
        )
        .await
        .expect("setup");
    // No password anywhere: every login signs a token.
    let url = format!(
        "postgresql://freshet@{endpoint}/postgres?sslmode=verify-full&sslrootcert={}&auth=rds-iam",
        pki.path("ca.pem").display()
    );
    let broker = support::kafka::Broker::start(support::kafka::Engine::Memory);
    let source =
        support::kafka::pipeline_yaml(&url, "iam", "iam", &["public.t"], &broker.brokers(), "");
    let lake = dir.path().join("lake");
    let yaml = format!(
        "{source}batcher:\n  store: file://{}\n  rotation:\n    max_rows: 100\n    max_age: 1s\n{}router:\n  replicas:\n    - name: replica\n      url: {url}\n",
        lake.display(),
        support::warehouse::warehouse_yaml(&url, &["public.t"], "2s"),
    );
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, yaml).unwrap();
    let http = support::kafka::free_port();
    let started = SystemTime::now();
    let mut daemon = support::Daemon::start_env(
        &pipeline,
        &[
            "--state-dir",
            &dir.path().join("state").display().to_string(),
            "--listen",
            &format!("127.0.0.1:{http}"),
        ],
        &dir.path().join("freshet.log"),
        &aws_env(),
    );
    admin
        .batch_execute(
            "INSERT INTO public.t SELECT g, 'after ' || g FROM generate_series(51, 120) g",
        )
        .await
        .expect("rows");
    // Snapshot, stream, warehouse: each read or wrote through a connection that logged in.
    support::warehouse::wait_equal(&admin, &["public.t"], Duration::from_secs(120)).await;
    // The router probes its replica every second from the start: logged in by now.
    let (status, _) = support::http_get(http, "/v1/route?table=public.t&max_staleness=1h");
    assert_eq!(status, 200);
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(!log.contains("cannot connect"), "{log}");

    let binds = check.binds();
    let refused: Vec<_> = binds.iter().filter(|b| b["accepted"] != true).collect();
    assert!(refused.is_empty(), "refused logins: {refused:?}");
    // The replication stream, the catalog, the snapshot, the heartbeat, the warehouse and the
    // router's probe: one login each at least.
    assert!(binds.len() >= 5, "{} logins: {binds:?}", binds.len());
    let epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    for b in &binds {
        assert_eq!(b["user"], "freshet");
        // Signed as the connection logged in, not once at start.
        let date =
            chrono::NaiveDateTime::parse_from_str(b["date"].as_str().unwrap(), "%Y%m%dT%H%M%SZ")
                .unwrap()
                .and_utc()
                .timestamp() as f64;
        let at = b["at"].as_f64().unwrap();
        assert!(
            date >= epoch(started) - 1.0,
            "{b}: signed before Freshet started"
        );
        assert!(
            (at - date).abs() < 5.0,
            "{b}: signed {} s before the login",
            at - date
        );
    }

    // A token signed with the wrong secret is refused by the checker, and Freshet names the
    // endpoint and the user, not the key.
    let wrong = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEYX";
    let mut env = aws_env();
    env.push(("AWS_SECRET_ACCESS_KEY", wrong.into()));
    let (code, text) = support::check_env(&pipeline, &env);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&endpoint)
            && text.contains("LDAP authentication failed for user \"freshet\"")
            && text.contains("rds-db:connect"),
        "{text}"
    );
    assert!(
        !text.contains(wrong) && !text.contains(SECRET_KEY),
        "{text}"
    );
    eprintln!(
        "{} logins, each with a fresh token; a wrong key: {text}",
        binds.len()
    );
    let last = check.binds().pop().unwrap();
    assert_eq!(last["accepted"], false);
    assert!(
        last["why"].as_str().unwrap().contains("signature"),
        "{last}"
    );

    // The replication stream alone, refused (logical replication logins match the hba file's
    // lines by database, so only a session of its own can be refused apart): its error says
    // what RDS needs too, and stops for an operator. In this process: the test binary's only
    // login through the default credential chain, which reads the environment.
    for (name, value) in aws_env() {
        std::env::set_var(name, value);
    }
    std::env::set_var("AWS_SECRET_ACCESS_KEY", wrong);
    let source: freshet::config::PgUrl = url.parse().expect("url");
    let settings = freshet::source::replication::StreamSettings {
        slot: "iam".into(),
        publication: "iam".into(),
        status_interval: Duration::from_secs(1),
        tables: Vec::new(),
    };
    // The session logs in on its first request.
    let error =
        match freshet::source::replication::Capture::open(&source, &settings, None, None).await {
            Ok(mut opening) => match opening.create_slot().await {
                Ok(_) => panic!("a refused token created a slot"),
                Err(e) => e,
            },
            Err(e) => e,
        };
    let text = error.to_string();
    assert!(
        text.contains(&endpoint)
            && text.contains("LDAP authentication failed")
            && text.contains("rds-db:connect"),
        "{text}"
    );
    assert!(!error.is_transient(), "{text}");
    let last = check.binds().pop().unwrap();
    assert_eq!(last["accepted"], false, "{last}");
}
