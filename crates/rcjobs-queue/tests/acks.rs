//! Pipelined acknowledgements: with `ack_parallelism` 2, a completion statement that is stuck
//! (here on a row lock the test holds) does not hold back the next batch; with 1 it does.
#![allow(clippy::unwrap_used)]

mod common;

use common::{handler, spawn};
use rcjobs_queue::{enqueue, NewJob, Worker, WorkerConfig};
use serde_json::json;
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Whether job B finished while job A's acknowledgement was blocked.
async fn b_finishes_while_a_ack_is_blocked(parallel: usize) -> bool {
    let db = common::db().await;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let w = Worker::builder(db.pool.clone())
        .config(WorkerConfig {
            ack_batch: 2,
            ack_parallelism: parallel,
            lease_ttl: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(20),
            ..WorkerConfig::default()
        })
        .register(
            "noop",
            handler(move |ctx| {
                let g = g.clone();
                async move {
                    if ctx.payload["which"] == "a" {
                        let _permit = g.acquire().await;
                    }
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let running = spawn(w);
    let a = enqueue(&db.pool, &NewJob::new("noop", json!({"which": "a"})))
        .await
        .unwrap()
        .id;
    rcjobs_testkit::wait_for("A running", Duration::from_secs(30), || async {
        let s: Option<String> = sqlx::query_scalar("SELECT state FROM rcjobs.job WHERE id = $1")
            .bind(a)
            .fetch_optional(&db.pool)
            .await
            .unwrap();
        (s.as_deref() == Some("running")).then_some(())
    })
    .await;

    // Hold A's row so that its completion blocks, then let A's handler return.
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM rcjobs.job WHERE id = $1 FOR UPDATE")
        .bind(a)
        .execute(&mut *tx)
        .await
        .unwrap();
    gate.add_permits(1);
    rcjobs_testkit::wait_for(
        "A's ack waiting on the lock",
        Duration::from_secs(30),
        || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'
                AND query LIKE '%complete_jobs%'",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap();
            (n > 0).then_some(())
        },
    )
    .await;

    let b = enqueue(&db.pool, &NewJob::new("noop", json!({"which": "b"})))
        .await
        .unwrap()
        .id;
    // With parallel acks B finishes at once; with one it cannot while A's statement is
    // stuck, whatever the wait, so the bound only limits how long the test looks.
    let wait = if parallel > 1 { 30 } else { 2 };
    let mut done = false;
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(wait) {
        if common::history_state(&db, b).await.is_some() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.rollback().await.unwrap();
    assert_eq!(common::finished(&db, a).await, "completed");
    assert_eq!(common::finished(&db, b).await, "completed");
    running.shutdown().await;
    done
}

#[tokio::test]
async fn a_stuck_ack_statement_does_not_hold_back_the_next_batch() {
    assert!(b_finishes_while_a_ack_is_blocked(2).await);
}

#[tokio::test]
async fn with_one_ack_statement_the_next_batch_waits() {
    assert!(!b_finishes_while_a_ack_is_blocked(1).await);
}

/// Completes 8 jobs 100 ms apart and returns how many acknowledgement statements carried
/// them (each statement stamps its rows with its own `now()`).
async fn ack_statements_for_a_trickle(linger: Duration) -> i64 {
    let db = common::db().await;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let w = Worker::builder(db.pool.clone())
        .config(WorkerConfig {
            ack_linger: linger,
            ..WorkerConfig::default()
        })
        .register(
            "noop",
            handler(move |_| {
                let g = g.clone();
                async move {
                    // one permit per job: returned, it would release the next job at once
                    g.acquire().await.unwrap().forget();
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let running = spawn(w);
    let jobs: Vec<NewJob> = (0..8)
        .map(|i| NewJob::new("noop", json!({ "i": i })))
        .collect();
    let ids = rcjobs_queue::enqueue_many(&db.pool, &jobs).await.unwrap();
    rcjobs_testkit::wait_for("all 8 running", Duration::from_secs(30), || async {
        (common::count_state(&db, "running").await == 8).then_some(())
    })
    .await;
    for _ in 0..8 {
        gate.add_permits(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        assert_eq!(common::finished(&db, id.id).await, "completed");
    }
    let statements: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT finished_at) FROM rcjobs.job_history")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    running.shutdown().await;
    statements
}

#[tokio::test]
async fn a_trickle_of_acks_lingers_into_one_statement() {
    // the 8 completions span 0.8 s, well inside the linger
    assert_eq!(
        ack_statements_for_a_trickle(Duration::from_secs(5)).await,
        1
    );
}

#[tokio::test]
async fn without_linger_each_ack_of_a_trickle_goes_at_once() {
    assert!(ack_statements_for_a_trickle(Duration::ZERO).await > 1);
}
