//! A real Kafka-protocol broker (Tansu) per test, a TCP proxy it can advertise so a test can
//! refuse or black-hole its connections, and readers of what Freshet produced.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn tansu() -> PathBuf {
    std::env::var_os("FRESHET_TANSU").map(PathBuf::from).unwrap_or_else(|| {
        panic!("FRESHET_TANSU is not set: run the tests with scripts/test.sh, which installs Tansu")
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Fast, forgets everything when the broker stops.
    Memory,
    /// libsql in the broker's directory: survives kill -9, slow.
    Sqlite,
}

/// A Tansu broker as a child process.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    /// Where clients connect (the proxy, when there is one).
    pub advertised: u16,
    engine: Engine,
    /// Whether clients must log in (SASL SCRAM).
    authentication: bool,
    pub dir: tempfile::TempDir,
}

impl Broker {
    pub fn start(engine: Engine) -> Broker {
        let port = free_port();
        Broker::start_advertising(engine, port, port)
    }

    /// A broker that tells clients to connect to `advertised` (a proxy in front of it).
    pub fn start_advertising(engine: Engine, port: u16, advertised: u16) -> Broker {
        let mut b = Broker {
            child: None,
            port,
            advertised,
            engine,
            authentication: false,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        b.spawn();
        b
    }

    /// A broker on durable storage that admits only `user` with `password` (SCRAM-SHA-512).
    /// Tansu creates users through its own API, which an authenticating broker refuses to a
    /// client not logged in: the user is created first, then the broker restarts requiring
    /// logins.
    pub fn start_scram(user: &str, password: &str) -> Broker {
        let mut b = Broker::start(Engine::Sqlite);
        let out = Command::new(tansu())
            .args(["user", "create", "--mechanism", "scram512", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", b.port))
            .args([user, password])
            .output()
            .expect("tansu user create");
        assert!(
            out.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        b.authentication = true;
        b.restart();
        b
    }

    fn spawn(&mut self) {
        let storage = match self.engine {
            Engine::Memory => "memory://tansu/",
            Engine::Sqlite => "sqlite://tansu.db",
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let child = Command::new(tansu())
            .current_dir(self.dir.path())
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{}", self.advertised))
            .arg("--storage-engine")
            .arg(storage)
            .args(self.authentication.then_some("--authentication"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The bootstrap address clients use.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running broker").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// The port is closed: connections are refused, open ones are reset.
    Refuse,
    /// Connections are accepted and bytes go nowhere, in either direction.
    BlackHole,
}

/// A TCP proxy on 127.0.0.1 in front of a broker.
pub struct Proxy {
    pub port: u16,
    mode: Arc<watch::Sender<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(port: u16, upstream: u16) -> Proxy {
        let (mode, _) = watch::channel(Mode::Forward);
        let mode = Arc::new(mode);
        let m = mode.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut rx = m.subscribe();
                if *rx.borrow() == Mode::Refuse {
                    let _ = rx.wait_for(|x| *x != Mode::Refuse).await;
                    continue;
                }
                let listener = match TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => l,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            if let Ok((client, _)) = accepted {
                                tokio::spawn(pipe(client, upstream, m.subscribe()));
                            }
                        }
                        _ = rx.wait_for(|x| *x == Mode::Refuse) => break,
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "proxy did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Proxy { port, mode, task }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, upstream: u16, mode: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = copy(cr, sw, mode.clone()) => {}
        _ = copy(sr, cw, mode) => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Black hole: nothing is read or passed on until the mode changes; refuse: reset.
        let current = *mode.borrow_and_update();
        match current {
            Mode::Refuse => return,
            Mode::BlackHole => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Mode::Forward => {}
        }
        tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if *mode.borrow() == Mode::Refuse {
                        return;
                    }
                    while *mode.borrow() == Mode::BlackHole {
                        if mode.changed().await.is_err() {
                            return;
                        }
                    }
                    if *mode.borrow() == Mode::Refuse || to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            _ = mode.changed() => {}
        }
    }
}

/// The pipeline file of a test: source, optional EAV mapping, kafka.
pub fn pipeline_yaml(
    db_url: &str,
    slot: &str,
    publication: &str,
    tables: &[&str],
    brokers: &str,
    extra: &str,
) -> String {
    let source = super::pipeline_yaml(db_url, slot, publication, tables, "1s");
    format!(
        "{source}kafka:\n  brokers: '{brokers}'\n  topic_prefix: {slot}\n  topics:\n    partitions: 4\n  producer:\n    linger: 5ms\n{extra}"
    )
}

/// `freshet run` into Kafka, as a child process.
pub fn daemon(pipeline: &Path, state: &Path, log: &Path) -> super::Daemon {
    super::Daemon::start_with(
        pipeline,
        &["--state-dir", &state.display().to_string()],
        log,
    )
}

/// A table's topic decoded by Freshet's own reader (`freshet tail`'s).
pub async fn topic_lines(pipeline: &Path, table: &str) -> Vec<Json> {
    let p = freshet::config::load(pipeline).expect("pipeline");
    let k = p.kafka.as_ref().expect("kafka section");
    let t = freshet::config::TableName::parse(table).expect("table");
    let topic = freshet::transform::topic_name(&k.topic_prefix, &t.schema, &t.table);
    freshet::kafka::tail::decode_topic(k, &topic)
        .await
        .unwrap_or_else(|e| panic!("reading {topic}: {e}"))
}
