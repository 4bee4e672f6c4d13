//! The board: every table's watermark per stage, its class and budget, and which stages are
//! in breach.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::{BreachChange, Stage, Watermark};
use crate::config::Pipeline;
use crate::lsn::Lsn;
use crate::telemetry::names;

#[derive(Debug, Default)]
pub struct Board {
    tables: RwLock<BTreeMap<String, Table>>,
}

#[derive(Debug, Default)]
struct Table {
    class: Option<String>,
    budget: Option<Duration>,
    stages: [Option<Watermark>; 4],
    breached: [bool; 4],
    /// Its snapshot is running, as the capture half in this process says (it knows first),
    /// else as the last mark read says: no stage holds all of it, whatever commits pass.
    snapshotting_here: Option<bool>,
    snapshotting_by_mark: bool,
}

impl Table {
    fn snapshotting(&self) -> bool {
        self.snapshotting_here.unwrap_or(self.snapshotting_by_mark)
    }
}

/// One table, as `/v1/freshness` answers.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TableFreshness {
    pub table: String,
    pub class: Option<String>,
    pub budget_ms: Option<u64>,
    pub stages: Vec<StageFreshness>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StageFreshness {
    pub stage: &'static str,
    pub watermark_lsn: Option<Lsn>,
    /// RFC 3339, UTC.
    pub watermark_commit_time: Option<String>,
    pub lag_ms: Option<u64>,
    /// `ok`, `breach`, `unknown` (no watermark yet), `snapshotting` (the table's snapshot is
    /// running: its watermarks wait for its end) or `unbudgeted` (no class, or a budget of 0:
    /// only the primary is that fresh).
    pub status: &'static str,
}

/// The process's board.
pub fn board() -> &'static Board {
    static BOARD: OnceLock<Board> = OnceLock::new();
    BOARD.get_or_init(Board::default)
}

fn index(stage: Stage) -> usize {
    stage as usize
}

