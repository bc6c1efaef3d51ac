//! Exclusion keys: one running job per key, in the order they became due (run_at, then id),
//! through retries and crashes; a job not running (delayed, backing off) never holds up a due
//! one (decision 0006).
#![allow(clippy::unwrap_used)]

mod common;

use common::{finished, handler, quick_worker, spawn};
use rcjobs_queue::lease;
use rcjobs_queue::{enqueue, JobError, NewJob};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

#[derive(Default)]
struct Tracker {
    running: HashMap<String, usize>,
    order: HashMap<String, Vec<i64>>,
    violations: usize,
}

#[tokio::test]
async fn one_running_per_key_in_fifo_order_under_concurrent_enqueue() {
    let db = common::db().await;
    let t = Arc::new(Mutex::new(Tracker::default()));
    let tt = t.clone();
    let w = quick_worker(&db)
        .concurrency(16)
        .register(
            "noop",
            handler(move |ctx| {
                let t = tt.clone();
                async move {
                    let key = ctx.exclusion_key.clone().unwrap();
                    {
                        let mut g = t.lock().unwrap();
                        let r = g.running.entry(key.clone()).or_default();
                        *r += 1;
                        if *r > 1 {
                            g.violations += 1;
                        }
                        g.order
                            .entry(key.clone())
                            .or_default()
                            .push(ctx.payload["seq"].as_i64().unwrap());
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    *t.lock().unwrap().running.get_mut(&key).unwrap() -= 1;
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let running = spawn(w);
    // 4 keys, 4 producers per key enqueueing concurrently while the worker runs
    let mut tasks = Vec::new();
    for p in 0..4 {
        for k in 0..4 {
            let pool = db.pool.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..15 {
                    let seq = p * 1000 + i;
                    let e = enqueue(
                        &pool,
                        &NewJob::new("noop", json!({"seq": seq}))
                            .exclusion_key(format!("course:{k}")),
                    )
                    .await
                    .unwrap();
                    ids.push((k, seq, e.id));
                }
                ids
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    for (_, _, id) in &all {
        assert_eq!(finished(&db, *id).await, "completed");
    }
    running.shutdown().await;
    let (violations, order) = {
        let g = t.lock().unwrap();
        (g.violations, g.order.clone())
    };
    assert_eq!(violations, 0, "two jobs of one key ran at once");
    for k in 0..4 {
        // FIFO in the order the jobs became due (run_at: the enqueuing transaction's start),
        // ties by enqueue (id) order
        let mut expect = Vec::new();
        for (_, seq, id) in all.iter().filter(|a| a.0 == k) {
            let run_at: chrono::DateTime<chrono::Utc> =
                sqlx::query_scalar("SELECT run_at FROM rcjobs.job_history WHERE id = $1")
                    .bind(id)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            expect.push((run_at, *id, *seq));
        }
        expect.sort();
        let want: Vec<i64> = expect.into_iter().map(|e| e.2).collect();
        assert_eq!(order[&format!("course:{k}")], want);
    }
    let lanes: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.lane")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(lanes, 0, "lanes are dropped when their last job finishes");
}

#[tokio::test]
async fn a_job_in_backoff_lets_the_next_due_job_of_its_key_run() {
    let db = common::db().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let w = quick_worker(&db)
        .concurrency(4)
        .register(
            "noop",
            handler(move |ctx| {
                let l = l.clone();
                async move {
                    let name = ctx.payload["name"].as_str().unwrap().to_string();
                    l.lock().unwrap().push(format!("{name}#{}", ctx.attempt));
                    if name == "first" && ctx.attempt < 3 {
                        return Err(JobError::retryable("try later"));
                    }
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let a = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"name": "first"})).exclusion_key("k"),
    )
    .await
    .unwrap()
    .id;
    let b = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"name": "second"})).exclusion_key("k"),
    )
    .await
    .unwrap()
    .id;
    let c = enqueue(&db.pool, &NewJob::new("noop", json!({"name": "free"})))
        .await
        .unwrap()
        .id;
    let running = spawn(w);
    assert_eq!(finished(&db, b).await, "completed");
    assert_eq!(finished(&db, a).await, "completed");
    assert_eq!(finished(&db, c).await, "completed");
    running.shutdown().await;
    let log = log.lock().unwrap().clone();
    let keyed: Vec<&str> = log
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !s.starts_with("free"))
        .collect();
    // while `first` backs off, `second` (due since it was enqueued) takes the lane
    assert_eq!(keyed, ["first#1", "second#1", "first#2", "first#3"]);
}

#[tokio::test]
async fn the_lane_holds_through_a_crash_and_a_dead_head_releases_it() {
    let db = common::db().await;
    let a = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"name": "head"})).exclusion_key("k"),
    )
    .await
    .unwrap()
    .id;
    let b = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"name": "next"})).exclusion_key("k"),
    )
    .await
    .unwrap()
    .id;
    // the head is claimed by a worker that dies
    let got = lease::claim(
        &db.pool,
        "default",
        10,
        Duration::from_millis(300),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![a],
        "the blocked job is not claimable"
    );
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let w = quick_worker(&db)
        .concurrency(4)
        .register(
            "noop",
            handler(move |ctx| {
                let l = l.clone();
                async move {
                    l.lock().unwrap().push((ctx.id, ctx.attempt));
                    if ctx.payload["fail"] == true {
                        return Err(JobError::permanent("nope"));
                    }
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let running = spawn(w);
    assert_eq!(finished(&db, a).await, "completed");
    assert_eq!(finished(&db, b).await, "completed");
    assert_eq!(*log.lock().unwrap(), vec![(a, 2), (b, 1)]);

    // a head that dies permanently hands the lane on
    let d = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"fail": true})).exclusion_key("k2"),
    )
    .await
    .unwrap()
    .id;
    let e = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({})).exclusion_key("k2"),
    )
    .await
    .unwrap()
    .id;
    assert_eq!(finished(&db, d).await, "dead");
    assert_eq!(finished(&db, e).await, "completed");
    running.shutdown().await;
}

