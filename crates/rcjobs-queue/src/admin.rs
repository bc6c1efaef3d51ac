//! Inspection and repair: list, show, retry dead jobs, cancel, prune history.

use crate::stored_time::StoredTime;
use crate::QueueError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Where a job is in its life. `Ready` includes jobs waiting for a future `run_at`
/// (delayed or backing off); the first four are in the hot table, the rest in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its run time or a worker.
    Ready,
    /// Leased by a worker.
    Running,
    /// Waiting behind the head of its exclusion lane.
    Blocked,
    /// Finished successfully.
    Completed,
    /// Failed permanently or used up its attempts.
    Dead,
    /// Cancelled before it started.
    Cancelled,
    /// Covered by a newer pending job with the same dedup key.
    Superseded,
}

impl JobState {
    /// Every state, hot ones first.
    pub const ALL: [JobState; 7] = [
        JobState::Ready,
        JobState::Running,
        JobState::Blocked,
        JobState::Completed,
        JobState::Dead,
        JobState::Cancelled,
        JobState::Superseded,
    ];

    /// The name used in the database and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Blocked => "blocked",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
            JobState::Superseded => "superseded",
        }
    }

    /// Whether the job is finished (lives in history).
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            JobState::Ready | JobState::Running | JobState::Blocked
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {s:?} (one of {})", names.join(", "))
            })
    }
}

/// One job, pending or finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// State.
    pub state: JobState,
    /// Priority (lower first).
    pub priority: i16,
    /// Next (or last) run time.
    pub run_at: DateTime<Utc>,
    /// Payload.
    pub payload: Value,
    /// Attempts used.
    pub attempt: i32,
    /// Attempt limit.
    pub max_attempts: i32,
    /// Dedup key.
    pub dedup_key: Option<String>,
    /// Exclusion key.
    pub exclusion_key: Option<String>,
    /// Enqueue time.
    pub enqueued_at: DateTime<Utc>,
    /// Start of the latest attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// End time (finished jobs).
    pub finished_at: Option<DateTime<Utc>>,
    /// Lease expiry (running jobs).
    pub lease_until: Option<DateTime<Utc>>,
    /// Worker holding or last holding the job.
    pub worker_id: Option<Uuid>,
    /// Latest error.
    pub last_error: Option<String>,
    /// Error history: `[{attempt, at, class, error}, …]` (latest 25).
    pub errors: Value,
    /// Times snoozed (rate limits).
    pub snoozes: i32,
    /// The pending job that covered this one (superseded jobs).
    pub superseded_by: Option<i64>,
}

/// Filter for [`list_jobs`] and the bulk actions ([`crate::control`]).
///
/// State, kind and queue are plain column tests. `error_like` and `payload` cannot use an
/// index (no index on either column: one on the payload would slow every enqueue), so a
/// filter with either reads at most the newest [`JobFilter::scan`] rows of each table
/// (default [`DEFAULT_SCAN`]): bounded cost, and older matches are not found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only jobs enqueued at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only jobs whose latest error contains this text (case-insensitive; `%` and `_` are
    /// wildcards).
    pub error_like: Option<String>,
    /// Only jobs whose payload contains these fields with these values (`{"cmid": 42}`).
    pub payload: Option<Value>,
    /// Rows read per table when `error_like` or `payload` is set; 0 means [`DEFAULT_SCAN`].
    pub scan: i64,
    /// At most this many (newest first); 0 means 100.
    pub limit: i64,
}

/// Rows of each table a filter on error text or payload reads at most.
pub const DEFAULT_SCAN: i64 = 100_000;

impl JobFilter {
    /// Whether the filter reads rows no index narrows (and so is bounded by `scan`).
    pub fn is_bounded_scan(&self) -> bool {
        self.error_like.is_some() || self.payload.is_some()
    }

    fn scan_rows(&self) -> Option<i64> {
        self.is_bounded_scan().then_some(if self.scan <= 0 {
            DEFAULT_SCAN
        } else {
            self.scan
        })
    }

    fn like_pattern(&self) -> Option<String> {
        self.error_like.as_ref().map(|e| format!("%{e}%"))
    }
}

/// Parses `cmid=42` (repeatable, comma-separated: `cmid=42,userid=7`) into a containment
/// object; numbers and `true`/`false` become JSON values, anything else a string.
pub fn parse_payload_filter(s: &str) -> Result<Value, String> {
    let mut m = serde_json::Map::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("bad payload filter {part:?}: expected FIELD=VALUE"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("bad payload filter {part:?}: empty field name"));
        }
        let v = v.trim();
        let val = if let Ok(n) = v.parse::<i64>() {
            Value::from(n)
        } else if v == "true" || v == "false" {
            Value::Bool(v == "true")
        } else {
            Value::String(v.to_string())
        };
        m.insert(k.to_string(), val);
    }
    if m.is_empty() {
        return Err("empty payload filter: expected FIELD=VALUE".into());
    }
    Ok(Value::Object(m))
}

