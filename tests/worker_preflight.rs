//! `rcjobs worker` says at start-up which permission its bot lacks (issue 18 §4): the real
//! binary against the simulator's stock permissions (the `bot` role holds neither
//! `create-user` nor `unarchive-room`), account creation on. Its log must name both, each
//! with what it is needed for, and the worker must keep running (nothing is refused).
#![allow(clippy::unwrap_used)]

mod support;

use rcjobs_moodle::fixture::FixtureSpec;
use rcjobs_testkit::TestDb;
use std::time::{Duration, Instant};
use support::procs::{WorkerProc, WorkerSpec};
use support::site;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_names_each_missing_permission_at_start() {
    let db = TestDb::new().await;
    let pool = site::test_pool(&db.url, 4).await;
    site::migrate_all(&pool).await;
    let site = site::create(&pool, &FixtureSpec::new(20, 2, 3)).await;
    let sim = site::start_sim(&site, |_| {}).await;
    let logs = support::log_dir("worker-preflight");
    let mut spec = WorkerSpec::for_sim(&db.url, &sim, logs);
    spec.concurrency = 2;
    spec.args.push("--create-accounts=true".into());
    let mut w = WorkerProc::spawn(&spec, "w");
    w.wait_registered(&pool, Duration::from_secs(60)).await;

    let wanted = [
        (
            "`create-user`",
            rcjobs_chat::Capability::CreateUsers.purpose(),
        ),
        (
            "`unarchive-room`",
            rcjobs_chat::Capability::UnarchiveRooms.purpose(),
        ),
        (
            "`clean-channel-history`",
            rcjobs_chat::Capability::CleanHistory.purpose(),
        ),
    ];
    let t = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&w.log).unwrap_or_default();
        if wanted.iter().all(|(p, _)| log.contains(p)) {
            break log;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the worker did not name every missing permission:\n{}",
            w.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (permission, purpose) in wanted {
        let line = log
            .lines()
            .find(|l| l.contains(permission))
            .unwrap_or_else(|| panic!("no line names {permission}:\n{log}"));
        assert!(line.contains("WARN"), "{line}");
        assert!(
            line.contains(purpose),
            "{permission} without its purpose: {line}"
        );
        assert!(line.contains("the bot lacks"), "{line}");
    }
    // Creating rooms is allowed to the stock `bot` role: not reported.
    assert!(!log.contains("`create-p`"), "{log}");
    assert!(
        w.is_running(),
        "the check refuses nothing:\n{}",
        w.log_tail()
    );
    assert!(w.sigterm(Duration::from_secs(30)).is_some());
}

/// `rcjobs status --json` with `env` (DATABASE_URL given), as an operator runs it.
fn status_json(database_url: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rcjobs"));
    cmd.args(["status", "--json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "rcjobs status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_the_missing_permissions_when_it_can_ask() {
    let db = TestDb::new().await;
    let pool = site::test_pool(&db.url, 4).await;
    site::migrate_all(&pool).await;
    let site = site::create(&pool, &FixtureSpec::new(10, 1, 4)).await;
    let sim = site::start_sim(&site, |_| {}).await;

    let none = status_json(&db.url, &[]);
    assert_eq!(none["bot_permissions"]["checked"], false, "{none}");
    assert!(
        none["bot_permissions"]["reason"]
            .as_str()
            .unwrap()
            .contains("ROCKETCHAT_URL"),
        "{none}"
    );

    let url = sim.base_url();
    let chat = [
        ("ROCKETCHAT_URL", url.as_str()),
        ("ROCKETCHAT_USER_ID", sim.bot_user_id()),
        ("ROCKETCHAT_TOKEN", sim.bot_token()),
    ];
    let s = status_json(&db.url, &chat);
    let p = &s["bot_permissions"];
    assert_eq!(p["checked"], true, "{s}");
    let mut missing: Vec<(&str, Option<&str>)> = p["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["permission"].as_str().unwrap(), m["only_with"].as_str()))
        .collect();
    missing.sort_unstable();
    assert_eq!(
        missing,
        [
            ("clean-channel-history", None),
            ("create-user", Some("create_accounts")),
            ("edit-room-retention-policy", Some("retention_feature")),
            ("unarchive-room", None),
        ],
        "{p}"
    );

    for permission in [
        "create-user",
        "unarchive-room",
        "edit-room-retention-policy",
        "clean-channel-history",
    ] {
        sim.grant_permission("bot", permission);
    }
    let s = status_json(&db.url, &chat);
    assert_eq!(
        s["bot_permissions"]["missing"],
        serde_json::json!([]),
        "{s}"
    );
}
