//! Runs the halves of `freshet run` side by side and restarts one that failed transiently,
//! from its durable position, with backoff, leaving the other alone; [`policy`](super::policy)
//! says which failures those are. A half that fails for good stops the other (drained) and
//! ends the run.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info};

use super::policy::{self, Class};
use super::readiness;
use super::sink::Sink;
use super::{OutputSpec, PipelineError};
use crate::batcher::Share;
use crate::config::Pipeline;
use crate::telemetry::{self, names, Event};

const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Which halves this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// source → transform → kafka: holds the replication slot.
    Capture,
    /// kafka → batcher → store: a consumer; several processes split the partitions with
    /// `--sink-share`, never more than one per share.
    Sink,
    /// Both, in one process.
    All,
}

/// How a supervised run ended.
#[derive(Debug)]
pub enum Ended {
    /// Stopped by a signal, drained and confirmed.
    Stopped,
    /// A failure a half cannot restart past, or a transient one when the stop came first.
    Failed(Class, PipelineError),
}

/// Runs the halves `role` names until `stopped` or a failure that is not transient.
pub async fn run(
    p: &Pipeline,
    output: &OutputSpec,
    role: Role,
    share: Option<Share>,
    stopped: watch::Receiver<bool>,
) -> Ended {
    let sink = match role {
        Role::Capture => None,
        // A jsonl capture writes no topics for a sink to read.
        Role::All if matches!(output, OutputSpec::Jsonl(_)) => None,
        Role::Sink | Role::All => match Sink::open(p, share).await {
            Ok(Some(sink)) => Some(sink),
            Ok(None) if role == Role::Sink => {
                return Ended::Failed(
                    Class::Fatal,
                    PipelineError::Config(
                        "--role sink needs the pipeline's kafka and batcher sections".into(),
                    ),
                )
            }
            Ok(None) => {
                info!("no batcher section: running the capture half only");
                None
            }
            Err(e) => return Ended::Failed(policy::classify(&e), e),
        },
    };
    // The halves this process runs, each unready until it says otherwise.
    if role != Role::Sink {
        readiness::set(readiness::CAPTURE, Err("starting".into()));
    }
    if sink.is_some() {
        readiness::set(readiness::SINK, Err("starting".into()));
    }
    readiness::halves_known();
    // A half that fails for good stops the other through `halt`, as a signal would; the half
    // that failed first is the one the exit reports.
    let (halt, halted) = watch::channel(false);
    let first_failure: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    let mut signal = stopped.clone();
    let forward = halt.clone();
    tokio::spawn(async move {
        if signal.wait_for(|s| *s).await.is_ok() {
            let _ = forward.send(true);
        }
    });
    let capture = async {
        if role == Role::Sink {
            return Ended::Stopped;
        }
        let ended = supervise(readiness::CAPTURE, &halted, |stop| async move {
            // Boxed, as is the sink's: each half's future is too deep to nest unboxed.
            Box::pin(super::run(p, output, stop))
                .await
                .map(|confirmed| {
                    info!(
                        %confirmed,
                        "capture stopped cleanly: every change read is durable in the output and \
                         confirmed; the next start reads the WAL from the confirmed position"
                    );
                })
        })
        .await;
        if matches!(ended, Ended::Failed(..)) {
            let _ = first_failure.set(readiness::CAPTURE);
            let _ = halt.send(true);
        }
        ended
    };
    let sink_half = async {
        let Some(sink) = &sink else {
            return Ended::Stopped;
        };
        let ended = supervise(readiness::SINK, &halted, |stop| async move {
            Box::pin(sink.run(p, stop)).await.map(|_| ())
        })
        .await;
        if matches!(ended, Ended::Failed(..)) {
            let _ = first_failure.set(readiness::SINK);
            let _ = halt.send(true);
        }
        ended
    };
    let (capture, sink) = tokio::join!(capture, sink_half);
    // The first failure decides the exit; one of the other half while it stopped is logged.
    let (first, second) = match first_failure.get() {
        Some(&half) if half == readiness::SINK => (sink, capture),
        _ => (capture, sink),
    };
    if let (Ended::Failed(..), Ended::Failed(class, e)) = (&first, &second) {
        error!(class = class.label(), error = %e, "the other half failed too while it stopped");
    }
    match (first, second) {
        // A failure that needs an operator outranks a transient one, whichever came first:
        // the exit code must not invite a restart loop past it.
        (
            Ended::Failed(Class::Transient, _),
            worse @ Ended::Failed(Class::Data | Class::Fatal, _),
        ) => worse,
        (failed @ Ended::Failed(..), _) | (_, failed @ Ended::Failed(..)) => failed,
        _ => Ended::Stopped,
    }
}

/// Runs one half, restarting it after transient failures until `stopped`.
async fn supervise<F, Fut>(half: &'static str, stopped: &watch::Receiver<bool>, run: F) -> Ended
where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<(), PipelineError>>,
{
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        let started = Instant::now();
        // Each half says when it is under way.
        readiness::set(half, Err("starting".into()));
        let e = match run(stopped.clone()).await {
            Ok(()) => return Ended::Stopped,
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
        readiness::set(half, Err(format!("restarting in {backoff:?} after: {e}")));
        metrics::counter!(names::PIPELINE_RESTARTS_TOTAL, "half" => half).increment(1);
        telemetry::emit(Event::Restarted {
            half,
            error: e.to_string(),
            retry_in: backoff,
        });
        let mut stop = stopped.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
}
