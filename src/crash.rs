//! Crash points for the tests: with `FRESHET_CRASH_AT=<name>` in its environment, the process
//! aborts when it reaches the point of that name, as a `kill -9` landing exactly there would
//! stop it. Without it, a point costs one comparison.

use std::sync::OnceLock;

pub fn point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("FRESHET_CRASH_AT").ok())
        .as_deref()
        == Some(name)
    {
        eprintln!("FRESHET_CRASH_AT={name}: aborting here");
        std::process::abort();
    }
}
