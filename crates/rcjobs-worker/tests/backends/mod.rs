//! The scenario suite's chat backends (issue 15 §5): Rocket.Chat on the simulator, and
//! Matrix on the real Synapse of `scripts/ensure-synapse.sh`. Each run's worker is built by
//! `rcjobs_worker::wiring` as `rcjobs worker --chat-backend …` builds it; each room is read
//! back by a backend-neutral [`Inspector`] that goes around the backend under test: the
//! simulator's snapshot, or Synapse's own answers (joined members, power levels, the archive
//! lock of decision 0012).

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use crate::common::{Env, RunningWorker};
use rcjobs_sim::SimHandle;
use rcjobs_worker::wiring::matrix::{ids, Auth, MatrixBackend, MatrixClient, MatrixConfig, Secret};
use rcjobs_worker::wiring::{build_engine, metrics_for, ChatConnection, ChatObserver, EngineParts};
use rcjobs_worker::Engine;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which chat server a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The Rocket.Chat client on the simulator (5 % of calls failing).
    RocketChat,
    /// The Matrix backend on a real Synapse.
    Matrix,
}

/// A room as the chat server holds it: username → moderator (the bot left out), archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub members: BTreeMap<String, bool>,
    pub archived: bool,
}

/// Reads rooms back from the chat server, not through the backend under test.
pub enum Inspector<'a> {
    Sim(&'a SimHandle),
    Synapse {
        client: MatrixClient,
        server_name: String,
        bot: String,
    },
}

impl Inspector<'_> {
    /// The room `room_id`, `None` if the server has no such room (deleted).
    pub async fn room(&self, room_id: &str) -> Option<Inspected> {
        match self {
            Inspector::Sim(sim) => {
                let snap = sim.snapshot();
                let room = snap.rooms.iter().find(|r| r.id == room_id)?;
                Some(Inspected {
                    members: room
                        .members
                        .iter()
                        .filter(|m| m.username != "rcjobs.bot")
                        .map(|m| (m.username.clone(), m.roles.iter().any(|r| r == "moderator")))
                        .collect(),
                    archived: room.archived,
                })
            }
            Inspector::Synapse {
                client,
                server_name,
                bot,
            } => {
                client.room_details(room_id).await.unwrap()?;
                let joined = client.joined_members(room_id).await.unwrap();
                let levels = client.power_levels(room_id).await.unwrap();
                let level = |user: &str| {
                    levels
                        .get("users")
                        .and_then(|u| u.get(user))
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or_else(|| {
                            levels
                                .get("users_default")
                                .and_then(serde_json::Value::as_i64)
                                .unwrap_or(0)
                        })
                };
                Some(Inspected {
                    members: joined
                        .iter()
                        .filter(|u| *u != bot)
                        .map(|u| (ids::username_of(u, server_name), level(u) >= 50))
                        .collect(),
                    // Decision 0012: archived = the saved levels kept in the power levels.
                    archived: levels.get("org.rcjobs.archived").is_some(),
                })
            }
        }
    }
}

/// Counts requests per route (the wiring's observer hook).
#[derive(Default)]
pub struct RouteCalls(Mutex<HashMap<String, u64>>);

impl ChatObserver for RouteCalls {
    fn on_response(&self, route: &str, _status: Option<u16>, _elapsed: Duration) {
        *self.0.lock().unwrap().entry(route.to_owned()).or_default() += 1;
    }
}

/// The chat side of a scenario: the engine its workers run, and the inspector.
pub struct Chat<'a> {
    pub backend: Backend,
    pub engine: Arc<Engine>,
    pub inspector: Inspector<'a>,
    calls: Arc<RouteCalls>,
}

