//! A small demo-shaped run through the real binary: Moodle SQL changes → triggers → jobs →
//! in-process workers → simulator, and the comparator finds no difference.

#![allow(clippy::unwrap_used)]

mod e2e_common;

#[test]
fn demo_converges_with_zero_mismatches() {
    let db = e2e_common::unique_db("demo");
    let (ok, s, stderr) = e2e_common::rcjobs_json(&[
        "demo",
        "--users",
        "400",
        "--courses",
        "8",
        "--enrolments-per-user",
        "3",
        "--enrol",
        "250",
        "--workers",
        "2",
        "--concurrency",
        "4",
        "--latency-ms",
        "1",
        "--database",
        &db,
        "--drop-database",
        "--deadline-secs",
        "180",
        "--drain-secs",
        "120",
        "--json",
    ]);
    assert!(ok, "demo failed: {stderr}");
    let m = &s["final_mismatches"];
    for k in [
        "rooms_missing",
        "missing_members",
        "extra_members",
        "wrong_moderator",
    ] {
        assert_eq!(m[k], 0, "{k} in {m}");
    }
    assert!(m["rooms_compared"].as_u64().unwrap() >= 8, "{m}");
    assert!(s["enrolled_users"].as_u64().unwrap() >= 240, "{s}");
    let mass = &s["mass_enrolment"];
    assert!(mass["converge_s"].is_number(), "{mass}");
    assert!(mass["jobs_completed"].as_u64().unwrap() > 0, "{mass}");
    assert_eq!(mass["jobs_dead"], 0, "{mass}");
    assert_eq!(s["initial"]["jobs_dead"], 0, "{s}");
    assert!(
        mass["rocketchat_calls_by_endpoint"]["groups.invite"]["calls"]
            .as_u64()
            .unwrap()
            >= 1,
        "{mass}"
    );
}
