//! Counters match the tables; oldest ready age; workers alive; admin listing and pruning.
#![allow(clippy::unwrap_used)]

mod common;

use common::{handler, quick_worker, spawn};
use rcjobs_queue::lease::{self, Settle};
use rcjobs_queue::{
    enqueue, enqueue_many, list_jobs, stats, JobFilter, JobState, NewJob, QueueError,
};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// The counters (with uncompacted deltas) equal a full count of both tables.
async fn assert_counters_match(db: &rcjobs_testkit::TestDb, when: &str) {
    let s = stats(&db.pool).await.unwrap();
    let mut got: Vec<(String, String, String, i64)> = s
        .counts
        .iter()
        .map(|c| {
            (
                c.queue.clone(),
                c.kind.clone(),
                c.state.to_string(),
                c.count,
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, truth(db).await, "counters after {when}");
}

async fn truth(db: &rcjobs_testkit::TestDb) -> Vec<(String, String, String, i64)> {
    sqlx::query_as(
        "SELECT queue, kind, state, count(*) FROM (SELECT queue, kind, state FROM rcjobs.job
         UNION ALL SELECT queue, kind, state FROM rcjobs.job_history) x GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn counters_follow_every_transition() {
    let db = common::db().await;
    enqueue_many(
        &db.pool,
        &(0..50)
            .map(|i| NewJob::new("noop", json!({"i": i})))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    enqueue(
        &db.pool,
        &NewJob::new("course", json!({"course_id": 1})).queue("q2"),
    )
    .await
    .unwrap();
    let b = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({}))
            .exclusion_key("x")
            .queue("q3"),
    )
    .await
    .unwrap();
    enqueue(
        &db.pool,
        &NewJob::new("noop", json!({}))
            .exclusion_key("x")
            .queue("q3"),
    )
    .await
    .unwrap();
    let got = lease::claim(
        &db.pool,
        "default",
        20,
        Duration::from_secs(30),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    lease::complete(
        &db.pool,
        &got[..10]
            .iter()
            .map(|j| (j.id, j.token))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    lease::settle(
        &db.pool,
        &[(
            got[10].id,
            got[10].token,
            Settle::Dead { error: "x".into() },
        )],
    )
    .await
    .unwrap();
    lease::settle(&db.pool, &[(got[11].id, got[11].token, Settle::Release)])
        .await
        .unwrap();
    rcjobs_queue::cancel_job(&db.pool, b.id).await.unwrap();
    rcjobs_queue::retry_all_dead(&db.pool).await.unwrap();

    assert_counters_match(&db, "every transition").await;
    let s = stats(&db.pool).await.unwrap();
    assert_eq!(s.total(JobState::Completed), 10);
    assert_eq!(s.total(JobState::Dead), 0);
    assert_eq!(s.total(JobState::Cancelled), 1);
    // compaction keeps the same totals
    rcjobs_queue::stats::compact_stats(&db.pool).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.stat_delta")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let s2 = stats(&db.pool).await.unwrap();
    assert_eq!(s.counts, s2.counts);
}

#[tokio::test]
async fn oldest_ready_age_and_workers_alive() {
    let db = common::db().await;
    assert_eq!(stats(&db.pool).await.unwrap().oldest_ready_age_seconds, 0.0);
    enqueue(
        &db.pool,
        &NewJob::new("noop", json!({})).run_at(chrono::Utc::now() - chrono::Duration::seconds(90)),
    )
    .await
    .unwrap();
    let s = stats(&db.pool).await.unwrap();
    assert!(
        (89.0..200.0).contains(&s.oldest_ready_age_seconds),
        "{}",
        s.oldest_ready_age_seconds
    );
    assert!(s.workers.is_empty());
    let w = quick_worker(&db)
        .queues(["elsewhere"])
        .register("noop", handler(|_| async { Ok(()) }))
        .build()
        .unwrap();
    let id = w.id();
    let running = spawn(w);
    let s = rcjobs_testkit::wait_for("worker row", Duration::from_secs(10), || async {
        let s = stats(&db.pool).await.unwrap();
        (!s.workers.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(s.workers[0].id, id);
    assert_eq!(s.workers[0].pid, std::process::id() as i32);
    running.shutdown().await;
    assert!(stats(&db.pool).await.unwrap().workers.is_empty());
}

#[tokio::test]
async fn admin_list_cancel_and_prune() {
    let db = common::db().await;
    let ids = enqueue_many(
        &db.pool,
        &(0..5)
            .map(|_| NewJob::new("noop", json!({})))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    enqueue(&db.pool, &NewJob::new("course", json!({"course_id": 2})))
        .await
        .unwrap();
    let got = lease::claim(
        &db.pool,
        "default",
        2,
        Duration::from_secs(30),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    lease::complete(&db.pool, &[(got[0].id, got[0].token)])
        .await
        .unwrap();
    let running = got[1].id;
    let all = list_jobs(&db.pool, &JobFilter::default()).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let c = list_jobs(
        &db.pool,
        &JobFilter {
            kind: Some("course".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(c.len(), 1);
    let done = list_jobs(
        &db.pool,
        &JobFilter {
            state: Some(JobState::Completed),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        done.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![got[0].id]
    );
    let lim = list_jobs(
        &db.pool,
        &JobFilter {
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(lim.len(), 2);

    assert!(matches!(
        rcjobs_queue::cancel_job(&db.pool, running).await,
        Err(QueueError::Conflict(_))
    ));
    assert!(matches!(
        rcjobs_queue::cancel_job(&db.pool, got[0].id).await,
        Err(QueueError::Conflict(_))
    ));
    assert!(matches!(
        rcjobs_queue::cancel_job(&db.pool, 999_999).await,
        Err(QueueError::NotFound(999_999))
    ));
    let pending = ids
        .iter()
        .map(|e| e.id)
        .find(|id| *id != got[0].id && *id != running)
        .unwrap();
    rcjobs_queue::cancel_job(&db.pool, pending).await.unwrap();
    assert!(matches!(
        rcjobs_queue::retry_job(&db.pool, pending).await,
        Err(QueueError::Conflict(_))
    ));

    assert_eq!(
        rcjobs_queue::prune_history(
            &db.pool,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            100
        )
        .await
        .unwrap(),
        0
    );
    sqlx::query("UPDATE rcjobs.job_history SET finished_at = now() - interval '2 hours'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        rcjobs_queue::prune_history(
            &db.pool,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            100
        )
        .await
        .unwrap(),
        2
    );
    assert!(rcjobs_queue::get_job(&db.pool, got[0].id)
        .await
        .unwrap()
        .is_none());
    assert_counters_match(&db, "cancel and prune").await;
}

#[tokio::test]
async fn counters_follow_supersedes_sweeps_and_lanes() {
    let db = common::db().await;
    let w = Uuid::new_v4();
    // a running job whose retry meets a newer pending job with its dedup key: superseded
    enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"v": 1})).dedup_key("d"),
    )
    .await
    .unwrap();
    let first = lease::claim(&db.pool, "default", 1, Duration::from_secs(30), w)
        .await
        .unwrap();
    enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"v": 2})).dedup_key("d"),
    )
    .await
    .unwrap();
    lease::settle(
        &db.pool,
        &[(
            first[0].id,
            first[0].token,
            Settle::Retry {
                run_at: chrono::Utc::now(),
                error: "boom".into(),
            },
        )],
    )
    .await
    .unwrap();
    assert_counters_match(&db, "a superseded retry").await;
    // three jobs on one lane; the head's lease expires and the sweeper takes it back, then it
    // completes and the lane moves on
    for i in 0..3 {
        enqueue(
            &db.pool,
            &NewJob::new("noop", json!({"lane": i})).exclusion_key("lane"),
        )
        .await
        .unwrap();
    }
    let got = lease::claim(&db.pool, "default", 10, Duration::from_millis(1), w)
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "the pending dedup job and the lane head");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let swept = lease::sweep(&db.pool, 100).await.unwrap();
    assert_eq!(swept.requeued, 2);
    assert_counters_match(&db, "a sweep").await;
    let again = lease::claim(&db.pool, "default", 10, Duration::from_secs(30), w)
        .await
        .unwrap();
    lease::complete(
        &db.pool,
        &again.iter().map(|j| (j.id, j.token)).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    assert_counters_match(&db, "completions that advance a lane").await;
    // a dead job redriven while a newer pending job covers it: superseded from dead
    let dead = lease::claim(&db.pool, "default", 10, Duration::from_secs(30), w)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "the lane's second job");
    lease::settle(
        &db.pool,
        &[(
            dead[0].id,
            dead[0].token,
            Settle::Dead { error: "x".into() },
        )],
    )
    .await
    .unwrap();
    rcjobs_queue::retry_all_dead(&db.pool).await.unwrap();
    assert_counters_match(&db, "a redrive").await;
    rcjobs_queue::stats::compact_stats(&db.pool).await.unwrap();
    assert_counters_match(&db, "compaction").await;
}

/// The gauge's skip scan of the claim index finds the oldest ready job whichever queue and
/// priority group holds it, and ignores running and blocked jobs and future ones.
#[tokio::test]
async fn oldest_ready_age_spans_queues_and_priorities() {
    let db = common::db().await;
    let ago = |s: i64| chrono::Utc::now() - chrono::Duration::seconds(s);
    let at = |q: &str, p: i16, t| {
        NewJob::new("noop", json!({}))
            .queue(q)
            .priority(p)
            .run_at(t)
    };
    for j in [
        at("alpha", 0, ago(10)),
        at("alpha", 5, ago(20)),
        at("beta", -3, ago(30)),
        at("beta", 9, ago(400)),
        at("gamma", 0, ago(-3600)),
    ] {
        enqueue(&db.pool, &j).await.unwrap();
    }
    let age = || async { stats(&db.pool).await.unwrap().oldest_ready_age_seconds };
    let a = age().await;
    assert!(
        (399.0..500.0).contains(&a),
        "oldest is beta/9 at 400 s: {a}"
    );

    // once the oldest runs, the next group's oldest counts
    let claimed = lease::claim(
        &db.pool,
        "beta",
        10,
        Duration::from_secs(30),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 2);
    let a = age().await;
    assert!(
        (19.0..100.0).contains(&a),
        "oldest ready is now alpha/5 at 20 s: {a}"
    );

    // a job blocked behind its exclusion lane head is not ready
    enqueue(&db.pool, &at("delta", 0, ago(1000)).exclusion_key("lane"))
        .await
        .unwrap();
    enqueue(&db.pool, &at("delta", 1, ago(500)).exclusion_key("lane"))
        .await
        .unwrap();
    let a = age().await;
    assert!(
        (999.0..1100.0).contains(&a),
        "the lane head counts, its follower does not: {a}"
    );
}

#[tokio::test]
async fn scheduled_jobs_are_told_apart_from_due_ones() {
    let db = common::db().await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let jobs = [
        NewJob::new("noop", json!({})),
        NewJob::new("noop", json!({})).queue("q2").priority(5),
        NewJob::new("noop", json!({})).run_at(later),
        NewJob::new("noop", json!({}))
            .queue("q2")
            .priority(5)
            .run_at(later),
        NewJob::new("noop", json!({})).queue("q3").run_at(later),
        // a lane: a due head and a follower scheduled later (blocked)
        NewJob::new("noop", json!({})).exclusion_key("room:1"),
        NewJob::new("noop", json!({}))
            .exclusion_key("room:1")
            .run_at(later),
    ];
    for j in &jobs {
        enqueue(&db.pool, j).await.unwrap();
    }
    assert_eq!(rcjobs_queue::scheduled_jobs(&db.pool).await.unwrap(), 4);
    let s = stats(&db.pool).await.unwrap();
    let pending = s.total(JobState::Ready) + s.total(JobState::Blocked);
    assert_eq!(pending, 7);
    assert_eq!(s.scheduled_total(), 4);
    assert_eq!(
        s.due_total(),
        3,
        "due and ready: two plain jobs and the lane's head"
    );
    assert_eq!(s.scheduled_in("default", "noop", JobState::Blocked), 1);
    assert_eq!(s.scheduled_in("q3", "noop", JobState::Ready), 1);
    let queues: Vec<&str> = s
        .oldest_ready_age_by_queue
        .iter()
        .map(|q| q.0.as_str())
        .collect();
    assert_eq!(queues, ["default", "q2"], "q3 has nothing due");
}
