//! A small rate-limited run through the real binary: the simulator's limiter on, a bot that
//! does not bypass it, the workers' shared limiter with the same budget. Nothing is lost and
//! no endpoint is called beyond its limit after a 429.

#![allow(clippy::unwrap_used)]

mod e2e_common;

#[test]
fn rate_limited_run_loses_nothing_and_respects_the_limit() {
    let db = e2e_common::unique_db("rl");
    let (ok, s, stderr) = e2e_common::rcjobs_json(&[
        "bench",
        "e2e",
        "--rate-limited",
        "--rate-limit",
        "10/2",
        "--rl-students",
        "150",
        "--rl-teachers",
        "12",
        "--workers",
        "2",
        "--concurrency",
        "4",
        "--latency-ms",
        "1",
        "--database",
        &db,
        "--deadline-secs",
        "180",
        "--json",
    ]);
    assert!(ok, "rate-limited run failed: {stderr}");
    assert_eq!(s["lost_changes"], 0, "{s}");
    assert_eq!(s["dead_jobs"], 0, "{s}");
    assert_eq!(s["requests_beyond_limit_after_first_429"], 0, "{s}");
    assert!(s["converge_s"].is_number(), "{s}");
    // 12 moderator grants at 10 per window need a second window: the limiter was in play.
    assert!(s["lower_bound_s"].as_f64().unwrap() >= 2.0, "{s}");
    assert!(
        s["converge_s"].as_f64().unwrap() >= 2.0,
        "converged faster than the limiter allows: {s}"
    );
    let by = &s["rocketchat_calls_by_endpoint"];
    assert!(
        by["groups.addModerator"]["calls"].as_u64().unwrap() >= 12,
        "{by}"
    );
    for (endpoint, c) in by.as_object().unwrap() {
        assert!(c["rate_limited"].as_u64().unwrap() <= 1, "{endpoint}: {c}");
    }
}
