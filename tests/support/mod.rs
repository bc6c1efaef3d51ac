//! Shared helpers of the chaos, PgBouncer and Prometheus tests: a private PostgreSQL cluster,
//! `rcjobs worker` processes, a test site (schemas, fixture, simulator, triggers), the
//! Moodle-vs-chat comparator and job-fate accounting.
#![allow(dead_code)]

pub mod compare;
pub mod pg_cluster;
pub mod pgbouncer;
pub mod procs;
pub mod site;
pub mod truth;

use std::path::PathBuf;

/// A fresh directory for one test's logs: `$TMPDIR/rcjobs-<test>-<pid>`.
pub fn log_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rcjobs-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create log dir");
    d
}

/// Median and maximum of some durations, in seconds.
pub fn median_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    (s[s.len() / 2], s[s.len() - 1])
}

/// Waits until no work is left in `rcjobs.job` ([`site::pending`]: jobs scheduled for later,
/// the periodic reconcile's among them, do not count), or panics.
pub async fn wait_drained(
    pool: &sqlx::PgPool,
    deadline: std::time::Duration,
) -> std::time::Duration {
    let t = std::time::Instant::now();
    loop {
        match site::pending(pool).await {
            Ok((0, _)) => return t.elapsed(),
            Ok((n, due)) if t.elapsed() > deadline => {
                panic!("{n} jobs still unfinished ({due} due or running) after {deadline:?}")
            }
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
