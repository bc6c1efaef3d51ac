//! How one worker replica is put together, in one place for everyone who starts one: the
//! `rcjobs worker` command, the demo and bench harness, and the tests.
//!
//! [`build_engine`] connects the chat backend described by a [`ChatConnection`] behind the
//! shared Postgres rate limiter, with the metrics observer (plus the caller's own, e.g. a
//! call counter) on every request, and builds the [`Engine`] around it. [`build_worker`]
//! registers every handler, the periodic reconcile, the stats sampler and the queue hooks
//! feeding the metrics (plus the caller's) on a queue worker. A new backend is one more arm
//! of [`ChatConnection`]; nothing else here or in the handlers changes.

use crate::config::WorkerConfig;
use crate::engine::{Engine, EngineError};
use crate::limiter::PgRequestGate;
use crate::runtime::{MetricsHooks, WorkerStack};
use rcjobs_chat::{ChatBackend, RequestGate};
use rcjobs_metrics::{Metrics, MetricsConfig};
use rcjobs_moodle::MoodleDb;
use rcjobs_queue::lease::SweepReport;
use rcjobs_queue::{JobInfo, JobOutcome, LeaseLoss, QueueHooks, WorkerBuilder};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// The Matrix backend's crate, for callers that build a [`ChatConnection::Matrix`] without a
/// dependency of their own.
pub use rcjobs_matrix as matrix;

/// The chat server a replica talks to, and how to reach it.
#[derive(Debug, Clone)]
pub enum ChatConnection {
    /// Rocket.Chat's REST API (a personal access token, or a login).
    RocketChat(rcjobs_rocketchat::RocketChatConfig),
    /// A Matrix homeserver (Synapse): Client-Server API plus Synapse's admin API, the bot a
    /// server admin.
    Matrix(rcjobs_matrix::MatrixConfig),
}

/// The Matrix client's route names (`rcjobs_matrix::MatrixClient`'s calls).
const MATRIX_ROUTES: &[&str] = &[
    "login",
    "whoami",
    "createRoom",
    "directory.room",
    "joined_members",
    "state.power_levels",
    "state.power_levels.put",
    "state.member",
    "invite",
    "kick",
    "admin.users.get",
    "admin.users.put",
    "admin.users.login",
    "admin.rooms.get",
    "admin.rooms.delete",
    "admin.rooms.delete_status",
    "admin.join",
];

impl ChatConnection {
    /// The backend's name (`--chat-backend`, the `backend` metric label, the `backend` column
    /// of `rcjobs_sync.room`).
    pub fn backend_name(&self) -> &'static str {
        match self {
            ChatConnection::RocketChat(_) => "rocketchat",
            ChatConnection::Matrix(_) => "matrix",
        }
    }

    /// The routes the backend calls, each labelled by name in the metrics.
    pub fn routes(&self) -> &'static [&'static str] {
        match self {
            ChatConnection::RocketChat(_) => rcjobs_metrics::labels::ROCKETCHAT_ENDPOINTS,
            ChatConnection::Matrix(_) => MATRIX_ROUTES,
        }
    }

    /// Connects: a client behind `gate`, reporting every request to `observer`, and the
    /// backend on it (which asks the server who the bot is).
    pub async fn connect(
        &self,
        gate: Arc<dyn RequestGate>,
        observer: Arc<dyn ChatObserver>,
    ) -> Result<Arc<dyn ChatBackend>, WiringError> {
        match self {
            ChatConnection::RocketChat(cfg) => {
                let client = rcjobs_rocketchat::RocketChatClient::builder(cfg.clone())
                    .observer(Arc::new(RocketChatObserver(observer)))
                    .gate(gate)
                    .build()
                    .map_err(|e| WiringError::Chat(e.to_string()))?;
                let backend = rcjobs_rocketchat::RocketChatBackend::connect(client)
                    .await
                    .map_err(|e| WiringError::Chat(e.to_string()))?;
                Ok(Arc::new(backend))
            }
            ChatConnection::Matrix(cfg) => {
                let client = rcjobs_matrix::MatrixClient::builder(cfg.clone())
                    .observer(Arc::new(MatrixObserver(observer)))
                    .gate(gate)
                    .build()
                    .map_err(|e| WiringError::Chat(e.to_string()))?;
                let backend = rcjobs_matrix::MatrixBackend::connect(client)
                    .await
                    .map_err(|e| WiringError::Chat(e.to_string()))?;
                Ok(Arc::new(backend))
            }
        }
    }
}

/// Sees every HTTP exchange of a chat client, whatever the backend.
pub trait ChatObserver: Send + Sync + 'static {
    /// An answer with HTTP `status` arrived on `route` (`None`: no answer: timeout, connect
    /// failure, reset) after `elapsed`.
    fn on_response(&self, route: &str, status: Option<u16>, elapsed: Duration);

    /// The client waits `wait` before calling `route` again (the server's rate limit).
    fn on_rate_limited(&self, route: &str, wait: Duration) {
        let _ = (route, wait);
    }
}

