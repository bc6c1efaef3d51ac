//! The shared rate limiter against a real database: two gates (two replicas) share one
//! budget per route, and a pause set by one is honoured by the other.

#![allow(clippy::unwrap_used)]

use rcjobs_chat::RequestGate;
use rcjobs_testkit::TestDb;
use rcjobs_worker::{PgRequestGate, RateLimitConfig, RouteLimit};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cfg(calls: u32) -> RateLimitConfig {
    RateLimitConfig {
        per_route: [("groups.kick".to_string(), RouteLimit { calls, per_secs: 1 })].into(),
        margin_ms: 50,
        pause_refresh_ms: 20,
        ..RateLimitConfig::default()
    }
}

#[tokio::test]
async fn replicas_share_one_budget_per_route() {
    let db = TestDb::new().await;
    rcjobs_worker::migrate(&db.pool).await.unwrap();
    let a = Arc::new(PgRequestGate::new(db.pool.clone(), cfg(4)));
    let b = Arc::new(PgRequestGate::new(db.pool.clone(), cfg(4)));
    let start = Instant::now();
    let mut grants = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let g = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            g.acquire("groups.kick").await;
            Instant::now()
        }));
    }
    for t in tasks {
        grants.push(t.await.unwrap().duration_since(start));
    }
    grants.sort();
    // 12 calls at 4 per window: the 9th cannot come before two full windows have passed.
    assert!(grants[8] >= Duration::from_millis(2000), "{grants:?}");
    // Fixed windows like the server's: the window opens with its first call, so call
    // 4k+1 comes at least k windows after the first.
    for k in 1..3 {
        let gap = grants[4 * k] - grants[0];
        assert!(
            gap >= Duration::from_millis(950 * k as u64),
            "window {k} opened early: {grants:?}"
        );
    }
    // Another route is not limited by this one.
    let t = Instant::now();
    a.acquire("groups.invite").await;
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn a_pause_is_honoured_by_every_replica() {
    let db = TestDb::new().await;
    rcjobs_worker::migrate(&db.pool).await.unwrap();
    let a = PgRequestGate::new(
        db.pool.clone(),
        RateLimitConfig {
            pause_refresh_ms: 10,
            ..RateLimitConfig::default()
        },
    );
    let b = PgRequestGate::new(
        db.pool.clone(),
        RateLimitConfig {
            pause_refresh_ms: 10,
            ..RateLimitConfig::default()
        },
    );
    b.acquire("groups.invite").await; // unbudgeted route: free
    let until = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    a.pause("groups.invite", until).await;
    tokio::time::sleep(Duration::from_millis(30)).await; // past b's pause cache
    let t = Instant::now();
    b.acquire("groups.invite").await;
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "replica b did not wait: {:?}",
        t.elapsed()
    );
    assert!(chrono::Utc::now() >= until);
}
