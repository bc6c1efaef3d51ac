//! Pauses, run now, reschedule, delete and the bulk forms on a filter (issue 16).
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::{claim_due, count_state, db};
use rcjobs_queue::{
    bulk_apply, bulk_targets, delete_job, enqueue, list_jobs, pause, paused_counts, reschedule,
    resume, run_now, stats, BulkAction, JobFilter, JobState, NewJob, PauseTarget, QueueError,
};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn add(db: &rcjobs_testkit::TestDb, job: NewJob) -> i64 {
    enqueue(&db.pool, &job).await.unwrap().id
}

#[tokio::test]
async fn a_paused_kind_stays_ready_and_is_skipped_by_every_claim_until_resumed() {
    let db = db().await;
    for _ in 0..30 {
        add(&db, NewJob::new("noop", json!({}))).await;
    }
    let course = add(&db, NewJob::new("course", json!({"course_id": 1}))).await;
    let kind = PauseTarget::Kind("noop".into());
    assert!(pause(&db.pool, &kind, "alice", "maintenance")
        .await
        .unwrap());
    assert!(!pause(&db.pool, &kind, "bob", "").await.unwrap());
    let p = rcjobs_queue::list_pauses(&db.pool).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].paused_by, "alice");

    // the batch starts with 10 paused jobs: they are marked, the course job behind them claimed
    let got = claim_due(&db).await;
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![course]);
    assert!(claim_due(&db).await.is_empty());
    assert_eq!(count_state(&db, "ready").await, 30, "state unchanged");
    let s = stats(&db.pool).await.unwrap();
    assert_eq!(s.total(JobState::Ready), 30);
    assert_eq!(
        paused_counts(&db.pool).await.unwrap(),
        vec![("default".into(), "noop".into(), 30)]
    );
    // marked rows leave the claim index: the claim's plan reads none of them
    let marked_in_index: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rcjobs.job WHERE state = 'ready' AND NOT paused AND kind = 'noop'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(marked_in_index, 0);

    assert!(resume(&db.pool, &kind).await.unwrap());
    assert!(!resume(&db.pool, &kind).await.unwrap());
    assert!(paused_counts(&db.pool).await.unwrap().is_empty());
    assert_eq!(claim_due(&db).await.len(), 10);
}

#[tokio::test]
async fn a_paused_queue_reaches_running_workers_within_a_second() {
    let db = db().await;
    let (runs, h) = common::counting();
    let worker = common::quick_worker(&db)
        .register("noop", h)
        .build()
        .unwrap();
    let running = common::spawn(worker);
    let first = add(&db, NewJob::new("noop", json!({}))).await;
    common::finished(&db, first).await;

    let q = PauseTarget::Queue("default".into());
    pause(&db.pool, &q, "test", "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = runs.load(Ordering::SeqCst);
    let held = add(&db, NewJob::new("noop", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        before,
        "nothing runs while paused"
    );
    assert_eq!(count_state(&db, "ready").await, 1);

    let t = std::time::Instant::now();
    resume(&db.pool, &q).await.unwrap();
    assert_eq!(common::finished(&db, held).await, "completed");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    running.shutdown().await;
}

#[tokio::test]
async fn run_now_pulls_a_job_to_the_front_of_its_lane() {
    let db = db().await;
    let later = Utc::now() + ChronoDuration::hours(1);
    let a = add(&db, NewJob::new("noop", json!({})).exclusion_key("room:1")).await;
    let b = add(&db, NewJob::new("noop", json!({})).exclusion_key("room:1")).await;
    let c = add(
        &db,
        NewJob::new("noop", json!({}))
            .exclusion_key("room:1")
            .run_at(later),
    )
    .await;
    let lane = rcjobs_queue::lane_info(&db.pool, "room:1").await.unwrap();
    assert_eq!(lane.head.map(|h| h.0), Some(a));
    assert_eq!(lane.blocked, 2);

    run_now(&db.pool, c).await.unwrap();
    let lane = rcjobs_queue::lane_info(&db.pool, "room:1").await.unwrap();
    assert_eq!(lane.head.map(|h| h.0), Some(c), "c goes first");
    let got = claim_due(&db).await;
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![c]);
    // the running head is never displaced
    assert!(matches!(
        run_now(&db.pool, c).await,
        Err(QueueError::Conflict(_))
    ));
    run_now(&db.pool, b).await.unwrap();
    assert!(claim_due(&db).await.is_empty());
    rcjobs_queue::lease::complete(&db.pool, &[(c, got[0].token)])
        .await
        .unwrap();
    let next = claim_due(&db).await;
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b]);
}