/// Feeds the chat metrics.
impl ChatObserver for Metrics {
    fn on_response(&self, route: &str, status: Option<u16>, elapsed: Duration) {
        self.chat_request(route, status, elapsed);
    }

    fn on_rate_limited(&self, route: &str, wait: Duration) {
        self.chat_paused(route, wait);
    }
}

/// Several observers as one.
struct Observers(Vec<Arc<dyn ChatObserver>>);

impl ChatObserver for Observers {
    fn on_response(&self, route: &str, status: Option<u16>, elapsed: Duration) {
        for o in &self.0 {
            o.on_response(route, status, elapsed);
        }
    }

    fn on_rate_limited(&self, route: &str, wait: Duration) {
        for o in &self.0 {
            o.on_rate_limited(route, wait);
        }
    }
}

/// A [`ChatObserver`] in the Rocket.Chat client's terms (status 0 = no answer).
struct RocketChatObserver(Arc<dyn ChatObserver>);

impl rcjobs_rocketchat::RequestObserver for RocketChatObserver {
    fn on_response(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        self.0
            .on_response(endpoint, (status != 0).then_some(status), elapsed);
    }

    fn on_rate_limited(&self, endpoint: &'static str, wait: Duration) {
        self.0.on_rate_limited(endpoint, wait);
    }
}

/// A [`ChatObserver`] in the Matrix client's terms (status 0 = no answer).
struct MatrixObserver(Arc<dyn ChatObserver>);

impl rcjobs_matrix::RequestObserver for MatrixObserver {
    fn on_response(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.0
            .on_response(route, (status != 0).then_some(status), elapsed);
    }

    fn on_rate_limited(&self, route: &'static str, wait: Duration) {
        self.0.on_rate_limited(route, wait);
    }
}

