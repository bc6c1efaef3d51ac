//! The worker survives its backends being killed (pg_terminate_backend) and keeps going,
//! with wakeups by NOTIFY again after reconnecting.
#![allow(clippy::unwrap_used)]

mod common;

use common::{finished, handler, quick_worker, spawn};
use rcjobs_queue::{enqueue, NewJob};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn reconnects_after_pg_terminate_backend() {
    let db = common::db().await;
    let w = quick_worker(&db)
        // polling so slow that only NOTIFY can explain a fast pickup
        .poll_interval(Duration::from_secs(60))
        .register("noop", handler(|_| async { Ok(()) }))
        .build()
        .unwrap();
    let running = spawn(w);
    let id = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    assert_eq!(finished(&db, id).await, "completed");

    let admin = sqlx::PgPool::connect(&format!("{}/postgres", rcjobs_testkit::server_url()))
        .await
        .unwrap();
    for _ in 0..2 {
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&db.name)
        .fetch_all(&admin)
        .await
        .unwrap();
        assert!(!killed.is_empty());
        // give the listener a moment to notice and re-LISTEN (bounded wait on the real condition below)
        let t0 = Instant::now();
        let id =
            rcjobs_testkit::wait_for("an enqueue to succeed", Duration::from_secs(10), || async {
                enqueue(&db.pool, &NewJob::new("noop", json!({})))
                    .await
                    .ok()
                    .map(|e| e.id)
            })
            .await;
        assert_eq!(finished(&db, id).await, "completed");
        assert!(t0.elapsed() < Duration::from_secs(30));
    }
    // after reconnecting the listener, pickups are by NOTIFY (poll interval is 60 s)
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        let t0 = Instant::now();
        let id = enqueue(&db.pool, &NewJob::new("noop", json!({})))
            .await
            .unwrap()
            .id;
        assert_eq!(finished(&db, id).await, "completed");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t0.elapsed()
        );
    }
    running.shutdown().await;
    admin.close().await;
}
