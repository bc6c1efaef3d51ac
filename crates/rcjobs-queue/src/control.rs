//! The operator's verbs beyond retry and cancel: pause and resume a queue or a kind, run a
//! job now, reschedule it, delete it, and the bulk forms on a [`JobFilter`].
//!
//! Pauses are rows of `rcjobs.pause`, read by every claim (migration 0005): a pause holds on
//! every worker replica from its next claim and survives restarts.

use crate::admin::{get_job, matching_ids, JobFilter, JobState};
use crate::stored_time::check_run_at;
use crate::QueueError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// What a pause applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "name", rename_all = "snake_case")]
pub enum PauseTarget {
    /// Every job of this queue.
    Queue(String),
    /// Every job of this kind, in every queue.
    Kind(String),
}

impl PauseTarget {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            PauseTarget::Queue(q) => ("queue", q),
            PauseTarget::Kind(k) => ("kind", k),
        }
    }
}

impl std::fmt::Display for PauseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, n) = self.parts();
        write!(f, "{s} {n}")
    }
}

/// A pause in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// What is paused.
    pub target: PauseTarget,
    /// Since when.
    pub paused_at: DateTime<Utc>,
    /// Who paused it (as the operator's tool reported them).
    pub paused_by: String,
    /// Why, if given.
    pub reason: String,
}

/// Pauses a queue or a kind; false when it was already paused.
pub async fn pause(
    pool: &PgPool,
    target: &PauseTarget,
    by: &str,
    reason: &str,
) -> Result<bool, QueueError> {
    let (scope, name) = target.parts();
    Ok(sqlx::query_scalar("SELECT rcjobs.pause($1, $2, $3, $4)")
        .bind(scope)
        .bind(name)
        .bind(by)
        .bind(reason)
        .fetch_one(pool)
        .await?)
}

/// Resumes a queue or a kind and wakes the workers; false when it was not paused.
pub async fn resume(pool: &PgPool, target: &PauseTarget) -> Result<bool, QueueError> {
    let (scope, name) = target.parts();
    Ok(sqlx::query_scalar("SELECT rcjobs.resume($1, $2)")
        .bind(scope)
        .bind(name)
        .fetch_one(pool)
        .await?)
}

/// The pauses in force, queues first.
pub async fn list_pauses(pool: &PgPool) -> Result<Vec<Pause>, QueueError> {
    let rows: Vec<(String, String, DateTime<Utc>, String, String)> = sqlx::query_as(
        "SELECT scope, name, paused_at, paused_by, reason FROM rcjobs.pause ORDER BY scope DESC, name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(scope, name, paused_at, paused_by, reason)| Pause {
            target: if scope == "queue" {
                PauseTarget::Queue(name)
            } else {
                PauseTarget::Kind(name)
            },
            paused_at,
            paused_by,
            reason,
        })
        .collect())
}

/// Whether a job of `queue` and `kind` is held by one of `pauses`.
pub fn is_paused(pauses: &[Pause], queue: &str, kind: &str) -> bool {
    pauses.iter().any(|p| match &p.target {
        PauseTarget::Queue(q) => q == queue,
        PauseTarget::Kind(k) => k == kind,
    })
}

fn moved(id: i64, outcome: &str, verb: &str) -> Result<(), QueueError> {
    match outcome {
        "ok" => Ok(()),
        "not_found" => Err(QueueError::NotFound(id)),
        "running" => Err(QueueError::Conflict(format!(
            "job {id} is running; it cannot be {verb}"
        ))),
        _ => Err(QueueError::Conflict(format!(
            "job {id} has already finished; it cannot be {verb}"
        ))),
    }
}

/// Makes a pending job due now and first of its lane (it still waits for a running head).
pub async fn run_now(pool: &PgPool, id: i64) -> Result<(), QueueError> {
    let r: String = sqlx::query_scalar("SELECT rcjobs.move_job($1, NULL)")
        .bind(id)
        .fetch_one(pool)
        .await?;
    moved(id, &r, "run now")
}

/// Moves a pending job's run time; its lane re-chooses its head.
pub async fn reschedule(pool: &PgPool, id: i64, run_at: DateTime<Utc>) -> Result<(), QueueError> {
    check_run_at(Some(run_at)).map_err(QueueError::Rejected)?;
    let r: String = sqlx::query_scalar("SELECT rcjobs.move_job($1, $2)")
        .bind(id)
        .bind(run_at)
        .fetch_one(pool)
        .await?;
    moved(id, &r, "rescheduled")
}

