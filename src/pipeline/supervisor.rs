//! Runs the halves of `freshet run` and restarts one that failed transiently, from its
//! confirmed position, with backoff; [`policy`](super::policy) says which failures those are.
//! Today the capture half; the sink half joins it here.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info};

use super::policy::{self, Class};
use super::{OutputSpec, PipelineError};
use crate::config::Pipeline;

const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How a supervised run ended.
#[derive(Debug)]
pub enum Ended {
    /// Stopped by a signal, drained and confirmed.
    Stopped,
    /// A failure the half cannot restart past, or a transient one when the stop came first.
    Failed(Class, PipelineError),
}

/// Runs the capture half until `stopped`, restarting it after transient failures.
pub async fn run(p: &Pipeline, output: &OutputSpec, stopped: watch::Receiver<bool>) -> Ended {
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let e = match super::run(p, output, stopped.clone()).await {
            Ok(confirmed) => {
                info!(%confirmed, "stopped cleanly");
                return Ended::Stopped;
            }
            Err(e) => e,
        };
        let class = policy::classify(&e);
        if class != Class::Transient || *stopped.borrow() {
            return Ended::Failed(class, e);
        }
        // A run that lasted a while earns a fresh backoff.
        if started.elapsed() > RESTART_BACKOFF_MAX * 2 {
            backoff = RESTART_BACKOFF_MIN;
        }
        error!(error = %e, retry_in = ?backoff, "capture failed; restarting from the slot's confirmed position");
        let mut stop = stopped.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
}
