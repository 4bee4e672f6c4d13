//! MSK IAM: SASL OAUTHBEARER with a token from the AWS credential chain. The token is a SigV4
//! presigned `kafka-cluster:Connect` URL (AWS's signer crate builds it) that MSK accepts for 15
//! minutes; librdkafka asks for a new one at 80% of the lifetime it is told.
//!
//! librdkafka asks from inside a poll, on whatever thread polls (the producer's own thread, a
//! runtime worker under the batcher's stream), and waits for the answer. The credential chain
//! is async and may call the ECS or EC2 metadata endpoint, so one thread of its own, with a
//! runtime of its own, does the signing: no runtime worker is ever blocked on another.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use rdkafka::client::OAuthToken;

use crate::aws::{Chain, CredentialsError};

/// How long a poll waits for a token, blocking the thread that polls (the producer's own, or
/// a runtime worker under the batcher's stream): the metadata endpoints answer in
/// milliseconds, and a chain that hangs longer will not answer the next ask either.
const SIGNING_TIMEOUT: Duration = Duration::from_secs(30);

/// The name librdkafka keeps beside the token; MSK takes the identity from the signature.
const PRINCIPAL: &str = "freshet";

type Reply = mpsc::SyncSender<Result<OAuthToken, CredentialsError>>;

/// The token source of one client configuration: a signing thread that lives as long as it.
pub struct MskIam {
    region: String,
    asks: mpsc::Sender<Reply>,
}

impl std::fmt::Debug for MskIam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIam")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MskIam {
    /// Tokens for `region`, signed with the credentials of `chain`, or of the SDK's default
    /// chain (environment, profile, web identity, the ECS task role, the EC2 instance role).
    pub fn start(region: String, chain: Option<Chain>) -> Result<Arc<MskIam>, String> {
        let (asks, requests) = mpsc::channel::<Reply>();
        let signing_region = region.clone();
        std::thread::Builder::new()
            .name("msk-iam-signer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        for reply in requests {
                            let _ = reply.send(Err(CredentialsError {
                                why: format!("MSK IAM signer runtime: {e}"),
                                transient: false,
                            }));
                        }
                        return;
                    }
                };
                let chain = match chain {
                    Some(c) => c,
                    None => runtime.block_on(Chain::default(&signing_region)),
                };
                // Ends when the last client of the configuration is dropped.
                for reply in requests {
                    let _ = reply.send(runtime.block_on(issue(&signing_region, &chain)));
                }
            })
            .map_err(|e| format!("MSK IAM signer thread: {e}"))?;
        Ok(Arc::new(MskIam { region, asks }))
    }

    /// A fresh token; blocks the calling thread until it is signed.
    pub fn token(&self) -> Result<OAuthToken, CredentialsError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.asks.send(reply).map_err(|_| CredentialsError {
            why: "MSK IAM signer thread has stopped".into(),
            transient: false,
        })?;
        match answer.recv_timeout(SIGNING_TIMEOUT) {
            Ok(token) => token,
            Err(_) => Err(CredentialsError {
                why: format!(
                    "MSK IAM: no token within {}s: the AWS credential chain did not answer",
                    SIGNING_TIMEOUT.as_secs()
                ),
                transient: true,
            }),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }
}

