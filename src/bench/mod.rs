//! `freshet bench`: benchmarks that print figures, never pass/fail.

pub mod capture;
pub mod kafka;
pub mod lake;
pub mod schema;
pub mod warehouse;

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(super::percentile(&samples, 50.0), Duration::from_millis(10));
        assert_eq!(super::percentile(&samples, 95.0), Duration::from_millis(19));
        assert_eq!(
            super::percentile(&samples, 100.0),
            Duration::from_millis(20)
        );
        assert_eq!(super::percentile(&[], 50.0), Duration::ZERO);
    }
}
