//! Dedup keys and running jobs; superseding on retry.
#![allow(clippy::unwrap_used)]

mod common;

use rcjobs_queue::lease::{self, Settle};
use rcjobs_queue::{enqueue, get_job, JobState, NewJob};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn a_running_job_does_not_absorb_a_new_enqueue_and_is_superseded_on_retry() {
    let db = common::db().await;
    let a = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"v": 1})).dedup_key("room:1"),
    )
    .await
    .unwrap();
    let got = lease::claim(
        &db.pool,
        "default",
        1,
        Duration::from_secs(30),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    assert_eq!(got[0].id, a.id);
    // the handler may have read state already: a change now needs a new job
    let b = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"v": 2})).dedup_key("room:1"),
    )
    .await
    .unwrap();
    assert!(!b.deduplicated);
    assert_ne!(a.id, b.id);
    // while b is pending, further enqueues fold into it
    let c = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"v": 3})).dedup_key("room:1"),
    )
    .await
    .unwrap();
    assert!(c.deduplicated);
    assert_eq!(c.id, b.id);
    // a fails retryably: the pending b covers it
    let r = lease::settle(
        &db.pool,
        &[(
            a.id,
            got[0].token,
            Settle::Retry {
                run_at: chrono::Utc::now(),
                error: "flap".into(),
            },
        )],
    )
    .await
    .unwrap();
    assert_eq!(r, vec![(a.id, lease::SettleOutcome::Superseded)]);
    let ja = get_job(&db.pool, a.id).await.unwrap().unwrap();
    assert_eq!(ja.state, JobState::Superseded);
    assert_eq!(ja.superseded_by, Some(b.id));
    // and a dead job with the same key is not redriven while b covers it
    let d = enqueue(
        &db.pool,
        &NewJob::new("flaky", json!({})).dedup_key("room:9"),
    )
    .await
    .unwrap();
    let got = lease::claim(
        &db.pool,
        "default",
        5,
        Duration::from_secs(30),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    let dj = got.iter().find(|j| j.id == d.id).unwrap();
    lease::settle(
        &db.pool,
        &[(d.id, dj.token, Settle::Dead { error: "x".into() })],
    )
    .await
    .unwrap();
    let e = enqueue(
        &db.pool,
        &NewJob::new("flaky", json!({})).dedup_key("room:9"),
    )
    .await
    .unwrap();
    assert_eq!(
        rcjobs_queue::retry_job(&db.pool, d.id).await.unwrap(),
        rcjobs_queue::RetryOutcome::Superseded
    );
    assert_eq!(
        get_job(&db.pool, d.id)
            .await
            .unwrap()
            .unwrap()
            .superseded_by,
        Some(e.id)
    );
}

#[tokio::test]
async fn sweep_supersedes_a_crashed_job_covered_by_a_newer_one() {
    let db = common::db().await;
    let a = enqueue(&db.pool, &NewJob::new("noop", json!({})).dedup_key("k"))
        .await
        .unwrap();
    lease::claim(
        &db.pool,
        "default",
        1,
        Duration::from_millis(1),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    let b = enqueue(&db.pool, &NewJob::new("noop", json!({})).dedup_key("k"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = lease::sweep(&db.pool, 10).await.unwrap();
    assert_eq!(r.superseded, 1);
    assert_eq!(
        get_job(&db.pool, a.id)
            .await
            .unwrap()
            .unwrap()
            .superseded_by,
        Some(b.id)
    );
}
