//! Bulk enqueue by COPY: same validation and bookkeeping as `enqueue_many`, ids in order,
//! all or nothing, inside the caller's transaction.
#![allow(clippy::unwrap_used)]

mod common;

use common::{quick_worker, spawn};
use rcjobs_queue::{enqueue_copy, stats, JobState, NewJob, QueueError};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn rows(db: &rcjobs_testkit::TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rcjobs.job")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn ready_count(s: &rcjobs_queue::QueueStats, kind: &str) -> i64 {
    s.counts
        .iter()
        .filter(|c| c.kind == kind && c.state == JobState::Ready)
        .map(|c| c.count)
        .sum()
}

#[tokio::test]
async fn copies_jobs_in_order_with_defaults_counters_and_awkward_text() {
    let db = common::db().await;
    let awkward = "tab\there, newline\nthere, back\\slash, quote\" and \u{e9}";
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let mut jobs: Vec<NewJob> = (0..2500)
        .map(|i| NewJob::new("noop", json!({ "i": i })))
        .collect();
    jobs[7] = NewJob::new(
        "flaky",
        json!({ "text": awkward, "nested": {"a": [1, 2.5, null]} }),
    );
    jobs[8] = NewJob::new("noop", json!({}))
        .queue("other")
        .priority(-2)
        .run_at(later);
    jobs[9] = NewJob::new("noop", json!({})).max_attempts(4);
    let mut conn = db.pool.acquire().await.unwrap();
    let ids = enqueue_copy(&mut conn, &jobs).await.unwrap();
    drop(conn);
    assert_eq!(ids.len(), jobs.len());
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids follow input order"
    );

    type Row = (String, serde_json::Value, String, i16, i32, String, bool);
    let get = |id: i64| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, Row>(
                "SELECT kind, payload, queue, priority, max_attempts, state, run_at > now() + interval '50 minutes'
                 FROM rcjobs.job WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let r = get(ids[7]).await;
    assert_eq!(r.0, "flaky");
    assert_eq!(r.1["text"], json!(awkward));
    assert_eq!(r.1["nested"], json!({"a": [1, 2.5, null]}));
    assert_eq!(r.4, 3, "the kind's default attempt limit");
    assert_eq!(r.5, "ready");
    let r = get(ids[8]).await;
    assert_eq!((r.2.as_str(), r.3, r.6), ("other", -2, true));
    assert_eq!(get(ids[9]).await.4, 4);
    assert!(!get(ids[10]).await.6, "no start time: due now");
    assert_eq!(get(ids[10]).await.4, 12);

    let s = stats(&db.pool).await.unwrap();
    assert_eq!(ready_count(&s, "noop"), 2499);
    assert_eq!(ready_count(&s, "flaky"), 1);
}

