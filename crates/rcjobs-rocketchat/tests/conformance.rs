//! The backend conformance suite against the Rocket.Chat client and the simulator: member
//! listings forced into pages of 100 and invites into batches of 40, so that a room past
//! every page size is read and written in several calls.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::*;
use rcjobs_chat::{ChatBackend, ChatError};
use rcjobs_chat_conformance::{conformance_tests, Fixture, RateLimitProbe};
use rcjobs_rocketchat::{RocketChatBackend, RocketChatClient};
use rcjobs_sim::{RateLimit, SeedUser, SimConfig, SimHandle};

/// groups.members pages when `count=0` is not used.
const MEMBERS_PAGE: usize = 100;
const INVITE_BATCH: usize = 40;
/// The limited simulator's window: 3 calls per 30 s.
const WINDOW: Duration = Duration::from_secs(30);

struct RocketChat {
    sim: SimHandle,
    backend: RocketChatBackend,
}

#[async_trait]
impl Fixture for RocketChat {
    type Backend = RocketChatBackend;

    fn backend(&self) -> &RocketChatBackend {
        &self.backend
    }

    async fn seed_users(&self, prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let name = self.unique(prefix);
                self.sim.add_user(SeedUser::new(&name));
                name
            })
            .collect()
    }

    fn largest_page(&self) -> usize {
        MEMBERS_PAGE.max(INVITE_BATCH)
    }

    /// A simulator limiting the bot (no `api-bypass-rate-limit`) to 3 calls per 30 s, and a
    /// client that hands every wait back instead of sleeping.
    async fn rate_limited_call(&self) -> RateLimitProbe {
        let mut cfg = SimConfig {
            rate_limit: Some(RateLimit {
                calls: 3,
                window: WINDOW,
            }),
            ..SimConfig::default()
        };
        cfg.seed.bot.roles = vec!["user".into()];
        let limited = sim(cfg).await;
        let mut config = config(&limited);
        config.rate_limit_max_wait = Duration::ZERO;
        let backend = RocketChatBackend::new(RocketChatClient::new(config).unwrap(), "rcjobs.bot");
        let start = Utc::now();
        for _ in 0..10 {
            match backend.find_user("rcjobs.bot").await {
                Ok(_) => continue,
                Err(error @ ChatError::RateLimited { .. }) => {
                    return RateLimitProbe {
                        error,
                        earliest: start,
                        latest: Utc::now()
                            + chrono::Duration::from_std(WINDOW).unwrap()
                            + chrono::Duration::seconds(1),
                    }
                }
                Err(e) => panic!("find_user on the limited simulator: {e}"),
            }
        }
        panic!("10 calls within a 3-per-30 s window without a rate limit");
    }
}

async fn rocketchat() -> RocketChat {
    let sim = admin_sim().await;
    let mut cfg = config(&sim);
    cfg.members_count_zero = Some(false);
    cfg.max_batch_invite = INVITE_BATCH;
    let backend = RocketChatBackend::connect(RocketChatClient::new(cfg).unwrap())
        .await
        .unwrap();
    RocketChat { sim, backend }
}

conformance_tests!(rocketchat);
