//! AWS for the IAM logins (MSK's OAUTHBEARER, RDS's tokens): the region, and the credential
//! chain they sign with.

/// The region given, else the SDK's environment variables', as the SDK reads them.
pub fn region(given: Option<&str>) -> Option<String> {
    given
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
}

/// Why no credentials (or no token): `transient` when asking again later may get some (a
/// metadata endpoint that did not answer), not when nothing could ever provide them.
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub struct CredentialsError {
    pub why: String,
    pub transient: bool,
}

/// An SDK error with its causes ("dispatch failure: io error: connection refused"): its own
/// `Display` names only the outermost ("an error occurred while loading credentials").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(feature = "kafka")]
pub use signing::Chain;

#[cfg(feature = "kafka")]
mod signing {
    use std::time::{Duration, SystemTime};

    use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
    use aws_credential_types::Credentials;

    use super::CredentialsError;

    /// Credentials are fetched again this long before they expire: a token signed with them
    /// must outlive its login.
    const RENEW_BEFORE: Duration = Duration::from_secs(300);

    /// Held credentials still serve when a renewal fails, until this close to their expiry.
    const LAST_RESORT: Duration = Duration::from_secs(60);

    /// The longest a fetch may take (the SDK's providers time out sooner on their own).
    const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

    /// A credential chain and the credentials it gave last. The SDK's `credentials_provider()`
    /// caches nothing (its cache lives in the service clients), and each ask of the ECS or EC2
    /// metadata endpoint, or of STS, costs a request: the credentials are kept until shortly
    /// before they expire.
    pub struct Chain {
        provider: Option<SharedCredentialsProvider>,
        held: tokio::sync::Mutex<Option<Credentials>>,
    }

    impl Chain {
        /// The SDK's default chain: the environment, a profile, web identity, the ECS task
        /// role, the EC2 instance role.
        pub async fn default(region: &str) -> Chain {
            let provider = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region.to_owned()))
                .load()
                .await
                .credentials_provider();
            Chain::new(provider)
        }

        /// `provider`'s credentials; `None` says the SDK found no way to get any.
        pub fn new(provider: Option<SharedCredentialsProvider>) -> Chain {
            Chain {
                provider,
                held: tokio::sync::Mutex::new(None),
            }
        }

        /// Credentials good for at least [`RENEW_BEFORE`] more, else the chain's freshest;
        /// when the chain cannot renew them, the held ones while they last.
        pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
            let Some(provider) = &self.provider else {
                return Err(CredentialsError {
                    why: "the AWS SDK found no credential provider".into(),
                    transient: false,
                });
            };
            let lasts = |c: &Credentials, margin: Duration| {
                c.expiry().is_none_or(|at| at > SystemTime::now() + margin)
            };
            let mut held = self.held.lock().await;
            if let Some(c) = held.as_ref().filter(|c| lasts(c, RENEW_BEFORE)) {
                return Ok(c.clone());
            }
            let fetched = tokio::time::timeout(FETCH_TIMEOUT, provider.provide_credentials()).await;
            let failure = match fetched {
                Ok(Ok(fresh)) => {
                    *held = Some(fresh.clone());
                    return Ok(fresh);
                }
                Ok(Err(e)) => classify(&e),
                Err(_) => CredentialsError {
                    why: format!(
                        "no AWS credentials: the chain did not answer within {}s",
                        FETCH_TIMEOUT.as_secs()
                    ),
                    transient: true,
                },
            };
            match held.as_ref().filter(|c| lasts(c, LAST_RESORT)) {
                Some(c) => {
                    tracing::warn!(
                        access_key = c.access_key_id(),
                        "{}; signing with the held credentials until they expire",
                        failure.why
                    );
                    Ok(c.clone())
                }
                None => Err(failure),
            }
        }
    }

    /// A provider's failure, and whether asking again may help: a provider that timed out or
    /// failed may answer next time; none in the chain having credentials, or a configuration
    /// it cannot read, needs an operator.
    fn classify(e: &aws_credential_types::provider::error::CredentialsError) -> CredentialsError {
        use aws_credential_types::provider::error::CredentialsError as Sdk;
        CredentialsError {
            why: format!("no AWS credentials: {}", super::error_chain(e)),
            transient: matches!(e, Sdk::ProviderTimedOut(_) | Sdk::ProviderError(_)),
        }
    }
}

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use aws_credential_types::provider::{
        error::CredentialsError as Sdk, future, ProvideCredentials, SharedCredentialsProvider,
    };
    use aws_credential_types::Credentials;

    use super::Chain;

    /// Credentials good for `life` (none: no expiry), or the failure `fail` names, counted.
    #[derive(Debug)]
    struct Counted {
        life: Option<Duration>,
        fail: Option<fn() -> Sdk>,
        asked: Arc<AtomicUsize>,
    }

    impl ProvideCredentials for Counted {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.asked.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(match self.fail {
                Some(fail) if n > 0 => Err(fail()),
                _ => Ok(Credentials::new(
                    format!("AKIAFRESHETCOUNTED{n:02}"),
                    "secret",
                    None,
                    self.life.map(|l| SystemTime::now() + l),
                    "test",
                )),
            })
        }
    }

    fn counted(life: Option<Duration>, fail: Option<fn() -> Sdk>) -> (Chain, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let provider = Counted {
            life,
            fail,
            asked: asked.clone(),
        };
        (
            Chain::new(Some(SharedCredentialsProvider::new(provider))),
            asked,
        )
    }

    #[tokio::test]
    async fn credentials_are_asked_for_again_only_near_their_expiry() {
        for (life, asks) in [
            (None, 1),
            (Some(Duration::from_secs(3600)), 1),
            (Some(Duration::from_secs(240)), 3),
        ] {
            let (chain, asked) = counted(life, None);
            for _ in 0..3 {
                chain.credentials().await.unwrap();
            }
            assert_eq!(asked.load(Ordering::SeqCst), asks, "{life:?}");
        }
    }

    #[tokio::test]
    async fn held_credentials_serve_while_a_renewal_fails_and_failures_are_classed() {
        // Four minutes left: renewed at each ask, which fails; the held ones still serve.
        let timed_out: fn() -> Sdk = || Sdk::provider_timed_out(Duration::from_secs(1));
        let (chain, asked) = counted(Some(Duration::from_secs(240)), Some(timed_out));
        let first = chain.credentials().await.unwrap();
        let second = chain.credentials().await.unwrap();
        assert_eq!(first.access_key_id(), second.access_key_id());
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // Nothing held: the failure itself, transient or not by its kind.
        for (fail, transient) in [
            (timed_out, true),
            (
                (|| Sdk::not_loaded("no provider had any")) as fn() -> Sdk,
                false,
            ),
            (
                (|| Sdk::invalid_configuration("a bad profile")) as fn() -> Sdk,
                false,
            ),
        ] {
            let (chain, _) = counted(Some(Duration::from_secs(30)), Some(fail));
            chain.credentials().await.unwrap();
            let err = chain.credentials().await.unwrap_err();
            assert_eq!(err.transient, transient, "{err}");
        }
    }
}