#[tokio::test]
async fn cancelling_the_head_promotes_the_next_job() {
    let db = common::db().await;
    let a = enqueue(&db.pool, &NewJob::new("noop", json!({})).exclusion_key("k"))
        .await
        .unwrap()
        .id;
    let b = enqueue(&db.pool, &NewJob::new("noop", json!({})).exclusion_key("k"))
        .await
        .unwrap()
        .id;
    assert_eq!(state(&db, b).await, "blocked", "FIFO among due jobs");
    rcjobs_queue::cancel_job(&db.pool, a).await.unwrap();
    assert_eq!(state(&db, b).await, "ready");
}

async fn state(db: &rcjobs_testkit::TestDb, id: i64) -> String {
    sqlx::query_scalar("SELECT state FROM rcjobs.job WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn run_at(db: &rcjobs_testkit::TestDb, id: i64) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT run_at FROM rcjobs.job WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn hours(h: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::hours(h)
}

#[tokio::test]
async fn a_job_scheduled_later_never_blocks_a_due_one() {
    let db = common::db().await;
    // the periodic reconcile's shape: a sync of the room an hour ahead
    let later = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({"periodic": true}))
            .exclusion_key("room:1")
            .run_at(hours(1)),
    )
    .await
    .unwrap()
    .id;
    assert_eq!(state(&db, later).await, "ready");
    let now = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({})).exclusion_key("room:1"),
    )
    .await
    .unwrap()
    .id;
    assert_eq!(state(&db, now).await, "ready", "the due job takes the lane");
    assert_eq!(state(&db, later).await, "blocked");
    let got = common::claim_due(&db).await;
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![now]);
    // while it runs, another due job waits (one running per key) …
    let third = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({})).exclusion_key("room:1"),
    )
    .await
    .unwrap()
    .id;
    assert_eq!(
        state(&db, third).await,
        "blocked",
        "a running head is never displaced"
    );
    // … and runs next, before the one scheduled later
    lease::complete(&db.pool, &[(got[0].id, got[0].token)])
        .await
        .unwrap();
    assert_eq!(state(&db, third).await, "ready");
    assert_eq!(state(&db, later).await, "blocked");
    let got = common::claim_due(&db).await;
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![third]);
    lease::complete(&db.pool, &[(got[0].id, got[0].token)])
        .await
        .unwrap();
    // then the later one holds the lane again, still not due
    assert_eq!(state(&db, later).await, "ready");
    assert!(run_at(&db, later).await > hours(0));
    let ready: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.job WHERE state = 'ready'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(ready, 1);
}

