//! The chat server of a run: the in-process simulator (seeded with the site's accounts and
//! the bot), or a real Rocket.Chat from `ROCKETCHAT_URL` / `ROCKETCHAT_USER_ID` /
//! `ROCKETCHAT_TOKEN` (then nothing is seeded). Also the per-endpoint call counter every
//! client of the run reports to.

use crate::cmd::config::Settings;
use anyhow::Context;
use rcjobs_chat::RequestGate;
use rcjobs_rocketchat::{
    Auth, RequestObserver, RocketChatBackend, RocketChatClient, RocketChatConfig, Secret,
};
use rcjobs_sim::{RateLimit, Seed, SeedBot, SeedUser, SimConfig, SimHandle, Snapshot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The bot's username on the simulator.
pub const SIM_BOT: &str = "rcjobs.bot";

/// Calls one endpoint received, as the clients saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EndpointCalls {
    /// HTTP exchanges (429s and failures included).
    pub calls: u64,
    /// Answers with status 429.
    pub rate_limited: u64,
    /// No answer, or a 5xx.
    pub failed: u64,
}

/// Counts every HTTP exchange of every client of the run, per endpoint.
#[derive(Debug, Default)]
pub struct CallCounter {
    by_endpoint: Mutex<BTreeMap<&'static str, EndpointCalls>>,
}

impl CallCounter {
    /// Counts so far, per endpoint.
    pub fn snapshot(&self) -> BTreeMap<String, EndpointCalls> {
        let m = self.by_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    /// Starts counting afresh.
    pub fn reset(&self) {
        self.by_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl RequestObserver for CallCounter {
    fn on_response(&self, endpoint: &'static str, status: u16, _elapsed: Duration) {
        let mut m = self.by_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(endpoint).or_default();
        e.calls += 1;
        if status == 429 {
            e.rate_limited += 1;
        }
        if status == 0 || status >= 500 {
            e.failed += 1;
        }
    }
}

/// Sum of calls over endpoints.
pub fn total_calls(calls: &BTreeMap<String, EndpointCalls>) -> u64 {
    calls.values().map(|c| c.calls).sum()
}

/// How to start the simulator.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Added to every API call.
    pub latency: Duration,
    /// The server's REST rate limiter (`None` = off).
    pub rate_limit: Option<RateLimit>,
    /// Give the bot only the `user` role, so the limiter applies to it (it still owns the
    /// rooms it creates, which is all the membership calls need).
    pub limited_bot: bool,
    /// Probability of answering an API call with a 500 (half of them after applying the
    /// change), from the start; `SimHandle::set_fail_rate` changes it later.
    pub fail_rate: f64,
}

/// Where the chat server is.
pub enum ChatServer {
    /// In-process simulator.
    Sim(SimHandle),
    /// A real server.
    External {
        /// Base URL.
        url: String,
        /// Bot user id.
        user_id: String,
        /// Personal access token (never printed).
        token: Secret,
    },
}

impl ChatServer {
    /// The real server from the settings if `ROCKETCHAT_URL` is set, else a simulator seeded
    /// with `usernames` as active `user` accounts plus the bot.
    pub async fn start(
        settings: &Settings,
        usernames: &[String],
        opts: &SimOptions,
    ) -> anyhow::Result<ChatServer> {
        if let Some(url) = &settings.rocketchat_url {
            let user_id = settings
                .rocketchat_user_id
                .clone()
                .context("ROCKETCHAT_URL is set but ROCKETCHAT_USER_ID is not")?;
            let token = settings
                .rocketchat_token
                .clone()
                .context("ROCKETCHAT_URL is set but ROCKETCHAT_TOKEN is not")?;
            return Ok(ChatServer::External {
                url: url.clone(),
                user_id,
                token: Secret::new(token),
            });
        }
        let bot = SeedBot {
            username: SIM_BOT.into(),
            roles: if opts.limited_bot {
                vec!["user".into()]
            } else {
                vec!["bot".into()]
            },
            ..SeedBot::default()
        };
        let users = usernames
            .iter()
            .filter(|u| !u.eq_ignore_ascii_case(SIM_BOT))
            .map(|u| SeedUser::new(u))
            .collect();
        let cfg = SimConfig {
            latency: opts.latency,
            rate_limit: opts.rate_limit,
            fail_rate: opts.fail_rate,
            seed: Seed { bot, users },
            ..SimConfig::default()
        };
        Ok(ChatServer::Sim(
            rcjobs_sim::spawn(cfg)
                .await
                .context("starting the simulator")?,
        ))
    }

    /// The simulator, when the run uses one.
    pub fn sim(&self) -> Option<&SimHandle> {
        match self {
            ChatServer::Sim(s) => Some(s),
            ChatServer::External { .. } => None,
        }
    }

    /// A snapshot of the simulator's state (its reads are not API calls).
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.sim().map(|s| s.snapshot())
    }

    /// What to print as the server.
    pub fn describe(&self) -> String {
        match self {
            ChatServer::Sim(s) => format!("simulator at {}", s.base_url()),
            ChatServer::External { url, .. } => format!("Rocket.Chat at {url}"),
        }
    }

    /// A client reporting to `observer`, behind `gate` if given.
    pub fn client(
        &self,
        observer: Arc<CallCounter>,
        gate: Option<Arc<dyn RequestGate>>,
    ) -> anyhow::Result<RocketChatClient> {
        let (url, user_id, token) = match self {
            ChatServer::Sim(s) => (
                s.base_url(),
                s.bot_user_id().to_owned(),
                Secret::new(s.bot_token()),
            ),
            ChatServer::External {
                url,
                user_id,
                token,
            } => (url.clone(), user_id.clone(), token.clone()),
        };
        let mut rc = RocketChatConfig::new(
            url::Url::parse(&url).context("chat server URL")?,
            Auth::Token { user_id, token },
        );
        if self.sim().is_some() {
            rc.bot_username = Some(SIM_BOT.into());
        }
        let mut b = RocketChatClient::builder(rc).observer(observer);
        if let Some(g) = gate {
            b = b.gate(g);
        }
        b.build().context("building the Rocket.Chat client")
    }

    /// A backend (the handlers' view of the server) on a fresh client.
    pub async fn backend(
        &self,
        observer: Arc<CallCounter>,
        gate: Option<Arc<dyn RequestGate>>,
    ) -> anyhow::Result<RocketChatBackend> {
        let client = self.client(observer, gate)?;
        RocketChatBackend::connect(client)
            .await
            .context("connecting to the chat server")
    }

    /// Stops the simulator (a real server is left alone).
    pub async fn shutdown(self) {
        if let ChatServer::Sim(s) = self {
            s.shutdown().await;
        }
    }
}
