//! The REST rate limiter (rocketchat-api.md §4.1) and fault injection.
#![allow(clippy::unwrap_used)]

mod common;

use common::{seed, Creds, Sim};
use rcjobs_sim::{RateLimit, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn limited(calls: u32, secs: u64) -> SimConfig {
    SimConfig {
        seed: seed(&["user"]),
        rate_limit: Some(RateLimit {
            calls,
            window: Duration::from_secs(secs),
        }),
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn limiter_counts_per_route_method_and_ip_with_exact_headers_and_body() {
    let sim = Sim::with(limited(3, 60)).await;
    let bot = sim.bot.clone();
    let before = now_ms();
    let mut reset = 0;
    for remaining in [2, 1, 0] {
        let r = sim
            .get(&bot, "groups.info", json!({ "roomName": "none" }))
            .await;
        r.expect_error("error-room-not-found");
        assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(remaining.to_string())
        );
        reset = r
            .header("x-ratelimit-reset")
            .unwrap()
            .parse::<i64>()
            .unwrap();
        // An absolute epoch-milliseconds time about one window ahead.
        assert!(
            reset >= before + 59_000 && reset <= now_ms() + 60_000,
            "{reset}"
        );
    }
    let r = sim
        .get(&bot, "groups.info", json!({ "roomName": "none" }))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(
        r.header("x-ratelimit-reset")
            .unwrap()
            .parse::<i64>()
            .unwrap(),
        reset
    );
    assert!(r.header("retry-after").is_none());
    let wait = (reset - now_ms() + 999) / 1000;
    let text = r.error().to_string();
    let expected = |n: i64| {
        format!("Error, too many requests. Please slow down. You must wait {n} seconds before trying this endpoint again. [error-too-many-requests]")
    };
    assert!(
        text == expected(wait) || text == expected(wait + 1),
        "{text}"
    );
    assert_eq!(
        r.body.as_object().unwrap().len(),
        2,
        "no errorType: {:?}",
        r.body
    );

    // Other route, other method, other client IP: separate counters.
    let r = sim
        .get(&bot, "groups.members", json!({ "roomName": "none" }))
        .await;
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("2"));
    let r = sim
        .raw(Method::POST, "groups.info", Some(&bot), Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = sim
        .http
        .get(sim.url("groups.info"))
        .query(&[("roomName", "none")])
        .header("X-User-Id", &bot.user_id)
        .header("X-Auth-Token", &bot.token)
        .header("X-Real-IP", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "2");

    // Failed authentication is not counted (auth runs before the limiter).
    let nobody = Creds {
        user_id: bot.user_id.clone(),
        token: "bad".into(),
    };
    for _ in 0..5 {
        let r = sim
            .get(&nobody, "users.info", json!({ "username": "alice" }))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.header("x-ratelimit-limit").is_none());
    }
    let r = sim
        .get(&bot, "users.info", json!({ "username": "alice" }))
        .await;
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("2"));

    // Admins bypass: no headers, never limited.
    let boss = sim.login("boss", "boss-pw").await;
    for _ in 0..5 {
        let r = sim
            .get(&boss, "groups.info", json!({ "roomName": "none" }))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.header("x-ratelimit-limit").is_none());
    }
    assert_eq!(sim.handle.snapshot().rate_limited, 1);
}

#[tokio::test]
async fn bots_bypass_but_login_is_always_limited() {
    let mut config = limited(2, 60);
    config.seed = seed(&["bot"]);
    let sim = Sim::with(config).await;
    for _ in 0..5 {
        let r = sim
            .get(&sim.bot, "groups.info", json!({ "roomName": "none" }))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.header("x-ratelimit-limit").is_none());
    }
    // login has no user yet: limited per IP whoever logs in, good credentials or not.
    sim.login("boss", "boss-pw").await;
    let r = sim
        .raw(
            Method::POST,
            "login",
            None,
            Some(json!({ "user": "boss", "password": "wrong" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
    let r = sim
        .raw(
            Method::POST,
            "login",
            None,
            Some(json!({ "user": "boss", "password": "boss-pw" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_window_resets_at_the_announced_time() {
    let sim = Sim::with(limited(2, 60)).await;
    sim.handle.set_rate_limit(Some(RateLimit {
        calls: 2,
        window: Duration::from_millis(800),
    }));
    let call = || sim.get(&sim.bot, "users.info", json!({ "username": "alice" }));
    call().await.expect_ok();
    call().await.expect_ok();
    let blocked = call().await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let reset = blocked
        .header("x-ratelimit-reset")
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let wait = u64::try_from(reset - now_ms()).unwrap_or(0);
    assert!(wait <= 800);
    tokio::time::sleep(Duration::from_millis(wait + 20)).await;
    let r = call().await;
    r.expect_ok();
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("1"));
    // Turning the limiter off removes the headers.
    sim.handle.set_rate_limit(None);
    assert!(call().await.header("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn fail_rate_answers_500_before_or_after_applying() {
    let sim = Sim::with(SimConfig {
        seed: seed(&["bot"]),
        fail_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let mut applied = 0;
    for i in 0..20 {
        let name = format!("flaky-{i}");
        let r = sim
            .post(&sim.bot, "groups.create", json!({ "name": name }))
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            r.body,
            json!({ "success": false, "error": "Internal server error" })
        );
        if sim.handle.snapshot().room(&name).is_some() {
            applied += 1;
        }
    }
    assert!(applied > 0 && applied < 20, "applied {applied} of 20");
    // Inspection is never faulted; turning the rate down heals the API.
    let state = sim
        .http
        .get(format!("{}/_sim/state", sim.handle.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), StatusCode::OK);
    sim.handle.set_fail_rate(0.0);
    sim.get(&sim.bot, "users.info", json!({ "username": "alice" }))
        .await
        .expect_ok();
}

#[tokio::test]
async fn dropped_connections_and_slow_answers() {
    let sim = Sim::with(SimConfig {
        seed: seed(&["bot"]),
        drop_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let started = Instant::now();
    let err = sim
        .http
        .get(sim.url("users.info"))
        .query(&[("username", "alice")])
        .header("X-User-Id", &sim.bot.user_id)
        .header("X-Auth-Token", &sim.bot.token)
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    sim.handle.set_drop_rate(0.0);
    sim.get(&sim.bot, "users.info", json!({ "username": "alice" }))
        .await
        .expect_ok();

    // Slow answers go past the client's timeout, but the change is applied.
    sim.handle.set_timeout_rate(1.0);
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = quick
        .post(sim.url("groups.create"))
        .header("X-User-Id", &sim.bot.user_id)
        .header("X-Auth-Token", &sim.bot.token)
        .json(&json!({ "name": "slowpoke" }))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(sim.handle.snapshot().room("slowpoke").is_some());
    sim.handle.set_timeout_rate(0.0);
}

#[tokio::test]
async fn latency_delays_each_call_without_serialising_them() {
    let sim = Sim::with(SimConfig {
        seed: seed(&["bot"]),
        latency: Duration::from_millis(250),
        ..SimConfig::default()
    })
    .await;
    let started = Instant::now();
    let calls = (0..40).map(|_| sim.get(&sim.bot, "users.info", json!({ "username": "alice" })));
    for r in futures::future::join_all(calls).await {
        r.expect_ok();
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250));
    // 40 serialised calls would take 10 s.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}
