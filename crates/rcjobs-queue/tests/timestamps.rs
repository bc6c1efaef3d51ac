//! Timestamps that cannot poison: run_at is checked on every enqueue path, and rows stored
//! with values chrono cannot hold (written before the check, or by hand) never panic a
//! claim, a listing or a cancel.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{finished, quick_worker, spawn};
use rcjobs_queue::{
    cancel_job, display_time, enqueue, enqueue_copy, enqueue_many, get_job, list_jobs, JobFilter,
    NewJob, QueueError,
};
use serde_json::json;

fn year(y: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).unwrap()
}

fn assert_refused(e: QueueError) {
    match e {
        QueueError::Rejected(m) => assert!(m.starts_with("rcjobs: run_at must be"), "{m}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn every_enqueue_path_refuses_run_at_outside_the_range() {
    let db = common::db().await;
    for t in [year(10000), year(262000), year(1969)] {
        let job = NewJob::new("noop", json!({})).run_at(t);
        assert_refused(enqueue(&db.pool, &job).await.unwrap_err());
        assert_refused(
            enqueue(&db.pool, &job.clone().exclusion_key("k"))
                .await
                .unwrap_err(),
        );
        let err = enqueue_many(&db.pool, &[NewJob::new("noop", json!({})), job.clone()])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("(job 2 of 2)"), "{err}");
        assert_refused(err);
        let mut conn = db.pool.acquire().await.unwrap();
        assert_refused(enqueue_copy(&mut conn, &[job]).await.unwrap_err());
    }
    assert!(
        enqueue(&db.pool, &NewJob::new("noop", json!({})).run_at(year(9999)))
            .await
            .is_ok()
    );
    // the SQL contract, as the producer role calls it: infinities and Moodle's far epochs
    for v in ["-infinity", "infinity", "287166-01-01 00:00:00+00"] {
        let mut tx = db.pool.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE rcjobs_producer")
            .execute(&mut *tx)
            .await
            .unwrap();
        let e = sqlx::query("SELECT rcjobs.enqueue('noop', '{}', run_at => $1::timestamptz)")
            .bind(v)
            .execute(&mut *tx)
            .await
            .unwrap_err();
        let d = e.as_database_error().unwrap();
        assert_eq!(d.code().as_deref(), Some("22023"), "{v}");
        assert!(
            d.message().contains("run_at must be"),
            "{v}: {}",
            d.message()
        );
    }
    for v in ["-infinity", "infinity", "287166-01-01 00:00:00+00"] {
        let e = sqlx::query(
            "SELECT * FROM rcjobs.enqueue_many(ARRAY['noop'], ARRAY['{}'::jsonb], run_ats => ARRAY[$1::timestamptz])",
        )
        .bind(v)
        .execute(&db.pool)
        .await
        .unwrap_err();
        assert!(e.to_string().contains("run_at must be"), "{v}: {e}");
    }
    assert_eq!(common::count_state(&db, "ready").await, 1);
}

/// Writes a stored value the checks now refuse, as an old version or a hand edit could have.
async fn poison(db: &rcjobs_testkit::TestDb, id: i64, column: &str, value: &str) {
    let sql = format!("UPDATE rcjobs.job SET {column} = $2::timestamptz WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(value)
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn stored_values_past_chrono_never_panic_admin_or_claim() {
    let db = common::db().await;
    let inf = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let far = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let neg = enqueue(&db.pool, &NewJob::new("noop", json!({"n": 1})))
        .await
        .unwrap()
        .id;
    poison(&db, inf, "run_at", "infinity").await;
    poison(&db, far, "run_at", "287166-01-01 00:00:00+00").await;
    poison(&db, far, "enqueued_at", "-infinity").await;
    poison(&db, neg, "run_at", "-infinity").await;

    let listed = list_jobs(&db.pool, &JobFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 3);
    let j = get_job(&db.pool, inf).await.unwrap().unwrap();
    assert_eq!(display_time(&j.run_at), "infinity");
    let j = get_job(&db.pool, far).await.unwrap().unwrap();
    assert_eq!(display_time(&j.run_at), "infinity");
    assert_eq!(display_time(&j.enqueued_at), "-infinity");

    // a claim of the job due since -infinity decodes; the worker runs it
    let (runs, h) = common::counting();
    let w = quick_worker(&db).register("noop", h).build().unwrap();
    let running = spawn(w);
    assert_eq!(finished(&db, neg).await, "completed");
    running.shutdown().await;
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);

    // the ones never due can be cancelled and still listed from history
    cancel_job(&db.pool, inf).await.unwrap();
    cancel_job(&db.pool, far).await.unwrap();
    let listed = list_jobs(&db.pool, &JobFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(get_job(&db.pool, far).await.unwrap().is_some());
}

#[tokio::test]
async fn a_claim_batch_with_a_poisoned_row_decodes_every_row() {
    let db = common::db().await;
    let ok = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let bad = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    poison(&db, bad, "run_at", "-infinity").await;
    poison(&db, bad, "enqueued_at", "-infinity").await;
    let got = common::claim_due(&db).await;
    let mut ids: Vec<i64> = got.iter().map(|j| j.id).collect();
    ids.sort();
    assert_eq!(ids, vec![ok, bad]);
}
