//! Graceful shutdown: prefetched jobs handed back, running ones finished or interrupted.
#![allow(clippy::unwrap_used)]

mod common;

use common::{handler, quick_worker, spawn};
use rcjobs_queue::{enqueue, enqueue_many, NewJob};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn prefetched_jobs_go_back_without_using_an_attempt_and_running_ones_finish() {
    let db = common::db().await;
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let w = quick_worker(&db)
        .concurrency(1)
        .prefetch(5)
        .batch_size(10)
        .register(
            "noop",
            handler(move |_| {
                let s = s.clone();
                async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let ids = enqueue_many(
        &db.pool,
        &(0..6)
            .map(|_| NewJob::new("noop", json!({})))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let running = spawn(w);
    rcjobs_testkit::wait_for(
        "one running and five prefetched",
        Duration::from_secs(10),
        || async {
            (started.load(Ordering::SeqCst) == 1 && common::count_state(&db, "running").await == 6)
                .then_some(())
        },
    )
    .await;
    running.shutdown().await;
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(
        common::history_state(&db, ids[0].id).await.as_deref(),
        Some("completed"),
        "the running job finished"
    );
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT state, attempt FROM rcjobs.job ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![("ready".to_string(), 0); 5]);
}

#[tokio::test]
async fn handlers_past_the_deadline_are_interrupted_and_requeued() {
    let db = common::db().await;
    let w = quick_worker(&db)
        .shutdown_timeout(Duration::from_millis(300))
        .register(
            "noop",
            handler(|_| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let id = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let running = spawn(w);
    rcjobs_testkit::wait_for("the job to start", Duration::from_secs(10), || async {
        (common::count_state(&db, "running").await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.shutdown().await;
    let (state, err): (String, Option<String>) =
        sqlx::query_as("SELECT state, last_error FROM rcjobs.job WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(state, "ready");
    assert!(err.unwrap().contains("interrupted"));
}