/// Why a replica could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The chat client could not be built or the server not reached.
    #[error("chat backend: {0}")]
    Chat(String),
    /// The handler settings do not make an engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The metrics registry refused a series.
    #[error("metrics: {0}")]
    Metrics(#[from] rcjobs_metrics::MetricsError),
    /// The queue worker could not be built.
    #[error(transparent)]
    Queue(#[from] rcjobs_queue::QueueError),
}

/// A fresh metrics registry for a replica talking to `chat`: its backend label, its routes,
/// every job kind known.
pub fn metrics_for(chat: &ChatConnection) -> Result<Metrics, WiringError> {
    Ok(Metrics::new(MetricsConfig {
        chat_backend: chat.backend_name().to_owned(),
        chat_endpoints: chat.routes().iter().map(|r| (*r).to_owned()).collect(),
        known_kinds: rcjobs_producer::Kind::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        ..MetricsConfig::default()
    })?)
}

/// What an [`Engine`] is made of.
pub struct EngineParts {
    /// The queue database (also holds `rcjobs_sync` and the shared rate limiter).
    pub pool: PgPool,
    /// Moodle's database.
    pub moodle: MoodleDb,
    /// The chat server.
    pub chat: ChatConnection,
    /// Handler settings (its `rate_limit` budgets the shared limiter).
    pub config: WorkerConfig,
    /// The replica's metrics (from [`metrics_for`]).
    pub metrics: Metrics,
    /// Also sees every chat request (a call counter), besides the metrics.
    pub observer: Option<Arc<dyn ChatObserver>>,
}

/// Connects the chat backend behind the shared rate limiter, with the metrics (and the
/// caller's observer) on every request, and builds the engine around it.
pub async fn build_engine(parts: EngineParts) -> Result<Arc<Engine>, WiringError> {
    let gate: Arc<dyn RequestGate> = Arc::new(PgRequestGate::new(
        parts.pool.clone(),
        parts.config.rate_limit.clone(),
    ));
    let mut observers: Vec<Arc<dyn ChatObserver>> = vec![Arc::new(parts.metrics.clone())];
    observers.extend(parts.observer);
    let chat = parts
        .chat
        .connect(gate, Arc::new(Observers(observers)))
        .await?;
    tracing::info!(backend = chat.backend_name(), bot = %chat.bot_username(), "connected to the chat server");
    Ok(Arc::new(Engine::new(
        parts.pool,
        parts.moodle,
        chat,
        parts.config,
        Some(parts.metrics),
    )?))
}

/// What a replica's queue worker is made of.
pub struct WorkerParts {
    /// The engine (from [`build_engine`]); several workers may share one.
    pub engine: Arc<Engine>,
    /// The queue worker's settings (pool, concurrency, queues, leases, retry policy); its
    /// hooks are set here, so give yours as `hooks`.
    pub queue: WorkerBuilder,
    /// Also told of every queue event, besides the metrics.
    pub hooks: Option<Arc<dyn QueueHooks>>,
}

/// The replica as users run it: every handler registered, the periodic reconcile, the
/// stats sampler, and the queue events counted in the engine's metrics (and told to the
/// caller's hooks).
pub fn build_worker(parts: WorkerParts) -> Result<WorkerStack, WiringError> {
    let metrics = parts.engine.metrics.clone();
    let mut hooks: Vec<Arc<dyn QueueHooks>> = Vec::new();
    if let Some(m) = &metrics {
        hooks.push(Arc::new(MetricsHooks::new(m.clone())));
    }
    hooks.extend(parts.hooks);
    let queue = parts.queue.hooks(Arc::new(Hooks(hooks)));
    Ok(WorkerStack::build(queue, parts.engine, metrics)?)
}

/// Several queue hooks as one.
struct Hooks(Vec<Arc<dyn QueueHooks>>);

impl QueueHooks for Hooks {
    fn claimed(&self, job: &JobInfo, wait: Duration) {
        self.0.iter().for_each(|h| h.claimed(job, wait));
    }
    fn finished(&self, job: &JobInfo, outcome: JobOutcome, duration: Duration) {
        self.0
            .iter()
            .for_each(|h| h.finished(job, outcome, duration));
    }
    fn completed(&self, job: &JobInfo) {
        self.0.iter().for_each(|h| h.completed(job));
    }
    fn retried(&self, job: &JobInfo, run_at: chrono::DateTime<chrono::Utc>) {
        self.0.iter().for_each(|h| h.retried(job, run_at));
    }
    fn snoozed(&self, job: &JobInfo, until: chrono::DateTime<chrono::Utc>) {
        self.0.iter().for_each(|h| h.snoozed(job, until));
    }
    fn dead(&self, job: &JobInfo, reason: &str) {
        self.0.iter().for_each(|h| h.dead(job, reason));
    }
    fn superseded(&self, job: &JobInfo) {
        self.0.iter().for_each(|h| h.superseded(job));
    }
    fn lease_lost(&self, job: &JobInfo, why: LeaseLoss) {
        self.0.iter().for_each(|h| h.lease_lost(job, why));
    }
    fn swept(&self, report: &SweepReport) {
        self.0.iter().for_each(|h| h.swept(report));
    }
    fn claim_batch(&self, queue: &str, n: usize) {
        self.0.iter().for_each(|h| h.claim_batch(queue, n));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn matrix() -> ChatConnection {
        ChatConnection::Matrix(matrix::MatrixConfig::new(
            url::Url::parse("http://127.0.0.1:8008").unwrap(),
            matrix::Auth::Token(matrix::Secret::new("syt_x")),
        ))
    }

    fn rocketchat() -> ChatConnection {
        ChatConnection::RocketChat(rcjobs_rocketchat::RocketChatConfig::new(
            url::Url::parse("http://127.0.0.1:3000").unwrap(),
            rcjobs_rocketchat::Auth::Token {
                user_id: "bot".into(),
                token: rcjobs_rocketchat::Secret::new("t"),
            },
        ))
    }

    /// The series of `rcjobs_chat_requests_total` for `backend` and `endpoint`, if any.
    fn requests(m: &Metrics, backend: &str, endpoint: &str) -> bool {
        m.encode().unwrap().lines().any(|l| {
            l.starts_with("rcjobs_chat_requests_total{")
                && l.contains(&format!("backend=\"{backend}\""))
                && l.contains(&format!("endpoint=\"{endpoint}\""))
        })
    }

    #[test]
    fn route_labels_are_the_backends_own() {
        let mx = metrics_for(&matrix()).unwrap();
        let observer: &dyn ChatObserver = &mx;
        observer.on_response("admin.join", Some(200), Duration::from_millis(3));
        observer.on_response("groups.invite", Some(200), Duration::from_millis(3));
        assert!(requests(&mx, "matrix", "admin.join"));
        assert!(
            !requests(&mx, "matrix", "groups.invite"),
            "not a Matrix route"
        );
        assert!(requests(&mx, "matrix", "other"));

        let rc = metrics_for(&rocketchat()).unwrap();
        let observer: &dyn ChatObserver = &rc;
        observer.on_response("groups.invite", None, Duration::from_millis(3));
        assert!(requests(&rc, "rocketchat", "groups.invite"));
        assert_eq!(
            (rocketchat().backend_name(), matrix().backend_name()),
            ("rocketchat", "matrix")
        );
    }

    #[test]
    fn observers_all_see_every_exchange() {
        #[derive(Default)]
        struct Count(std::sync::atomic::AtomicUsize);
        impl ChatObserver for Count {
            fn on_response(&self, _: &str, _: Option<u16>, _: Duration) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let both = Observers(vec![a.clone(), b.clone()]);
        rcjobs_rocketchat::RequestObserver::on_response(
            &RocketChatObserver(Arc::new(both)),
            "me",
            0,
            Duration::ZERO,
        );
        assert_eq!(a.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(b.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