#[tokio::test]
async fn an_invalid_job_rejects_the_whole_batch_naming_it() {
    let db = common::db().await;
    let ok = || NewJob::new("course", json!({"course_id": 1}));
    let cases = [
        (NewJob::new("nope", json!({})), "unknown job kind \"nope\""),
        (NewJob::new("noop", json!([1])), "must be a JSON object"),
        (
            NewJob::new("course", json!({"x": 1})),
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
        (
            NewJob::new("noop", json!({})).dedup_key("k"),
            "use enqueue_many",
        ),
        (
            NewJob::new("noop", json!({})).exclusion_key("k"),
            "use enqueue_many",
        ),
    ];
    let mut conn = db.pool.acquire().await.unwrap();
    for (bad, want) in cases {
        let keyed = bad.dedup_key.is_some() || bad.exclusion_key.is_some();
        let jobs = vec![ok(), ok(), bad, ok()];
        match enqueue_copy(&mut conn, &jobs).await {
            Err(QueueError::Rejected(m)) => {
                assert!(m.starts_with("rcjobs:"), "{m}");
                assert!(m.contains(want), "{m} should contain {want}");
                assert!(m.contains("job 3 of 4"), "{m} should name the position");
                if !keyed {
                    // checked in Rust, worded as the database words it
                    match rcjobs_queue::enqueue_many(&db.pool, &jobs).await {
                        Err(QueueError::Rejected(sql)) => assert_eq!(m, sql),
                        other => panic!("enqueue_many should refuse too, got {other:?}"),
                    }
                }
            }
            other => panic!("expected a rejection containing {want}, got {other:?}"),
        }
    }
    drop(conn);
    assert_eq!(rows(&db).await, 0, "nothing of a rejected batch stays");
    assert_eq!(ready_count(&stats(&db.pool).await.unwrap(), "course"), 0);
}

#[tokio::test]
async fn copy_inside_the_callers_transaction_follows_it() {
    let db = common::db().await;
    let jobs: Vec<NewJob> = (0..50)
        .map(|i| NewJob::new("noop", json!({"i": i})))
        .collect();
    let mut tx = db.pool.begin().await.unwrap();
    enqueue_copy(&mut tx, &jobs).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(rows(&db).await, 0);
    assert_eq!(ready_count(&stats(&db.pool).await.unwrap(), "noop"), 0);

    // a rejected COPY inside the caller's transaction leaves the transaction usable
    let mut tx = db.pool.begin().await.unwrap();
    enqueue_copy(&mut tx, &jobs).await.unwrap();
    let bad = vec![NewJob::new("nope", json!({}))];
    assert!(matches!(
        enqueue_copy(&mut tx, &bad).await,
        Err(QueueError::Rejected(_))
    ));
    tx.commit().await.unwrap();
    assert_eq!(rows(&db).await, 50);
}

#[tokio::test]
async fn copied_jobs_wake_a_waiting_worker_and_run() {
    let db = common::db().await;
    let (ran, counter) = common::counting();
    let w = quick_worker(&db).register("noop", counter).build().unwrap();
    let running = spawn(w);
    let jobs: Vec<NewJob> = (0..300)
        .map(|i| NewJob::new("noop", json!({"i": i})))
        .collect();
    let mut conn = db.pool.acquire().await.unwrap();
    enqueue_copy(&mut conn, &jobs).await.unwrap();
    rcjobs_testkit::wait_for("copied jobs ran", Duration::from_secs(30), || async {
        (ran.load(Ordering::SeqCst) >= 300).then_some(())
    })
    .await;
    running.shutdown().await;
    assert_eq!(ran.load(Ordering::SeqCst), 300);
}

#[tokio::test]
async fn payload_sizes_computed_here_match_the_database() {
    let db = common::db().await;
    let payloads = [
        json!({}),
        json!({"n": 1}),
        json!({"user_id": -42, "course": {"id": 7, "tags": ["a", "b c", ""]}, "ok": true, "x": null}),
        json!({"text": "tab\there \"quoted\" back\\slash \u{1} \u{1f} \u{7f} caf\u{e9} \u{1f600}"}),
        json!({"floats": [0.1, 2.5, -3.25, 1.0, 123456.789], "big": u64::MAX, "small": i64::MIN}),
        json!({"nested": [[[]], [{}], {"k": [1, {"z": "y"}]}]}),
    ];
    for p in payloads {
        let db_len: i32 = sqlx::query_scalar("SELECT octet_length($1::jsonb::text)")
            .bind(sqlx::types::Json(&p))
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(
            rcjobs_queue::jsonb_text_len(&p),
            Some(db_len as usize),
            "{p}"
        );
    }
}

#[tokio::test]
async fn a_size_only_the_database_can_tell_is_checked_there() {
    let db = common::db().await;
    // numeric prints 1e300 as 301 digits: over the course kind's 1,024-byte limit although
    // serde_json's text is short
    assert_eq!(rcjobs_queue::jsonb_text_len(&json!({"x": 1e300})), None);
    let big = NewJob::new(
        "course",
        json!({"course_id": 1, "pad": [1e300, 1e300, 1e300, 1e300]}),
    );
    let ok = NewJob::new("course", json!({"course_id": 2, "x": 1e20}));
    let mut conn = db.pool.acquire().await.unwrap();
    match enqueue_copy(&mut conn, &[ok.clone(), big]).await {
        Err(QueueError::Rejected(m)) => {
            assert!(m.contains("over the limit of 1024 bytes"), "{m}");
            assert!(m.contains("job 2 of 2"), "{m}");
        }
        other => panic!("expected a size rejection, got {other:?}"),
    }
    let ids = enqueue_copy(&mut conn, &[ok.clone(), ok]).await.unwrap();
    drop(conn);
    assert_eq!(ids.len(), 2);
    assert_eq!(ready_count(&stats(&db.pool).await.unwrap(), "course"), 2);
}
