//! `freshet status`: every table's freshness per stage against its budget, read from a
//! running process's `/v1/freshness`, as a live terminal view or once for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{url}: {why}")]
    Fetch { url: String, why: String },
}

#[derive(Debug, serde::Deserialize)]
struct Freshness {
    now: String,
    tables: Vec<Table>,
}

#[derive(Debug, serde::Deserialize)]
struct Table {
    table: String,
    class: Option<String>,
    budget_ms: Option<u64>,
    stages: Vec<Stage>,
}

#[derive(Debug, serde::Deserialize)]
struct Stage {
    stage: String,
    watermark_lsn: Option<String>,
    lag_ms: Option<u64>,
    status: String,
}

/// Fetches `/v1/freshness` from `base` (`http://host:port`) and renders it; also says
/// whether any stage is in breach.
pub async fn fetch(base: &str) -> Result<(String, bool), StatusError> {
    let (url, status, body) = get(base, "/v1/freshness").await?;
    if !status.is_success() {
        return Err(StatusError::Fetch {
            url,
            why: format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
        });
    }
    let f: Freshness = serde_json::from_slice(&body).map_err(|e| StatusError::Fetch {
        url,
        why: format!("not a freshness document: {e}"),
    })?;
    let breached = f
        .tables
        .iter()
        .flat_map(|t| &t.stages)
        .any(|s| s.status == "breach");
    Ok((render(&f), breached))
}

/// Asks `/readyz`: whether the process at `base` is ready, and its answer (each half's reason
/// when not).
pub async fn ready(base: &str) -> Result<(bool, String), StatusError> {
    let (_, status, body) = get(base, "/readyz").await?;
    Ok((
        status.is_success(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// One GET of `path` on `base`: the URL asked, the status and the body.
async fn get(
    base: &str,
    path: &str,
) -> Result<(String, hyper::StatusCode, bytes::Bytes), StatusError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let fail = |why: String| StatusError::Fetch {
        url: url.clone(),
        why,
    };
    let uri: hyper::Uri = url.parse().map_err(|e| fail(format!("{e}")))?;
    let client =
        Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<bytes::Bytes>>();
    // Under the container health check's own 5 s, so the check reports rather than times out.
    let response = tokio::time::timeout(Duration::from_secs(3), client.get(uri))
        .await
        .map_err(|_| fail("no answer within 3s".into()))?
        .map_err(|e| {
            fail(format!(
                "{e} (is `freshet run` or `freshet router` listening there?)"
            ))
        })?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    Ok((url, status, body))
}

fn render(f: &Freshness) -> String {
    let stages = ["captured", "kafka", "lake", "loaded"];
    let width = f
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "freshness at {}\n\n{:width$}  {:10}  {:>7}",
        f.now, "TABLE", "CLASS", "BUDGET"
    );
    for s in stages {
        let _ = write!(out, "  {:28}", s.to_uppercase());
    }
    out.push('\n');
    for t in &f.tables {
        let budget = t.budget_ms.map_or_else(|| "-".to_owned(), human);
        let _ = write!(
            out,
            "{:width$}  {:10}  {:>7}",
            t.table,
            t.class.as_deref().unwrap_or("-"),
            budget
        );
        for name in stages {
            let cell = match t.stages.iter().find(|s| s.stage == name) {
                Some(s) => format!(
                    "{:6} {:>7} {}",
                    match s.status.as_str() {
                        "ok" => "OK",
                        "breach" => "BREACH",
                        "unbudgeted" => "-",
                        "snapshotting" => "SNAP",
                        _ => "?",
                    },
                    s.lag_ms.map_or_else(|| "-".to_owned(), human),
                    s.watermark_lsn.as_deref().unwrap_or("-")
                ),
                None => "-".into(),
            };
            let _ = write!(out, "  {cell:28}");
        }
        out.push('\n');
    }
    out
}

/// A lag as people read it: 850ms, 4.2s, 3m12s, 2h05m.
fn human(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_shows_each_stage_status_lag_and_watermark() {
        let f: Freshness = serde_json::from_str(
            r#"{"now":"2026-12-01T04:10:00.912Z","tables":[{"table":"public.notes","class":"analytics","budget_ms":30000,
            "stages":[{"stage":"captured","watermark_lsn":"0/16B3748","watermark_commit_time":null,"lag_ms":850,"status":"ok"},
            {"stage":"kafka","watermark_lsn":"0/16B3748","lag_ms":900,"status":"ok"},
            {"stage":"lake","watermark_lsn":null,"lag_ms":null,"status":"unknown"},
            {"stage":"loaded","watermark_lsn":"0/1000000","lag_ms":192000,"status":"breach"}]}]}"#,
        )
        .unwrap();
        let text = render(&f);
        let row = text
            .lines()
            .find(|l| l.starts_with("public.notes"))
            .unwrap();
        for want in [
            "analytics",
            "30.0s",
            "OK",
            "850ms",
            "0/16B3748",
            "?",
            "BREACH",
            "3m12s",
            "0/1000000",
        ] {
            assert!(row.contains(want), "{want} in {row}");
        }
        assert_eq!(human(7_500_000), "2h05m");
    }
}