const COLUMNS_HOT: &str = "id, kind, queue, state, priority, run_at, payload, attempt, max_attempts, dedup_key,
    exclusion_key, enqueued_at, started_at, NULL::timestamptz AS finished_at, lease_until, worker_id, last_error,
    errors, snoozes, NULL::bigint AS superseded_by";
const COLUMNS_HISTORY: &str = "id, kind, queue, state, priority, run_at, payload, attempt, max_attempts, dedup_key,
    exclusion_key, enqueued_at, started_at, finished_at, NULL::timestamptz AS lease_until, worker_id, last_error,
    errors, snoozes, superseded_by";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    queue: String,
    state: String,
    priority: i16,
    run_at: StoredTime,
    payload: Json<Value>,
    attempt: i32,
    max_attempts: i32,
    dedup_key: Option<String>,
    exclusion_key: Option<String>,
    enqueued_at: StoredTime,
    started_at: Option<StoredTime>,
    finished_at: Option<StoredTime>,
    lease_until: Option<StoredTime>,
    worker_id: Option<Uuid>,
    last_error: Option<String>,
    errors: Json<Value>,
    snoozes: i32,
    superseded_by: Option<i64>,
}

impl Row {
    fn into_record(self) -> Result<JobRecord, QueueError> {
        Ok(JobRecord {
            id: self.id,
            kind: self.kind,
            queue: self.queue,
            state: self.state.parse().map_err(QueueError::Conflict)?,
            priority: self.priority,
            run_at: self.run_at.0,
            payload: self.payload.0,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            dedup_key: self.dedup_key,
            exclusion_key: self.exclusion_key,
            enqueued_at: self.enqueued_at.0,
            started_at: self.started_at.map(DateTime::from),
            finished_at: self.finished_at.map(DateTime::from),
            lease_until: self.lease_until.map(DateTime::from),
            worker_id: self.worker_id,
            last_error: self.last_error,
            errors: self.errors.0,
            snoozes: self.snoozes,
            superseded_by: self.superseded_by,
        })
    }
}

/// The WHERE clause every filtered query shares; `$1`… `$6` bound by [`bind_filter`].
const FILTER_WHERE: &str =
    "WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2)
    AND ($3::text IS NULL OR queue = $3) AND ($4::timestamptz IS NULL OR enqueued_at >= $4)
    AND ($5::text IS NULL OR last_error ILIKE $5) AND ($6::jsonb IS NULL OR payload @> $6)";

/// `FROM` for one table: the table itself, or its newest `$7` rows when the filter is a
/// bounded scan.
fn filter_source(table: &str, bounded: bool) -> String {
    if bounded {
        format!("(SELECT * FROM {table} ORDER BY id DESC LIMIT $7) t")
    } else {
        table.to_string()
    }
}

fn bind_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    f: &'q JobFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(f.state.map(JobState::as_str))
        .bind(f.kind.as_deref())
        .bind(f.queue.as_deref())
        .bind(f.since)
        .bind(f.like_pattern())
        .bind(f.payload.clone().map(Json))
        .bind(f.scan_rows().unwrap_or(0))
}

/// Lists jobs, newest first, from the hot table and history.
pub async fn list_jobs(pool: &PgPool, filter: &JobFilter) -> Result<Vec<JobRecord>, QueueError> {
    let limit = if filter.limit <= 0 { 100 } else { filter.limit };
    let b = filter.is_bounded_scan();
    let (hot, hist) = (
        filter_source("rcjobs.job", b),
        filter_source("rcjobs.job_history", b),
    );
    let sql = format!(
        "(SELECT {COLUMNS_HOT} FROM {hot} {FILTER_WHERE} ORDER BY id DESC LIMIT $8)
         UNION ALL
         (SELECT {COLUMNS_HISTORY} FROM {hist} {FILTER_WHERE} ORDER BY id DESC LIMIT $8)
         ORDER BY id DESC LIMIT $8"
    );
    // the SQL text is built from constants only; values are bound
    let rows: Vec<Row> = bind_filter(sqlx::query_as(sqlx::AssertSqlSafe(sql)), filter)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(Row::into_record).collect()
}

/// Ids of the jobs matching `filter` whose state is one of `states` (the filter's own state,
/// if set, must be one of them), newest first, at most `max`.
pub async fn matching_ids(
    pool: &PgPool,
    filter: &JobFilter,
    states: &[JobState],
    max: i64,
) -> Result<Vec<i64>, QueueError> {
    if let Some(st) = filter.state {
        if !states.contains(&st) {
            let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            return Err(QueueError::Conflict(format!(
                "this action applies to {} jobs, not {st}",
                names.join("/")
            )));
        }
    }
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let b = filter.is_bounded_scan();
    let mut parts = Vec::new();
    if states.iter().any(|s| !s.is_finished()) {
        parts.push(format!(
            "(SELECT id FROM {} {FILTER_WHERE} AND state = ANY ($9) ORDER BY id DESC LIMIT $8)",
            filter_source("rcjobs.job", b)
        ));
    }
    if states.iter().any(|s| s.is_finished()) {
        parts.push(format!(
            "(SELECT id FROM {} {FILTER_WHERE} AND state = ANY ($9) ORDER BY id DESC LIMIT $8)",
            filter_source("rcjobs.job_history", b)
        ));
    }
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id FROM ({}) u ORDER BY id DESC LIMIT $8",
        parts.join(" UNION ALL ")
    );
    let ids: Vec<(i64,)> = bind_filter(sqlx::query_as(sqlx::AssertSqlSafe(sql)), filter)
        .bind(max.max(0))
        .bind(names)
        .fetch_all(pool)
        .await?;
    Ok(ids.into_iter().map(|r| r.0).collect())
}

