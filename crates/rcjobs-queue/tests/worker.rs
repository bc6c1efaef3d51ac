//! Worker runtime: completion, retries with durable backoff, dead letters, snooze, bad input.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use common::{finished, handler, quick_worker, spawn};
use rcjobs_queue::{enqueue, enqueue_many, get_job, JobError, JobState, NewJob};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn runs_every_job_once_and_moves_it_to_history() {
    let db = common::db().await;
    let (seen, counter) = common::counting();
    let w = quick_worker(&db)
        .concurrency(8)
        .batch_size(50)
        .register("noop", counter)
        .build()
        .unwrap();
    let running = spawn(w);
    let jobs: Vec<NewJob> = (0..300)
        .map(|i| NewJob::new("noop", json!({"i": i})))
        .collect();
    let ids = enqueue_many(&db.pool, &jobs).await.unwrap();
    rcjobs_testkit::wait_for("300 completions", Duration::from_secs(30), || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM rcjobs.job_history WHERE state = 'completed'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        (n == 300).then_some(())
    })
    .await;
    running.shutdown().await;
    assert_eq!(seen.load(Ordering::SeqCst), 300);
    assert_eq!(
        common::count_state(&db, "ready").await + common::count_state(&db, "running").await,
        0
    );
    let j = get_job(&db.pool, ids[0].id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.attempt, 1);
    // worker deregistered on shutdown
    let w: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.worker")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(w, 0);
}