#[tokio::test]
async fn reschedule_and_delete_keep_counts_and_lanes_right() {
    let db = db().await;
    let a = add(&db, NewJob::new("noop", json!({})).exclusion_key("room:2")).await;
    let b = add(&db, NewJob::new("noop", json!({})).exclusion_key("room:2")).await;
    let far = Utc::now() + ChronoDuration::days(1);
    reschedule(&db.pool, a, far).await.unwrap();
    // a is due later now: b heads the lane
    let got = claim_due(&db).await;
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b]);
    assert!(matches!(
        reschedule(&db.pool, a, chrono::DateTime::<Utc>::MAX_UTC).await,
        Err(QueueError::Rejected(_))
    ));
    assert!(matches!(
        delete_job(&db.pool, b).await,
        Err(QueueError::Conflict(_))
    ));
    delete_job(&db.pool, a).await.unwrap();
    assert!(matches!(
        delete_job(&db.pool, a).await,
        Err(QueueError::NotFound(_))
    ));
    rcjobs_queue::stats::compact_stats(&db.pool).await.unwrap();
    let s = stats(&db.pool).await.unwrap();
    assert_eq!(s.total(JobState::Ready) + s.total(JobState::Blocked), 0);
    assert_eq!(s.total(JobState::Running), 1);
}

#[tokio::test]
async fn bulk_actions_on_a_payload_and_error_filter() {
    let db = db().await;
    let mut by_cmid = Vec::new();
    for cmid in [41, 42, 42, 43] {
        by_cmid.push(
            add(
                &db,
                NewJob::new("course", json!({"course_id": 1, "cmid": cmid})),
            )
            .await,
        );
    }
    let f = JobFilter {
        payload: Some(rcjobs_queue::parse_payload_filter("cmid=42").unwrap()),
        ..Default::default()
    };
    let listed = list_jobs(&db.pool, &f).await.unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![by_cmid[2], by_cmid[1]]
    );
    let ids = bulk_targets(&db.pool, BulkAction::Cancel, &f, 1000)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let r = bulk_apply(&db.pool, BulkAction::Cancel, &ids)
        .await
        .unwrap();
    assert_eq!((r.done, r.skipped), (2, 0));
    assert_eq!(count_state(&db, "ready").await, 2);

    // dead jobs with an error text: retried by filter, then deleted by filter
    sqlx::query("UPDATE rcjobs.job SET last_error = 'chat timeout after 30s' WHERE id = $1")
        .bind(by_cmid[0])
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("SELECT rcjobs.finish_jobs(ARRAY[$1::bigint], ARRAY['dead'])")
        .bind(by_cmid[0])
        .execute(&db.pool)
        .await
        .unwrap();
    let dead = JobFilter {
        error_like: Some("TIMEOUT".into()),
        ..Default::default()
    };
    assert!(bulk_targets(
        &db.pool,
        BulkAction::Cancel,
        &JobFilter {
            state: Some(JobState::Dead),
            ..Default::default()
        },
        10
    )
    .await
    .is_err());
    let del = bulk_targets(&db.pool, BulkAction::Delete, &dead, 10)
        .await
        .unwrap();
    assert_eq!(del, vec![by_cmid[0]]);
    let r = bulk_apply(&db.pool, BulkAction::Delete, &del)
        .await
        .unwrap();
    assert_eq!(r.done, 1);
    assert!(rcjobs_queue::get_job(&db.pool, by_cmid[0])
        .await
        .unwrap()
        .is_none());
    let since_future = JobFilter {
        since: Some(Utc::now() + ChronoDuration::minutes(1)),
        ..Default::default()
    };
    assert!(list_jobs(&db.pool, &since_future).await.unwrap().is_empty());
}

#[tokio::test]
async fn capped_stats_bound_the_scheduled_count_and_say_so() {
    let db = db().await;
    let later = Utc::now() + ChronoDuration::hours(1);
    for i in 0..5 {
        add(&db, NewJob::new("noop", json!({})).run_at(later)).await;
        add(
            &db,
            NewJob::new("noop", json!({}))
                .exclusion_key(format!("room:{}", i % 2))
                .run_at(later),
        )
        .await;
    }
    add(&db, NewJob::new("noop", json!({}))).await;
    let full = stats(&db.pool).await.unwrap();
    let (same, capped) = rcjobs_queue::stats::stats_capped(&db.pool, Some(100))
        .await
        .unwrap();
    assert!(!capped);
    assert_eq!(same.scheduled, full.scheduled);
    assert_eq!(full.scheduled_total(), 10);
    assert_eq!(full.due_total(), 1);
    let (low, capped) = rcjobs_queue::stats::stats_capped(&db.pool, Some(3))
        .await
        .unwrap();
    assert!(capped);
    assert!(low.scheduled_total() >= 3 && low.scheduled_total() < 10);
    assert!(low.due_total() >= 1);
    assert_eq!(
        rcjobs_queue::stats::counts(&db.pool).await.unwrap(),
        full.counts
    );
}