/// One job by id, pending or finished.
pub async fn get_job(pool: &PgPool, id: i64) -> Result<Option<JobRecord>, QueueError> {
    let sql = format!(
        "SELECT {COLUMNS_HOT} FROM rcjobs.job WHERE id = $1
         UNION ALL SELECT {COLUMNS_HISTORY} FROM rcjobs.job_history WHERE id = $1 LIMIT 1"
    );
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(Row::into_record).transpose()
}

/// What a redrive did with a dead job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RetryOutcome {
    /// Back in the queue with fresh attempts.
    Requeued,
    /// Not requeued: a pending job with the same dedup key already covers it.
    Superseded,
}

/// Puts one dead job back in the queue with fresh attempts.
pub async fn retry_job(pool: &PgPool, id: i64) -> Result<RetryOutcome, QueueError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT job_id, outcome FROM rcjobs.retry_dead(ARRAY[$1::bigint])")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    match row {
        Some((_, o)) if o == "superseded" => Ok(RetryOutcome::Superseded),
        Some(_) => Ok(RetryOutcome::Requeued),
        None => match get_job(pool, id).await? {
            None => Err(QueueError::NotFound(id)),
            Some(j) => Err(QueueError::Conflict(format!(
                "job {id} is {}, not dead; only dead jobs can be retried",
                j.state
            ))),
        },
    }
}

/// Puts every dead job back in the queue; returns (requeued, superseded).
pub async fn retry_all_dead(pool: &PgPool) -> Result<(u64, u64), QueueError> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT job_id, outcome FROM rcjobs.retry_dead(NULL)")
            .fetch_all(pool)
            .await?;
    let sup = rows.iter().filter(|r| r.1 == "superseded").count() as u64;
    Ok((rows.len() as u64 - sup, sup))
}

/// Cancels a job that has not started (ready, delayed, backing off or blocked). A running
/// job cannot be cancelled: its handler may be mid-way; wait for it or for its lease.
pub async fn cancel_job(pool: &PgPool, id: i64) -> Result<(), QueueError> {
    let r: String = sqlx::query_scalar("SELECT rcjobs.cancel_job($1)")
        .bind(id)
        .fetch_one(pool)
        .await?;
    match r.as_str() {
        "cancelled" => Ok(()),
        "not_found" => Err(QueueError::NotFound(id)),
        "running" => Err(QueueError::Conflict(format!(
            "job {id} is running; it can be cancelled only before it starts"
        ))),
        _ => Err(QueueError::Conflict(format!(
            "job {id} has already finished"
        ))),
    }
}

/// Deletes finished jobs older than `keep` (dead ones older than `keep_dead`), at most
/// `limit` per call; returns how many were deleted.
pub async fn prune_history(
    pool: &PgPool,
    keep: Duration,
    keep_dead: Duration,
    limit: i32,
) -> Result<u64, QueueError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT rcjobs.prune_history(make_interval(secs => $1), make_interval(secs => $2), $3)",
    )
    .bind(keep.as_secs_f64())
    .bind(keep_dead.as_secs_f64())
    .bind(limit)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// A job's exclusion lane: the job allowed to run (the head) and how many wait behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneInfo {
    /// The exclusion key.
    pub key: String,
    /// The head's id, state and run time (`None` when the lane is gone: nothing pending).
    pub head: Option<(i64, JobState, DateTime<Utc>)>,
    /// Blocked jobs of the lane, counted up to [`LANE_COUNT_CAP`].
    pub blocked: i64,
}

/// Blocked jobs of one lane are counted up to this (one index range, bounded).
pub const LANE_COUNT_CAP: i64 = 1000;

/// The lane of exclusion key `key` (index lookups only).
pub async fn lane_info(pool: &PgPool, key: &str) -> Result<LaneInfo, QueueError> {
    let head: Option<(i64, String, StoredTime)> = sqlx::query_as(
        "SELECT j.id, j.state, j.run_at FROM rcjobs.lane l JOIN rcjobs.job j ON j.id = l.head_id
         WHERE l.key = $1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await?;
    let blocked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM rcjobs.job
           WHERE exclusion_key = $1 AND state = 'blocked' LIMIT $2) b",
    )
    .bind(key)
    .bind(LANE_COUNT_CAP)
    .fetch_one(pool)
    .await?;
    let head = match head {
        Some((id, st, at)) => Some((id, st.parse().map_err(QueueError::Conflict)?, at.0)),
        None => None,
    };
    Ok(LaneInfo {
        key: key.to_string(),
        head,
        blocked,
    })
}
