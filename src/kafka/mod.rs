//! kafka: the event log of record. Creates the pipeline's topics, produces the transform's
//! records with an idempotent producer, and turns delivery reports into the acknowledgement
//! watermark, in commit order.

pub mod msk_iam;
pub mod partition;
pub mod produce;
pub mod tail;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{debug, error, info, warn};

use crate::config::{Compression, Kafka, SaslMechanism, SecurityProtocol};

/// How long admin and metadata requests wait for the brokers.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka {brokers}: {what}: {error}")]
    Client {
        brokers: String,
        what: String,
        error: Box<KafkaError>,
    },
    #[error("kafka topic {topic}: {why}")]
    Topic { topic: String, why: String },
    #[error("kafka {0}")]
    Config(String),
    #[error("kafka {brokers}: {error}")]
    Credentials {
        brokers: String,
        error: crate::aws::CredentialsError,
    },
    #[error(
        "kafka delivery to {topic} failed ({error}); the producer is torn down and capture replays from the last confirmed position"
    )]
    Delivery {
        topic: String,
        error: Box<KafkaError>,
    },
    #[error("kafka producer fatal error {code:?}: {reason}; the producer is torn down and capture replays from the last confirmed position")]
    Fatal {
        code: RDKafkaErrorCode,
        reason: String,
    },
    #[error(
        "kafka topic {topic} has {now} partitions, but Freshet has been writing it with {was}: \
         placed by {now}, keys would move to other partitions (out of order with their earlier \
         records) and a TRUNCATE would not reach the new ones; up to here every key was placed \
         by {was}. Either give the topic {was} partitions again (recreate it and re-snapshot), \
         or move on to {now}: let every consumer read the topic to its end, then delete {state} \
         and start Freshet again"
    )]
    PartitionsChanged {
        topic: String,
        was: i32,
        now: i32,
        state: String,
    },
}

impl Error {
    /// Whether a fresh producer replaying from the slot can get past it.
    pub fn is_transient(&self) -> bool {
        const PERMANENT: [RDKafkaErrorCode; 6] = [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::InvalidRecord,
        ];
        match self {
            // A client that cannot be built from the settings will not build on a retry.
            Error::Client { error, .. } => {
                !matches!(
                    **error,
                    KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
                ) && !error
                    .rdkafka_error_code()
                    .is_some_and(|c| PERMANENT.contains(&c))
            }
            Error::Fatal { code, .. } => !PERMANENT.contains(code),
            Error::Delivery { error, .. } => !error
                .rdkafka_error_code()
                .is_some_and(|c| PERMANENT.contains(&c)),
            Error::Credentials { error, .. } => error.transient,
            Error::Topic { .. } | Error::Config(_) | Error::PartitionsChanged { .. } => false,
        }
    }
}

/// librdkafka's own log and error reports, through tracing, and the MSK IAM token source.
#[derive(Clone, Default)]
pub struct Context {
    iam: Option<Arc<msk_iam::MskIam>>,
}

impl Context {
    /// The context of the clients of `k`'s brokers: with MSK IAM, its token source (a thread
    /// that signs for the clients built with this context).
    pub fn new(k: &Kafka) -> Result<Context, Error> {
        let Some(sasl) = k.security.sasl.as_ref() else {
            return Ok(Context::default());
        };
        if sasl.mechanism.value != SaslMechanism::AwsMskIam {
            return Ok(Context::default());
        }
        let region = crate::aws::region(sasl.region.as_deref()).ok_or_else(|| {
            Error::Config(
                "security.sasl.mechanism aws-msk-iam: no AWS region: set kafka.security.sasl.region or AWS_REGION".into(),
            )
        })?;
        let iam = msk_iam::MskIam::start(region, None).map_err(Error::Config)?;
        Ok(Context { iam: Some(iam) })
    }

    /// A context that signs MSK IAM tokens with `iam`.
    pub fn with_iam(iam: Arc<msk_iam::MskIam>) -> Context {
        Context { iam: Some(iam) }
    }

    /// Gives a client the token it would otherwise wait for until its main queue is first
    /// polled: the admin client and the metadata-only consumers never poll it, and a consumer
    /// of a group asks for metadata before its first poll.
    pub(crate) fn authenticate<C: ClientContext>(
        &self,
        brokers: &str,
        client: &Client<C>,
    ) -> Result<(), Error> {
        match &self.iam {
            Some(iam) => msk_iam::authenticate(client, iam).map_err(|error| Error::Credentials {
                brokers: brokers.to_owned(),
                error,
            }),
            None => Ok(()),
        }
    }
}

impl ClientContext for Context {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(iam) = &self.iam else {
            return Err("OAUTHBEARER needs security.sasl.mechanism aws-msk-iam".into());
        };
        // librdkafka keeps the old token until it expires and asks again after a back-off;
        // each failure is worth a line.
        iam.token().map_err(|e| {
            error!(region = iam.region(), "{}", e.why);
            e.why.into()
        })
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Broker outages arrive here ("all brokers down", connection refused): the producer
        // keeps retrying, and the produce stage reports what is waiting.
        warn!(target: "librdkafka", %error, "{reason}");
    }
}

