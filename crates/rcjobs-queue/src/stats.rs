//! Queue statistics from incrementally maintained counters (never `COUNT(*)` over jobs).

use crate::admin::JobState;
use crate::QueueError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Jobs in one (queue, kind, state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// State.
    pub state: JobState,
    /// Number of jobs.
    pub count: i64,
}

/// A worker process seen recently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Worker id (one per `Worker::run`).
    pub id: Uuid,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: i32,
    /// Queues served.
    pub queues: Vec<String>,
    /// Handler concurrency.
    pub concurrency: i32,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat.
    pub last_seen: DateTime<Utc>,
}

/// Snapshot for `rcjobs status` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Counts by (queue, kind, state); zero rows omitted. `ready` and `blocked` include the
    /// jobs not due yet, which [`QueueStats::scheduled`] counts apart.
    pub counts: Vec<StateCount>,
    /// Of `counts`, the pending jobs not due yet (delayed, backing off, the periodic
    /// reconcile's spread syncs), by (queue, kind) and the state they sit in.
    pub scheduled: Vec<StateCount>,
    /// How long the oldest due, unstarted job has waited (0 when none).
    pub oldest_ready_age_seconds: f64,
    /// The same per queue (queues with no due job are absent).
    pub oldest_ready_age_by_queue: Vec<(String, f64)>,
    /// Workers whose heartbeat is recent.
    pub workers: Vec<WorkerInfo>,
}

impl QueueStats {
    /// Total jobs in `state` across queues and kinds.
    pub fn total(&self, state: JobState) -> i64 {
        self.counts
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.count)
            .sum()
    }

    /// Jobs of (`queue`, `kind`) in `state` that are not due yet.
    pub fn scheduled_in(&self, queue: &str, kind: &str, state: JobState) -> i64 {
        self.scheduled
            .iter()
            .filter(|c| c.queue == queue && c.kind == kind && c.state == state)
            .map(|c| c.count)
            .sum()
    }

    /// Jobs not due yet, across queues and kinds.
    pub fn scheduled_total(&self) -> i64 {
        self.scheduled.iter().map(|c| c.count).sum()
    }

    /// Jobs ready and due now (waiting for a worker), across queues and kinds.
    pub fn due_total(&self) -> i64 {
        self.total(JobState::Ready)
            - self
                .scheduled
                .iter()
                .filter(|c| c.state == JobState::Ready)
                .map(|c| c.count)
                .sum::<i64>()
    }
}

fn state_counts(rows: Vec<(String, String, String, i64)>) -> Result<Vec<StateCount>, QueueError> {
    rows.into_iter()
        .map(|(queue, kind, state, count)| {
            Ok(StateCount {
                queue,
                kind,
                state: state.parse().map_err(QueueError::Conflict)?,
                count,
            })
        })
        .collect()
}

type WorkerRow = (
    Uuid,
    String,
    i32,
    Vec<String>,
    i32,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// Workers whose last heartbeat is younger than this count as alive.
pub const WORKER_ALIVE_WINDOW: Duration = Duration::from_secs(30);

/// Reads the counters (plus not yet compacted deltas), the oldest ready age (a skip
/// scan of the claim index: one probe per queue and priority) and the live workers.
/// Counting the scheduled jobs costs O(scheduled jobs); [`stats_capped`] bounds it.
pub async fn stats(pool: &PgPool) -> Result<QueueStats, QueueError> {
    Ok(stats_capped(pool, None).await?.0)
}

/// The counters alone, by (queue, kind, state): O(1) in the number of jobs.
pub async fn counts(pool: &PgPool) -> Result<Vec<StateCount>, QueueError> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT queue, kind, state, sum(n)::bigint FROM (
             SELECT queue, kind, state, n FROM rcjobs.stat_count
             UNION ALL SELECT queue, kind, state, n FROM rcjobs.stat_delta) c
         GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;
    state_counts(rows)
}

