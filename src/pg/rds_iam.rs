//! RDS IAM database authentication (`auth=rds-iam` in a connection string): the password is a
//! token, a SigV4-presigned `rds-db:connect` for the host, port and user, as botocore's
//! `generate_db_auth_token` builds it. RDS accepts a token for 15 minutes and checks it only
//! when a connection logs in, so each connection signs one as it connects, with the credential
//! chain's current credentials.

#[cfg(feature = "kafka")]
use std::time::{Duration, SystemTime};

#[cfg(feature = "kafka")]
use aws_credential_types::Credentials;
use tokio_postgres::config::Host;

use super::{SslMode, Tls};

/// How long RDS accepts a token.
#[cfg(feature = "kafka")]
const VALID_FOR: Duration = Duration::from_secs(900);

/// The process's credential chain, loaded at the first IAM login.
#[cfg(feature = "kafka")]
static CHAIN: tokio::sync::OnceCell<crate::aws::Chain> = tokio::sync::OnceCell::const_new();

/// An IAM login to RDS: the region its tokens are signed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdsIam {
    pub region: String,
}

impl RdsIam {
    /// `auth=rds-iam` for this connection: a token is its password, so the string holds none
    /// and TLS carries it; the region is the endpoint name's, or `AWS_REGION`'s.
    pub fn for_connection(config: &tokio_postgres::Config, tls: &Tls) -> Result<RdsIam, String> {
        if config.get_password().is_some() {
            return Err("auth=rds-iam signs a token as the password: remove the password from the connection string".into());
        }
        // A server not proven to be this host (any certificate some CA signed, under
        // verify-ca) could log in with the token for 15 minutes.
        if tls.mode != SslMode::VerifyFull {
            return Err(format!(
                "auth=rds-iam sends a token good for 15 minutes as the password: only to a server whose certificate is checked, sslmode=verify-full (not {})",
                tls.mode.as_str()
            ));
        }
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.as_str(),
            _ => {
                return Err(
                    "auth=rds-iam needs a host name (the RDS endpoint), not a socket directory"
                        .into(),
                )
            }
        };
        let region = crate::aws::region(endpoint_region(host))
            .ok_or_else(|| format!("auth=rds-iam: no AWS region: {host} is not an RDS endpoint name (…<region>.rds.amazonaws.com); set AWS_REGION"))?;
        Ok(RdsIam { region })
    }
}

/// A refused IAM login, with what RDS needs for one (its own message names no cause).
pub fn explain(message: &str) -> Option<String> {
    message.contains("authentication failed").then(|| format!(
        "{message} (auth=rds-iam: the token was refused; RDS takes one when the instance has IAM authentication on, the role is granted rds_iam, and the credentials' IAM policy allows rds-db:connect as this user)"
    ))
}

/// A token for `user` at `host:port`, signed at `at` with `creds` for `region`.
#[cfg(feature = "kafka")]
pub fn token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    creds: &Credentials,
    at: SystemTime,
) -> Result<String, String> {
    use aws_sigv4::http_request::{
        sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    };
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(VALID_FOR);
    let identity = creds.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| format!("RDS IAM: signing parameters: {e}"))?;
    let user = uri_encode(user);
    let url = format!("https://{host}:{port}/?Action=connect&DBUser={user}");
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("RDS IAM: {host}:{port} cannot be signed: {e}"))?;
    let (instructions, _) = sign(request, &params.into())
        .map_err(|e| format!("RDS IAM: signing: {e}"))?
        .into_parts();
    let mut token = format!("{host}:{port}/?Action=connect&DBUser={user}");
    for (name, value) in instructions.params() {
        token.push_str(&format!("&{}={}", uri_encode(name), uri_encode(value)));
    }
    Ok(token)
}

/// SigV4's URI encoding, as botocore writes a presigned query: all but `A-Za-z0-9-_.~`.
#[cfg(feature = "kafka")]
fn uri_encode(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    const SIGV4: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, SIGV4).to_string()
}

/// A token signed now with the default chain's credentials.
#[cfg(feature = "kafka")]
pub async fn token_now(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
) -> Result<String, crate::aws::CredentialsError> {
    let chain = CHAIN
        .get_or_init(|| crate::aws::Chain::default(region))
        .await;
    let creds = chain
        .credentials()
        .await
        .map_err(|e| crate::aws::CredentialsError {
            why: format!("RDS IAM: {}", e.why),
            ..e
        })?;
    token(host, port, user, region, &creds, SystemTime::now()).map_err(|why| {
        crate::aws::CredentialsError {
            why,
            transient: false,
        }
    })
}

/// The region of an RDS endpoint name (`<name>.<id>.<region>.rds.amazonaws.com`).
pub fn endpoint_region(host: &str) -> Option<&str> {
    let labels: Vec<&str> = host.split('.').collect();
    let rds = labels.iter().position(|l| *l == "rds")?;
    (rds >= 1 && labels.get(rds + 1) == Some(&"amazonaws")).then(|| labels[rds - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_off_an_rds_endpoint_name() {
        assert_eq!(
            endpoint_region("atlasco.c9akciq32.eu-west-1.rds.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(
            endpoint_region("atlasco.cluster-ro-c9a.cn-north-1.rds.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        assert_eq!(endpoint_region("db.internal"), None);
        assert_eq!(endpoint_region("rds.amazonaws.com"), None);
    }

    #[test]
    fn an_iam_login_takes_no_password_and_needs_tls() {
        use crate::pg::Dsn;
        let host = "atlasco.c9akciq32.eu-west-1.rds.amazonaws.com";
        let ca = "sslrootcert=/etc/freshet/rds-ca.pem";
        let dsn = Dsn::parse(&format!(
            "postgresql://freshet@{host}/atlasco?sslmode=verify-full&{ca}&auth=rds-iam"
        ))
        .unwrap();
        assert_eq!(dsn.rds_iam.as_ref().unwrap().region, "eu-west-1");
        assert_eq!(dsn.get_user(), Some("freshet"));
        let refused = |conn: String, needle: &str| {
            let err = Dsn::parse(&conn).unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        };
        refused(
            format!("postgresql://freshet:hunter2@{host}/a?sslmode=verify-full&{ca}&auth=rds-iam"),
            "remove the password",
        );
        refused(
            format!("postgresql://freshet@{host}/a?auth=rds-iam"),
            "not prefer",
        );
        refused(
            format!("postgresql://freshet@{host}/a?sslmode=require&auth=rds-iam"),
            "not require",
        );
        refused(
            format!("postgresql://freshet@{host}/a?sslmode=verify-ca&{ca}&auth=rds-iam"),
            "not verify-ca",
        );
        refused(
            format!("host={host} user=freshet sslmode=disable auth=rds-iam"),
            "not disable",
        );
        refused(
            format!("postgresql://freshet@{host}/a?sslmode=verify-full&{ca}&auth=kerberos"),
            "expected rds-iam",
        );
    }
}