/// The batcher's consumer reports through the same context.
impl rdkafka::consumer::ConsumerContext for Context {}

/// `freshet check`'s context: keeps librdkafka's error reports, which name the cause (a
/// refused SASL login, an untrusted certificate) that a failed request only calls a transport
/// failure.
struct Probe {
    errors: std::sync::Mutex<Vec<String>>,
    pipeline: Context,
}

impl ClientContext for Probe {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.pipeline.generate_oauth_token(config)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let report = if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_string()
        };
        if let Ok(mut errors) = self.errors.lock() {
            // Each broker connection retries: the same report many times over.
            if !errors.contains(&report) && errors.len() < 4 {
                errors.push(report);
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Probe {}

/// What librdkafka reported while the probe's request failed: its events wait in the
/// consumer's queue until polled.
fn probe_cause(consumer: &rdkafka::consumer::BaseConsumer<Probe>) -> Option<String> {
    for _ in 0..10 {
        if consumer.poll(Duration::from_millis(100)).is_none() {
            break;
        }
    }
    let errors = consumer.context().errors.lock().ok()?;
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// The connection settings every client of this pipeline shares.
pub fn client_config(k: &Kafka) -> Result<ClientConfig, Error> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers.0)
        .set("client.id", "freshet")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        // Small produce requests wait on Nagle + delayed ACK otherwise.
        .set("socket.nagle.disable", "true")
        .set_log_level(RDKafkaLogLevel::Warning);
    let protocol = match k.security.protocol {
        SecurityProtocol::Plaintext => "plaintext",
        SecurityProtocol::Ssl => "ssl",
        SecurityProtocol::SaslPlaintext => "sasl_plaintext",
        SecurityProtocol::SaslSsl => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(ca) = &k.security.ca_file {
        c.set("ssl.ca.location", &ca.0);
    }
    if let Some(sasl) = &k.security.sasl {
        match sasl.mechanism.value {
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let mechanism = if sasl.mechanism.value == SaslMechanism::ScramSha256 {
                    "SCRAM-SHA-256"
                } else {
                    "SCRAM-SHA-512"
                };
                c.set("sasl.mechanism", mechanism);
                if let Some(u) = &sasl.username {
                    c.set("sasl.username", &u.0);
                }
                if let Some(p) = &sasl.password {
                    c.set("sasl.password", p.expose());
                }
            }
            // The token comes from the client's context (`Context::new`).
            SaslMechanism::AwsMskIam => {
                c.set("sasl.mechanism", "OAUTHBEARER");
            }
        }
    }
    Ok(c)
}

/// The producer settings: idempotent, acks=all, retrying until the broker comes back.
pub fn producer_config(k: &Kafka) -> Result<ClientConfig, Error> {
    let mut c = client_config(k)?;
    let compression = match k.producer.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    };
    // librdkafka's queue is larger than Freshet's own in-flight bound, so the bound (which
    // slows the WAL reader) is what a slow broker meets first.
    let queue_kib = (k.producer.max_in_flight_bytes / 1024).max(1024) * 2;
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", compression)
        .set("linger.ms", k.producer.linger.0.as_millis().to_string())
        .set("batch.size", k.producer.batch_bytes.to_string())
        // Never give up on a message: an outage holds the acknowledgement, it does not skip.
        .set("message.timeout.ms", "0")
        .set("retry.backoff.ms", "100")
        .set("retry.backoff.max.ms", "2000")
        .set(
            "queue.buffering.max.kbytes",
            queue_kib.min(2_097_151).to_string(),
        )
        .set("queue.buffering.max.messages", "2000000")
        // Java's partitioner: the same key lands on the same partition as with Kafka Connect.
        .set("partitioner", "murmur2_random");
    Ok(c)
}

