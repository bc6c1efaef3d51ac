//! Shared helpers: a simulator per test and clients pointed at it.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcjobs_rocketchat::{
    Auth, RequestObserver, RocketChatBackend, RocketChatClient, RocketChatConfig,
};
use rcjobs_sim::{SeedUser, SimConfig, SimHandle};

/// Starts a simulator.
pub async fn sim(config: SimConfig) -> SimHandle {
    rcjobs_sim::spawn(config).await.expect("simulator starts")
}

/// A simulator whose bot is also `admin` (unarchive, retention, users.create need it).
pub async fn admin_sim() -> SimHandle {
    let mut cfg = SimConfig::default();
    cfg.seed.bot.roles = vec!["bot".into(), "admin".into()];
    sim(cfg).await
}

/// Token auth as the simulator's bot.
pub fn config(sim: &SimHandle) -> RocketChatConfig {
    let mut cfg = RocketChatConfig::new(
        url::Url::parse(&sim.base_url()).unwrap(),
        Auth::Token {
            user_id: sim.bot_user_id().to_owned(),
            token: sim.bot_token().into(),
        },
    );
    cfg.request_timeout = Duration::from_secs(10);
    cfg
}

pub fn client(sim: &SimHandle) -> RocketChatClient {
    RocketChatClient::new(config(sim)).unwrap()
}

pub async fn backend(sim: &SimHandle) -> RocketChatBackend {
    RocketChatBackend::connect(client(sim)).await.unwrap()
}

/// Adds `n` active users named `{prefix}{i:05}` and returns their names.
pub fn add_users(sim: &SimHandle, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}{i:05}");
            sim.add_user(SeedUser::new(&name));
            name
        })
        .collect()
}

/// Records every observer event.
#[derive(Default)]
pub struct Recorder {
    pub responses: Mutex<Vec<(&'static str, u16, Duration)>>,
    pub waits: Mutex<Vec<(&'static str, Duration)>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn statuses(&self, endpoint: &str) -> Vec<u16> {
        self.responses
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _, _)| *e == endpoint)
            .map(|(_, s, _)| *s)
            .collect()
    }
}

impl RequestObserver for Recorder {
    fn on_response(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        self.responses
            .lock()
            .unwrap()
            .push((endpoint, status, elapsed));
    }
    fn on_rate_limited(&self, endpoint: &'static str, wait: Duration) {
        self.waits.lock().unwrap().push((endpoint, wait));
    }
}
