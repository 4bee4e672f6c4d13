//! Heartbeats: a small transactional message written into the WAL on an interval. It flows
//! through the pipeline like a transaction, so acknowledgements (and later the freshness
//! watermarks) advance when the captured tables are quiet but the database is not.

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use super::HEARTBEAT_PREFIX;
use crate::pg;

/// Writes heartbeats every `interval` until `shutdown`; failures are logged and retried on
/// the next tick (the stream itself reports a server that is gone).
pub async fn run(
    config: tokio_postgres::Config,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        if client.is_none() {
            match pg::connect(&config).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    warn!(error = %e, "heartbeat: cannot connect");
                    continue;
                }
            }
        }
        if let Some(c) = &client {
            if let Err(e) = c
                .execute(
                    "SELECT pg_logical_emit_message(true, $1, now()::text)",
                    &[&HEARTBEAT_PREFIX],
                )
                .await
            {
                warn!(error = %pg::describe(&e), "heartbeat failed");
                client = None;
            }
        }
    }
}