/// [`stats`] with the scheduled jobs counted up to `cap` per (queue, priority) group of the
/// claim index and up to `cap` blocked ones (`None`: all); true when a cap was reached (the
/// scheduled figures are then lower bounds, and the due ones upper bounds).
pub async fn stats_capped(
    pool: &PgPool,
    cap: Option<i64>,
) -> Result<(QueueStats, bool), QueueError> {
    let counts = counts(pool).await?;
    let (scheduled, capped) = match cap {
        None => (
            state_counts(
                sqlx::query_as(
                    "SELECT queue, kind, state, n FROM rcjobs.scheduled_counts() ORDER BY 1, 2, 3",
                )
                .fetch_all(pool)
                .await?,
            )?,
            false,
        ),
        Some(cap) => {
            let rows: Vec<(String, String, String, i64, bool)> = sqlx::query_as(
                "WITH r AS (
                     SELECT g.queue, g.priority, f.kind FROM rcjobs.ready_groups() g CROSS JOIN LATERAL (
                         SELECT j.kind FROM rcjobs.job j
                         WHERE j.state = 'ready' AND NOT j.paused AND j.queue = g.queue
                           AND j.priority = g.priority AND j.run_at > now()
                         LIMIT $1) f),
                 b AS (SELECT j.queue, j.kind FROM rcjobs.job j
                       WHERE j.state = 'blocked' AND j.run_at > now() LIMIT $1)
                 SELECT queue, kind, 'ready', count(*)::bigint,
                        bool_or(n_group >= $1) FROM (
                     SELECT queue, kind, count(*) OVER (PARTITION BY queue, priority) AS n_group FROM r) x
                 GROUP BY 1, 2
                 UNION ALL
                 SELECT queue, kind, 'blocked', count(*)::bigint,
                        (SELECT count(*) FROM b) >= $1 FROM b GROUP BY 1, 2
                 ORDER BY 1, 2, 3",
            )
            .bind(cap)
            .fetch_all(pool)
            .await?;
            let capped = rows.iter().any(|r| r.4);
            (
                state_counts(rows.into_iter().map(|r| (r.0, r.1, r.2, r.3)).collect())?,
                capped,
            )
        }
    };
    let by_queue: Vec<(String, f64)> = sqlx::query_as(
        "SELECT queue, greatest(extract(epoch FROM now() - run_at), 0)::float8
           FROM rcjobs.oldest_due_by_queue() ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let age = by_queue
        .iter()
        .map(|q| q.1)
        .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
    let workers: Vec<WorkerRow> = sqlx::query_as(
        "SELECT id, hostname, pid, queues, concurrency, started_at, last_seen FROM rcjobs.worker
         WHERE last_seen > now() - make_interval(secs => $1) ORDER BY started_at",
    )
    .bind(WORKER_ALIVE_WINDOW.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let st = QueueStats {
        counts,
        scheduled,
        oldest_ready_age_seconds: age.unwrap_or(0.0).max(0.0),
        oldest_ready_age_by_queue: by_queue,
        workers: workers
            .into_iter()
            .map(|w| WorkerInfo {
                id: w.0,
                hostname: w.1,
                pid: w.2,
                queues: w.3,
                concurrency: w.4,
                started_at: w.5,
                last_seen: w.6,
            })
            .collect(),
    };
    Ok((st, capped))
}

/// Folds counter deltas into the totals (workers do this every sweep interval).
pub async fn compact_stats(pool: &PgPool) -> Result<(), QueueError> {
    sqlx::query("SELECT rcjobs.compact_stats()")
        .execute(pool)
        .await?;
    Ok(())
}

/// Pending jobs that are not due yet (delayed, backing off, the periodic reconcile's spread
/// syncs). The counters' `ready` includes them; subtract this to get the work that is
/// waiting now. Costs O(scheduled jobs), not O(backlog).
pub async fn scheduled_jobs(pool: &PgPool) -> Result<i64, QueueError> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(sum(n), 0)::bigint FROM rcjobs.scheduled_counts()")
            .fetch_one(pool)
            .await?,
    )
}

/// Jobs held back by a kind pause (marked by a claim), by (queue, kind): O(paused jobs)
/// through their own partial index, nothing to read when no kind is paused.
pub async fn paused_counts(pool: &PgPool) -> Result<Vec<(String, String, i64)>, QueueError> {
    Ok(
        sqlx::query_as("SELECT queue, kind, n FROM rcjobs.paused_counts() ORDER BY 1, 2")
            .fetch_all(pool)
            .await?,
    )
}
