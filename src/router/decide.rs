//! The routing decision: the first target, warehouse → replicas → primary, that is fresh
//! enough for the request; a pure function of what the probes last saw.

use std::time::Duration;

use crate::freshness::Watermark;
use crate::lsn::Lsn;

/// What a read needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// At most this stale (a budget of 0: the primary).
    Staleness(Duration),
    /// Every commit up to this position (read-your-writes).
    Applied(Lsn),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Warehouse,
    Replica,
    Primary,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Warehouse => "warehouse",
            Target::Replica => "replica",
            Target::Primary => "primary",
        }
    }
}

/// A target other than the primary, as the probes last saw it for the table.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub target: Target,
    pub name: String,
    /// Where to connect, without credentials.
    pub endpoint: String,
    /// Everything committed up to the watermark is readable there; `Ok(None)`: it answers
    /// but holds no known watermark yet; `Err` says why it is down.
    pub seen: Result<Option<Watermark>, String>,
}

/// Where to read.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Decision {
    pub target: Target,
    /// The replica's name, the warehouse's driver, or `primary`.
    pub name: String,
    pub endpoint: String,
    /// Why this target: `fresh_enough`, `applied`, `zero_budget` when the first choice
    /// served; else why the fresher ones were passed over (`warehouse_behind`,
    /// `warehouse_down`, `warehouse_unknown`, and the same for replicas), or `only_primary`.
    pub reason: &'static str,
    /// The same, for people.
    pub detail: String,
    /// The target's staleness bound now (0 for the primary).
    pub observed_lag_ms: u64,
    /// The commit up to which the target holds everything, when known.
    pub watermark: Option<Watermark>,
}

/// Decides for `need` among `candidates` (in preference order), the primary last.
pub fn decide(need: Need, candidates: &[Candidate], primary: &str, now_ms: i64) -> Decision {
    let primary_decision = |reason: &'static str, detail: String| Decision {
        target: Target::Primary,
        name: "primary".into(),
        endpoint: primary.to_owned(),
        reason,
        detail,
        observed_lag_ms: 0,
        watermark: None,
    };
    if need == Need::Staleness(Duration::ZERO) {
        return primary_decision(
            "zero_budget",
            "a staleness of 0: only the primary is that fresh".into(),
        );
    }
    // Why the first, freshest-preferred target was passed over.
    let mut passed: Option<(&'static str, String)> = None;
    for c in candidates {
        let (reason, detail) = match &c.seen {
            Err(why) => (
                down(c.target),
                format!("{} ({}): {why}", c.name, c.endpoint),
            ),
            Ok(None) => (
                unknown(c.target),
                format!("{} holds no known watermark for the table yet", c.name),
            ),
            Ok(Some(w)) => {
                let lag = w.lag(now_ms);
                let (ok, detail) = match need {
                    Need::Staleness(max) => (
                        lag <= max,
                        format!(
                            "{} is {} ms behind, more than {} ms",
                            c.name,
                            lag.as_millis(),
                            max.as_millis()
                        ),
                    ),
                    Need::Applied(lsn) => (
                        w.lsn >= lsn,
                        format!("{} holds commits up to {}, not yet {lsn}", c.name, w.lsn),
                    ),
                };
                if ok {
                    let (reason, detail) = passed.unwrap_or_else(|| match need {
                        Need::Staleness(max) => (
                            "fresh_enough",
                            format!(
                                "{} ms behind, within {} ms",
                                lag.as_millis(),
                                max.as_millis()
                            ),
                        ),
                        Need::Applied(lsn) => (
                            "applied",
                            format!("holds commits up to {}, past {lsn}", w.lsn),
                        ),
                    });
                    return Decision {
                        target: c.target,
                        name: c.name.clone(),
                        endpoint: c.endpoint.clone(),
                        reason,
                        detail,
                        observed_lag_ms: u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
                        watermark: Some(*w),
                    };
                }
                (behind(c.target), detail)
            }
        };
        passed.get_or_insert((reason, detail));
    }
    match passed {
        Some((reason, detail)) => primary_decision(reason, detail),
        None => primary_decision(
            "only_primary",
            "no warehouse or replica to read from".into(),
        ),
    }
}

