//! systemd's notify protocol, for `Type=notify` units: `READY=1` once every half is ready
//! ([`super::readiness`]), `WATCHDOG=1` while it stays so (a stalled pipeline stops the pings
//! and systemd restarts it after `WatchdogSec`), `STATUS=` lines when the state changes and
//! `STOPPING=1` at shutdown. Without `NOTIFY_SOCKET` (not under systemd) it does nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

use super::readiness;

/// Sends one message to `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
fn send(socket: &str, message: &str) {
    use std::os::unix::net::UnixDatagram;
    let Ok(s) = UnixDatagram::unbound() else {
        return;
    };
    let sent = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| s.send_to_addr(message.as_bytes(), &addr))
        }
        None => s.send_to(message.as_bytes(), socket),
    };
    if let Err(error) = sent {
        tracing::debug!(%error, socket, "systemd notification not sent");
    }
}

/// What to tell systemd now, given the halves' states and whether READY was sent.
fn messages(
    ready: bool,
    states: &BTreeMap<&'static str, Result<(), String>>,
    announced: &mut bool,
    last_status: &mut String,
    watchdog: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let status = states
        .iter()
        .map(|(half, s)| match s {
            Ok(()) => format!("{half}: ready"),
            Err(why) => format!("{half}: {why}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if status != *last_status {
        out.push(format!("STATUS={status}"));
        *last_status = status;
    }
    if ready && !*announced {
        *announced = true;
        out.push("READY=1".to_owned());
    }
    if ready && watchdog {
        out.push("WATCHDOG=1".to_owned());
    }
    out
}

/// Tells systemd how the process is until `stopped`, then `STOPPING=1`.
pub async fn run(mut stopped: watch::Receiver<bool>) {
    let Ok(socket) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    // Pings at half the watchdog interval, as sd_watchdog_enabled(3) advises.
    let watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|u| u.parse::<u64>().ok())
        .map(|us| Duration::from_micros(us) / 2);
    let mut tick = tokio::time::interval(
        watchdog
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1)),
    );
    let (mut announced, mut last_status) = (false, String::new());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => break,
        }
        let (ready, states) = readiness::report(chrono::Utc::now().timestamp_millis());
        for m in messages(
            ready,
            &states,
            &mut announced,
            &mut last_status,
            watchdog.is_some(),
        ) {
            send(&socket, &m);
        }
    }
    send(
        &socket,
        "STOPPING=1\nSTATUS=stopping: flushing and confirming what is durable",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_pings_only_while_ready_and_status_on_change() {
        let (mut announced, mut last) = (false, String::new());
        let starting = BTreeMap::from([("capture", Err("starting".to_string()))]);
        let m = messages(false, &starting, &mut announced, &mut last, true);
        assert_eq!(m, ["STATUS=capture: starting"]);
        assert!(messages(false, &starting, &mut announced, &mut last, true).is_empty());
        let up = BTreeMap::from([("capture", Ok(()))]);
        let m = messages(true, &up, &mut announced, &mut last, true);
        assert_eq!(m, ["STATUS=capture: ready", "READY=1", "WATCHDOG=1"]);
        assert_eq!(
            messages(true, &up, &mut announced, &mut last, true),
            ["WATCHDOG=1"]
        );
        // Stalled: no ping, so systemd's watchdog fires; READY is never sent twice.
        let stuck = BTreeMap::from([("capture", Err("a commit has waited 9s".to_string()))]);
        let m = messages(false, &stuck, &mut announced, &mut last, true);
        assert_eq!(m, ["STATUS=capture: a commit has waited 9s"]);
        let m = messages(true, &up, &mut announced, &mut last, true);
        assert_eq!(m, ["STATUS=capture: ready", "WATCHDOG=1"]);
    }
}
