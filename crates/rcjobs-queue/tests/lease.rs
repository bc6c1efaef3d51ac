//! Batched claims, fencing tokens, lease renewal, crash recovery, poison limit.
#![allow(clippy::unwrap_used)]

mod common;

use common::{finished, handler, quick_worker, spawn};
use rcjobs_queue::lease::{self, Settle};
use rcjobs_queue::{enqueue, enqueue_many, JobInfo, LeaseLoss, NewJob, QueueHooks};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn concurrent_batched_claims_never_overlap() {
    let db = common::db().await;
    let jobs: Vec<NewJob> = (0..2000).map(|_| NewJob::new("noop", json!({}))).collect();
    enqueue_many(&db.pool, &jobs).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            let me = Uuid::new_v4();
            let mut mine = Vec::new();
            loop {
                let got = lease::claim(&pool, "default", 150, Duration::from_secs(30), me)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                assert!(got.len() <= 150);
                let acks: Vec<(i64, i32)> = got.iter().map(|j| (j.id, j.token)).collect();
                let r = lease::complete(&pool, &acks).await.unwrap();
                assert_eq!(r.accepted.len(), got.len());
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = HashSet::new();
    let mut total = 0;
    for t in tasks {
        let ids = t.await.unwrap();
        total += ids.len();
        all.extend(ids);
    }
    assert_eq!(total, 2000);
    assert_eq!(all.len(), 2000, "no job claimed twice");
}

#[tokio::test]
async fn stale_tokens_are_rejected_everywhere() {
    let db = common::db().await;
    let id = enqueue(&db.pool, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let old = lease::claim(
        &db.pool,
        "default",
        10,
        Duration::from_millis(1),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    assert_eq!(old.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let swept = lease::sweep(&db.pool, 100).await.unwrap();
    assert_eq!((swept.expired, swept.requeued), (1, 1));
    let new = lease::claim(
        &db.pool,
        "default",
        10,
        Duration::from_secs(30),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    assert_eq!(new[0].id, id);
    assert_eq!(new[0].token, old[0].token + 1);
    assert_eq!(new[0].attempt, 2, "a crash redelivery counts as an attempt");

    // the stale holder cannot renew, complete or fail the job
    assert!(
        lease::renew(&db.pool, &[(id, old[0].token)], Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    let r = lease::complete(&db.pool, &[(id, old[0].token)])
        .await
        .unwrap();
    assert_eq!((r.accepted.len(), r.rejected.clone()), (0, vec![id]));
    let s = lease::settle(
        &db.pool,
        &[(
            id,
            old[0].token,
            Settle::Dead {
                error: "stale".into(),
            },
        )],
    )
    .await
    .unwrap();
    assert!(s.is_empty());
    let state: String = sqlx::query_scalar("SELECT state FROM rcjobs.job WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(state, "running");

    // the current holder can
    assert_eq!(
        lease::renew(&db.pool, &[(id, new[0].token)], Duration::from_secs(30))
            .await
            .unwrap(),
        vec![id]
    );
    let r = lease::complete(&db.pool, &[(id, new[0].token)])
        .await
        .unwrap();
    assert_eq!(r.accepted, vec![id]);
    assert_eq!(
        common::history_state(&db, id).await.as_deref(),
        Some("completed")
    );
}

#[tokio::test]
async fn crashed_workers_jobs_rerun_within_ttl_plus_sweep() {
    let db = common::db().await;
    let ids = enqueue_many(
        &db.pool,
        &(0..5)
            .map(|_| NewJob::new("noop", json!({})))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    // a "worker" claims and dies without a word
    let dead = lease::claim(
        &db.pool,
        "default",
        10,
        Duration::from_secs(1),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    assert_eq!(dead.len(), 5);
    let claimed_at = std::time::Instant::now();
    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = attempts.clone();
    let w = quick_worker(&db)
        .register(
            "noop",
            handler(move |ctx| {
                let a = a.clone();
                async move {
                    a.lock().unwrap().push(ctx.attempt);
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let running = spawn(w);
    for e in &ids {
        assert_eq!(finished(&db, e.id).await, "completed");
    }
    let took = claimed_at.elapsed();
    running.shutdown().await;
    assert!(
        took < Duration::from_secs(10),
        "re-run took {took:?} (TTL 1 s + sweep 0.2 s)"
    );
    assert_eq!(*attempts.lock().unwrap(), vec![2; 5]);
}

#[tokio::test]
async fn a_swept_job_keeps_its_place_ahead_of_a_backlog() {
    let db = common::db().await;
    let first = enqueue(&db.pool, &NewJob::new("noop", json!({"first": true})))
        .await
        .unwrap()
        .id;
    let got = lease::claim(
        &db.pool,
        "default",
        1,
        Duration::from_millis(1),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    assert_eq!(got[0].id, first);
    // a backlog that arrives while the job is (crashed) running
    enqueue_many(
        &db.pool,
        &(0..50)
            .map(|i| NewJob::new("noop", json!({"i": i})))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(lease::sweep(&db.pool, 100).await.unwrap().requeued, 1);
    let next = lease::claim(
        &db.pool,
        "default",
        1,
        Duration::from_secs(30),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    assert_eq!(
        next[0].id, first,
        "the redelivered job went behind jobs enqueued after it"
    );
    assert_eq!(next[0].attempt, 2);
}

#[tokio::test]
async fn crash_redeliveries_count_towards_the_poison_limit() {
    let db = common::db().await;
    let id = enqueue(&db.pool, &NewJob::new("noop", json!({})).max_attempts(2))
        .await
        .unwrap()
        .id;
    for round in 1..=2 {
        let got = lease::claim(
            &db.pool,
            "default",
            1,
            Duration::from_millis(1),
            Uuid::new_v4(),
        )
        .await
        .unwrap();
        assert_eq!(got[0].attempt, round);
        tokio::time::sleep(Duration::from_millis(20)).await;
        lease::sweep(&db.pool, 100).await.unwrap();
    }
    assert_eq!(
        common::history_state(&db, id).await.as_deref(),
        Some("dead")
    );
    let errors: serde_json::Value =
        sqlx::query_scalar("SELECT errors FROM rcjobs.job_history WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(errors.as_array().unwrap().len(), 2);
    assert_eq!(errors[0]["class"], "expire");
}

#[tokio::test]
async fn heartbeat_keeps_long_jobs_leased() {
    let db = common::db().await;
    let w = quick_worker(&db)
        .lease_ttl(Duration::from_millis(600))
        .sweep_interval(Duration::from_millis(100))
        .register(
            "noop",
            handler(|ctx| async move {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                assert!(!ctx.is_lease_lost());
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
    assert_eq!(finished(&db, id).await, "completed");
    running.shutdown().await;
    let attempt: i32 = sqlx::query_scalar("SELECT attempt FROM rcjobs.job_history WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(attempt, 1, "never swept while the heartbeat renewed it");
}

#[derive(Default)]
struct LossHooks {
    lost: AtomicUsize,
    stale: AtomicUsize,
}

impl QueueHooks for LossHooks {
    fn lease_lost(&self, _job: &JobInfo, why: LeaseLoss) {
        match why {
            LeaseLoss::Renewal => self.lost.fetch_add(1, Ordering::SeqCst),
            LeaseLoss::StaleAck => self.stale.fetch_add(1, Ordering::SeqCst),
        };
    }
}

#[tokio::test]
async fn a_taken_over_lease_is_reported_and_its_result_discarded() {
    let db = common::db().await;
    let hooks = Arc::new(LossHooks::default());
    let w = quick_worker(&db)
        .lease_ttl(Duration::from_millis(900))
        .maintenance(false)
        .hooks(hooks.clone())
        .register(
            "noop",
            handler(|ctx| async move {
                // wait until the worker notices, then try to finish anyway
                tokio::time::timeout(Duration::from_secs(20), ctx.lease_lost())
                    .await
                    .unwrap();
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
    // someone else takes the job over (as a sweep + re-claim would)
    sqlx::query("UPDATE rcjobs.job SET token = token + 1 WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    rcjobs_testkit::wait_for(
        "lease loss and stale ack to be reported",
        Duration::from_secs(20),
        || async {
            (hooks.lost.load(Ordering::SeqCst) == 1 && hooks.stale.load(Ordering::SeqCst) == 0)
                .then_some(())
        },
    )
    .await;
    running.shutdown().await;
    // the stale completion was not applied
    assert_eq!(common::history_state(&db, id).await, None);
    assert_eq!(common::count_state(&db, "running").await, 1);
}
