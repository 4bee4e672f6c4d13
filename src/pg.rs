//! Plain (non-replication) PostgreSQL connections: one place that spawns the connection task
//! and names the endpoint in errors.

use tokio_postgres::{Client, Config, NoTls};

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to PostgreSQL at {endpoint}: {}", describe(error))]
pub struct ConnectError {
    pub endpoint: String,
    // Not a `#[source]`: the message above already carries it, and a chain would repeat it.
    pub error: tokio_postgres::Error,
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

/// Connects and drives the connection on the runtime; the task ends when the client drops.
pub async fn connect(config: &Config) -> Result<Client, ConnectError> {
    let (client, connection) = config.connect(NoTls).await.map_err(|error| ConnectError {
        endpoint: endpoint(config),
        error,
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
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
