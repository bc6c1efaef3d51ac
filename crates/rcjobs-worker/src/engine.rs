//! [`Engine`]: everything a handler needs (queue pool, sync state, Moodle, chat, mapping,
//! settings, metrics), the error classes, and the dispatch from a job to its handler.

use crate::chat_retry::CallRetry;
use crate::config::WorkerConfig;
use crate::mapping::{RuleError, UsernameMapping};
use crate::state::SyncState;
use chrono::{DateTime, Utc};
use rcjobs_chat::{ChatBackend, ChatResult};
use rcjobs_metrics::{MembershipAction, MembershipFailure, Metrics};
use rcjobs_moodle::{MoodleDb, MoodleError};
use rcjobs_producer::{EnqueueError, EnqueueOptions, Job, PayloadError};
use serde_json::Value;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;

/// Priority of event-driven room syncs (lower runs first). A mass enrolment enqueues tens of
/// thousands of user-scoped fan-out jobs ahead of the first room sync; the sync re-reads all
/// of Moodle's committed state, so running it first converges the room at once and the
/// remaining fan-outs fold into (at most) one more pending sync.
pub const ROOM_SYNC_PRIORITY: i16 = -10;

/// The parts of a leased job a handler looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// Job id (recorded with outcomes).
    pub id: i64,
    /// Kind name.
    pub kind: String,
    /// 1 for the first run.
    pub attempt: i32,
    /// The exclusion key the job holds, if any (room syncs must hold `room:<cmid>`).
    pub exclusion_key: Option<String>,
    /// When the job was enqueued (how long a room has waited for Moodle's own id).
    pub enqueued_at: chrono::DateTime<chrono::Utc>,
}

/// How a handler failed, in the queue's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying with backoff (network, database, 5xx).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Nothing can be done by retrying (invalid payload, room gone, permission missing); the
    /// reason is recorded in `rcjobs_sync.outcome` where it concerns a room.
    #[error("permanent: {0}")]
    Permanent(String),
    /// A database blip (connection lost, server restarting, serialization failure or
    /// deadlock): worth re-running the job after a short wait rather than the durable
    /// backoff. [`crate::runtime::SyncHandler`] re-runs it a few times in place and only
    /// then turns it into a [`HandlerError::Retryable`] (docs/decisions/0008).
    #[error("transient database error: {0}")]
    TransientDb(String),
    /// Rate limited: run again at `until` without using an attempt.
    #[error("snoozed until {until}: {reason}")]
    Snooze {
        /// When to run again.
        until: DateTime<Utc>,
        /// Why.
        reason: String,
    },
}

/// Whether a database error is a blip that a short wait can ride out: the connection was
/// lost or refused (a restart, a failover, `pg_terminate_backend`), the pool found no
/// connection in time, or the server asked for a retry (SQLSTATE class 08, 57P admin
/// shutdown / crash, 40001 serialization failure, 40P01 deadlock). The same classes as
/// `rcjobs_queue::QueueError::is_transient`; decode, constraint or SQL errors are not.
pub fn is_transient_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "40001" || code == "40P01"
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        if is_transient_db(&e) {
            HandlerError::TransientDb(format!("queue database: {e}"))
        } else {
            HandlerError::Retryable(format!("queue database: {e}"))
        }
    }
}

impl From<MoodleError> for HandlerError {
    fn from(e: MoodleError) -> Self {
        match e {
            MoodleError::InvalidPrefix(_) | MoodleError::Invalid(_) => {
                HandlerError::Permanent(e.to_string())
            }
            MoodleError::Db(ref db) if is_transient_db(db) => {
                HandlerError::TransientDb(e.to_string())
            }
            other => HandlerError::Retryable(other.to_string()),
        }
    }
}

impl From<EnqueueError> for HandlerError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Queue(rcjobs_queue::QueueError::Database(ref db))
                if is_transient_db(db) =>
            {
                HandlerError::TransientDb(format!("enqueue follow-up jobs: {db}"))
            }
            EnqueueError::Queue(q) if !matches!(q, rcjobs_queue::QueueError::Rejected(_)) => {
                HandlerError::Retryable(format!("enqueue follow-up jobs: {q}"))
            }
            other => HandlerError::Permanent(format!("enqueue follow-up jobs: {other}")),
        }
    }
}

impl From<PayloadError> for HandlerError {
    fn from(e: PayloadError) -> Self {
        HandlerError::Permanent(e.to_string())
    }
}