impl Board {
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Table>> {
        // A panic elsewhere leaves the data as it was: watermarks only move forward.
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Table>> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The pipeline's tables, classes and budgets; watermarks already known stay.
    pub fn configure(&self, p: &Pipeline) {
        let mut tables = self.write();
        for t in &p.source.tables {
            let name = t.value.to_string();
            let class = p.tables.get(&name).map(|s| s.value.freshness.value.clone());
            let budget = p.budget(&t.value);
            let budget_gauge = budget.map_or(f64::NAN, |b| b.as_secs_f64());
            metrics::gauge!(names::FRESHNESS_BUDGET_SECONDS, "table" => name.clone(), "class" => class.clone().unwrap_or_else(|| "none".into()))
                .set(budget_gauge);
            // Exported from the start: a first breach is then an increase from 0, which
            // `increase()` sees, not a series appearing at 1, which it does not.
            for stage in Stage::ALL {
                metrics::counter!(names::FRESHNESS_BREACHES_TOTAL, "table" => name.clone(), "stage" => stage.as_str())
                    .increment(0);
            }
            let entry = tables.entry(name).or_default();
            entry.class = class;
            entry.budget = budget;
        }
    }

    /// `table` holds everything up to `w` at `stage`; an older watermark changes nothing.
    pub fn advance(&self, table: &str, stage: Stage, w: Watermark) {
        let mut tables = self.write();
        let slot = &mut tables.entry(table.to_owned()).or_default().stages[index(stage)];
        if slot.is_none_or(|old| old < w) {
            *slot = Some(w);
        }
    }

    /// Every configured table but those `snapshotting` holds everything up to `w` at
    /// `stage` (the capture half's stages see all tables' changes in commit order).
    pub fn advance_all(&self, stage: Stage, w: Watermark, snapshotting: &BTreeSet<String>) {
        let mut tables = self.write();
        for (name, t) in tables.iter_mut() {
            if snapshotting.contains(name) {
                continue;
            }
            let slot = &mut t.stages[index(stage)];
            if slot.is_none_or(|old| old < w) {
                *slot = Some(w);
            }
        }
    }

    /// The tables whose snapshot is running are these, says this process's capture half.
    pub fn snapshotting_here(&self, running: &BTreeSet<String>) {
        for (name, t) in self.write().iter_mut() {
            t.snapshotting_here = Some(running.contains(name));
        }
    }

    /// The tables whose snapshot is running are these, says the last mark read (heeded when
    /// no capture half runs here).
    pub fn snapshotting_by_mark(&self, running: &BTreeSet<String>) {
        for (name, t) in self.write().iter_mut() {
            t.snapshotting_by_mark = running.contains(name);
        }
    }

    pub fn watermark(&self, table: &str, stage: Stage) -> Option<Watermark> {
        self.read().get(table).and_then(|t| t.stages[index(stage)])
    }

    /// Every table's freshness at `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> Vec<TableFreshness> {
        self.read()
            .iter()
            .map(|(name, t)| TableFreshness {
                table: name.clone(),
                class: t.class.clone(),
                budget_ms: t.budget.map(|b| b.as_millis() as u64),
                stages: Stage::ALL
                    .iter()
                    .map(|&stage| {
                        let w = t.stages[index(stage)];
                        let lag = w.map(|w| w.lag(now_ms));
                        StageFreshness {
                            stage: stage.as_str(),
                            watermark_lsn: w.map(|w| w.lsn),
                            watermark_commit_time: w.and_then(|w| {
                                chrono::DateTime::from_timestamp_millis(w.commit_ms)
                                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                            }),
                            lag_ms: lag.map(|l| l.as_millis() as u64),
                            status: match t.snapshotting() {
                                true => "snapshotting",
                                false => status(t.budget, lag),
                            },
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// Sets the lag gauges at `now_ms`; returns the stages that entered or left breach.
    pub(super) fn evaluate(&self, now_ms: i64) -> Vec<BreachChange> {
        let mut changes = Vec::new();
        let mut tables = self.write();
        for (name, t) in tables.iter_mut() {
            let snapshotting = t.snapshotting();
            metrics::gauge!(names::FRESHNESS_SNAPSHOTTING, "table" => name.clone())
                .set(f64::from(u8::from(snapshotting)));
            // Its lag says nothing while rows it will hold are still on their way.
            if snapshotting {
                continue;
            }
            for stage in Stage::ALL {
                let i = index(stage);
                let Some(w) = t.stages[i] else { continue };
                let lag = w.lag(now_ms);
                metrics::gauge!(names::FRESHNESS_LAG_SECONDS, "table" => name.clone(), "stage" => stage.as_str())
                    .set(lag.as_secs_f64());
                metrics::gauge!(names::FRESHNESS_WATERMARK_TIMESTAMP_SECONDS, "table" => name.clone(), "stage" => stage.as_str())
                    .set(w.commit_ms as f64 / 1000.0);
                let breached = status(t.budget, Some(lag)) == "breach";
                if breached != t.breached[i] {
                    t.breached[i] = breached;
                    changes.push(BreachChange {
                        table: name.clone(),
                        stage,
                        lag,
                        budget: t.budget.unwrap_or_default(),
                        breached,
                    });
                }
            }
        }
        changes
    }
}

fn status(budget: Option<Duration>, lag: Option<Duration>) -> &'static str {
    match (budget, lag) {
        (None, _) => "unbudgeted",
        (Some(b), _) if b.is_zero() => "unbudgeted",
        (_, None) => "unknown",
        (Some(b), Some(l)) if l > b => "breach",
        _ => "ok",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(lsn: u64, commit_ms: i64) -> Watermark {
        Watermark {
            lsn: Lsn(lsn),
            commit_ms,
        }
    }

    fn budgeted(board: &Board, table: &str, budget: Duration) {
        let mut tables = board.write();
        let t = tables.entry(table.to_owned()).or_default();
        t.class = Some("analytics".into());
        t.budget = Some(budget);
    }

    #[test]
    fn watermarks_only_move_forward() {
        let b = Board::default();
        b.advance("t", Stage::Lake, w(200, 2_000));
        b.advance("t", Stage::Lake, w(100, 1_000));
        assert_eq!(b.watermark("t", Stage::Lake), Some(w(200, 2_000)));
        b.advance_all(Stage::Lake, w(300, 3_000), &BTreeSet::new());
        assert_eq!(b.watermark("t", Stage::Lake), Some(w(300, 3_000)));
        assert_eq!(b.watermark("t", Stage::Loaded), None);
    }

    #[test]
    fn a_table_being_snapshotted_is_held_and_shown_so() {
        let b = Board::default();
        b.advance("t", Stage::Kafka, w(100, 1_000));
        b.advance("u", Stage::Kafka, w(100, 1_000));
        let running = BTreeSet::from(["t".to_string()]);
        b.snapshotting_by_mark(&running);
        b.advance_all(Stage::Kafka, w(200, 2_000), &running);
        assert_eq!(b.watermark("t", Stage::Kafka), Some(w(100, 1_000)));
        assert_eq!(b.watermark("u", Stage::Kafka), Some(w(200, 2_000)));
        let s = b.snapshot(3_000);
        assert_eq!(s[0].stages[1].status, "snapshotting");
        assert_eq!(s[1].stages[1].status, "unbudgeted");
        b.snapshotting_by_mark(&BTreeSet::new());
        assert_eq!(b.snapshot(3_000)[0].stages[1].status, "unbudgeted");
        // The capture half here knows better than a mark.
        b.snapshotting_here(&running);
        assert_eq!(b.snapshot(3_000)[0].stages[1].status, "snapshotting");
        b.snapshotting_by_mark(&BTreeSet::new());
        assert_eq!(b.snapshot(3_000)[0].stages[1].status, "snapshotting");
    }

    #[test]
    fn a_breach_is_reported_once_on_entering_and_once_on_leaving() {
        let b = Board::default();
        budgeted(&b, "t", Duration::from_secs(30));
        b.advance("t", Stage::Loaded, w(100, 0));
        assert!(b.evaluate(10_000).is_empty(), "10 s behind a 30 s budget");
        let entered = b.evaluate(31_000);
        assert_eq!(entered.len(), 1);
        assert!(entered[0].breached && entered[0].stage == Stage::Loaded);
        assert_eq!(entered[0].lag, Duration::from_secs(31));
        assert!(b.evaluate(40_000).is_empty(), "still in breach: not again");
        b.advance("t", Stage::Loaded, w(200, 39_000));
        let left = b.evaluate(40_000);
        assert_eq!(left.len(), 1);
        assert!(!left[0].breached);
        let s = b.snapshot(40_000);
        let loaded = &s[0].stages[3];
        assert_eq!((loaded.lag_ms, loaded.status), (Some(1_000), "ok"));
        assert_eq!(s[0].stages[0].status, "unknown");
    }

    #[test]
    fn a_zero_budget_is_never_a_breach() {
        let b = Board::default();
        budgeted(&b, "alerts", Duration::ZERO);
        b.advance("alerts", Stage::Kafka, w(100, 0));
        assert!(b.evaluate(60_000).is_empty());
        assert_eq!(b.snapshot(60_000)[0].stages[1].status, "unbudgeted");
    }
}
