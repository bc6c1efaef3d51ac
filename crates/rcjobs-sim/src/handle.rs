//! Starting the simulator, controlling it while it runs, and inspecting its state.

use crate::config::{RateLimit, SeedUser, SimConfig};
use crate::listener::{ConnMeta, SimListener};
use crate::model::{NewUser, Retention, State};
use crate::names::valid_username;
use crate::ratelimit::Limiter;
use crate::server::{lock, router, App, Dynamic};
use crate::version::Version;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// `version` is not `major.minor.patch`.
    #[error("invalid version {0:?} (expected e.g. 7.4.0)")]
    Version(String),
    /// A probability outside `0..=1`.
    #[error("{0} must be between 0 and 1")]
    Probability(&'static str),
    /// The seed data breaks the server's rules (duplicate or invalid username, ...).
    #[error("invalid seed: {0}")]
    Seed(String),
}

/// A running simulator. Dropping it stops the server too; `shutdown` waits for that.
pub struct SimHandle {
    addr: SocketAddr,
    bot_user_id: String,
    bot_token: String,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .field("bot_user_id", &self.bot_user_id)
            .finish()
    }
}

/// One member of a room as the inspection sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MemberSnapshot {
    /// User id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Room roles (`owner`, `moderator`).
    pub roles: Vec<String>,
    /// Whether the account is active (inactive members stay subscribed).
    pub active: bool,
}

/// One room.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RoomSnapshot {
    /// Room id.
    pub id: String,
    /// Room name.
    pub name: String,
    /// Room type (`p`).
    pub t: String,
    /// Read-only flag.
    pub read_only: bool,
    /// Archived flag.
    pub archived: bool,
    /// Message counter (system messages included).
    pub msgs: u64,
    /// Retention settings, if any were saved.
    pub retention: Option<Retention>,
    /// Subscribers sorted by username.
    pub members: Vec<MemberSnapshot>,
}

impl RoomSnapshot {
    /// The member with this username, if subscribed.
    pub fn member(&self, username: &str) -> Option<&MemberSnapshot> {
        self.members.iter().find(|m| m.username == username)
    }
}

/// One user.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UserSnapshot {
    /// User id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Active flag.
    pub active: bool,
    /// Server roles.
    pub roles: Vec<String>,
}

/// Everything a test or benchmark may want to check, taken at one instant.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Snapshot {
    /// Rooms sorted by name.
    pub rooms: Vec<RoomSnapshot>,
    /// Users sorted by username.
    pub users: Vec<UserSnapshot>,
    /// Calls per `"METHOD endpoint"` (e.g. `"POST groups.invite"`), faults and 429s included.
    pub requests: BTreeMap<String, u64>,
    /// Calls answered 429 by the rate limiter.
    pub rate_limited: u64,
    /// All API calls.
    pub total_requests: u64,
    /// Calls failed on purpose by the fault settings (`fail_rate`, `drop_rate`,
    /// `timeout_rate`).
    pub faults_injected: u64,
}

impl Snapshot {
    /// The room with this name.
    pub fn room(&self, name: &str) -> Option<&RoomSnapshot> {
        self.rooms.iter().find(|r| r.name == name)
    }

    /// The user with this username.
    pub fn user(&self, username: &str) -> Option<&UserSnapshot> {
        self.users.iter().find(|u| u.username == username)
    }

    /// Calls made to `"METHOD endpoint"` (0 if none).
    pub fn count(&self, key: &str) -> u64 {
        self.requests.get(key).copied().unwrap_or(0)
    }
}