/// Deletes a pending (not running) or dead job for good.
pub async fn delete_job(pool: &PgPool, id: i64) -> Result<(), QueueError> {
    let r: String = sqlx::query_scalar("SELECT outcome FROM rcjobs.delete_jobs(ARRAY[$1::bigint])")
        .bind(id)
        .fetch_one(pool)
        .await?;
    match r.as_str() {
        "deleted" => Ok(()),
        "not_found" => Err(QueueError::NotFound(id)),
        "running" => Err(QueueError::Conflict(format!(
            "job {id} is running; only pending or dead jobs can be deleted"
        ))),
        _ => match get_job(pool, id).await? {
            Some(j) => Err(QueueError::Conflict(format!(
                "job {id} is {}; only pending or dead jobs can be deleted (finished ones are pruned by retention)",
                j.state
            ))),
            None => Err(QueueError::NotFound(id)),
        },
    }
}

/// A bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BulkAction {
    /// Requeue dead jobs.
    Retry,
    /// Cancel pending jobs.
    Cancel,
    /// Make pending jobs due now.
    RunNow,
    /// Delete pending or dead jobs.
    Delete,
}

impl BulkAction {
    /// The states the action applies to when the filter names none.
    pub fn default_states(self) -> &'static [JobState] {
        match self {
            BulkAction::Retry => &[JobState::Dead],
            BulkAction::Cancel | BulkAction::RunNow => &[JobState::Ready, JobState::Blocked],
            // deleting pending work is rarer and riskier: the filter must say --state
            BulkAction::Delete => &[JobState::Dead],
        }
    }

    /// The states the action may apply to at all.
    pub fn allowed_states(self) -> &'static [JobState] {
        match self {
            BulkAction::Retry => &[JobState::Dead],
            BulkAction::Cancel | BulkAction::RunNow => &[JobState::Ready, JobState::Blocked],
            BulkAction::Delete => &[JobState::Ready, JobState::Blocked, JobState::Dead],
        }
    }

    /// Its name on the command line and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
            BulkAction::RunNow => "run-now",
            BulkAction::Delete => "delete",
        }
    }
}

impl std::str::FromStr for BulkAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "retry" => Ok(BulkAction::Retry),
            "cancel" => Ok(BulkAction::Cancel),
            "run-now" => Ok(BulkAction::RunNow),
            "delete" => Ok(BulkAction::Delete),
            _ => Err(format!(
                "unknown action {s:?} (retry, cancel, run-now, delete)"
            )),
        }
    }
}

/// Jobs a bulk action would take: ids newest first, at most `max`.
pub async fn bulk_targets(
    pool: &PgPool,
    action: BulkAction,
    filter: &JobFilter,
    max: i64,
) -> Result<Vec<i64>, QueueError> {
    let states = match filter.state {
        Some(_) => action.allowed_states(),
        None => action.default_states(),
    };
    matching_ids(pool, filter, states, max).await
}

/// What a bulk action did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkReport {
    /// Jobs the action applied to.
    pub done: u64,
    /// Jobs that had moved on meanwhile (started, finished, or covered by a pending duplicate).
    pub skipped: u64,
}

/// Applies `action` to `ids` (from [`bulk_targets`]); jobs that moved on meanwhile are skipped.
pub async fn bulk_apply(
    pool: &PgPool,
    action: BulkAction,
    ids: &[i64],
) -> Result<BulkReport, QueueError> {
    let outcomes: Vec<String> = match action {
        BulkAction::Retry => {
            sqlx::query_scalar("SELECT outcome FROM rcjobs.retry_dead($1)")
                .bind(ids)
                .fetch_all(pool)
                .await?
        }
        BulkAction::Cancel => {
            sqlx::query_scalar("SELECT rcjobs.cancel_job(i) FROM unnest($1::bigint[]) i")
                .bind(ids)
                .fetch_all(pool)
                .await?
        }
        BulkAction::RunNow => {
            sqlx::query_scalar("SELECT rcjobs.move_job(i, NULL) FROM unnest($1::bigint[]) i")
                .bind(ids)
                .fetch_all(pool)
                .await?
        }
        BulkAction::Delete => {
            sqlx::query_scalar("SELECT outcome FROM rcjobs.delete_jobs($1)")
                .bind(ids)
                .fetch_all(pool)
                .await?
        }
    };
    let done = outcomes
        .iter()
        .filter(|o| matches!(o.as_str(), "requeued" | "cancelled" | "ok" | "deleted"))
        .count() as u64;
    Ok(BulkReport {
        done,
        skipped: ids.len() as u64 - done,
    })
}