/// The generous-limits homeserver of `scripts/ensure-synapse.sh` (`target/synapse/env`).
pub fn synapse() -> MatrixConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/synapse/env");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("the Matrix scenarios need a real Synapse: run `bash scripts/ensure-synapse.sh` (it writes {path}): {e}")
    });
    let vars: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let mut cfg = MatrixConfig::new(
        url::Url::parse(vars["MATRIX_HOMESERVER_URL"]).unwrap(),
        Auth::Token(Secret::new(vars["MATRIX_ACCESS_TOKEN"])),
    );
    cfg.request_timeout = Duration::from_secs(20);
    cfg
}

impl<'a> Chat<'a> {
    /// The chat side of `env` on `backend`. Rocket.Chat: the env's own engine on its
    /// simulator. Matrix: an engine with the env's handler settings on Synapse, its rooms
    /// named for this run only (Synapse outlives the test database, and a room found by its
    /// alias would be adopted with an earlier run's members).
    pub async fn new(env: &'a Env, backend: Backend) -> Chat<'a> {
        match backend {
            Backend::RocketChat => Chat {
                backend,
                engine: env.engine.clone(),
                inspector: Inspector::Sim(&env.sim),
                calls: Arc::default(),
            },
            Backend::Matrix => {
                let mut cfg = env.engine.config().clone();
                cfg.naming.template = "{$a->moodleid}_{$a->courseshortname}_{$a->moduleid}".into();
                cfg.naming.site_id = format!("sc{}", chrono::Utc::now().timestamp_micros());
                cfg.explicit.set("naming.template");
                let calls = Arc::new(RouteCalls::default());
                let chat = ChatConnection::Matrix(synapse());
                let engine = build_engine(EngineParts {
                    pool: env.pool().clone(),
                    moodle: env.moodle.clone(),
                    metrics: metrics_for(&chat).unwrap(),
                    chat,
                    config: cfg,
                    observer: Some(calls.clone()),
                })
                .await
                .unwrap();
                let admin = MatrixBackend::connect(MatrixClient::new(synapse()).unwrap())
                    .await
                    .unwrap();
                Chat {
                    backend,
                    engine,
                    inspector: Inspector::Synapse {
                        client: admin.client().clone(),
                        server_name: admin.server_name().to_owned(),
                        bot: admin.bot_user_id().to_owned(),
                    },
                    calls,
                }
            }
        }
    }

    /// Starts a queue worker on this backend's engine.
    pub async fn start_worker(&self, env: &Env, concurrency: usize) -> RunningWorker {
        env.start_worker_on(self.engine.clone(), concurrency).await
    }

    /// Calls that add members so far: `groups.invite` (batched) on Rocket.Chat, the
    /// force-join (one per user) on Matrix.
    pub fn add_calls(&self) -> u64 {
        match &self.inspector {
            Inspector::Sim(sim) => sim.snapshot().count("POST groups.invite"),
            Inspector::Synapse { .. } => self
                .calls
                .0
                .lock()
                .unwrap()
                .get("admin.join")
                .copied()
                .unwrap_or(0),
        }
    }

    /// Reads room `room_id` back.
    pub async fn room(&self, room_id: &str) -> Option<Inspected> {
        self.inspector.room(room_id).await
    }

    /// Asserts that every live, visible chat activity's room equals Moodle truth, and hidden
    /// ones are archived. Returns the number of rooms checked.
    pub async fn assert_converged(&self, env: &Env) -> usize {
        let mut checked = 0;
        for (cmid, visible) in env.live_cmids().await {
            let id = env
                .room_id(cmid)
                .await
                .unwrap_or_else(|| panic!("cm {cmid} has no room"));
            let room = self
                .room(&id)
                .await
                .unwrap_or_else(|| panic!("room {id} of cm {cmid} missing in chat"));
            if visible {
                assert!(!room.archived, "room of visible cm {cmid} archived");
                let truth = env.truth(cmid).await;
                if room.members != truth {
                    env.dump().await;
                }
                assert_eq!(room.members, truth, "room of cm {cmid} differs from Moodle");
            } else {
                assert!(room.archived, "room of hidden cm {cmid} not archived");
            }
            checked += 1;
        }
        checked
    }
}