/// Takes a snapshot of the state.
pub(crate) fn snapshot_of(app: &App) -> Snapshot {
    let st = lock(&app.state);
    let mut rooms: Vec<RoomSnapshot> = st
        .rooms
        .values()
        .map(|r| RoomSnapshot {
            id: r.id.clone(),
            name: r.name.clone(),
            t: r.t.clone(),
            read_only: r.ro,
            archived: r.is_archived(),
            msgs: r.msgs,
            retention: r.retention.clone(),
            members: r
                .sorted
                .iter()
                .filter_map(|(username, uid)| {
                    let sub = r.subs.get(uid)?;
                    Some(MemberSnapshot {
                        user_id: uid.clone(),
                        username: username.clone(),
                        roles: sub.roles.clone(),
                        active: st.users.get(uid).is_some_and(|u| u.active),
                    })
                })
                .collect(),
        })
        .collect();
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    let users = st
        .users_sorted
        .iter()
        .filter_map(|(_, id)| st.users.get(id))
        .map(|u| UserSnapshot {
            id: u.id.clone(),
            username: u.username.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            active: u.active,
            roles: u.roles.clone(),
        })
        .collect();
    Snapshot {
        rooms,
        users,
        requests: st
            .counters
            .by_endpoint
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        rate_limited: st.counters.rate_limited,
        total_requests: st.counters.total,
        faults_injected: st.counters.faults,
    }
}

fn check_probability(p: f64, what: &'static str) -> Result<(), SimError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(SimError::Probability(what))
    }
}

fn seed_user(st: &mut State, u: &SeedUser) -> Result<String, SimError> {
    if !valid_username(&u.username) {
        return Err(SimError::Seed(format!(
            "{:?} is not a valid username",
            u.username
        )));
    }
    if st.user_id_by_username(&u.username).is_some() {
        return Err(SimError::Seed(format!(
            "username {:?} is used twice",
            u.username
        )));
    }
    let email = (!u.email.is_empty()).then(|| u.email.clone());
    if email.as_deref().is_some_and(|e| st.email_taken(e)) {
        return Err(SimError::Seed(format!(
            "e-mail {:?} is used twice",
            u.email
        )));
    }
    Ok(st.insert_user(NewUser {
        id: None,
        username: u.username.clone(),
        name: if u.name.is_empty() {
            u.username.clone()
        } else {
            u.name.clone()
        },
        email,
        active: u.active,
        roles: u.roles.clone(),
        password: u.password.clone(),
        token: None,
    }))
}

