//! The alerting rules shipped in `dashboards/`: valid, and each one firing (or not) as its
//! unit tests in `dashboards/alerts.test.yml` say, by Prometheus's own `promtool`.

mod support;

use std::process::Command;

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(support::repo().join("dashboards"))
        .output()
        .expect("promtool (scripts/install.sh installs Debian's prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alerting_rules_are_valid_and_pass_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every rule has a unit test.
    let rules =
        std::fs::read_to_string(support::repo().join("dashboards/alerts.yml")).expect("rules");
    let tests =
        std::fs::read_to_string(support::repo().join("dashboards/alerts.test.yml")).expect("tests");
    for line in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {line}\n")),
            "alert {line} has no test in alerts.test.yml"
        );
    }
}
