//! Enqueue from Rust: single or bulk, on a pool or inside the caller's own transaction.

use crate::QueueError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;

/// A job to enqueue. Build with [`NewJob::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Registered kind (see [`crate::register_kind`]).
    pub kind: String,
    /// JSON object; validated against the kind by the database.
    pub payload: Value,
    /// Named queue (default `default`); workers choose which queues they serve.
    pub queue: String,
    /// Lower runs first.
    pub priority: i16,
    /// Earliest start; `None` = now. From 1970-01-01 to before 10000-01-01 UTC
    /// ([`crate::check_run_at`]).
    pub run_at: Option<DateTime<Utc>>,
    /// Unique per kind among jobs not yet started: an enqueue that meets a pending job with
    /// the same kind and key returns that job's id instead of adding one (pulling it forward
    /// when this one is due earlier), or supersedes it when it is a retry waiting in backoff.
    pub dedup_key: Option<String>,
    /// At most one job per key runs at a time; the key's pending job due first runs first
    /// (`run_at`, then enqueue order), and one that is not due never holds up one that is.
    pub exclusion_key: Option<String>,
    /// Attempts before the job goes dead; `None` = the kind's default.
    pub max_attempts: Option<i32>,
}

impl NewJob {
    /// A job for `kind` with the defaults (queue `default`, priority 0, now, no keys).
    pub fn new(kind: impl Into<String>, payload: Value) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload,
            queue: "default".into(),
            priority: 0,
            run_at: None,
            dedup_key: None,
            exclusion_key: None,
            max_attempts: None,
        }
    }
    /// Sets the queue.
    pub fn queue(mut self, q: impl Into<String>) -> NewJob {
        self.queue = q.into();
        self
    }
    /// Sets the priority (lower runs first).
    pub fn priority(mut self, p: i16) -> NewJob {
        self.priority = p;
        self
    }
    /// Delays the job until `t`.
    pub fn run_at(mut self, t: DateTime<Utc>) -> NewJob {
        self.run_at = Some(t);
        self
    }
    /// Sets the dedup key.
    pub fn dedup_key(mut self, k: impl Into<String>) -> NewJob {
        self.dedup_key = Some(k.into());
        self
    }
    /// Sets the exclusion key.
    pub fn exclusion_key(mut self, k: impl Into<String>) -> NewJob {
        self.exclusion_key = Some(k.into());
        self
    }
    /// Overrides the kind's attempt limit.
    pub fn max_attempts(mut self, n: i32) -> NewJob {
        self.max_attempts = Some(n);
        self
    }
}

/// Result of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id (the existing job's id when deduplicated).
    pub id: i64,
    /// True when a pending job with the same dedup key absorbed this enqueue.
    pub deduplicated: bool,
}

/// Enqueues one job. Pass `&mut *tx` to enqueue inside your own transaction (the job then
/// exists only if that transaction commits), or a pool.
pub async fn enqueue<'e, E>(exec: E, job: &NewJob) -> Result<Enqueued, QueueError>
where
    E: sqlx::PgExecutor<'e>,
{
    let (id, deduplicated): (i64, bool) = sqlx::query_as(
        "SELECT id, deduplicated FROM rcjobs.enqueue_ex($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&job.kind)
    .bind(Json(&job.payload))
    .bind(&job.queue)
    .bind(job.priority)
    .bind(job.run_at)
    .bind(&job.dedup_key)
    .bind(&job.exclusion_key)
    .bind(job.max_attempts)
    .fetch_one(exec)
    .await?;
    Ok(Enqueued { id, deduplicated })
}

/// Enqueues many jobs in one statement (UNNEST of parallel arrays); results are in input
/// order. All or nothing: one rejected job rejects the batch, naming its position.
pub async fn enqueue_many<'e, E>(exec: E, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError>
where
    E: sqlx::PgExecutor<'e>,
{
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    let payloads: Vec<Json<&Value>> = jobs.iter().map(|j| Json(&j.payload)).collect();
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let priorities: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
    let run_ats: Option<Vec<Option<DateTime<Utc>>>> = jobs
        .iter()
        .any(|j| j.run_at.is_some())
        .then(|| jobs.iter().map(|j| j.run_at).collect());
    let dedup: Option<Vec<Option<&str>>> = jobs
        .iter()
        .any(|j| j.dedup_key.is_some())
        .then(|| jobs.iter().map(|j| j.dedup_key.as_deref()).collect());
    let excl: Option<Vec<Option<&str>>> = jobs
        .iter()
        .any(|j| j.exclusion_key.is_some())
        .then(|| jobs.iter().map(|j| j.exclusion_key.as_deref()).collect());
    let max: Option<Vec<Option<i32>>> = jobs
        .iter()
        .any(|j| j.max_attempts.is_some())
        .then(|| jobs.iter().map(|j| j.max_attempts).collect());
    let rows: Vec<(i32, i64, bool)> = sqlx::query_as(
        "SELECT ord, id, deduplicated FROM rcjobs.enqueue_many($1, $2, $3, $4, $5, $6, $7, $8) ORDER BY ord",
    )
    .bind(kinds)
    .bind(payloads)
    .bind(queues)
    .bind(priorities)
    .bind(run_ats)
    .bind(dedup)
    .bind(excl)
    .bind(max)
    .fetch_all(exec)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(_, id, deduplicated)| Enqueued { id, deduplicated })
        .collect())
}