#[tokio::test]
async fn a_due_duplicate_pulls_the_pending_one_forward() {
    let db = common::db().await;
    let job = || {
        NewJob::new("noop", json!({}))
            .dedup_key("sync:7")
            .exclusion_key("room:7")
    };
    let first = enqueue(&db.pool, &job().run_at(hours(1))).await.unwrap();
    let head = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({}))
            .exclusion_key("room:7")
            .run_at(hours(2)),
    )
    .await
    .unwrap()
    .id;
    // a later duplicate folds in and changes nothing
    let again = enqueue(&db.pool, &job().run_at(hours(3))).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.id, first.id);
    assert!(run_at(&db, first.id).await < hours(2));
    // a due one pulls it forward: the earlier run_at wins
    let due = enqueue(&db.pool, &job()).await.unwrap();
    assert!(due.deduplicated);
    assert_eq!(due.id, first.id);
    assert!(run_at(&db, first.id).await <= chrono::Utc::now());
    assert_eq!(state(&db, first.id).await, "ready");
    assert_eq!(state(&db, head).await, "blocked");
    let got = common::claim_due(&db).await;
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first.id]);

    // a blocked duplicate pulled forward takes the head from one due later
    let db = common::db().await;
    let head = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({}))
            .exclusion_key("room:7")
            .run_at(hours(1)),
    )
    .await
    .unwrap()
    .id;
    let dup = enqueue(&db.pool, &job().run_at(hours(2))).await.unwrap().id;
    assert_eq!(state(&db, dup).await, "blocked");
    assert_eq!(enqueue(&db.pool, &job()).await.unwrap().id, dup);
    assert_eq!(state(&db, dup).await, "ready");
    assert_eq!(state(&db, head).await, "blocked");
}

#[tokio::test]
async fn a_newer_job_supersedes_a_retry_waiting_in_backoff() {
    let db = common::db().await;
    let job = || {
        NewJob::new("noop", json!({}))
            .dedup_key("sync:9")
            .exclusion_key("room:9")
    };
    let old = enqueue(&db.pool, &job()).await.unwrap().id;
    let got = common::claim_due(&db).await;
    assert_eq!(got.len(), 1);
    lease::settle(
        &db.pool,
        &[(
            old,
            got[0].token,
            lease::Settle::Retry {
                run_at: hours(1),
                error: "chat server answered 500".into(),
            },
        )],
    )
    .await
    .unwrap();
    assert_eq!(state(&db, old).await, "ready");
    let new = enqueue(&db.pool, &job()).await.unwrap();
    assert!(
        !new.deduplicated,
        "a retry in backoff does not absorb a due job"
    );
    assert_ne!(new.id, old);
    let (st, by): (String, Option<i64>) =
        sqlx::query_as("SELECT state, superseded_by FROM rcjobs.job_history WHERE id = $1")
            .bind(old)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((st.as_str(), by), ("superseded", Some(new.id)));
    assert_eq!(state(&db, new.id).await, "ready");
    let lanes: Vec<i64> = sqlx::query_scalar("SELECT head_id FROM rcjobs.lane")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(lanes, vec![new.id]);
}
