//! The statements the runtime is built on: claim a batch, acknowledge in batches with a
//! compare-and-swap on (id, fencing token), renew leases, sweep expired ones.
//!
//! Public so tests and tools can drive the protocol step by step; applications normally use
//! [`crate::Worker`].

use crate::stored_time::StoredTime;
use crate::QueueError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

/// A job leased to a worker: `token` fences every later state change.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// Job id.
    pub id: i64,
    /// Fencing token of this lease; acknowledgements must present it.
    pub token: i32,
    /// Kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// Priority (lower first).
    pub priority: i16,
    /// Payload.
    pub payload: Value,
    /// Attempt number, starting at 1 (crash redeliveries count).
    pub attempt: i32,
    /// Attempt limit.
    pub max_attempts: i32,
    /// Exclusion key, if any.
    pub exclusion_key: Option<String>,
    /// When the job was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it became due.
    pub run_at: DateTime<Utc>,
    /// When this attempt was claimed.
    pub started_at: DateTime<Utc>,
}

type ClaimRow = (
    i64,
    i32,
    String,
    String,
    i16,
    Json<Value>,
    i32,
    i32,
    Option<String>,
    StoredTime,
    StoredTime,
    StoredTime,
);

/// Claims up to `limit` due jobs of `queue` (priority, then run_at, then id) with
/// `FOR UPDATE SKIP LOCKED`, leasing them to `worker_id` for `lease_ttl`. Each claim
/// increments the job's attempt and fencing token.
pub async fn claim(
    pool: &PgPool,
    queue: &str,
    limit: usize,
    lease_ttl: Duration,
    worker_id: Uuid,
) -> Result<Vec<ClaimedJob>, QueueError> {
    let rows: Vec<ClaimRow> = sqlx::query_as(
        "SELECT id, token, kind, queue, priority, payload, attempt, max_attempts, exclusion_key,
                enqueued_at, run_at, started_at
         FROM rcjobs.claim_jobs($1, $2, $3, $4)",
    )
    .bind(queue)
    .bind(i32::try_from(limit).unwrap_or(i32::MAX))
    .bind(lease_ttl.as_secs_f64())
    .bind(worker_id)
    .fetch_all(pool)
    .await?;
    let mut jobs: Vec<ClaimedJob> = rows
        .into_iter()
        .map(|r| ClaimedJob {
            id: r.0,
            token: r.1,
            kind: r.2,
            queue: r.3,
            priority: r.4,
            payload: r.5 .0,
            attempt: r.6,
            max_attempts: r.7,
            exclusion_key: r.8,
            enqueued_at: r.9 .0,
            run_at: r.10 .0,
            started_at: r.11 .0,
        })
        .collect();
    jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
    Ok(jobs)
}

/// Which acknowledgements the database accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckReport {
    /// Accepted: the job moved on.
    pub accepted: Vec<i64>,
    /// Rejected: the token was stale (the lease expired and the job was swept, re-claimed,
    /// cancelled or finished by someone else). The caller's result is discarded.
    pub rejected: Vec<i64>,
}

/// Completes running jobs in one statement (CAS on id and token); completed jobs move to
/// history and their exclusion lanes advance.
pub async fn complete(pool: &PgPool, leases: &[(i64, i32)]) -> Result<AckReport, QueueError> {
    if leases.is_empty() {
        return Ok(AckReport::default());
    }
    let ids: Vec<i64> = leases.iter().map(|l| l.0).collect();
    let tokens: Vec<i32> = leases.iter().map(|l| l.1).collect();
    let accepted: Vec<i64> = sqlx::query_scalar("SELECT rcjobs.complete_jobs($1, $2)")
        .bind(&ids)
        .bind(&tokens)
        .fetch_all(pool)
        .await?;
    let set: HashSet<i64> = accepted.iter().copied().collect();
    let rejected = ids.into_iter().filter(|id| !set.contains(id)).collect();
    Ok(AckReport { accepted, rejected })
}

/// What to do with a running job that did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Try again at `run_at` (dead instead when attempts are used up).
    Retry {
        /// When to retry.
        run_at: DateTime<Utc>,
        /// Why it failed.
        error: String,
    },
    /// Dead at once.
    Dead {
        /// Why.
        error: String,
    },
    /// Back to the queue at `until` without using an attempt.
    Snooze {
        /// When to run again.
        until: DateTime<Utc>,
    },
    /// Back to the queue now without using an attempt (claimed but never started).
    Release,
}

/// Where a settled job ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Back to ready at its retry time.
    Retried,
    /// Moved to history as dead.
    Dead,
    /// Back to ready without using an attempt.
    Snoozed,
    /// Handed back unstarted.
    Released,
    /// A newer pending job with the same dedup key covers it: finished as superseded.
    Superseded,
}

