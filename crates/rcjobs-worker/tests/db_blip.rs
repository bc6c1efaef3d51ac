//! Transient database errors inside a handler (docs/decisions/0008): a connection killed
//! under a running room sync is ridden out by a short in-place re-run (same attempt, done
//! within seconds), while an outage that outlasts the re-runs still ends in the queue's
//! durable backoff (one attempt used, `run_at` a backoff away) instead of a tight loop.

#![allow(clippy::unwrap_used)]

mod common;

use common::{small_site, Env};
use rcjobs_producer::{Job, SynchronizeGroup};
use rcjobs_sim::SimConfig;
use rcjobs_worker::runtime::WorkerStack;
use rcjobs_worker::{CancellationToken, WorkerConfig};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use std::time::{Duration, Instant};

/// A replica with the queue's default retry policy (60 s first backoff, as users run it),
/// so an attempt burnt on a blip shows as a minute-long wait.
async fn start_worker(env: &Env) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&env.db.url)
        .await
        .unwrap();
    let builder = rcjobs_queue::Worker::builder(pool)
        .concurrency(2)
        .lease_ttl(Duration::from_secs(30))
        .heartbeat_interval(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(200));
    let stack = WorkerStack::build(builder, env.engine.clone(), None).unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        stack.run(async move { s.cancelled().await }).await.unwrap();
    });
    (stop, task)
}

/// Terminates every backend of this database that waits for a lock (the handler's query
/// stuck behind the test's table lock). Returns how many it hit.
async fn kill_lock_waiters(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE t) FROM (
           SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND wait_event_type = 'Lock') s",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn setup() -> (Env, i64) {
    let cfg = WorkerConfig {
        create_accounts: true,
        // No periodic reconcile: the test watches exactly one job.
        reconcile_interval_secs: 0,
        ..WorkerConfig::default()
    };
    let env = Env::new(small_site(8), SimConfig::default(), cfg).await;
    let cmid = env.live_cmids().await[0].0;
    (env, cmid)
}

async fn enqueue_sync(env: &Env, cmid: i64) -> i64 {
    env.enqueue(&Job::SynchronizeGroup(SynchronizeGroup {
        v: 1,
        cmid: Some(cmid),
        rocketchatid: None,
        coursecontextid: None,
        courseid: None,
        periodic: false,
    }))
    .await;
    sqlx::query_scalar("SELECT max(id) FROM rcjobs.job")
        .fetch_one(env.pool())
        .await
        .unwrap()
}

/// Holds `rcjobs_sync.room` exclusively (every handler query on it waits) until dropped.
async fn lock_rooms(env: &Env) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = env.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE rcjobs_sync.room IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

async fn wait_for_waiter(pool: &PgPool) {
    let t = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if n > 0 {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the handler never reached the room table"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_costs_seconds_not_an_attempt() {
    let (env, cmid) = setup().await;
    let lock = lock_rooms(&env).await;
    let id = enqueue_sync(&env, cmid).await;
    let (stop, task) = start_worker(&env).await;
    wait_for_waiter(env.pool()).await;
    let killed_at = Instant::now();
    assert!(kill_lock_waiters(env.pool()).await > 0);
    lock.commit().await.unwrap();

    // Done well within the first durable backoff (60 s), in the attempt that hit the blip.
    let mut done = None;
    while killed_at.elapsed() < Duration::from_secs(20) {
        done = sqlx::query("SELECT state, attempt FROM rcjobs.job_history WHERE id = $1")
            .bind(id)
            .fetch_optional(env.pool())
            .await
            .unwrap()
            .map(|r| (r.get::<String, _>("state"), r.get::<i32, _>("attempt")));
        if done.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Option<(i32, String, f64)> = sqlx::query_as(
        "SELECT attempt, coalesce(last_error, ''), extract(epoch FROM run_at - now())::float8
           FROM rcjobs.job WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(env.pool())
    .await
    .unwrap();
    assert_eq!(
        done,
        Some(("completed".to_string(), 1)),
        "not completed in the first attempt {:?} after the blip; still queued: {left:?}",
        killed_at.elapsed()
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "{:?}",
        killed_at.elapsed()
    );
    stop.cancel();
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_that_outlasts_the_reruns_takes_the_durable_backoff() {
    let (env, cmid) = setup().await;
    let lock = lock_rooms(&env).await;
    let id = enqueue_sync(&env, cmid).await;
    let (stop, task) = start_worker(&env).await;
    // Every time the handler reaches the room table its connection dies, for as long as it
    // takes: the re-runs (≈ 0.5 + 1 + 2 + 4 s, jittered) must give up and hand the job to
    // the queue's backoff.
    let started = Instant::now();
    let mut kills = 0;
    let outcome = loop {
        kills += kill_lock_waiters(env.pool()).await;
        let row: Option<(String, i32, f64, String)> = sqlx::query_as(
            "SELECT state, attempt, extract(epoch FROM run_at - now())::float8,
                    coalesce(last_error, '')
               FROM rcjobs.job WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(env.pool())
        .await
        .unwrap();
        if let Some(r) = row.clone().filter(|r| r.0 == "ready" && r.2 > 1.0) {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no durable retry after {kills} killed connections: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    lock.commit().await.unwrap();
    let (_, attempt, wait, ref error) = outcome;
    assert_eq!(attempt, 1, "{outcome:?}");
    assert!(wait > 30.0, "the durable backoff is ~60 s: {outcome:?}");
    assert!(error.contains("database"), "{error}");
    // One run plus the bounded re-runs, not a tight loop.
    assert!((2..=6).contains(&kills), "{kills} runs hit the outage");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    stop.cancel();
    let _ = task.await;
}
