//! rcjobs-worker: the job handlers that keep chat rooms in step with Moodle.
//!
//! * [`Engine`]: level-triggered handlers for every job kind ([`handlers`]): room
//!   convergence under a per-room lock, user-scoped jobs fanned in to room syncs, recycle
//!   bin, restore, periodic reconcile.
//! * [`planner`]: the pure room planner; [`mapping`]: username rules; [`naming`]: room
//!   names; [`password`]: random passwords for created accounts.
//! * [`state`]: the worker's schema `rcjobs_sync` (room mapping, converged membership,
//!   outcomes), migrated by [`migrate`].
//! * [`limiter`]: the shared Postgres-backed rate limiter ([`PgRequestGate`]).
//! * [`runtime`]: registration with the queue runtime, queue hooks → metrics, the
//!   periodic `reconcile_all` scheduler.
//!
//! The worker never writes to Moodle tables.

#![forbid(unsafe_code)]

pub mod config;
pub mod engine;
mod handlers;
pub mod limiter;
pub mod mapping;
pub mod naming;
pub mod password;
pub mod planner;
pub mod runtime;
pub mod state;

pub use config::WorkerConfig;
pub use engine::{chat_error, Engine, EngineError, HandlerError, JobInfo};
pub use handlers::next_period_start;
pub use limiter::{PgRequestGate, RateLimitConfig, RouteLimit};
pub use mapping::{MappingRule, UsernameMapping};
pub use state::{MemberRow, Outcome, RoomRecord, RoomState, SyncState};
pub use tokio_util::sync::CancellationToken;

/// Creates or upgrades schema `rcjobs_sync` (its own migration history table
/// `rcjobs_sync._sqlx_migrations`, so it never collides with the queue's migrations).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut m = sqlx::migrate!("./migrations");
    m.dangerous_set_table_name("rcjobs_sync._sqlx_migrations");
    m.create_schema("rcjobs_sync");
    m.run(pool).await
}
