//! Exclusion keys: one running job per key, FIFO per key, through retries and crashes.
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
        // FIFO by enqueue (id) order
        let mut expect: Vec<(i64, i64)> = all
            .iter()
            .filter(|a| a.0 == k)
            .map(|a| (a.2, a.1))
            .collect();
        expect.sort();
        let want: Vec<i64> = expect.into_iter().map(|e| e.1).collect();
        assert_eq!(order[&format!("course:{k}")], want);
    }
    let lanes: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.lane")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(lanes, 0, "lanes are dropped when their last job finishes");
}

#[tokio::test]
async fn the_lane_holds_through_retries() {
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
    assert_eq!(keyed, ["first#1", "first#2", "first#3", "second#1"]);
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
    let a = enqueue(
        &db.pool,
        &NewJob::new("noop", json!({}))
            .exclusion_key("k")
            .run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await
    .unwrap()
    .id;
    let b = enqueue(&db.pool, &NewJob::new("noop", json!({})).exclusion_key("k"))
        .await
        .unwrap()
        .id;
    let st: String = sqlx::query_scalar("SELECT state FROM rcjobs.job WHERE id = $1")
        .bind(b)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(st, "blocked", "FIFO: the delayed head holds the lane");
    rcjobs_queue::cancel_job(&db.pool, a).await.unwrap();
    let st: String = sqlx::query_scalar("SELECT state FROM rcjobs.job WHERE id = $1")
        .bind(b)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(st, "ready");
}
