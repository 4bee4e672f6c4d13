//! The store: where the lake's objects live. A local directory (`file://`, the embedded
//! default) or S3 (`s3://bucket/prefix`, any S3-compatible endpoint), with the same layout.
//! A put is atomic in both: a reader sees the whole object or none of it.

mod local;
pub(crate) mod s3;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::S3 as S3Config;
use crate::telemetry::{self, names, Event};

/// One stored object under the store's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Relative to the store's prefix.
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Refused, timed out, a 5xx: a later attempt can pass.
    #[error("store {endpoint}: {op} {key}: {error}")]
    Unavailable {
        endpoint: String,
        op: &'static str,
        key: String,
        error: String,
    },
    /// Denied, no such bucket, a bad request: the operator must act.
    #[error("store {endpoint}: {op} {key} was rejected: {error}")]
    Rejected {
        endpoint: String,
        op: &'static str,
        key: String,
        error: String,
    },
    #[error("batcher.store {url:?}: {why}")]
    Config { url: String, why: String },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

enum Backend {
    Local(local::Local),
    S3(s3::S3),
}

pub struct Store {
    backend: Backend,
    /// Since when requests fail (for the stall and recovery events).
    failing_since: std::sync::Mutex<Option<Instant>>,
}

impl Store {
    /// Opens the store at `url` (`batcher.store`); S3 credentials come from the default chain.
    pub async fn open(url: &str, s3: &S3Config) -> Result<Store, StoreError> {
        let url = url.trim();
        let config = |why: &str| StoreError::Config {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let backend = if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(config(
                    "a file:// store needs an absolute path (file:///dir)",
                ));
            }
            Backend::Local(local::Local::new(path.into()))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(config("no bucket: use s3://bucket/prefix"));
            }
            Backend::S3(s3::S3::new(bucket, prefix.trim_matches('/'), s3).await?)
        } else {
            return Err(config("must start with file:// or s3://"));
        };
        Ok(Store {
            backend,
            failing_since: std::sync::Mutex::new(None),
        })
    }

    /// Where the store is, for errors and events.
    pub fn endpoint(&self) -> String {
        match &self.backend {
            Backend::Local(l) => l.endpoint(),
            Backend::S3(s) => s.endpoint(),
        }
    }

    /// The object's URL as the warehouse's COPY names it.
    pub fn url(&self, key: &str) -> String {
        match &self.backend {
            Backend::Local(l) => l.url(key),
            Backend::S3(s) => s.url(key),
        }
    }

    /// Writes `body` at `key`, replacing any object there, atomically.
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Local(l) => l.put(key, body).await,
            Backend::S3(s) => s.put(key, body).await,
        };
        metrics::histogram!(names::STORE_REQUEST_SECONDS, "op" => "put")
            .record(started.elapsed().as_secs_f64());
        self.observe(&result);
        result
    }

    /// The object at `key`, whole.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Local(l) => l.get(key).await,
            Backend::S3(s) => s.get(key).await,
        };
        metrics::histogram!(names::STORE_REQUEST_SECONDS, "op" => "get")
            .record(started.elapsed().as_secs_f64());
        self.observe(&result);
        result
    }

    /// Every object whose key starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Local(l) => l.list(prefix).await,
            Backend::S3(s) => s.list(prefix).await,
        };
        metrics::histogram!(names::STORE_REQUEST_SECONDS, "op" => "list")
            .record(started.elapsed().as_secs_f64());
        self.observe(&result);
        result
    }

    fn observe<T>(&self, result: &Result<T, StoreError>) {
        let Ok(mut since) = self.failing_since.lock() else {
            return;
        };
        match result {
            Err(e) if e.is_transient() => {
                let first = since.is_none();
                let at = *since.get_or_insert_with(Instant::now);
                if first {
                    telemetry::emit(Event::Stalled {
                        stage: "store",
                        endpoint: self.endpoint(),
                        waited: at.elapsed(),
                        error: e.to_string(),
                    });
                }
            }
            Ok(_) => {
                if let Some(at) = since.take() {
                    telemetry::emit(Event::Recovered {
                        stage: "store",
                        endpoint: self.endpoint(),
                        waited: at.elapsed(),
                    });
                }
            }
            Err(StoreError::Rejected {
                endpoint,
                key,
                error,
                ..
            }) => telemetry::emit(Event::ObjectRejected {
                endpoint: endpoint.clone(),
                key: key.clone(),
                error: error.clone(),
            }),
            Err(_) => {}
        }
    }
}

/// `freshet check` for the store: it opens and lists (credentials, region, bucket, path).
pub async fn check(url: &str, s3: &S3Config) -> crate::source::check::Finding {
    use crate::source::check::Finding;
    let store = match Store::open(url, s3).await {
        Ok(store) => store,
        Err(e) => return Finding::bad(format!("store: {e}"), "fix batcher.store / batcher.s3"),
    };
    let probe = match &store.backend {
        Backend::Local(l) => l.probe().await,
        Backend::S3(s) => s.probe().await,
    };
    match probe {
        Ok(()) => Finding::ok(format!("store {} answers", store.endpoint())),
        Err(e) => Finding::bad(
            format!("{e}"),
            "check the bucket or directory exists and the credentials may list and write it",
        ),
    }
}

/// Backoff between the S3 client's own attempts of one request.
pub(crate) const RETRY_INITIAL: Duration = Duration::from_millis(200);