/// Creates the missing topics and returns every topic's partition count.
pub async fn ensure_topics(
    k: &Kafka,
    topics: &[(String, bool)],
) -> Result<HashMap<String, i32>, Error> {
    let brokers = k.brokers.0.clone();
    let client = |what: &str| {
        let brokers = brokers.clone();
        let what = what.to_owned();
        move |error| Error::Client {
            brokers,
            what,
            error: Box::new(error),
        }
    };
    let context = Context::new(k)?;
    let admin: AdminClient<Context> = client_config(k)?
        .create_with_context(context.clone())
        .map_err(client("creating the admin client"))?;
    tokio::task::block_in_place(|| context.authenticate(&k.brokers.0, admin.inner()))?;
    let partitions = i32::try_from(k.topics.partitions)
        .map_err(|_| Error::Config("topics.partitions is too large".into()))?;
    let replication = i32::from(k.topics.replication_factor);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, compacted)| {
            if *compacted {
                NewTopic::new(name, 1, TopicReplication::Fixed(replication))
                    .set("cleanup.policy", "compact")
            } else {
                NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
            }
        })
        .collect();
    // Only the missing ones: a cluster that forbids creating topics may still have them.
    let existing: Vec<String> =
        tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, ADMIN_TIMEOUT))
            .map_err(client("listing topics"))?
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect();
    let new: Vec<NewTopic<'_>> = new
        .into_iter()
        .filter(|t| !existing.iter().any(|e| e == t.name))
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results = if new.is_empty() {
        Vec::new()
    } else {
        admin
            .create_topics(&new, &opts)
            .await
            .map_err(client("creating topics"))?
    };
    for r in results {
        match r {
            Ok(name) => info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Topic {
                    topic: name,
                    why: format!("cannot be created: {code}"),
                })
            }
        }
    }
    let metadata =
        tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, ADMIN_TIMEOUT))
            .map_err(client("reading the topics' metadata"))?;
    let mut counts = HashMap::new();
    for (name, _) in topics {
        let n = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n == 0 {
            // Metadata may trail a creation; the restart that follows retries.
            return Err(Error::Client {
                brokers: k.brokers.0.clone(),
                what: format!("topic {name} shows no partitions yet"),
                error: Box::new(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                )),
            });
        }
        counts.insert(name.clone(), n as i32);
    }
    Ok(counts)
}

/// Whether any of `topics` holds a record.
pub async fn holds_data(k: &Kafka, topics: &[String]) -> Result<bool, Error> {
    let brokers = k.brokers.0.clone();
    let config = client_config(k)?;
    let context = Context::new(k)?;
    let topics = topics.to_vec();
    let found = tokio::task::spawn_blocking(move || -> Result<bool, Error> {
        let err = |what: String| {
            let brokers = brokers.clone();
            move |error| Error::Client {
                brokers,
                what,
                error: Box::new(error),
            }
        };
        let consumer: rdkafka::consumer::BaseConsumer<Context> = config
            .clone()
            .set("group.id", "freshet-probe")
            .create_with_context(context.clone())
            .map_err(err("creating a consumer".into()))?;
        context.authenticate(&brokers, consumer.client())?;
        for topic in &topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
                .map_err(err(format!("reading the metadata of {topic}")))?;
            for t in metadata.topics().iter().filter(|t| t.name() == topic) {
                for p in t.partitions() {
                    let (low, high) = consumer
                        .fetch_watermarks(topic, p.id(), ADMIN_TIMEOUT)
                        .map_err(err(format!("reading the offsets of {topic}/{}", p.id())))?;
                    if high > low || high > 0 {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    })
    .await
    .map_err(|e| Error::Config(format!("offset probe task: {e}")))??;
    Ok(found)
}

/// `freshet check` for the Kafka side: the brokers answer, and which of the pipeline's topics
/// exist (the others are created at start).
pub async fn check(k: &Kafka, topics: &[String]) -> Vec<crate::source::check::Finding> {
    use crate::source::check::Finding;
    let brokers = k.brokers.0.clone();
    let settings = client_config(k).and_then(|c| Ok((c, Context::new(k)?)));
    let (config, pipeline) = match settings {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::bad(
                format!("kafka settings: {e}"),
                "fix the kafka section",
            )]
        }
    };
    let topics = topics.to_vec();
    let probe_brokers = brokers.clone();
    let probe = tokio::task::spawn_blocking(move || {
        let probe = Probe {
            errors: Default::default(),
            pipeline: pipeline.clone(),
        };
        let consumer: rdkafka::consumer::BaseConsumer<Probe> = config
            .clone()
            .set("group.id", "freshet-check")
            .create_with_context(probe)
            .map_err(|e| e.to_string())?;
        pipeline
            .authenticate(&probe_brokers, consumer.client())
            .map_err(|e| e.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| match probe_cause(&consumer) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            })?;
        let existing: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect();
        Ok::<_, String>((metadata.brokers().len(), existing, topics))
    })
    .await;
    match probe {
        Ok(Ok((n, existing, topics))) => {
            let mut out = vec![Finding::ok(format!(
                "kafka {brokers}: {n} broker(s) answer"
            ))];
            let missing: Vec<&String> = topics.iter().filter(|t| !existing.contains(t)).collect();
            out.push(Finding::ok(if missing.is_empty() {
                format!("all {} topics exist", topics.len())
            } else {
                format!(
                    "{} of {} topics exist; `freshet run` creates the others ({})",
                    topics.len() - missing.len(),
                    topics.len(),
                    missing
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }));
            out
        }
        Ok(Err(e)) => vec![Finding::bad(
            format!("kafka {brokers}: {e}"),
            "check kafka.brokers, the network path and kafka.security",
        )],
        Err(e) => vec![Finding::bad(format!("kafka probe task: {e}"), "retry")],
    }
}
