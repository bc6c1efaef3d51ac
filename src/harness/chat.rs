//! The chat server of a run: the in-process simulator (seeded with the site's accounts and
//! the bot), or a real server from the settings (`CHAT_URL` / `CHAT_USER_ID` / `CHAT_TOKEN`
//! or their `ROCKETCHAT_*` names for Rocket.Chat; `MATRIX_*` for Matrix, with
//! `CHAT_BACKEND=matrix`), then nothing is seeded. Also the per-endpoint call counter every
//! client of the run reports to.

use crate::cmd::config::{ChatBackendKind, Settings};
use anyhow::Context;
use rcjobs_chat::RequestGate;
use rcjobs_rocketchat::{Auth, RequestObserver, RocketChatClient, RocketChatConfig, Secret};
use rcjobs_sim::{RateLimit, Seed, SeedBot, SeedUser, SimConfig, SimHandle, Snapshot};
use rcjobs_worker::wiring::{ChatConnection, ChatObserver};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What docs/handlers.md asks of the bot beyond Rocket.Chat's stock `bot` role, granted to the
/// simulator's bot in the demo and the benchmarks (and `rcjobs sim`'s default `--grant`):
/// account creation, unarchiving, retention, course resets.
pub const BOT_GRANTS: &[&str] = &[
    "create-user",
    "unarchive-room",
    "edit-room-retention-policy",
    "clean-channel-history",
];

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
    by_endpoint: Mutex<BTreeMap<String, EndpointCalls>>,
}

impl CallCounter {
    /// Counts so far, per endpoint.
    pub fn snapshot(&self) -> BTreeMap<String, EndpointCalls> {
        self.by_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts counting afresh.
    pub fn reset(&self) {
        self.by_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl CallCounter {
    fn count(&self, endpoint: &str, status: Option<u16>) {
        let mut m = self.by_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(endpoint.to_owned()).or_default();
        e.calls += 1;
        if status == Some(429) {
            e.rate_limited += 1;
        }
        if status.is_none_or(|s| s >= 500) {
            e.failed += 1;
        }
    }
}

/// The workers' clients report here through the wiring.
impl ChatObserver for CallCounter {
    fn on_response(&self, route: &str, status: Option<u16>, _elapsed: Duration) {
        self.count(route, status);
    }
}

/// The harness's own Rocket.Chat clients (the plugin's call pattern) report here directly.
impl RequestObserver for CallCounter {
    fn on_response(&self, endpoint: &'static str, status: u16, _elapsed: Duration) {
        self.count(endpoint, (status != 0).then_some(status));
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
        /// How the workers reach it (credentials never printed).
        connection: ChatConnection,
    },
}

/// The request timeout of the harness's clients of a real server (the worker's default).
const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(30);

impl ChatServer {
    /// The real server from the settings if they name one, else a simulator seeded with
    /// `usernames` as active `user` accounts plus the bot. The simulator speaks Rocket.Chat's
    /// API only: with the Matrix backend the settings must name a homeserver.
    pub async fn start(
        settings: &Settings,
        usernames: &[String],
        opts: &SimOptions,
    ) -> anyhow::Result<ChatServer> {
        let backend = settings.chat_backend()?;
        if settings.has_chat_server(backend) {
            let connection = settings
                .chat_connection(backend, None, EXTERNAL_TIMEOUT)
                .context("the chat server named by the settings")?;
            return Ok(ChatServer::External { connection });
        }
        anyhow::ensure!(
            backend == ChatBackendKind::Rocketchat,
            "the Matrix backend needs a Synapse homeserver: run scripts/ensure-synapse.sh (or point MATRIX_HOMESERVER_URL at one) and set MATRIX_ACCESS_TOKEN (or MATRIX_USER and MATRIX_PASSWORD) for an admin bot"
        );
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
        let sim = rcjobs_sim::spawn(cfg)
            .await
            .context("starting the simulator")?;
        if !opts.limited_bot {
            for permission in BOT_GRANTS {
                sim.grant_permission("bot", permission);
            }
        }
        Ok(ChatServer::Sim(sim))
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
            ChatServer::External {
                connection: ChatConnection::RocketChat(c),
            } => format!("Rocket.Chat at {}", c.base_url),
            ChatServer::External {
                connection: ChatConnection::Matrix(c),
            } => format!("Matrix homeserver at {}", c.homeserver_url),
        }
    }

    /// How the workers connect to the server (through `rcjobs_worker::wiring`).
    pub fn connection(&self) -> anyhow::Result<ChatConnection> {
        match self {
            ChatServer::Sim(s) => {
                let mut rc = RocketChatConfig::new(
                    url::Url::parse(&s.base_url()).context("simulator URL")?,
                    Auth::Token {
                        user_id: s.bot_user_id().to_owned(),
                        token: Secret::new(s.bot_token()),
                    },
                );
                rc.bot_username = Some(SIM_BOT.into());
                Ok(ChatConnection::RocketChat(rc))
            }
            ChatServer::External { connection } => Ok(connection.clone()),
        }
    }

    fn rocketchat_config(&self) -> anyhow::Result<RocketChatConfig> {
        match self.connection()? {
            ChatConnection::RocketChat(rc) => Ok(rc),
            other => anyhow::bail!(
                "this step speaks Rocket.Chat's API, and the chat server is a {} one",
                other.backend_name()
            ),
        }
    }

    /// A client of the harness's own (not a worker's) reporting to `observer`, behind
    /// `gate` if given.
    pub fn client(
        &self,
        observer: Arc<CallCounter>,
        gate: Option<Arc<dyn RequestGate>>,
    ) -> anyhow::Result<RocketChatClient> {
        let mut b = RocketChatClient::builder(self.rocketchat_config()?).observer(observer);
        if let Some(g) = gate {
            b = b.gate(g);
        }
        b.build().context("building the Rocket.Chat client")
    }

    /// Stops the simulator (a real server is left alone).
    pub async fn shutdown(self) {
        if let ChatServer::Sim(s) = self {
            s.shutdown().await;
        }
    }
}
