//! The REST rate limiter (3 calls per 2 s here) against an account without
//! `api-bypass-rate-limit`: the client waits for the reset instead of hammering, and
//! hands long waits back as `RateLimited` so a job can snooze.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::*;
use rcjobs_chat::{ChatError, RequestGate};
use rcjobs_rocketchat::{ErrorClass, RocketChatClient, RocketChatError};
use rcjobs_sim::{RateLimit, SimConfig, SimHandle};

const WINDOW: Duration = Duration::from_secs(2);

async fn limited_sim() -> SimHandle {
    let mut cfg = SimConfig {
        rate_limit: Some(RateLimit {
            calls: 3,
            window: WINDOW,
        }),
        ..SimConfig::default()
    };
    cfg.seed.bot.roles = vec!["user".into()]; // no bypass
    sim(cfg).await
}

#[tokio::test]
async fn one_client_spaces_its_calls_without_any_429() {
    let sim = limited_sim().await;
    let rec = Recorder::new();
    let client = RocketChatClient::builder(config(&sim))
        .observer(rec.clone())
        .build()
        .unwrap();
    let started = Instant::now();
    for _ in 0..7 {
        client.users_info_by_username("rcjobs.bot").await.unwrap();
    }
    let elapsed = started.elapsed();
    // 3 + 3 + 1 calls: two full windows waited out.
    assert!(
        elapsed >= 2 * WINDOW - Duration::from_millis(100),
        "{elapsed:?}"
    );
    assert!(elapsed < 3 * WINDOW + Duration::from_secs(1), "{elapsed:?}");
    let snap = sim.snapshot();
    assert_eq!(
        snap.rate_limited, 0,
        "the client read X-RateLimit-Remaining: 0 and waited"
    );
    assert_eq!(snap.count("GET users.info"), 7);
    assert_eq!(rec.waits.lock().unwrap().len(), 2);
    assert_eq!(rec.statuses("users.info"), vec![200; 7]);
}

#[tokio::test]
async fn a_429_is_waited_out_until_the_reset_then_retried_once() {
    let sim = limited_sim().await;
    // Another replica exhausts the window for the same IP and route.
    let other = client(&sim);
    for _ in 0..3 {
        other.users_info_by_username("rcjobs.bot").await.unwrap();
    }
    let rec = Recorder::new();
    let client = RocketChatClient::builder(config(&sim))
        .observer(rec.clone())
        .build()
        .unwrap();
    let started = Instant::now();
    let user = client.users_info_by_username("rcjobs.bot").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(user.username.as_deref(), Some("rcjobs.bot"));
    assert_eq!(rec.statuses("users.info"), vec![429, 200]);
    // Exactly one 429: the retry went out after the reset, not before.
    assert_eq!(sim.snapshot().rate_limited, 1);
    assert!(
        elapsed >= WINDOW - Duration::from_millis(300),
        "{elapsed:?}"
    );
    let waits = rec.waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 1);
    assert!(waits[0].1 <= WINDOW, "{waits:?}");
}

/// Records what the client reports to a shared gate.
#[derive(Default)]
struct PauseLog(Mutex<Vec<(String, DateTime<Utc>)>>);

#[async_trait]
impl RequestGate for PauseLog {
    async fn acquire(&self, _route: &str) {}
    async fn pause(&self, route: &str, until: DateTime<Utc>) {
        self.0.lock().unwrap().push((route.to_owned(), until));
    }
}

#[tokio::test]
async fn long_waits_come_back_as_rate_limited_with_the_reset_time() {
    let sim = limited_sim().await;
    let gate = Arc::new(PauseLog::default());
    let mut cfg = config(&sim);
    cfg.rate_limit_max_wait = Duration::from_millis(200);
    let client = RocketChatClient::builder(cfg.clone())
        .gate(gate.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        client.users_info_by_username("rcjobs.bot").await.unwrap();
    }
    // The window is known to be exhausted: fail fast without a request.
    let err = client
        .users_info_by_username("rcjobs.bot")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::RateLimited);
    let retry_at = err.retry_at().unwrap();
    let now = Utc::now();
    assert!(retry_at > now && retry_at <= now + WINDOW, "{retry_at}");
    assert_eq!(sim.snapshot().count("GET users.info"), 3);
    assert_eq!(sim.snapshot().rate_limited, 0);
    let paused = gate.0.lock().unwrap().clone();
    assert_eq!(paused, vec![("users.info".to_owned(), retry_at)]);

    // A client that did not see the window gets the 429 and returns it.
    let fresh = RocketChatClient::new(cfg).unwrap();
    let err = fresh
        .users_info_by_username("rcjobs.bot")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RocketChatError::RateLimited { .. }),
        "{err:?}"
    );
    assert_eq!(sim.snapshot().rate_limited, 1);
    let header_reset = err.retry_at().unwrap();
    assert!(
        (header_reset - retry_at).num_milliseconds().abs() < 50,
        "{header_reset} vs {retry_at}"
    );
    let chat: ChatError = err.into();
    assert_eq!(rcjobs_chat::retry_after(&chat), Some(header_reset));

    // After the reset both clients work again.
    tokio::time::sleep(crate::until(header_reset)).await;
    fresh.users_info_by_username("rcjobs.bot").await.unwrap();
    client.users_info_by_username("rcjobs.bot").await.unwrap();
}

fn until(at: DateTime<Utc>) -> Duration {
    (at - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(30)
}

#[tokio::test]
async fn bypass_accounts_are_not_limited() {
    let sim = sim(SimConfig {
        rate_limit: Some(RateLimit {
            calls: 3,
            window: Duration::from_secs(60),
        }),
        ..SimConfig::default() // bot role: bypass
    })
    .await;
    let client = client(&sim);
    let started = Instant::now();
    for _ in 0..10 {
        client.users_info_by_username("rcjobs.bot").await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(sim.snapshot().rate_limited, 0);
}
