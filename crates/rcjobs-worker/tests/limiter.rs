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

/// A gate that records when each pause has been shared (the moment the first 429 is known
/// to the replica that got it), and wakes the test then.
struct Recording {
    inner: PgRequestGate,
    pauses: std::sync::Mutex<Vec<(i64, chrono::DateTime<chrono::Utc>)>>,
    paused: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl RequestGate for Recording {
    async fn acquire(&self, route: &str) {
        self.inner.acquire(route).await;
    }
    async fn pause(&self, route: &str, until: chrono::DateTime<chrono::Utc>) {
        self.inner.pause(route, until).await;
        let shared_at = chrono::Utc::now().timestamp_millis();
        self.pauses.lock().unwrap().push((shared_at, until));
        self.paused.notify_waiters();
    }
}

/// `GET /_sim/requests` over a bare HTTP/1.0 connection (the simulator's request log, with
/// timestamps; the typed snapshot only has counters).
async fn sim_requests(sim: &rcjobs_sim::SimHandle) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    s.write_all(b"GET /_sim/requests HTTP/1.0\r\nHost: sim\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

/// Two replicas (two clients, two gates, one database) with the production gate settings
/// against a server that limits the bot: replica A has several calls in flight when the
/// limit runs out; once A knows of the 429, neither A's further calls nor replica B's (which
/// checked the shared state moments before) may reach the server until the reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_leaves_any_replica_between_a_429_and_its_reset() {
    use rcjobs_rocketchat::{Auth, RocketChatClient, RocketChatConfig};
    let db = TestDb::new().await;
    rcjobs_worker::migrate(&db.pool).await.unwrap();
    let mut sim_cfg = rcjobs_sim::SimConfig {
        rate_limit: Some(rcjobs_sim::RateLimit {
            calls: 4,
            window: Duration::from_secs(2),
        }),
        // Calls stay in flight for a while, so A's burst overlaps its own 429.
        latency: Duration::from_millis(30),
        ..rcjobs_sim::SimConfig::default()
    };
    // The default `bot` role bypasses the limiter; a plain user is limited.
    sim_cfg.seed.bot.roles = vec!["user".into()];
    let sim = rcjobs_sim::spawn(sim_cfg).await.unwrap();
    let replica = || {
        let gate = Arc::new(Recording {
            inner: PgRequestGate::new(db.pool.clone(), RateLimitConfig::default()),
            pauses: std::sync::Mutex::new(Vec::new()),
            paused: tokio::sync::Notify::new(),
        });
        let cfg = RocketChatConfig::new(
            url::Url::parse(&sim.base_url()).unwrap(),
            Auth::Token {
                user_id: sim.bot_user_id().into(),
                token: sim.bot_token().into(),
            },
        );
        let client = RocketChatClient::builder(cfg)
            .gate(gate.clone())
            .build()
            .unwrap();
        (client, gate)
    };
    let (a, gate_a) = replica();
    let (b, gate_b) = replica();
    let user = "rcjobs.bot";
    // B has just looked at the shared state (any cache it keeps is fresh).
    b.users_info_by_username(user).await.unwrap();

    let calls = |c: &RocketChatClient, n: usize| {
        (0..n)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.users_info_by_username(user).await.is_ok() })
            })
            .collect::<Vec<_>>()
    };
    let a_paused = gate_a.paused.notified();
    // Six in flight at once with three calls left in the window: A meets the 429.
    let mut tasks = calls(&a, 6);
    tokio::time::timeout(Duration::from_secs(5), a_paused)
        .await
        .expect("replica A never saw a 429");
    // After A has the 429: more work on both replicas, several calls each in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    tasks.extend(calls(&b, 4));
    tasks.extend(calls(&a, 2));
    for t in tasks {
        let _ = t.await.unwrap();
    }

    let (shared_at, reset) = gate_a.pauses.lock().unwrap()[0];
    let reset = reset.timestamp_millis();
    let log = sim_requests(&sim).await;
    let arrivals: Vec<(i64, u64)> = log["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["endpoint"] == "users.info")
        .map(|r| {
            let at = r["at"].as_i64().unwrap();
            let ms = r["ms"].as_f64().unwrap() as i64;
            (at - ms, r["status"].as_u64().unwrap())
        })
        .collect();
    let first_429 = arrivals
        .iter()
        .filter(|(_, s)| *s == 429)
        .map(|(t, _)| *t)
        .min();
    assert!(
        first_429.is_some(),
        "the server never refused: {arrivals:?}"
    );
    // Requests that had left before A learnt of the 429 may arrive just after it; allow
    // for their transit, nothing more.
    let slack = 50;
    let leaked: Vec<_> = arrivals
        .iter()
        .filter(|(t, _)| *t > shared_at + slack && *t < reset)
        .collect();
    assert!(
        leaked.is_empty(),
        "{} request(s) reached the server after the 429 was shared at {shared_at} and before \
         the reset at {reset}: {leaked:?} (all: {arrivals:?}; B's pauses: {:?})",
        leaked.len(),
        gate_b.pauses.lock().unwrap()
    );
    // The calls held back did go out after the reset.
    assert!(
        arrivals.iter().filter(|(t, _)| *t >= reset).count() >= 4,
        "{arrivals:?}"
    );
}
