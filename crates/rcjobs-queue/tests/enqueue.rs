//! Enqueue: validation, transactional enqueue, bulk, dedup under concurrency.
#![allow(clippy::unwrap_used)]

mod common;

use rcjobs_queue::{enqueue, enqueue_many, NewJob, QueueError};
use serde_json::json;

#[tokio::test]
async fn bad_input_is_rejected_with_rcjobs_messages() {
    let db = common::db().await;
    let cases = [
        (NewJob::new("nope", json!({})), "unknown job kind \"nope\""),
        (
            NewJob::new("noop", json!([1, 2])),
            "must be a JSON object, got array",
        ),
        (
            NewJob::new("noop", json!("x")),
            "must be a JSON object, got string",
        ),
        (
            NewJob::new("course", json!({"other": 1})),
            "missing required field(s): course_id",
        ),
        (
            NewJob::new("course", json!({"course_id": 1, "pad": "x".repeat(2000)})),
            "over the limit of 1024 bytes",
        ),
        (NewJob::new("noop", json!({})).queue(""), "queue name"),
        (
            NewJob::new("noop", json!({})).max_attempts(0),
            "max_attempts",
        ),
    ];
    for (job, want) in cases {
        let err = enqueue(&db.pool, &job).await.unwrap_err();
        match &err {
            QueueError::Rejected(m) => {
                assert!(m.starts_with("rcjobs:"), "{m}");
                assert!(m.contains(want), "{m} should contain {want}");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        // the SQL function raises SQLSTATE 22023
        if job.queue == "default" && job.max_attempts.is_none() {
            let e = sqlx::query("SELECT rcjobs.enqueue($1, $2)")
                .bind(&job.kind)
                .bind(&job.payload)
                .execute(&db.pool)
                .await
                .unwrap_err();
            assert_eq!(
                e.as_database_error().unwrap().code().as_deref(),
                Some("22023")
            );
        }
    }
    // bulk names the failing position and inserts nothing
    let err = enqueue_many(
        &db.pool,
        &[
            NewJob::new("noop", json!({})),
            NewJob::new("course", json!({})),
        ],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("(job 2 of 2)"), "{err}");
    assert_eq!(common::count_state(&db, "ready").await, 0);
}

#[tokio::test]
async fn enqueue_joins_the_callers_transaction() {
    let db = common::db().await;
    let mut tx = db.pool.begin().await.unwrap();
    let a = enqueue(&mut *tx, &NewJob::new("noop", json!({"n": 1})))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let b = enqueue(&mut *tx, &NewJob::new("noop", json!({"n": 2})))
        .await
        .unwrap();
    let many = enqueue_many(
        &mut *tx,
        &[
            NewJob::new("noop", json!({})),
            NewJob::new("noop", json!({})),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM rcjobs.job ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(!ids.contains(&a.id));
    assert_eq!(ids, vec![b.id, many[0].id, many[1].id]);
}

#[tokio::test]
async fn bulk_enqueue_keeps_order_and_options() {
    let db = common::db().await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let jobs: Vec<NewJob> = (0..1000)
        .map(|i| {
            NewJob::new("noop", json!({"i": i}))
                .priority((i % 3) as i16)
                .queue(if i % 2 == 0 { "a" } else { "b" })
        })
        .chain([NewJob::new("noop", json!({})).run_at(later).max_attempts(2)])
        .collect();
    let res = enqueue_many(&db.pool, &jobs).await.unwrap();
    assert_eq!(res.len(), 1001);
    assert!(res.windows(2).all(|w| w[0].id < w[1].id));
    let (q, p, m): (String, i16, i32) =
        sqlx::query_as("SELECT queue, priority, max_attempts FROM rcjobs.job WHERE id = $1")
            .bind(res[5].id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((q.as_str(), p, m), ("b", 2, 12));
    let (m, at): (i32, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT max_attempts, run_at FROM rcjobs.job WHERE id = $1")
            .bind(res[1000].id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(m, 2);
    assert!((at - later).num_milliseconds().abs() < 5);
}

#[tokio::test]
async fn dedup_returns_the_pending_job_atomically_under_concurrency() {
    let db = common::db().await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            enqueue(&pool, &NewJob::new("noop", json!({})).dedup_key("course:1"))
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let first = ids[0].id;
    assert!(ids.iter().all(|e| e.id == first), "{ids:?}");
    assert_eq!(ids.iter().filter(|e| !e.deduplicated).count(), 1);
    assert_eq!(common::count_state(&db, "ready").await, 1);
    // a different kind with the same key is a different job
    let other = enqueue(
        &db.pool,
        &NewJob::new("flaky", json!({})).dedup_key("course:1"),
    )
    .await
    .unwrap();
    assert!(!other.deduplicated);
    // bulk with keys dedups too, within the batch and against the table
    let res = enqueue_many(
        &db.pool,
        &[
            NewJob::new("noop", json!({})).dedup_key("course:1"),
            NewJob::new("noop", json!({})).dedup_key("course:2"),
            NewJob::new("noop", json!({})).dedup_key("course:2"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(res[0].id, first);
    assert!(res[0].deduplicated && !res[1].deduplicated && res[2].deduplicated);
    assert_eq!(res[1].id, res[2].id);
}

#[tokio::test]
async fn notify_once_per_statement() {
    let db = common::db().await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen(rcjobs_queue::NOTIFY_CHANNEL).await.unwrap();
    let jobs: Vec<NewJob> = (0..500).map(|_| NewJob::new("noop", json!({}))).collect();
    enqueue_many(&db.pool, &jobs).await.unwrap();
    // a delayed job alone does not wake anyone
    enqueue(
        &db.pool,
        &NewJob::new("noop", json!({})).run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await
    .unwrap();
    enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap();
    let mut got = 0;
    while let Ok(Ok(_)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), listener.recv()).await
    {
        got += 1;
    }
    assert_eq!(
        got, 2,
        "one notification for the bulk statement, one for the single enqueue"
    );
}
