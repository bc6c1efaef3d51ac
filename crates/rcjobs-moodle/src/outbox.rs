//! The relay from the capture outbox (`{prefix}rcjobs_outbox`, in the Moodle database) into
//! the queue, wherever the queue lives.
//!
//! The triggers ([`crate::triggers`]) append the job each change asks for to the outbox, in
//! Moodle's transaction, with no validation, dedup or lock: that is what keeps their cost
//! inside Moodle's write small, and what makes a capture independent of the queue's database.
//! [`relay_once`] moves one batch:
//!
//! 1. in a Moodle-database transaction holding a transaction-level advisory lock on the
//!    outbox (`pg_try_advisory_xact_lock`: one relay at a time per outbox, so replicas never
//!    relay the same rows twice and jobs reach the queue in capture order; a replica that
//!    finds it taken skips the round), read the oldest rows;
//! 2. coalesce: rows with the same kind, dedup key and run time are one job (the first
//!    row's, which is the one the queue's dedup would keep);
//! 3. enqueue them in the queue database in one `rcjobs.enqueue_many` call, committed on
//!    return;
//! 4. only then delete the rows and commit.
//!
//! At least once: a crash between 3 and 4 relays the rows again; jobs with a dedup key fold
//! into the pending ones, the others (recycle-bin actions) run twice, which their handlers
//! tolerate (every handler re-reads Moodle and converges). A job the queue refuses (unknown
//! kind, payload too large) is logged and dropped, as the trigger's WARNING did before the
//! outbox: one bad row never blocks the rest.

use crate::Prefix;
use chrono::{DateTime, Utc};
use rcjobs_queue::{NewJob, QueueError};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows read per round by default (one `enqueue_many` call).
pub const DEFAULT_BATCH: i64 = 2000;

/// How often a worker replica looks at the outbox when it was empty: the delay a captured
/// change adds before its job exists (one indexed `min(id)` probe per replica per period on
/// the Moodle database; a notification from the triggers would serialize Moodle's commits).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

/// What can stop a relay round; the outbox rows stay where they are.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The Moodle database (outbox read or delete).
    #[error("outbox (moodle database): {0}")]
    Moodle(sqlx::Error),
    /// The queue database.
    #[error("outbox relay (queue database): {0}")]
    Queue(QueueError),
}

impl From<sqlx::Error> for RelayError {
    fn from(e: sqlx::Error) -> Self {
        RelayError::Moodle(e)
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Outbox rows read and deleted.
    pub rows: u64,
    /// Jobs handed to the queue after coalescing.
    pub jobs: u64,
    /// Jobs the queue refused (logged, dropped).
    pub refused: u64,
    /// Another relay held the outbox: nothing was done.
    pub busy: bool,
}

type Row = (
    i64,
    String,
    Value,
    i16,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
);

/// The outbox table of `prefix` (relative to the connection's search path, like every
/// Moodle query of this crate).
fn table(prefix: &Prefix) -> String {
    format!("{}rcjobs_outbox", prefix.as_str())
}

/// Whether the outbox of `prefix` exists (the trigger set was installed at least once).
pub async fn exists(moodle: &PgPool, prefix: &Prefix) -> Result<bool, RelayError> {
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table(prefix))
        .fetch_one(moodle)
        .await?;
    Ok(found.is_some())
}

/// Rows waiting in the outbox (0 when there is no outbox).
pub async fn pending(moodle: &PgPool, prefix: &Prefix) -> Result<i64, RelayError> {
    if !exists(moodle, prefix).await? {
        return Ok(0);
    }
    // `table` is the validated prefix plus a constant.
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        table(prefix)
    )))
    .fetch_one(moodle)
    .await?)
}