/// Settles running jobs (CAS on id and token). Jobs missing from the result had stale tokens.
pub async fn settle(
    pool: &PgPool,
    items: &[(i64, i32, Settle)],
) -> Result<Vec<(i64, SettleOutcome)>, QueueError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(items.len());
    let mut tokens = Vec::with_capacity(items.len());
    let mut actions = Vec::with_capacity(items.len());
    let mut run_ats: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(items.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(items.len());
    for (id, token, s) in items {
        ids.push(*id);
        tokens.push(*token);
        let (a, at, e) = match s {
            Settle::Retry { run_at, error } => ("retry", Some(*run_at), Some(error.as_str())),
            Settle::Dead { error } => ("dead", None, Some(error.as_str())),
            Settle::Snooze { until } => ("snooze", Some(*until), None),
            Settle::Release => ("release", None, None),
        };
        actions.push(a);
        run_ats.push(at);
        errors.push(e);
    }
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT job_id, outcome FROM rcjobs.settle_jobs($1, $2, $3, $4, $5)")
            .bind(&ids)
            .bind(&tokens)
            .bind(&actions)
            .bind(&run_ats)
            .bind(&errors)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, o)| {
            let o = match o.as_str() {
                "retry" => SettleOutcome::Retried,
                "snooze" => SettleOutcome::Snoozed,
                "release" => SettleOutcome::Released,
                "superseded" => SettleOutcome::Superseded,
                _ => SettleOutcome::Dead,
            };
            (id, o)
        })
        .collect())
}

/// Extends the leases still held (CAS on id and token); returns the ids still held. A lease
/// missing from the result is lost: the job was swept, re-claimed or finished elsewhere.
/// Rows locked at that moment (being acknowledged) are skipped, not waited for.
pub async fn renew(
    pool: &PgPool,
    leases: &[(i64, i32)],
    lease_ttl: Duration,
) -> Result<Vec<i64>, QueueError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = leases.iter().map(|l| l.0).collect();
    let tokens: Vec<i32> = leases.iter().map(|l| l.1).collect();
    // SKIP LOCKED: a row locked right now is being acknowledged or swept; waiting for it
    // could deadlock with our own acker, and it is not lost until the row says so.
    // Tokens come from a map, not a join with the list (see rcjobs.complete_jobs).
    let renewed: Vec<i64> = sqlx::query_scalar(
        "WITH m AS MATERIALIZED (
             SELECT jsonb_object_agg(u.id::text, u.token) AS tok
             FROM unnest($1::bigint[], $2::integer[]) AS u(id, token)),
         held AS (
             SELECT j.id FROM rcjobs.job j, m
             WHERE j.id = ANY ($1) AND j.state = 'running' AND j.token = (m.tok ->> j.id::text)::integer
             FOR UPDATE OF j SKIP LOCKED)
         UPDATE rcjobs.job j SET lease_until = now() + make_interval(secs => $3)
         FROM held WHERE j.id = held.id
         RETURNING j.id",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(lease_ttl.as_secs_f64())
    .fetch_all(pool)
    .await?;
    if renewed.len() == ids.len() {
        return Ok(renewed);
    }
    // rows skipped because locked still count as held if they still carry our token
    let got: HashSet<i64> = renewed.iter().copied().collect();
    let (mids, mtoks): (Vec<i64>, Vec<i32>) = leases
        .iter()
        .filter(|l| !got.contains(&l.0))
        .copied()
        .unzip();
    let busy: Vec<i64> = sqlx::query_scalar(
        "WITH m AS MATERIALIZED (
             SELECT jsonb_object_agg(u.id::text, u.token) AS tok
             FROM unnest($1::bigint[], $2::integer[]) AS u(id, token))
         SELECT j.id FROM rcjobs.job j, m
         WHERE j.id = ANY ($1) AND j.state = 'running' AND j.token = (m.tok ->> j.id::text)::integer",
    )
    .bind(&mids)
    .bind(&mtoks)
    .fetch_all(pool)
    .await?;
    let mut renewed = renewed;
    renewed.extend(busy);
    Ok(renewed)
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Expired leases found.
    pub expired: u64,
    /// Of those, jobs put back to ready.
    pub requeued: u64,
    /// Of those, jobs that used up their attempts and went dead.
    pub dead: u64,
    /// Of those, jobs covered by a newer pending job with the same dedup key.
    pub superseded: u64,
}

/// Returns jobs whose lease expired to the queue (a crash counts as an attempt). Safe to run
/// from every worker at once: rows are taken with SKIP LOCKED.
pub async fn sweep(pool: &PgPool, limit: usize) -> Result<SweepReport, QueueError> {
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT job_id, outcome FROM rcjobs.sweep($1)")
        .bind(limit as i32)
        .fetch_all(pool)
        .await?;
    let mut r = SweepReport {
        expired: rows.len() as u64,
        ..SweepReport::default()
    };
    for (_, o) in rows {
        match o.as_str() {
            "dead" => r.dead += 1,
            "superseded" => r.superseded += 1,
            _ => r.requeued += 1,
        }
    }
    Ok(r)
}
