//! Readiness, as `/readyz` answers it: every half this process runs is doing its job.
//!
//! The capture half is ready while it streams and its acknowledgements reach PostgreSQL: a
//! commit that waits longer than three heartbeat intervals (5 s at least) for its
//! confirmation (Kafka away, the output stalled) makes it unready until one arrives. A half restarting after a failure is unready
//! until it runs again; the sink half is ready while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The halves' names here.
pub const CAPTURE: &str = "capture";
pub const SINK: &str = "sink";
/// Stands for the halves of a `freshet run` until they are known: not ready.
pub const PROCESS: &str = "pipeline";

/// Per half: `Ok` while it does its job, or why not.
static HALVES: Mutex<BTreeMap<&'static str, Result<(), String>>> = Mutex::new(BTreeMap::new());
/// Since when (Unix ms) the oldest unconfirmed commit has waited; 0: none waits.
static WAITING_SINCE_MS: AtomicI64 = AtomicI64::new(0);
/// How long (ms) a commit may wait before the capture half is unready.
static STUCK_MS: AtomicU64 = AtomicU64::new(30_000);

/// The capture half's heartbeat interval: a commit that waited three of them (5 s at least)
/// is stuck, as a heartbeat is written each.
pub fn heartbeats_every(interval: Duration) {
    let stuck = (interval * 3).max(Duration::from_secs(5));
    STUCK_MS.store(
        u64::try_from(stuck.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

fn halves() -> std::sync::MutexGuard<'static, BTreeMap<&'static str, Result<(), String>>> {
    // A panic elsewhere leaves the map as it was: each entry is whole.
    HALVES.lock().unwrap_or_else(|e| e.into_inner())
}

/// `half` is doing its job (`Ok`), or not, and why.
pub fn set(half: &'static str, state: Result<(), String>) {
    halves().insert(half, state);
}

/// The halves this process runs are known, each set: [`PROCESS`] no longer stands for them.
pub fn halves_known() {
    halves().remove(PROCESS);
}

/// The capture half's acknowledgements: `Some(since)` while a commit waits for one (Unix
/// ms, since it or the last confirmation), `None` when nothing waits.
pub fn waiting(since_ms: Option<i64>) {
    WAITING_SINCE_MS.store(since_ms.unwrap_or(0), Ordering::Relaxed);
}

/// Whether every half run here is ready at `now_ms`, and each one's state.
pub fn report(now_ms: i64) -> (bool, BTreeMap<&'static str, Result<(), String>>) {
    let mut states = halves().clone();
    if let Some(Ok(())) = states.get(CAPTURE) {
        let since = WAITING_SINCE_MS.load(Ordering::Relaxed);
        let waited = Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0));
        let stuck = Duration::from_millis(STUCK_MS.load(Ordering::Relaxed));
        if since != 0 && waited > stuck {
            states.insert(
                CAPTURE,
                Err(format!(
                    "a commit has waited {}s for its acknowledgement (is Kafka reachable? see the kafka stage's stall events)",
                    waited.as_secs()
                )),
            );
        }
    }
    (states.values().all(Result::is_ok), states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_acknowledgement_makes_capture_unready_until_one_arrives() {
        heartbeats_every(Duration::from_secs(10));
        set("capture", Ok(()));
        waiting(None);
        assert!(report(100_000).0);
        waiting(Some(100_000));
        assert!(report(110_000).0, "10 s is within three heartbeats");
        let (ready, states) = report(131_000);
        assert!(!ready);
        let why = states["capture"].clone().unwrap_err();
        assert!(why.contains("31s"), "{why}");
        waiting(Some(131_000));
        assert!(report(132_000).0, "a confirmation restarts the wait");
        set("capture", Err("restarting".into()));
        assert!(!report(132_000).0);
        halves().clear();
        // A `freshet run` whose halves are not known yet is not ready; `freshet router` is.
        assert!(report(132_000).0);
        set(PROCESS, Err("starting".into()));
        assert!(!report(132_000).0);
        set(CAPTURE, Ok(()));
        halves_known();
        assert!(report(132_000).0);
        halves().clear();
    }
}