/// Relays at most `batch` rows of `prefix`'s outbox from `moodle` into the queue at `queue`
/// (the same pool when the queue lives in the Moodle database). See the module docs.
pub async fn relay_once(
    moodle: &PgPool,
    queue: &PgPool,
    prefix: &Prefix,
    batch: i64,
) -> Result<RelayReport, RelayError> {
    let t = table(prefix);
    let mut tx = moodle.begin().await?;
    let locked: Option<bool> = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext('rcjobs_outbox'), c.oid::int)
           FROM pg_class c WHERE c.oid = to_regclass($1)",
    )
    .bind(&t)
    .fetch_optional(&mut *tx)
    .await?;
    match locked {
        None => return Ok(RelayReport::default()), // no outbox: nothing captured yet
        Some(false) => {
            return Ok(RelayReport {
                busy: true,
                ..RelayReport::default()
            })
        }
        Some(true) => {}
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, kind, payload, priority, run_at, dedup_key, exclusion_key FROM {t} ORDER BY id LIMIT $1"
    )))
    .bind(batch.max(1))
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(RelayReport::default());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let jobs = coalesce(rows);
    let refused = enqueue(queue, &jobs).await?;
    // Only now, with the jobs committed in the queue database, may the rows go.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {t} WHERE id = ANY($1)"
    )))
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(RelayReport {
        rows: ids.len() as u64,
        jobs: jobs.len() as u64,
        refused,
        busy: false,
    })
}

/// Relays until the outbox is empty (or another relay holds it); the summed report.
pub async fn relay_all(
    moodle: &PgPool,
    queue: &PgPool,
    prefix: &Prefix,
) -> Result<RelayReport, RelayError> {
    let mut total = RelayReport::default();
    loop {
        let r = relay_once(moodle, queue, prefix, DEFAULT_BATCH).await?;
        total.rows += r.rows;
        total.jobs += r.jobs;
        total.refused += r.refused;
        total.busy |= r.busy;
        if r.busy || r.rows < DEFAULT_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Rows as jobs, in order, each (kind, dedup key, run time) once: the queue would fold the
/// later ones into the first anyway, so they need not cross the network.
fn coalesce(rows: Vec<Row>) -> Vec<NewJob> {
    let mut seen: HashSet<(String, String, Option<DateTime<Utc>>)> = HashSet::new();
    let mut jobs = Vec::with_capacity(rows.len());
    for (_, kind, payload, priority, run_at, dedup, excl) in rows {
        if let Some(d) = &dedup {
            if !seen.insert((kind.clone(), d.clone(), run_at)) {
                continue;
            }
        }
        let mut j = NewJob::new(kind, payload).priority(priority);
        j.run_at = run_at;
        j.dedup_key = dedup;
        j.exclusion_key = excl;
        jobs.push(j);
    }
    jobs
}

/// Enqueues `jobs` in one call; if the queue refuses the batch, one by one so only the
/// refused jobs are dropped. Returns how many were refused.
async fn enqueue(queue: &PgPool, jobs: &[NewJob]) -> Result<u64, RelayError> {
    match rcjobs_queue::enqueue_many(queue, jobs).await {
        Ok(_) => Ok(0),
        Err(QueueError::Rejected(_)) => {
            let mut refused = 0;
            for j in jobs {
                match rcjobs_queue::enqueue(queue, j).await {
                    Ok(_) => {}
                    Err(QueueError::Rejected(why)) => {
                        refused += 1;
                        tracing::warn!(kind = %j.kind, payload = %j.payload, %why, "captured change refused by the queue; dropped");
                    }
                    Err(e) => return Err(RelayError::Queue(e)),
                }
            }
            Ok(refused)
        }
        Err(e) => Err(RelayError::Queue(e)),
    }
}

/// The relay as a worker replica runs it ([`DEFAULT_INTERVAL`] between empty rounds, none
/// after a full one) until `stop`. A failed round (either database away) is logged and
/// retried after a growing pause of at most 5 s; the rows wait in the outbox meanwhile.
pub async fn run(
    moodle: PgPool,
    queue: PgPool,
    prefix: Prefix,
    every: Duration,
    stop: CancellationToken,
) {
    let mut failures: u32 = 0;
    loop {
        let wait = match relay_all(&moodle, &queue, &prefix).await {
            Ok(r) => {
                if failures > 0 {
                    tracing::info!("outbox relay recovered");
                }
                failures = 0;
                if r.rows > 0 {
                    tracing::debug!(
                        rows = r.rows,
                        jobs = r.jobs,
                        refused = r.refused,
                        "outbox relayed"
                    );
                }
                every
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "outbox relay failed; the captured changes wait in the outbox");
                }
                (every * failures.min(25)).min(Duration::from_secs(5))
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}