fn down(t: Target) -> &'static str {
    match t {
        Target::Warehouse => "warehouse_down",
        _ => "replica_down",
    }
}

fn unknown(t: Target) -> &'static str {
    match t {
        Target::Warehouse => "warehouse_unknown",
        _ => "replica_unknown",
    }
}

fn behind(t: Target) -> &'static str {
    match t {
        Target::Warehouse => "warehouse_behind",
        _ => "replica_behind",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn at(target: Target, name: &str, lsn: u64, lag_ms: i64) -> Candidate {
        Candidate {
            target,
            name: name.into(),
            endpoint: format!("{name}:5432/db"),
            seen: Ok(Some(Watermark {
                lsn: Lsn(lsn),
                commit_ms: NOW - lag_ms,
            })),
        }
    }

    fn staleness(ms: u64) -> Need {
        Need::Staleness(Duration::from_millis(ms))
    }

    #[test]
    fn the_first_target_fresh_enough_wins_and_says_why_the_fresher_ones_lost() {
        let targets = [
            at(Target::Warehouse, "warehouse", 100, 40_000),
            at(Target::Replica, "replica-1", 500, 200),
        ];
        let d = decide(staleness(30_000), &targets, "primary:5432/db", NOW);
        assert_eq!(
            (d.target, d.reason, d.observed_lag_ms),
            (Target::Replica, "warehouse_behind", 200)
        );
        assert_eq!(d.endpoint, "replica-1:5432/db");

        let d = decide(staleness(60_000), &targets, "primary:5432/db", NOW);
        assert_eq!((d.target, d.reason), (Target::Warehouse, "fresh_enough"));

        let d = decide(staleness(100), &targets, "primary:5432/db", NOW);
        assert_eq!((d.target, d.reason), (Target::Primary, "warehouse_behind"));
        assert_eq!((d.observed_lag_ms, d.watermark), (0, None));
    }

    #[test]
    fn a_zero_budget_answers_primary_and_a_target_down_is_skipped() {
        let mut targets = [
            at(Target::Warehouse, "warehouse", 100, 0),
            at(Target::Replica, "replica-1", 500, 0),
        ];
        let d = decide(staleness(0), &targets, "p", NOW);
        assert_eq!((d.target, d.reason), (Target::Primary, "zero_budget"));
        targets[0].seen = Ok(None);
        let d = decide(staleness(1_000), &targets, "p", NOW);
        assert_eq!((d.target, d.reason), (Target::Replica, "warehouse_unknown"));
        targets[0].seen = Err("connection refused".into());
        let d = decide(staleness(1_000), &targets, "p", NOW);
        assert_eq!((d.target, d.reason), (Target::Replica, "warehouse_down"));
        assert!(d.detail.contains("connection refused"), "{}", d.detail);
        let d = decide(staleness(1_000), &[], "p", NOW);
        assert_eq!((d.target, d.reason), (Target::Primary, "only_primary"));
    }

    #[test]
    fn a_token_goes_only_where_it_is_applied() {
        let targets = [
            at(Target::Warehouse, "warehouse", 100, 0),
            at(Target::Replica, "replica-1", 500, 0),
        ];
        let d = decide(Need::Applied(Lsn(100)), &targets, "p", NOW);
        assert_eq!((d.target, d.reason), (Target::Warehouse, "applied"));
        let d = decide(Need::Applied(Lsn(101)), &targets, "p", NOW);
        assert_eq!((d.target, d.reason), (Target::Replica, "warehouse_behind"));
        let d = decide(Need::Applied(Lsn(501)), &targets, "p", NOW);
        assert_eq!((d.target, d.reason), (Target::Primary, "warehouse_behind"));
    }
}