#[tokio::test]
async fn retryable_errors_back_off_in_the_row_then_succeed() {
    let db = common::db().await;
    let w = quick_worker(&db)
        .register(
            "noop",
            handler(|ctx| async move {
                if ctx.attempt < 3 {
                    Err(JobError::retryable(format!("transient #{}", ctx.attempt)))
                } else {
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let id = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let running = spawn(w);
    assert_eq!(finished(&db, id).await, "completed");
    running.shutdown().await;
    let j = get_job(&db.pool, id).await.unwrap().unwrap();
    assert_eq!(j.attempt, 3);
    let errs = j.errors.as_array().unwrap();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0]["error"], "transient #1");
    assert_eq!(errs[1]["class"], "retry");
    assert_eq!(j.last_error.as_deref(), Some("transient #2"));
}

#[tokio::test]
async fn backoff_is_durable_in_run_at() {
    let db = common::db().await;
    let w = quick_worker(&db)
        .retry_policy(rcjobs_queue::RetryPolicy::default())
        .register(
            "noop",
            handler(|_| async { Err(JobError::retryable("down")) }),
        )
        .build()
        .unwrap();
    let id = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let running = spawn(w);
    let (run_at, attempt): (chrono::DateTime<chrono::Utc>, i32) =
        rcjobs_testkit::wait_for("the first failure", Duration::from_secs(20), || async {
            let r: (String, chrono::DateTime<chrono::Utc>, i32) =
                sqlx::query_as("SELECT state, run_at, attempt FROM rcjobs.job WHERE id = $1")
                    .bind(id)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            (r.0 == "ready" && r.2 == 1).then_some((r.1, r.2))
        })
        .await;
    running.shutdown().await;
    assert_eq!(attempt, 1);
    let delay = (run_at - chrono::Utc::now()).num_seconds();
    assert!(
        (45..=66).contains(&delay),
        "first retry ~60 s ± 10 % away, got {delay}"
    );
    let fd: i32 = sqlx::query_scalar("SELECT faildelay FROM rcjobs.task_adhoc WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!((45..=66).contains(&fd), "{fd}");
}

#[tokio::test]
async fn attempts_run_out_and_the_job_goes_dead_then_redrive_works() {
    let db = common::db().await;
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = fail.clone();
    let w = quick_worker(&db)
        .register(
            "flaky",
            handler(move |_| {
                let f = f.clone();
                async move {
                    if f.load(Ordering::SeqCst) {
                        Err(JobError::retryable("still broken"))
                    } else {
                        Ok(())
                    }
                }
            }),
        )
        .build()
        .unwrap();
    let id = enqueue(&db.pool, &NewJob::new("flaky", json!({})))
        .await
        .unwrap()
        .id;
    let running = spawn(w);
    assert_eq!(finished(&db, id).await, "dead");
    let j = get_job(&db.pool, id).await.unwrap().unwrap();
    assert_eq!(j.attempt, 3);
    assert_eq!(j.errors.as_array().unwrap().len(), 3);
    fail.store(false, Ordering::SeqCst);
    assert_eq!(
        rcjobs_queue::retry_job(&db.pool, id).await.unwrap(),
        rcjobs_queue::RetryOutcome::Requeued
    );
    assert_eq!(finished(&db, id).await, "completed");
    let j = get_job(&db.pool, id).await.unwrap().unwrap();
    assert_eq!(j.attempt, 1, "redrive gives fresh attempts");
    assert_eq!(
        j.errors.as_array().unwrap().len(),
        3,
        "error history survives the redrive"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn permanent_error_is_dead_at_once() {
    let db = common::db().await;
    let w = quick_worker(&db)
        .register(
            "noop",
            handler(|_| async { Err(JobError::permanent("room is gone")) }),
        )
        .build()
        .unwrap();
    let id = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let running = spawn(w);
    assert_eq!(finished(&db, id).await, "dead");
    running.shutdown().await;
    let j = get_job(&db.pool, id).await.unwrap().unwrap();
    assert_eq!(j.attempt, 1);
    assert_eq!(j.last_error.as_deref(), Some("room is gone"));
}

#[tokio::test]
async fn snooze_does_not_use_an_attempt() {
    let db = common::db().await;
    let w = quick_worker(&db)
        // flaky allows 3 attempts; snoozing 5 times must not exhaust them
        .register(
            "flaky",
            handler(|_| async move {
                Err(JobError::snooze(
                    chrono::Utc::now() + chrono::Duration::milliseconds(30),
                    "rate limited",
                ))
            }),
        )
        .register("noop", handler(|_| async { Ok(()) }))
        .build()
        .unwrap();
    let id = enqueue(&db.pool, &NewJob::new("flaky", json!({})))
        .await
        .unwrap()
        .id;
    let running = spawn(w);
    rcjobs_testkit::wait_for("five snoozes", Duration::from_secs(30), || async {
        let r: Option<(i32, i32)> = sqlx::query_as(
            "SELECT snoozes, attempt FROM rcjobs.job WHERE id = $1 AND state = 'ready'",
        )
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .unwrap();
        r.filter(|r| r.0 >= 5)
            .map(|r| assert_eq!(r.1, 0, "snoozes use no attempt"))
    })
    .await;
    running.shutdown().await;
    assert_eq!(common::history_state(&db, id).await, None);
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct CoursePayload {
    course_id: i64,
}

#[tokio::test]
async fn undecodable_payload_and_unknown_handler_go_dead_and_the_worker_keeps_running() {
    let db = common::db().await;
    let w = quick_worker(&db)
        .register(
            "course",
            handler(|ctx| async move {
                let _p: CoursePayload = ctx.payload_as()?;
                Ok(())
            }),
        )
        .register("noop", handler(|_| async { panic!("boom") }))
        .build()
        .unwrap();
    let running = spawn(w);
    let bad = enqueue(
        &db.pool,
        &NewJob::new("course", json!({"course_id": "not a number"})),
    )
    .await
    .unwrap()
    .id;
    let orphan = enqueue(&db.pool, &NewJob::new("flaky", json!({})))
        .await
        .unwrap()
        .id;
    // default attempts (12): a panic must not be retried
    let panics = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    assert_eq!(finished(&db, bad).await, "dead");
    assert_eq!(finished(&db, orphan).await, "dead");
    assert_eq!(finished(&db, panics).await, "dead");
    let good = enqueue(&db.pool, &NewJob::new("course", json!({"course_id": 4})))
        .await
        .unwrap()
        .id;
    assert_eq!(finished(&db, good).await, "completed");
    running.shutdown().await;
    let e = get_job(&db.pool, bad)
        .await
        .unwrap()
        .unwrap()
        .last_error
        .unwrap();
    assert!(e.contains("does not decode"), "{e}");
    let e = get_job(&db.pool, orphan)
        .await
        .unwrap()
        .unwrap()
        .last_error
        .unwrap();
    assert!(
        e.contains("no handler registered for kind \"flaky\""),
        "{e}"
    );
    let p = get_job(&db.pool, panics).await.unwrap().unwrap();
    assert_eq!(
        p.attempt, 1,
        "a panicking handler goes dead on its first attempt"
    );
    let e = p.last_error.unwrap();
    assert!(e.contains("handler panicked: boom"), "{e}");
}

#[tokio::test]
async fn priorities_named_queues_and_delayed_jobs() {
    let db = common::db().await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let o = order.clone();
    let later = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    enqueue_many(
        &db.pool,
        &[
            NewJob::new("noop", json!({"n": "low"})).priority(5),
            NewJob::new("noop", json!({"n": "high"})).priority(-5),
            NewJob::new("noop", json!({"n": "mid"})),
            NewJob::new("noop", json!({"n": "other-queue"})).queue("bulk"),
            NewJob::new("noop", json!({"n": "delayed"}))
                .run_at(later)
                .priority(-10),
        ],
    )
    .await
    .unwrap();
    let w = quick_worker(&db)
        .concurrency(1)
        .batch_size(1)
        .register(
            "noop",
            handler(move |ctx| {
                let o = o.clone();
                async move {
                    o.lock().unwrap().push((
                        ctx.payload["n"].as_str().unwrap().to_string(),
                        chrono::Utc::now(),
                    ));
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let running = spawn(w);
    rcjobs_testkit::wait_for(
        "four jobs of the default queue",
        Duration::from_secs(20),
        || async { (order.lock().unwrap().len() == 4).then_some(()) },
    )
    .await;
    running.shutdown().await;
    let got: Vec<(String, chrono::DateTime<chrono::Utc>)> = order.lock().unwrap().clone();
    let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["high", "mid", "low", "delayed"]);
    assert!(got[3].1 >= later, "delayed job ran before its run_at");
    let other: String = sqlx::query_scalar("SELECT state FROM rcjobs.job WHERE queue = 'bulk'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(other, "ready", "a worker only serves its queues");
}
