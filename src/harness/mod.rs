//! The in-process end-to-end harness behind `rcjobs demo`, `rcjobs bench e2e` and the
//! end-to-end tests: a dedicated database on the configured Postgres server, the queue and
//! sync schemas, a synthetic Moodle site, a chat server (the simulator, or a real server from
//! `ROCKETCHAT_URL`), W workers each with its own pools and client (like W replicas), the
//! Moodle trigger set, and a comparator of Moodle's desired membership with the chat server's.
//!
//! Everything here writes Moodle tables (fixture, enrolments): it is for demos, tests and
//! benchmarks, never for a production site.

pub mod changes;
pub mod chat;
pub mod compare;
pub mod matrix;
pub mod new_activity;
pub mod plugin;
pub mod postgres;
pub mod progress;
pub mod run;
pub mod site;
pub mod workers;

use std::time::Duration;

/// Rounds a duration to milliseconds as fractional seconds (for summaries and JSON).
pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
