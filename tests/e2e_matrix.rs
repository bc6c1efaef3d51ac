//! The binary on Matrix (issue 15 §5, §6) against the real Synapse of
//! `scripts/ensure-synapse.sh` (which `scripts/test.sh` runs; it writes `target/synapse/env`,
//! read by the binary): `rcjobs bench e2e --chat-backend matrix` at a tiny size, so its code
//! path (accounts, workers, Moodle core's call pattern, the raw bound, the JSON) cannot rot,
//! without asserting timings (BENCHMARKS.md has them); `rcjobs demo --chat-backend matrix`
//! converging; and both saying how to get a homeserver when there is none.

#![allow(clippy::unwrap_used)]

mod e2e_common;

use std::process::Command;

/// Runs `rcjobs ARGS...` with the test server as `DATABASE_URL` and only the given `MATRIX_*`
/// settings (none: the binary reads `target/synapse/env`).
fn rcjobs(args: &[&str], matrix_env: &[(&str, &str)]) -> (bool, String, String) {
    let server = rcjobs_testkit::server_url();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rcjobs"));
    cmd.args(args)
        .env(
            "DATABASE_URL",
            format!("{}/postgres", server.trim_end_matches('/')),
        )
        .env("RUST_LOG", "warn");
    for v in [
        "CHAT_BACKEND",
        "CHAT_URL",
        "CHAT_TOKEN",
        "ROCKETCHAT_URL",
        "MOODLE_DATABASE_URL",
        "MATRIX_HOMESERVER_URL",
        "MATRIX_ACCESS_TOKEN",
        "MATRIX_USER",
        "MATRIX_PASSWORD",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(matrix_env.iter().copied());
    let out = cmd.output().expect("run the rcjobs binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_e2e_on_matrix_runs_every_arm_at_a_tiny_size() {
    let db = e2e_common::unique_db("bench_matrix");
    // 26 users: one of them an editing teacher, so the power-level write is measured too.
    let (ok, out, err) = rcjobs(
        &[
            "bench",
            "e2e",
            "--chat-backend",
            "matrix",
            "--users",
            "26",
            "--workers",
            "2",
            "--concurrency",
            "4",
            "--database",
            &db,
            "--deadline-secs",
            "120",
            "--json",
        ],
        &[],
    );
    assert!(ok, "bench e2e --chat-backend matrix failed: {err}");
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(s["backend"], "matrix", "{s}");
    assert_eq!(s["users"], 26, "{s}");
    assert_eq!(s["moderators"], 1, "{s}");
    assert_eq!(s["dead_jobs"], 0, "{s}");
    for k in [
        "converge_s",
        "moodle_core_pattern_s",
        "raw_bound_s",
        "calls_per_member",
    ] {
        assert!(s[k].as_f64().unwrap() > 0.0, "{k}: {s}");
    }
    // Every user was force-joined by the workers, and by each baseline exactly once.
    assert!(
        s["calls_by_route"]["admin.join"]["calls"].as_u64().unwrap() >= 26,
        "{s}"
    );
    let core = &s["moodle_core_pattern"]["calls_by_route"];
    let raw = &s["raw_bound"]["calls_by_route"];
    for route in ["admin.users.get", "joined_members", "admin.join"] {
        assert_eq!(core[route]["calls"], 26, "Moodle core's {route}: {s}");
    }
    assert_eq!(core["state.power_levels.put"]["calls"], 1, "{s}");
    assert_eq!(raw["admin.join"]["calls"], 26, "{s}");
    assert_eq!(raw["state.power_levels.put"]["calls"], 1, "{s}");
    assert_eq!(
        s["raw_bound"]["calls"], 27,
        "the raw bound is nothing but the changes: {s}"
    );
    assert!(
        s["moodle_core_calls_per_member"].as_f64().unwrap() >= 3.0,
        "{s}"
    );
    assert!(s["targets"]["within_1_2x_raw_bound"].is_boolean(), "{s}");
}

#[test]
fn demo_on_matrix_converges_with_zero_mismatches() {
    let db = e2e_common::unique_db("demo_matrix");
    let (ok, out, err) = rcjobs(
        &[
            "demo",
            "--chat-backend",
            "matrix",
            "--users",
            "30",
            "--courses",
            "2",
            "--enrol",
            "15",
            "--workers",
            "2",
            "--concurrency",
            "4",
            "--database",
            &db,
            "--drop-database",
            "--deadline-secs",
            "120",
            "--drain-secs",
            "60",
            "--json",
        ],
        &[],
    );
    assert!(ok, "demo --chat-backend matrix failed: {err}");
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        s["chat_server"].as_str().unwrap().starts_with("Matrix"),
        "{s}"
    );
    let m = &s["final_mismatches"];
    for k in [
        "rooms_missing",
        "missing_members",
        "extra_members",
        "wrong_moderator",
    ] {
        assert_eq!(m[k], 0, "{k} in {m}");
    }
    assert!(m["rooms_compared"].as_u64().unwrap() >= 2, "{m}");
    assert!(s["enrolled_users"].as_u64().unwrap() >= 12, "{s}");
    let mass = &s["mass_enrolment"];
    assert!(mass["converge_s"].is_number(), "{mass}");
    assert_eq!(mass["jobs_dead"], 0, "{mass}");
    assert!(
        mass["rocketchat_calls_by_endpoint"]["admin.join"]["calls"]
            .as_u64()
            .unwrap()
            >= 12,
        "{mass}"
    );
}

#[test]
fn without_a_homeserver_demo_and_bench_say_how_to_get_one() {
    // Nothing listens on the discard port: as if Synapse were not started.
    let nowhere = [
        ("MATRIX_HOMESERVER_URL", "http://127.0.0.1:9"),
        ("MATRIX_ACCESS_TOKEN", "syt_not_a_token"),
    ];
    for args in [
        &["demo", "--chat-backend", "matrix", "--json"][..],
        &["bench", "e2e", "--chat-backend", "matrix", "--users", "5"][..],
    ] {
        let (ok, _, err) = rcjobs(args, &nowhere);
        assert!(!ok, "{args:?} succeeded without a homeserver");
        assert!(
            err.contains("bash scripts/ensure-synapse.sh"),
            "{args:?} does not say how to get Synapse: {err}"
        );
        assert!(
            !err.contains("syt_not_a_token"),
            "the token was printed: {err}"
        );
    }
}
