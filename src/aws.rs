//! AWS for the IAM logins (MSK's OAUTHBEARER, RDS's tokens): the region, and the credential
//! chain they sign with.

/// The region given, else the SDK's environment variables', as the SDK reads them.
pub fn region(given: Option<&str>) -> Option<String> {
    given
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

        /// Credentials good for at least [`RENEW_BEFORE`] more, or the freshest the chain has.
        pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
            let Some(provider) = &self.provider else {
                return Err(CredentialsError {
                    why: "the AWS SDK found no credential provider".into(),
                    transient: false,
                });
            };
            let mut held = self.held.lock().await;
            if let Some(c) = held.as_ref() {
                let lasting = c
                    .expiry()
                    .is_none_or(|at| at > SystemTime::now() + RENEW_BEFORE);
                if lasting {
                    return Ok(c.clone());
                }
            }
            let fresh = provider
                .provide_credentials()
                .await
                .map_err(|e| CredentialsError {
                    why: format!("no AWS credentials: {}", describe(&e)),
                    transient: true,
                })?;
            *held = Some(fresh.clone());
            Ok(fresh)
        }
    }

    /// An SDK error with its causes: its own `Display` says only "an error occurred while
    /// loading credentials".
    fn describe(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }
}