/// Starts a simulator on `config.addr` and returns once it accepts connections.
pub async fn spawn(config: SimConfig) -> Result<SimHandle, SimError> {
    let version =
        Version::parse(&config.version).ok_or_else(|| SimError::Version(config.version.clone()))?;
    check_probability(config.fail_rate, "fail_rate")?;
    check_probability(config.timeout_rate, "timeout_rate")?;
    check_probability(config.drop_rate, "drop_rate")?;
    let mut st = State::new(StdRng::seed_from_u64(config.rng_seed));
    let bot = &config.seed.bot;
    if !valid_username(&bot.username) {
        return Err(SimError::Seed(format!(
            "{:?} is not a valid bot username",
            bot.username
        )));
    }
    let bot_user_id = if bot.user_id.is_empty() {
        st.new_id()
    } else {
        bot.user_id.clone()
    };
    let bot_token = if bot.token.is_empty() {
        st.new_secret()
    } else {
        bot.token.clone()
    };
    st.insert_user(NewUser {
        id: Some(bot_user_id.clone()),
        username: bot.username.clone(),
        name: bot.username.clone(),
        email: Some(format!("{}@rcjobs.invalid", bot.username)),
        active: true,
        roles: bot.roles.clone(),
        password: bot.password.clone(),
        token: Some(bot_token.clone()),
    });
    for u in &config.seed.users {
        seed_user(&mut st, u)?;
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| SimError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: config.addr,
        source,
    })?;
    let app = Arc::new(App {
        state: Mutex::new(st),
        limiter: Mutex::new(Limiter::default()),
        dynamic: Mutex::new(Dynamic {
            latency: config.latency,
            rate_limit: config.rate_limit,
            fail_rate: config.fail_rate,
            timeout_rate: config.timeout_rate,
            drop_rate: config.drop_rate,
            slow_delay: config.slow_delay,
            rng: StdRng::seed_from_u64(config.rng_seed ^ 0xfa17_fa17_fa17_fa17),
        }),
        version,
        version_text: config.version.trim().to_string(),
        batch_invite: config.batch_invite,
        site_url: format!("http://{addr}"),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let service = router(app.clone()).into_make_service_with_connect_info::<ConnMeta>();
    let task = tokio::spawn(async move {
        let server =
            axum::serve(SimListener(listener), service).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "sim: server stopped with an error");
        }
    });
    tracing::info!(%addr, version = %version, "sim: listening");
    Ok(SimHandle {
        addr,
        bot_user_id,
        bot_token,
        app,
        stop: Some(stop),
        task: Some(task),
    })
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, the Rocket.Chat base URL for clients.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bot account's user id (`X-User-Id`).
    pub fn bot_user_id(&self) -> &str {
        &self.bot_user_id
    }

    /// The bot account's personal access token (`X-Auth-Token`); for tests and the dev CLI.
    pub fn bot_token(&self) -> &str {
        &self.bot_token
    }

    /// Rooms, members with roles, users and request counters, taken now.
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.app)
    }

    /// Adds a user (as an admin would) and returns its id. An existing username returns the
    /// existing user's id unchanged.
    pub fn add_user(&self, user: SeedUser) -> String {
        let mut st = lock(&self.app.state);
        if let Some(id) = st.user_id_by_username(&user.username) {
            return id.clone();
        }
        let email =
            (!user.email.is_empty() && !st.email_taken(&user.email)).then(|| user.email.clone());
        st.insert_user(NewUser {
            id: None,
            name: if user.name.is_empty() {
                user.username.clone()
            } else {
                user.name.clone()
            },
            username: user.username,
            email,
            active: user.active,
            roles: user.roles,
            password: user.password,
            token: None,
        })
    }

    /// Activates or deactivates a user by username (deactivating drops their tokens).
    /// Returns whether the user exists.
    pub fn set_user_active(&self, username: &str, active: bool) -> bool {
        let mut st = lock(&self.app.state);
        match st.user_id_by_username(username).cloned() {
            Some(id) => {
                st.set_active(&id, active);
                true
            }
            None => false,
        }
    }

    /// Changes the probability of 500 answers.
    pub fn set_fail_rate(&self, p: f64) {
        lock(&self.app.dynamic).fail_rate = p.clamp(0.0, 1.0);
    }

    /// Changes the probability of answers held back by `slow_delay`.
    pub fn set_timeout_rate(&self, p: f64) {
        lock(&self.app.dynamic).timeout_rate = p.clamp(0.0, 1.0);
    }

    /// Changes the probability of dropped connections.
    pub fn set_drop_rate(&self, p: f64) {
        lock(&self.app.dynamic).drop_rate = p.clamp(0.0, 1.0);
    }

    /// Changes the per-call latency.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.app.dynamic).latency = latency;
    }

    /// Turns the REST rate limiter on/off or changes it; windows start afresh.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        lock(&self.app.dynamic).rate_limit = limit;
        lock(&self.app.limiter).clear();
    }

    /// Gives a server or room role a permission (as an admin editing permissions would),
    /// e.g. `grant_permission("bot", "create-user")`.
    pub fn grant_permission(&self, role: &str, permission: &str) {
        lock(&self.app.state).grants.grant(role, permission);
    }

    /// Takes a permission away from a role.
    pub fn revoke_permission(&self, role: &str, permission: &str) {
        lock(&self.app.state).grants.revoke(role, permission);
    }

    /// Zeroes the request counters, the 429 count and the request log.
    pub fn reset_counters(&self) {
        lock(&self.app.state).counters = Default::default();
    }

    /// Stops accepting, lets in-flight calls finish (at most 5 s), and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
