//! `freshet tail`: reads a table's topic from the beginning and decodes each record, with
//! the registry or the schema topic, into the jsonl output's line shape plus where it lies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value as Json};

use super::Error;
use crate::config::Kafka;
use crate::transform::decode::{key_json, read_change};
use crate::transform::encoding::{self, hex, schema_topic, LookupError};

const POLL: Duration = Duration::from_millis(100);
/// Quiet time after the reported ends before a read counts as complete.
const END_QUIET: Duration = Duration::from_millis(1500);
/// How long a read goes on past the reported ends while records keep arriving.
const END_LIVE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Kafka(#[from] Error),
    #[error("{topic} partition {partition} offset {offset}: {why}")]
    Record {
        topic: String,
        partition: i32,
        offset: i64,
        why: String,
    },
    #[error("schema registry: {0}")]
    Registry(String),
}

/// Where each record's schema comes from: the transform's lookup, fed the schema topic
/// when a fingerprint is not known yet (again after [`RELOAD_EVERY`], for the versions an
/// ALTER TABLE adds while a reader runs).
pub struct Schemas {
    lookup: encoding::Schemas,
    schema_topic: String,
    loaded: Option<Instant>,
}

/// The shortest time between two reads of the schema topic.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The registry or the schema topic could not be read: a later attempt can pass.
    #[error("{0}")]
    Unavailable(String),
    /// The record is not one Freshet can read (unknown schema, not Avro, wrong shape).
    #[error("{0}")]
    Record(String),
}

impl Schemas {
    pub fn new(k: &Kafka) -> Result<Schemas, TailError> {
        Ok(Schemas {
            lookup: encoding::Schemas::new(k).map_err(|e| TailError::Registry(e.to_string()))?,
            schema_topic: schema_topic(&k.topic_prefix),
            loaded: None,
        })
    }

    /// Decodes one key or value: Confluent wire format or single-object encoding.
    pub async fn decode(
        &mut self,
        k: &Kafka,
        bytes: &[u8],
    ) -> Result<(Arc<Schema>, apache_avro::types::Value), DecodeError> {
        let first = match self.lookup.decode(bytes).await {
            Err(LookupError::UnknownFingerprint(_)) => {
                // The writer publishes a schema before the records that use it: a fresh
                // read of the topic has it, or the record is not one of Freshet's.
                if let Some(at) = self.loaded {
                    tokio::time::sleep(RELOAD_EVERY.saturating_sub(at.elapsed())).await;
                }
                let published = read_all(k, &self.schema_topic).await.map_err(|e| {
                    DecodeError::Unavailable(format!("reading {}: {e}", self.schema_topic))
                })?;
                self.lookup
                    .learn(published.iter().filter_map(|r| r.value.as_deref()));
                self.loaded = Some(Instant::now());
                self.lookup.decode(bytes).await
            }
            other => other,
        };
        first.map_err(|e| match e {
            LookupError::UnknownFingerprint(_) => {
                DecodeError::Record(format!("{e} in {}", self.schema_topic))
            }
            LookupError::Registry(e) => DecodeError::Unavailable(e),
            LookupError::Other(e) => DecodeError::Record(e),
        })
    }
}

/// One raw record of a topic.
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every record of `topic` up to the end it had when the read started, in partition order.
pub async fn read_all(k: &Kafka, topic: &str) -> Result<Vec<Raw>, TailError> {
    let k_brokers = k.brokers.0.clone();
    let config = super::client_config(k)?;
    let context = super::Context::new(k)?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_blocking(config, context, &k_brokers, &topic))
        .await
        .map_err(|e| TailError::Registry(format!("reader task: {e}")))?
}

fn read_blocking(
    mut config: rdkafka::ClientConfig,
    context: super::Context,
    brokers: &str,
    topic: &str,
) -> Result<Vec<Raw>, TailError> {
    let client_err = |what: String| {
        let brokers = brokers.to_owned();
        move |error| Error::Client {
            brokers,
            what,
            error: Box::new(error),
        }
    };
    let consumer: BaseConsumer<super::Context> = config
        .set("group.id", "freshet-tail")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // An offset retention removed starts at the earliest kept, not at the end.
        .set("auto.offset.reset", "earliest")
        .create_with_context(context.clone())
        .map_err(client_err("creating a consumer".into()))?;
    context.authenticate(brokers, consumer.client())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(client_err(format!("reading the metadata of {topic}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    // Tansu reports a high watermark one past the last batch's first offset, not past its
    // last record: the end is where every partition reached it and then nothing more came.
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(client_err(format!("reading the offsets of {topic}/{p}")))?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(client_err(format!("assigning {topic}/{p}")))?;
            ends.insert(p, (low, high));
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer
        .assign(&tpl)
        .map_err(client_err(format!("assigning {topic}")))?;
    let mut last_progress = Instant::now();
    let mut reached_at: Option<Instant> = None;
    loop {
        // A topic still being written never goes quiet: stop a while after the ends.
        if reached_at.is_some_and(|t| t.elapsed() >= END_LIVE) {
            break;
        }
        if reached_at.is_none() && ends.values().all(|(next, high)| next >= high) {
            reached_at = Some(Instant::now());
        }
        match consumer.poll(POLL) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                if let Some(end) = ends.get_mut(&m.partition()) {
                    end.0 = m.offset() + 1;
                }
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Raw {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            Some(Err(e)) => return Err(client_err(format!("reading {topic}"))(e).into()),
            None => {
                let reached = ends.values().all(|(next, high)| next >= high);
                if reached && last_progress.elapsed() >= END_QUIET {
                    break;
                }
                if !reached && last_progress.elapsed() > Duration::from_secs(120) {
                    let (p, (next, high)) = ends
                        .iter()
                        .find(|(_, (n, h))| n < h)
                        .map(|(p, e)| (*p, *e))
                        .unwrap_or((0, (0, 0)));
                    return Err(TailError::Record {
                        topic: topic.to_owned(),
                        partition: p,
                        offset: next,
                        why: format!("no record arrived for 120 s before the end ({high})"),
                    });
                }
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// A topic's records decoded: one JSON object per record, in partition then offset order.
pub async fn decode_topic(k: &Kafka, topic: &str) -> Result<Vec<Json>, TailError> {
    let mut schemas = Schemas::new(k)?;
    let mut out = Vec::new();
    for raw in read_all(k, topic).await? {
        let err = |why: String| TailError::Record {
            topic: topic.to_owned(),
            partition: raw.partition,
            offset: raw.offset,
            why,
        };
        let Some(value) = &raw.value else { continue };
        let (schema, avro) = schemas
            .decode(k, value)
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut line = read_change(&schema, &avro)
            .map_err(|e| err(e.to_string()))?
            .to_json();
        let key = match &raw.key {
            Some(bytes) => {
                let (schema, avro) = schemas
                    .decode(k, bytes)
                    .await
                    .map_err(|e| err(e.to_string()))?;
                key_json(&schema, &avro).map_err(|e| err(e.to_string()))?
            }
            None => Json::Null,
        };
        line["partition"] = json!(raw.partition);
        line["offset"] = json!(raw.offset);
        line["key"] = key;
        // Text headers as text; binary ones (Debezium's key headers hold key bytes) in hex.
        line["headers"] = json!(raw
            .headers
            .iter()
            .map(|(k, v)| {
                let v = match std::str::from_utf8(v) {
                    Ok(text) => text.to_owned(),
                    Err(_) => format!("0x{}", hex(v)),
                };
                (k.clone(), v)
            })
            .collect::<HashMap<_, _>>());
        out.push(line);
    }
    Ok(out)
}
