//! A worker process told to stop (SIGTERM) while room syncs are running: `/readyz` turns 503
//! ("draining") at once while `/healthz` stays 200, the running syncs finish (completed, not
//! handed to anyone else), and the process exits 0. This is what lets Kubernetes take a
//! draining pod out of its Service without killing its work.
//!
//! Real process from the built binary, the shared test server, the simulator in-process with
//! 2 s per call so that syncs are still running when the signal arrives. Bounded: ~20-40 s.
#![allow(clippy::unwrap_used)]

mod support;

use rcjobs_moodle::fixture::FixtureSpec;
use rcjobs_testkit::TestDb;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::procs::{WorkerProc, WorkerSpec};
use support::site;

/// A plain HTTP/1.1 GET: (status, body); status 0 when nothing listens.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_readyz_503_while_running_jobs_finish() {
    let db = TestDb::new().await;
    let pool = site::test_pool(&db.url, 4).await;
    site::migrate_all(&pool).await;
    let spec = FixtureSpec::new(30, 3, 5);
    let site = site::create(&pool, &spec).await;
    let sim = site::start_sim(&site, |c| c.latency = Duration::from_millis(2000)).await;
    let logs = support::log_dir("drain-readiness");
    let mut wspec = WorkerSpec::for_sim(&db.url, &sim, logs.clone());
    wspec.concurrency = 8;
    let addr = SocketAddr::from(([127, 0, 0, 1], support::pg_cluster::free_port()));
    wspec.metrics_addr = addr;
    wspec.env.push(("RUST_LOG".into(), "info".into()));
    let mut w = WorkerProc::spawn(&wspec, "w");
    let worker_id = w.wait_registered(&pool, Duration::from_secs(60)).await;
    let t = Instant::now();
    while get(addr, "/healthz").0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(30), "{}", w.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(addr, "/readyz").0, 200, "ready before the drain");

    site.sync_everything().await;
    let running = || async {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM rcjobs.job WHERE worker_id = $1 AND state = 'running' AND kind = 'synchronize_group'",
        )
        .bind(worker_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        ids
    };
    let t = Instant::now();
    let held = loop {
        let ids = running().await;
        if !ids.is_empty() {
            break ids;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no room sync ever ran:\n{}",
            w.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let pid = w.pid().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    // draining: not ready, still alive, while the syncs it holds are still running
    let t = Instant::now();
    let (status, body) = loop {
        let r = tokio::task::spawn_blocking(move || get(addr, "/readyz"))
            .await
            .unwrap();
        if r.0 == 503 || t.elapsed() > Duration::from_secs(10) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "/readyz while draining: {body}");
    assert!(body.contains("draining"), "{body}");
    let still_running = running().await;
    let health = tokio::task::spawn_blocking(move || get(addr, "/healthz"))
        .await
        .unwrap();
    assert_eq!(health.0, 200, "/healthz stays up during the drain");
    assert!(
        !still_running.is_empty(),
        "the syncs finished before the drain could be observed; raise the simulator latency"
    );

    // the process exits by itself once its jobs are done
    let t = Instant::now();
    while w.is_running() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "worker did not exit after draining:\n{}",
            w.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&w.log).unwrap_or_default();
    assert!(
        log.contains("worker stopped"),
        "clean exit expected:\n{}",
        w.log_tail()
    );
    for id in held {
        let (state, by): (String, Option<uuid::Uuid>) =
            sqlx::query_as("SELECT state, worker_id FROM rcjobs.job_history WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            state, "completed",
            "job {id} finished by the draining worker"
        );
        assert_eq!(
            by,
            Some(worker_id),
            "job {id} was not handed to another worker"
        );
    }
    let _ = std::fs::remove_dir_all(&logs);
}
