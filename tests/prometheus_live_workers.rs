//! Every Grafana panel expression evaluated by a real Prometheus scraping REAL `rcjobs worker`
//! processes under a short real load (`scripts/prometheus-dashboard-check.sh`, Prometheus
//! from Debian's package): it fails on an expression that errors or returns no series.
//!
//! The load makes the rare series exist too: a malformed job (dead), the simulator's 5 % of
//! 500s (retries) and its REST rate limiter on a non-bypass bot (429s, paused routes, snoozed
//! jobs), Moodle users with no chat account (membership failures `user_missing`), and a third,
//! unscraped worker SIGKILLed while it holds leases (lease expiries). Shared test server;
//! bounded: about 1.5 minutes (40 s load window, 120 s script timeout).
#![allow(clippy::unwrap_used)]

mod support;

use rcjobs_moodle::fixture::FixtureSpec;
use rcjobs_sim::{RateLimit, SeedUser};
use rcjobs_testkit::TestDb;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::pg_cluster::free_port;
use support::procs::{WorkerProc, WorkerSpec};
use support::site;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_have_data_from_real_workers() {
    let db = TestDb::new().await;
    let pool = site::test_pool(&db.url, 4).await;
    site::migrate_all(&pool).await;
    let spec = FixtureSpec {
        enrolments_per_user: 2,
        ..FixtureSpec::new(400, 12, 5)
    };
    let site = site::create(&pool, &spec).await;
    site.install_triggers().await;
    // One user in twenty has no chat account (creation is off): user_missing failures.
    let users: Vec<SeedUser> = site
        .live_usernames()
        .await
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 20 != 7)
        .map(|(_, u)| SeedUser::new(u))
        .collect();
    let sim = rcjobs_sim::spawn(rcjobs_sim::SimConfig {
        seed: rcjobs_sim::Seed {
            users,
            bot: rcjobs_sim::SeedBot {
                roles: vec!["user".into()],
                ..Default::default()
            },
        },
        fail_rate: 0.05,
        latency: Duration::from_millis(30),
        rate_limit: Some(RateLimit {
            calls: 25,
            window: Duration::from_secs(2),
        }),
        ..Default::default()
    })
    .await
    .unwrap();

    let logs = support::log_dir("prometheus-live");
    let mut wspec = WorkerSpec::for_sim(&db.url, &sim, logs.clone());
    wspec.concurrency = 8;
    let mut workers = Vec::new();
    let mut targets = Vec::new();
    for i in 0..2 {
        wspec.metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        targets.push(wspec.metrics_addr.to_string());
        workers.push(WorkerProc::spawn(&wspec, &format!("w{i}")));
    }
    wspec.metrics_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut victim = WorkerProc::spawn(&wspec, "victim");
    for w in &mut workers {
        w.wait_registered(&pool, Duration::from_secs(60)).await;
    }
    let victim_id = victim.wait_registered(&pool, Duration::from_secs(60)).await;

    // Prometheus + evaluation in the background; the workload command only keeps the script
    // in its load window (the load comes from this test).
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = Command::new("bash");
    cmd.arg(format!("{root}/scripts/prometheus-dashboard-check.sh"));
    for t in &targets {
        cmd.args(["--target", t]);
    }
    cmd.args([
        "--load-seconds",
        "40",
        "--timeout",
        "120",
        "--scrapes",
        "3",
        "--",
        "sleep",
        "600",
    ])
    .current_dir(root);
    let check = tokio::task::spawn_blocking(move || {
        cmd.output().expect("run prometheus-dashboard-check.sh")
    });

    // The load: a first sync of every room, a malformed job, Moodle changes every second.
    site.sync_everything().await;
    sqlx::query("SELECT rcjobs.enqueue('enrolment', '{\"courseid\": \"not-a-number\"}'::jsonb)")
        .execute(&pool)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (pool, stop, fx) = (pool.clone(), stop.clone(), site.fixture.clone());
        tokio::spawn(async move {
            let mut round = 0i64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let course = fx.course_ids[(round as usize) % fx.course_ids.len()];
                let first =
                    fx.first_user_id + (round * 13) % (fx.last_user_id - fx.first_user_id - 20);
                let _ = rcjobs_moodle::fixture::mass_enrol(
                    &pool,
                    &rcjobs_moodle::Prefix::new(site::PREFIX).unwrap(),
                    course,
                    &rcjobs_moodle::fixture::UserSet::Range {
                        first,
                        last: first + 15,
                    },
                    if round % 2 == 0 {
                        "student"
                    } else {
                        "editingteacher"
                    },
                )
                .await;
                let _ = sqlx::query(
                    "DELETE FROM mdl_user_enrolments WHERE id IN (SELECT id FROM mdl_user_enrolments ORDER BY random() LIMIT 5)",
                )
                .execute(&pool)
                .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // Kill the unscraped worker while it holds leases: the scraped ones sweep them.
    let t = std::time::Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rcjobs.job WHERE worker_id = $1 AND state = 'running'",
        )
        .bind(victim_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if n > 0 || t.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.sigkill();

    let out = check.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    for w in &mut workers {
        assert!(w.is_running(), "worker {} died:\n{}", w.name, w.log_tail());
    }
    assert!(
        out.status.success(),
        "dashboard check failed:\n{stdout}\n{stderr}"
    );
    for w in &mut workers {
        assert_eq!(
            w.sigterm(Duration::from_secs(40)).map(|s| s.success()),
            Some(true),
            "{}",
            w.log_tail()
        );
    }
    let _ = std::fs::remove_dir_all(&logs);
}
