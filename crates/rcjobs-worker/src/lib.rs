//! rcjobs-worker: the job handlers that keep chat rooms in step with Moodle.
//!
//! * [`Engine`]: level-triggered handlers for every job kind ([`handlers`]): room
//!   convergence under a per-room lock, user-scoped jobs fanned in to room syncs, recycle
//!   bin, restore, periodic reconcile.
//! * [`planner`]: the pure room planner; [`mapping`]: username rules; [`naming`]: room
//!   names; [`password`]: random passwords for created accounts.
//! * [`state`]: the worker's schema `rcjobs_sync` (room mapping, converged membership,
//!   outcomes), migrated by [`migrate`].
//! * [`outcome`]: what a chat error means for a job (the one classification) and the
//!   recorded outcome codes.
//! * [`chat_retry`]: short in-handler retries of chat calls that failed transiently.
//! * [`limiter`]: the shared Postgres-backed rate limiter ([`PgRequestGate`]).
//! * [`settings`]: the settings Moodle supplies (mod_rocketchat's `config_plugins`), cached.
//! * [`runtime`]: registration with the queue runtime, queue hooks → metrics, the
//!   periodic `reconcile_all` scheduler.
//! * [`wiring`]: one replica put together (chat backend, limiter, observers, metrics,
//!   engine, queue worker), the same for the CLI, the harness and the tests.
//!
//! The worker never writes to Moodle tables.

#![forbid(unsafe_code)]

pub mod chat_retry;
pub mod config;
pub mod engine;
mod handlers;
pub mod limiter;
pub mod mapping;
pub mod naming;
pub mod outcome;
pub mod password;
pub mod planner;
pub mod preflight;
pub mod runtime;
pub mod settings;
pub mod state;
pub mod wiring;

pub use config::WorkerConfig;
pub use engine::{Engine, EngineError, HandlerError, JobInfo};
pub use handlers::next_period_start;
pub use limiter::{PgRequestGate, RateLimitConfig, RouteLimit};
pub use mapping::{MappingRule, UsernameMapping};
pub use outcome::{classify, ChatFailure, Code};
pub use state::{MemberRow, Outcome, RoomRecord, RoomState, SyncState};
pub use tokio_util::sync::CancellationToken;

/// Creates or upgrades schema `rcjobs_sync` (its own migration history table
/// `rcjobs_sync._sqlx_migrations`, so it never collides with the queue's migrations).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    migrator().run(pool).await
}

fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations");
    m.dangerous_set_table_name("rcjobs_sync._sqlx_migrations");
    m.create_schema("rcjobs_sync");
    m
}

/// Whether schema `rcjobs_sync` lacks a migration this binary has, read without the
/// migrator's session advisory lock: a worker behind a transaction-pooling PgBouncer must not
/// take that lock (lock and unlock can land on different server connections, and the lock
/// then stays on one of them, blocking every later migrator).
pub async fn migrations_pending(pool: &sqlx::PgPool) -> Result<bool, sqlx::Error> {
    let table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('rcjobs_sync._sqlx_migrations')::text")
            .fetch_one(pool)
            .await?;
    if table.is_none() {
        return Ok(true);
    }
    let applied: Vec<i64> = sqlx::query_scalar(
        "SELECT version FROM rcjobs_sync._sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await?;
    Ok(migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .any(|m| applied.binary_search(&m.version).is_err()))
}