/// One token from the chain's current credentials. It expires with its signature (15
/// minutes) or with the credentials, whichever is first: a token signed with a session that
/// has ended is refused, so librdkafka must ask again before the session ends.
pub async fn issue(region: &str, chain: &Chain) -> Result<OAuthToken, CredentialsError> {
    let creds = chain.credentials().await.map_err(|e| CredentialsError {
        why: format!("MSK IAM: {}", e.why),
        ..e
    })?;
    let (token, signature_expires_at_ms) =
        sign(region, &creds).await.map_err(|why| CredentialsError {
            why,
            transient: false,
        })?;
    let expires_at_ms = match creds.expiry() {
        Some(at) => signature_expires_at_ms.min(epoch_ms(at)),
        None => signature_expires_at_ms,
    };
    let now_ms = epoch_ms(SystemTime::now());
    if expires_at_ms <= now_ms {
        return Err(CredentialsError {
            why: format!(
                "MSK IAM: the AWS credentials (access key {}) have expired",
                creds.access_key_id()
            ),
            transient: true,
        });
    }
    tracing::info!(
        region,
        access_key = creds.access_key_id(),
        valid_for_s = (expires_at_ms - now_ms) / 1000,
        "MSK IAM token signed"
    );
    Ok(OAuthToken {
        token,
        principal_name: PRINCIPAL.to_owned(),
        lifetime_ms: expires_at_ms,
    })
}

/// The token for these credentials, signed now, and when its signature expires (ms since
/// the epoch).
pub async fn sign(region: &str, creds: &Credentials) -> Result<(String, i64), String> {
    aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
        aws_config::Region::new(region.to_owned()),
        aws_credential_types::provider::SharedCredentialsProvider::new(creds.clone()),
    )
    .await
    .map_err(|e| format!("MSK IAM: signing the token: {e}"))
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Hands a client its first token. librdkafka asks for tokens through the client's main
/// queue, which the admin client and the metadata-only consumers never poll: without this
/// their connections would wait for a token that never comes. They live for seconds, a token
/// for minutes, so one is enough.
pub fn authenticate<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    iam: &MskIam,
) -> Result<(), CredentialsError> {
    use std::ffi::CString;
    let token = iam.token()?;
    let refused = |why: String| CredentialsError {
        why,
        transient: false,
    };
    let value =
        CString::new(token.token).map_err(|_| refused("MSK IAM token holds a NUL".into()))?;
    let principal = CString::new(token.principal_name)
        .map_err(|_| refused("MSK IAM principal holds a NUL".into()))?;
    let mut err = [0 as std::ffi::c_char; 512];
    // SAFETY: the client pointer is live for the borrow; the strings and the error buffer
    // outlive the call, which copies what it keeps; no extensions are passed (null, 0).
    let code = unsafe {
        rdkafka::bindings::rd_kafka_oauthbearer_set_token(
            client.native_ptr(),
            value.as_ptr(),
            token.lifetime_ms,
            principal.as_ptr(),
            std::ptr::null_mut(),
            0,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if code == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    // SAFETY: librdkafka writes a NUL-terminated message into the buffer on failure.
    let why = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
    Err(refused(format!(
        "MSK IAM token refused by librdkafka: {}",
        why.to_string_lossy()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;
    use rdkafka::ClientConfig;

    fn admin(mechanism: Option<&str>) -> AdminClient<DefaultClientContext> {
        let mut c = ClientConfig::new();
        // Nothing listens there: the token is set on the client, not sent.
        c.set("bootstrap.servers", "127.0.0.1:9");
        if let Some(m) = mechanism {
            c.set("security.protocol", "sasl_plaintext")
                .set("sasl.mechanism", m);
        }
        c.create().unwrap()
    }

    fn signer() -> Arc<MskIam> {
        let creds = Credentials::new("AKIAFRESHETTEST00001", "secret", None, None, "test");
        let chain = Chain::new(Some(
            aws_credential_types::provider::SharedCredentialsProvider::new(creds),
        ));
        MskIam::start("us-east-1".into(), Some(chain)).unwrap()
    }

    #[test]
    fn a_client_that_never_polls_is_handed_its_token() {
        let iam = signer();
        authenticate(admin(Some("OAUTHBEARER")).inner(), &iam).unwrap();
    }

    #[test]
    fn a_client_without_oauthbearer_refuses_the_token_by_librdkafkas_words() {
        let iam = signer();
        let err = authenticate(admin(None).inner(), &iam).unwrap_err();
        assert!(err.why.contains("OAUTHBEARER"), "{err}");
    }
}
