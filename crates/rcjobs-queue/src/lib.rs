//! rcjobs-queue: a Postgres job queue with per-job leases, fencing tokens, durable retries,
//! dedup keys, per-key exclusion lanes, LISTEN/NOTIFY wakeups and O(1) counters.
//!
//! Layout:
//! - [`migrate`] / [`check_schema`]: the `rcjobs` schema (migrations in `/migrations`).
//! - [`register_kind`]: the kind registry the database validates jobs against.
//! - [`enqueue`] / [`enqueue_many`]: producers, on a pool or the caller's own transaction.
//!   SQL producers call `rcjobs.enqueue(kind, payload, …)` (role `rcjobs_producer`).
//! - [`lease`]: the claim / ack / renew / sweep statements the runtime is built on.
//! - [`Worker`]: the runtime (handlers, concurrency, heartbeats, batching, shutdown).
//! - [`admin`], [`control`] and [`stats`]: inspection and repair (pause, run now, reschedule,
//!   delete, bulk on a filter), counters for metrics.

mod copy;
mod copy_check;
mod enqueue;
mod error;
mod kind;
mod schema;
mod stored_time;

pub use copy::enqueue_copy;
pub use copy_check::{jsonb_text_len, jsonb_typeof};
pub use enqueue::{enqueue, enqueue_many, Enqueued, NewJob};
pub use error::QueueError;
pub use kind::{list_kinds, register_kind, KindSpec};
pub use schema::{check_schema, migrate, migrator, schema_version, SCHEMA_VERSION};
pub use stored_time::{check_run_at, display_time, run_at_max, StoredTime, RUN_AT_MIN};

/// NOTIFY channel the database signals when a job becomes runnable.
pub const NOTIFY_CHANNEL: &str = "rcjobs_jobs";

pub mod admin;
pub mod control;
pub mod lease;
pub mod retry;
pub mod stats;
mod worker;

pub use admin::{
    cancel_job, get_job, lane_info, list_jobs, matching_ids, parse_payload_filter, prune_history,
    retry_all_dead, retry_job, JobFilter, JobRecord, JobState, LaneInfo, RetryOutcome,
    DEFAULT_SCAN,
};
pub use control::{
    bulk_apply, bulk_targets, delete_job, is_paused, list_pauses, pause, reschedule, resume,
    run_now, BulkAction, BulkReport, Pause, PauseTarget,
};
pub use retry::RetryPolicy;
pub use stats::{paused_counts, scheduled_jobs, stats, QueueStats, StateCount, WorkerInfo};
pub use worker::{
    handler_fn, JobContext, JobError, JobHandler, JobInfo, JobOutcome, LeaseLoss, NoHooks,
    PayloadError, QueueHooks, Wakeup, Worker, WorkerBuilder, WorkerConfig,
};