/// Settings that cannot be turned into an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A username mapping rule does not compile.
    #[error(transparent)]
    Mapping(#[from] RuleError),
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct Engine {
    pub(crate) pool: PgPool,
    pub(crate) state: SyncState,
    pub(crate) moodle: MoodleDb,
    pub(crate) chat: Arc<dyn ChatBackend>,
    pub(crate) mapping: UsernameMapping,
    pub(crate) cfg: WorkerConfig,
    pub(crate) metrics: Option<Metrics>,
    pub(crate) call_retry: CallRetry,
    pub(crate) settings: Arc<crate::settings::SettingsCache>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.chat.backend_name())
            .field("bot", &self.chat.bot_username())
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine on the queue database `pool` (which also holds `rcjobs_sync`), a Moodle
    /// model and a chat backend.
    pub fn new(
        pool: PgPool,
        moodle: MoodleDb,
        chat: Arc<dyn ChatBackend>,
        cfg: WorkerConfig,
        metrics: Option<Metrics>,
    ) -> Result<Engine, EngineError> {
        let mapping = UsernameMapping::new(&cfg.username_rules)?;
        Ok(Engine {
            state: SyncState::for_backend(pool.clone(), chat.backend_name()),
            pool,
            moodle,
            chat,
            mapping,
            settings: Arc::new(crate::settings::SettingsCache::new(&cfg)),
            cfg,
            metrics,
            call_retry: CallRetry::default(),
        })
    }

    /// Whether Moodle's `rocketchatid` names rooms of this backend. Only Rocket.Chat's: the
    /// plugin stores its group ids there. On any other backend Moodle stores nothing of
    /// ours (a site moving from Rocket.Chat still holds Rocket.Chat ids there), and the
    /// worker's recorded mapping is the room's identity.
    pub(crate) fn moodle_ids_trusted(&self) -> bool {
        self.chat.backend_name() == "rocketchat"
    }

    /// Moodle's view of a chat activity as the handlers may use it: its room id blanked
    /// unless it names a room of this backend ([`Engine::moodle_ids_trusted`]).
    pub(crate) fn trusted(&self, mut r: rcjobs_moodle::Room) -> rcjobs_moodle::Room {
        if !self.moodle_ids_trusted() {
            r.rocketchatid.clear();
        }
        r
    }

    /// The sync state store.
    pub fn state(&self) -> &SyncState {
        &self.state
    }

    /// The settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.cfg
    }

    /// The settings Moodle can supply, resolved against [`Engine::config`] (cached,
    /// re-read every `moodle_settings_refresh_secs`; see [`crate::settings`]).
    pub async fn effective_settings(&self) -> Result<Arc<crate::config::Effective>, HandlerError> {
        Ok(self.settings.get(&self.cfg, &self.moodle).await?)
    }

    /// Runs one chat call, retried inside the handler while it fails transiently.
    pub(crate) async fn retrying<T, F, Fut>(&self, call: F) -> ChatResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ChatResult<T>>,
    {
        self.call_retry.run(call).await
    }

    pub(crate) fn applied(&self, action: MembershipAction, n: usize) {
        if let (Some(m), true) = (&self.metrics, n > 0) {
            m.membership_applied(action, n as u64);
        }
    }

    pub(crate) fn failed(&self, action: MembershipAction, why: MembershipFailure, n: usize) {
        if let (Some(m), true) = (&self.metrics, n > 0) {
            m.membership_failed(action, why, n as u64);
        }
    }

    /// Follow-up jobs go to the configured queue.
    ///
    /// Room syncs are enqueued with [`ROOM_SYNC_PRIORITY`]; other follow-ups keep the default.
    pub(crate) fn follow_up(&self) -> EnqueueOptions {
        EnqueueOptions {
            queue: Some(self.cfg.queue.clone()),
            ..EnqueueOptions::default()
        }
    }

    /// Enqueues event-driven syncs of `cmids` (deduplicated per room among pending jobs).
    pub(crate) async fn enqueue_syncs(
        &self,
        cmids: impl IntoIterator<Item = i64>,
    ) -> Result<usize, HandlerError> {
        let opts = EnqueueOptions {
            priority: ROOM_SYNC_PRIORITY,
            ..self.follow_up()
        };
        let jobs: Vec<(Job, EnqueueOptions)> = cmids
            .into_iter()
            .map(|cmid| (crate::handlers::sync_job(cmid, false), opts.clone()))
            .collect();
        let n = jobs.len();
        for chunk in jobs.chunks(1000) {
            rcjobs_producer::enqueue_many(&self.pool, chunk).await?;
        }
        Ok(n)
    }

    /// Runs one job: parses (and validates) the payload, then dispatches on its kind.
    /// Returns a one-line summary for the log.
    pub async fn handle(&self, job: &JobInfo, payload: &Value) -> Result<String, HandlerError> {
        let parsed = Job::parse(&job.kind, payload)?;
        crate::handlers::dispatch(self, job, parsed).await
    }
}
