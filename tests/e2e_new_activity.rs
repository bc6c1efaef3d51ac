//! `rcjobs bench e2e --new-activity-only` at a small size through the real binary (issue 18
//! §6's measurement, kept from rotting): a teacher's new activity on an idle worker and right
//! after a mass enrolment's backlog committed. Timings are not asserted (they are measured in
//! `BENCHMARKS.md`); what is: the measurement ran behind a real backlog (due fan-out jobs when
//! the activity committed, some still pending when its room was ready), the room ended with
//! exactly its teacher as moderator, and nothing died.

#![allow(clippy::unwrap_used)]

mod e2e_common;

#[test]
fn new_activity_room_is_measured_behind_a_pending_backlog() {
    let db = e2e_common::unique_db("new_activity");
    let (ok, s, stderr) = e2e_common::rcjobs_json(&[
        "bench",
        "e2e",
        "--new-activity-only",
        "--new-activity-backlog",
        "2000",
        "--workers",
        "2",
        "--concurrency",
        "2",
        "--latency-ms",
        "20",
        "--database",
        &db,
        "--deadline-secs",
        "180",
        "--json",
    ]);
    assert!(ok, "bench e2e --new-activity-only failed: {stderr}");
    let n = &s["new_activity"];
    assert_eq!(n["backlog_users"], 1000, "{n}");
    let backlog = n["backlog_jobs"].as_i64().unwrap();
    assert!(
        backlog > 1000,
        "the enrolment's backlog was not due when the activity committed: {n}"
    );
    assert!(
        n["backlog_jobs_pending_at_room_ready"].as_i64().unwrap() > 0,
        "the room was not measured behind the backlog (none of it left): {n}"
    );
    // The bench waits for the room to equal Moodle: its teacher alone, as moderator.
    assert_eq!(n["room_members"], 1, "{n}");
    assert_eq!(n["dead_jobs"], 0, "{n}");
    for k in ["idle_room_ready_s", "new_activity_room_ready_s"] {
        assert!(n[k].as_f64().unwrap() > 0.0, "{k}: {n}");
    }
    // Where the time went: the room job reached the queue, then a worker claimed it.
    for (queued, claimed) in [
        (
            "activity_job_queued_after_s",
            "activity_job_claimed_after_s",
        ),
        (
            "idle_activity_job_queued_after_s",
            "idle_activity_job_claimed_after_s",
        ),
    ] {
        let (q, c) = (n[queued].as_f64(), n[claimed].as_f64());
        assert!(q.is_some() && c.is_some(), "{queued} / {claimed}: {n}");
        assert!(q <= c, "claimed before it was queued: {n}");
    }
    assert_eq!(s["new_activity_backlog_jobs"], backlog, "{s}");
    assert!(n["meets_target"].is_boolean(), "{n}");
}
