//! Plain (non-replication) PostgreSQL connections: one place that spawns the connection task,
//! speaks TLS as the connection string says ([`tls`]) and names the endpoint in errors.

pub mod rds_iam;
pub mod tls;

use std::borrow::Cow;

use tokio_postgres::{Client, Config, NoTls};

pub use rds_iam::RdsIam;
pub use tls::{SslMode, Tls};

/// A connection's settings: tokio-postgres's own, and the ones it does not know (TLS beyond
/// `require`, the IAM login).
#[derive(Clone, Debug, Default)]
pub struct Dsn {
    config: Config,
    pub tls: Tls,
    pub rds_iam: Option<RdsIam>,
}

impl Dsn {
    /// From a libpq connection string (URL or `key=value` words); the error never echoes it.
    pub fn parse(conn: &str) -> Result<Dsn, String> {
        let (taken, rest) = tls::take_keywords(conn, &["sslmode", "sslrootcert", "auth"])?;
        let tls = Tls::from_keywords(&taken)?;
        let mut config: Config = rest.parse().map_err(|e| format!("{e}"))?;
        config.ssl_mode(tls.negotiation());
        let rds_iam = match taken.get("auth").map(String::as_str) {
            None => None,
            Some("rds-iam") => Some(RdsIam::for_connection(&config, &tls)?),
            Some(other) => {
                return Err(format!(
                    "auth={other:?}: expected rds-iam (or no auth, for the password in the string)"
                ))
            }
        };
        Ok(Dsn {
            config,
            tls,
            rds_iam,
        })
    }

    /// The settings to log in with: with `auth=rds-iam`, a token signed now is the password.
    pub async fn login(&self) -> Result<Cow<'_, Config>, ConnectError> {
        let Some(iam) = &self.rds_iam else {
            return Ok(Cow::Borrowed(&self.config));
        };
        let token = self.rds_token(iam).await.map_err(|e| ConnectError {
            endpoint: endpoint(self),
            why: e.why,
            transient: e.transient,
        })?;
        let mut config = self.config.clone();
        config.password(token);
        Ok(Cow::Owned(config))
    }

    #[cfg(feature = "kafka")]
    async fn rds_token(&self, iam: &RdsIam) -> Result<String, crate::aws::CredentialsError> {
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres");
        rds_iam::token_now(&host(self), port, user, &iam.region).await
    }

    /// Without the AWS crates (the fuzz build) there is no signer.
    #[cfg(not(feature = "kafka"))]
    async fn rds_token(&self, _iam: &RdsIam) -> Result<String, crate::aws::CredentialsError> {
        Err(crate::aws::CredentialsError {
            why: "auth=rds-iam: this build has no AWS signer".into(),
            transient: false,
        })
    }
}

impl std::ops::Deref for Dsn {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

impl std::ops::DerefMut for Dsn {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to PostgreSQL at {endpoint}: {why}")]
pub struct ConnectError {
    pub endpoint: String,
    pub why: String,
    /// A network or server condition a retry may outlive, as opposed to a setup problem.
    pub transient: bool,
}

/// The first host of a config: a name, an address or a socket directory.
pub fn host(config: &Config) -> String {
    use tokio_postgres::config::Host;
    match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    }
}

/// `host:port/dbname` of a config, for error messages; never includes the password.
pub fn endpoint(config: &Config) -> String {
    let host = host(config);
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
}

/// What a failed connection's `message` means when an operator must act, with what to do: a
/// certificate, a server without TLS, a refused IAM token. The plain connections and the
/// replication stream alike.
pub fn explain(message: &str, dsn: &Dsn) -> Option<String> {
    tls::explain(message, &dsn.tls)
        .or_else(|| dsn.rds_iam.as_ref().and_then(|_| rds_iam::explain(message)))
}

/// Connects and drives the connection on the runtime; the task ends when the client drops.
pub async fn connect(dsn: &Dsn) -> Result<Client, ConnectError> {
    let failed = |error: tokio_postgres::Error| {
        let why = describe(&error);
        match explain(&why, dsn) {
            Some(why) => ConnectError {
                endpoint: endpoint(dsn),
                why,
                transient: false,
            },
            None => ConnectError {
                endpoint: endpoint(dsn),
                why,
                // A server that answered with an error (auth, missing database) needs an
                // operator, unless it is starting up, shutting down or out of connections.
                transient: is_transient(&error),
            },
        }
    };
    let config = dsn.login().await?;
    let client = match dsn.tls.mode {
        SslMode::Disable => {
            let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(drive(connection));
            client
        }
        _ => {
            let connector = tls_connector(dsn)?;
            let (client, connection) = config.connect(connector).await.map_err(failed)?;
            tokio::spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

#[cfg(feature = "kafka")]
fn tls_connector(dsn: &Dsn) -> Result<postgres_native_tls::MakeTlsConnector, ConnectError> {
    dsn.tls.connector().map_err(|why| ConnectError {
        endpoint: endpoint(dsn),
        why,
        transient: false,
    })
}

/// Without the TLS stack (the fuzz build): only `sslmode=disable` connects.
#[cfg(not(feature = "kafka"))]
fn tls_connector(dsn: &Dsn) -> Result<NoTls, ConnectError> {
    Err(ConnectError {
        endpoint: endpoint(dsn),
        why: format!(
            "sslmode={}: this build has no TLS (use sslmode=disable)",
            dsn.tls.mode.as_str()
        ),
        transient: false,
    })
}

async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "postgres connection closed");
    }
}

/// Whether a retry can get past `error`: no answer from the server (network), or an answer
/// that says "not now": connection failures (class 08), the server starting, stopping or
/// restarting (57P01–57P03), too many connections (53300), a serialization failure or
/// deadlock (40001, 40P01), a lock not available (55P03). Anything else the server says is
/// about the data or the setup.
pub fn is_transient(error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        None => true,
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "55P03"
                )
        }
    }
}

/// An identifier quoted for SQL text.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The server's message (with detail and hint) when there is one; tokio-postgres's own
/// `Display` says only "db error" and hides it in the source chain.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" (detail: {detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" (hint: {hint})"));
            }
            text
        }
        // The cause is in the source chain ("error performing TLS handshake" alone says
        // nothing of the certificate).
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                // Some errors print their cause themselves.
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(&format!(": {s_text}"));
                }
                source = s.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_never_shows_the_password_or_the_tls_settings() {
        let dsn = Dsn::parse(
            "postgresql://u:pw@db.example:6543/app?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(endpoint(&dsn), "db.example:6543/app");
        assert_eq!(dsn.tls.mode, SslMode::VerifyFull);
        assert_eq!(dsn.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }
}
