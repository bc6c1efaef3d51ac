//! Runs the real `rcjobs` binary against the test Postgres server and reads its JSON summary.

#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// A database name no other test (or run) uses.
pub fn unique_db(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rcjobs_e2e_{tag}_{}_{nanos}", std::process::id())
}

/// Runs `rcjobs ARGS...` with the test server as `DATABASE_URL` (its own database is created
/// by the command) and returns (success, stdout JSON, stderr).
pub fn rcjobs_json(args: &[&str]) -> (bool, serde_json::Value, String) {
    let server = rcjobs_testkit::server_url();
    let out = Command::new(env!("CARGO_BIN_EXE_rcjobs"))
        .args(args)
        .env(
            "DATABASE_URL",
            format!("{}/postgres", server.trim_end_matches('/')),
        )
        .env("RUST_LOG", "warn")
        .env_remove("ROCKETCHAT_URL")
        .env_remove("MOODLE_DATABASE_URL")
        .output()
        .expect("run the rcjobs binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, stderr)
}
