//! Plain (non-replication) PostgreSQL connections: one place that spawns the connection task
//! and names the endpoint in errors.

use tokio_postgres::{Client, Config, NoTls};

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

/// Refuses `sslmode=require`: TLS to PostgreSQL is not built in yet, and a silent downgrade
/// to plaintext would be worse than a refusal. (`prefer`, the default, connects without TLS.)
pub fn ensure_no_tls_required(config: &Config) -> Result<(), ConnectError> {
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(ConnectError {
            endpoint: endpoint(config),
            why: "sslmode=require, but this build of Freshet cannot speak TLS to PostgreSQL yet \
                  (use sslmode=disable or prefer on a trusted network)"
                .to_string(),
            transient: false,
        });
    }
    Ok(())
}

/// Connects and drives the connection on the runtime; the task ends when the client drops.
pub async fn connect(config: &Config) -> Result<Client, ConnectError> {
    ensure_no_tls_required(config)?;
    let (client, connection) = config.connect(NoTls).await.map_err(|error| ConnectError {
        endpoint: endpoint(config),
        why: describe(&error),
        // A server that answered with an error (auth, missing database) needs an operator,
        // unless it is starting up, shutting down or out of connections.
        transient: is_transient(&error),
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
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
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_require_is_refused_by_name_not_downgraded() {
        let config: Config = "postgresql://u:pw@db.example:6543/app?sslmode=require"
            .parse()
            .unwrap();
        let err = ensure_no_tls_required(&config).unwrap_err();
        assert!(!err.transient);
        assert!(
            err.to_string().contains("db.example:6543/app")
                && err.to_string().contains("sslmode=require"),
            "{err}"
        );
        assert!(!err.to_string().contains("pw"));
        let prefer: Config = "postgresql://u@db.example/app".parse().unwrap();
        assert!(ensure_no_tls_required(&prefer).is_ok());
    }
}
