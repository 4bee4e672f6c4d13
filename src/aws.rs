//! The AWS credential chain the IAM logins (MSK's OAUTHBEARER, RDS's tokens) sign with.

use aws_credential_types::provider::SharedCredentialsProvider;

/// The SDK's default chain: the environment, a profile, web identity, the ECS task role, the
/// EC2 instance role. Its provider caches the credentials and fetches new ones before they
/// expire. `None` only when the SDK finds no way to get credentials at all.
pub async fn default_chain(region: &str) -> Option<SharedCredentialsProvider> {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await
        .credentials_provider()
}

/// An SDK error with its causes: its own `Display` says only "an error occurred while
/// loading credentials".
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
