//! The `freshet` binary's behaviour at its edges: exit codes and messages an operator reads.

use std::process::Command;

fn freshet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_freshet"))
}

#[test]
fn check_names_file_line_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "name: x\nsource:\n  url: postgresql://u@127.0.0.1/db\n  tables: [a.b]\n  heartbeat_interval: soon\n",
    )
    .unwrap();
    let out = freshet()
        .args(["check", "--pipeline"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:5:", file.display()))
            && stderr.contains("source.heartbeat_interval"),
        "{stderr}"
    );
}

#[test]
fn check_accepts_the_dev_pipeline() {
    let out = freshet()
        .args([
            "check",
            "--offline",
            "--pipeline",
            concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/dev.yaml"),
        ])
        .env(
            "FRESHET_SOURCE_URL",
            "postgresql://postgres@127.0.0.1:1/postgres",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid: pipeline"));
}

#[test]
fn missing_pipeline_file_is_named() {
    let out = freshet()
        .args(["check", "--pipeline", "/nonexistent/p.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/p.yaml"));
}

/// The shipped systemd unit passes `systemd-analyze verify` without a word (unknown keys and
/// bad values are warnings it prints, with exit 0), with the binary where the unit expects it
/// replaced by the one built here.
#[test]
fn the_systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(repo.join("deploy/freshet@.service")).unwrap();
    assert!(
        unit.contains("Type=notify") && unit.contains("WatchdogSec="),
        "{unit}"
    );
    let here = unit.replace("/usr/local/bin/freshet", env!("CARGO_BIN_EXE_freshet"));
    let path = dir.path().join("freshet@atlasco.service");
    std::fs::write(&path, here).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/install.sh installs Debian's systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}
