//! `rcjobs bench faults` at a tiny size through the real binary: the mass enrolment
//! fault-free and with failing chat calls, and a room filled and changed with failing calls.
//! Checks the faults reached the simulator only where asked, nothing was lost, the change
//! wrote what it says, and the room part met its target (30 s is far above what a room of
//! this size needs, so a miss means something is stuck).

#![allow(clippy::unwrap_used)]

mod e2e_common;

#[test]
fn faults_bench_runs_and_reports_its_figures() {
    let db = e2e_common::unique_db("faults");
    let (ok, s, stderr) = e2e_common::rcjobs_json(&[
        "bench",
        "faults",
        "--fail-rate",
        "0.2",
        "--users",
        "300",
        "--room-members",
        "120",
        "--room-teachers",
        "5",
        "--change-users",
        "10",
        "--change-teachers",
        "3",
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
    assert!(ok, "faults bench failed: {stderr}");
    assert_eq!(s["fail_rate"], 0.2, "{s}");
    assert_eq!(s["lost_changes"], 0, "{s}");
    assert!(s["meets_targets"].is_boolean(), "{s}");

    let mass = &s["mass"];
    let run = &mass["runs"][0];
    assert_eq!(run["fault_free"]["faults_injected"], 0, "{run}");
    assert_eq!(run["fault_free"]["fail_rate"], 0.0, "{run}");
    assert_eq!(run["faulty"]["fail_rate"], 0.2, "{run}");
    for w in ["fault_free", "faulty"] {
        assert!(run[w]["converge_s"].as_f64().unwrap() > 0.0, "{run}");
        assert_eq!(run[w]["enrolments"], 300, "{run}");
    }
    let ratio = mass["ratio"].as_f64().unwrap();
    assert!(ratio.is_finite() && ratio > 0.0, "{mass}");

    let room = &s["room"];
    assert_eq!(room["fill_fault_free"]["faults_injected"], 0, "{room}");
    let faults = room["fill"]["faults_injected"].as_u64().unwrap()
        + room["change"]["faults_injected"].as_u64().unwrap();
    assert!(faults > 0, "no fault reached the simulator: {room}");
    let change = &room["change"]["change"];
    assert_eq!(change["unenrolled"], 10, "{change}");
    assert_eq!(change["enrolled"], 10, "{change}");
    assert_eq!(change["roles_assigned"], 13, "{change}");
    let by = &room["fill"]["rocketchat_calls_by_endpoint"];
    assert!(
        by["groups.addModerator"]["calls"].as_u64().unwrap() >= 5,
        "{by}"
    );
    let target = s["targets"]["room_converge_s_at_most"].as_f64().unwrap();
    for phase in ["fill", "change"] {
        let t = room[phase]["converge_s"].as_f64().unwrap();
        assert!(t <= target, "{phase}: {t} s > {target} s: {room}");
    }
}
