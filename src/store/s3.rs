//! S3 and S3-compatible stores through `aws-sdk-s3`: the default credential chain, the
//! client's own retries with backoff, and multipart uploads past [`MULTIPART_THRESHOLD`].
//! A PUT (or a completed multipart upload) is atomic: readers never see part of an object.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::{Object, StoreError, RETRY_INITIAL};
use crate::config::S3 as S3Config;

/// S3 error codes a later attempt can pass, whatever their HTTP status (a 400 RequestTimeout
/// is a stalled upload; a 404 NoSuchUpload a multipart upload a lifecycle rule aborted).
const RETRYABLE_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "OperationAborted",
    "NoSuchUpload",
    "ExpiredToken",
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
];

/// Objects above this go up in parts.
const MULTIPART_THRESHOLD: usize = 64 << 20;
/// S3's minimum part is 5 MiB; larger parts mean fewer requests.
const PART_SIZE: usize = 16 << 20;
/// Attempts per request by the client itself; past them the sink half restarts.
const ATTEMPTS: u32 = 4;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// One attempt of one request, a 64 MiB part included.
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct S3 {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
}

impl S3 {
    pub async fn new(bucket: &str, prefix: &str, s3: &S3Config) -> Result<S3, StoreError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = crate::aws::region(s3.region.as_deref()) {
            loader = loader.region(aws_config::Region::new(region));
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(StoreError::Config {
                url: format!("s3://{bucket}/{prefix}"),
                why: "no AWS region: set batcher.s3.region or AWS_REGION".into(),
            });
        }
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(s3.path_style)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(ATTEMPTS)
                    .with_initial_backoff(RETRY_INITIAL),
            )
            // Checksums only where S3 requires them: several S3-compatible stores reject the
            // newer default ones.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            // A black-holed endpoint must fail the attempt, not hang the batcher.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        let endpoint = match &s3.endpoint {
            Some(e) => {
                config = config.endpoint_url(&e.0);
                format!("{}/{bucket}", e.0.trim_end_matches('/'))
            }
            None => format!("s3://{bucket}"),
        };
        Ok(S3 {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint,
        })
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.full(key))
    }

    fn error<E>(&self, op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (endpoint, key) = (self.endpoint(), key.to_owned());
        let transient = match &e {
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                s.err().code().is_some_and(|c| RETRYABLE_CODES.contains(&c))
                    || status == 408
                    || status == 429
                    || (500..600).contains(&status) && status != 501
            }
            // A request that cannot be built (a bad bucket name) will not build next time.
            SdkError::ConstructionFailure(_) => false,
            SdkError::DispatchFailure(d) => !d.is_user(),
            _ => true,
        };
        let error = match e.as_service_error() {
            Some(s) => format!(
                "HTTP {}: {} {}",
                e.raw_response().map_or(0, |r| r.status().as_u16()),
                s.code().unwrap_or("error"),
                s.message().unwrap_or_default()
            ),
            None => crate::aws::error_chain(&e),
        };
        if transient {
            StoreError::Unavailable {
                endpoint,
                op,
                key,
                error,
            }
        } else {
            StoreError::Rejected {
                endpoint,
                op,
                key,
                error,
            }
        }
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let full = self.full(key);
        if body.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, &full, body).await;
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("put", key, e))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str, full: &str, body: Bytes) -> Result<(), StoreError> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.error("put", key, e))?;
        let Some(id) = upload.upload_id() else {
            return Err(StoreError::Unavailable {
                endpoint: self.endpoint(),
                op: "put",
                key: key.to_owned(),
                error: "CreateMultipartUpload returned no upload id".into(),
            });
        };
        let mut parts = Vec::new();
        for (i, chunk) in body.chunks(PART_SIZE).enumerate() {
            let number = i as i32 + 1;
            let sent = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(body.slice_ref(chunk)))
                .send()
                .await;
            match sent {
                Ok(part) => parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                ),
                Err(e) => {
                    // Best effort: a lifecycle rule for incomplete uploads catches the rest.
                    let _ = self
                        .client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(full)
                        .upload_id(id)
                        .send()
                        .await;
                    return Err(self.error("put", key, e));
                }
            }
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("put", key, e))?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| self.error("get", key, e))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable {
                endpoint: self.endpoint(),
                op: "get",
                key: key.to_owned(),
                error: crate::aws::error_chain(&e),
            })?;
        Ok(body.into_bytes())
    }

    /// One listing request of at most one key: credentials, region and bucket are right.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.error("list", &self.prefix, e))?;
        Ok(())
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(prefix))
            .into_paginator()
            .send();
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", prefix, e))?;
            for o in page.contents() {
                let (Some(key), Some(size)) = (o.key(), o.size()) else {
                    continue;
                };
                out.push(Object {
                    key: key.get(strip..).unwrap_or_default().to_owned(),
                    size: u64::try_from(size).unwrap_or(0),
                });
            }
        }
        Ok(out)
    }
}
