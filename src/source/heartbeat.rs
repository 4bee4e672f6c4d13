//! Heartbeats: a small transactional message written into the WAL on an interval. It flows
//! through the pipeline like a transaction, so acknowledgements (and later the freshness
//! watermarks) advance when the captured tables are quiet but the database is not.

use std::time::Duration;

use tracing::warn;

use super::HEARTBEAT_PREFIX;
use crate::pg;

/// Writes heartbeats every `interval` until the task is aborted. Failures are logged and
/// retried on the next tick (the stream itself reports a server that is gone); every call is
/// bounded so a black-holed connection cannot stall the heartbeats behind it.
pub async fn run(config: crate::pg::Dsn, interval: Duration) {
    let limit = interval.max(Duration::from_secs(5));
    let mut client = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if client.is_none() {
            match tokio::time::timeout(limit, pg::connect(&config)).await {
                Ok(Ok(c)) => client = Some(c),
                Ok(Err(e)) => warn!(error = %e, "heartbeat: cannot connect"),
                Err(_) => warn!("heartbeat: connecting timed out"),
            }
        }
        let Some(c) = &client else { continue };
        let sent = c.execute(
            "SELECT pg_logical_emit_message(true, $1, now()::text)",
            &[&HEARTBEAT_PREFIX],
        );
        match tokio::time::timeout(limit, sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(error = %pg::describe(&e), "heartbeat failed");
                client = None;
            }
            Err(_) => {
                warn!("heartbeat timed out");
                client = None;
            }
        }
    }
}
