//! The relay from the capture outbox (`{prefix}rcjobs_outbox`, in the Moodle database) into
//! the queue, wherever the queue lives.
//!
//! The triggers ([`crate::triggers`]) append the job each change asks for to the outbox, in
//! Moodle's transaction, with no validation, dedup or lock: that is what keeps their cost
//! inside Moodle's write small, and what makes a capture independent of the queue's database.
//! [`relay_once`] moves one batch:
//!
//! 1. in a Moodle-database transaction holding a transaction-level advisory lock on the
//!    outbox's [`Lane`] (`pg_try_advisory_xact_lock`: one relay at a time per lane, so
//!    replicas never relay the same rows twice and jobs reach the queue in capture order; a
//!    replica that finds it taken skips the round), read the lane's oldest rows;
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

/// Outbox rows read per round by default (one row may hold a whole statement's rows).
pub const DEFAULT_BATCH: i64 = 2000;

/// Jobs per `enqueue_many` call. A round's jobs go in several calls when there are more;
/// a failure after some of them committed relays the round again, and their dedup keys fold
/// the repeats.
const ENQUEUE_CHUNK: usize = 5000;

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
    /// Outbox rows read and deleted (a row may hold a whole statement's jobs).
    pub rows: u64,
    /// Jobs handed to the queue after coalescing.
    pub jobs: u64,
    /// Jobs the queue refused (logged, dropped).
    pub refused: u64,
    /// Another relay held the outbox: nothing was done.
    pub busy: bool,
}

/// One job as the relay hands it on, with its outbox row.
type Row = (
    i64,
    String,
    Value,
    i16,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
);

/// An outbox row as stored: one job, or a statement's captured rows (`jobs`).
type Stored = (
    i64,
    Option<String>,
    Option<Value>,
    i16,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<Value>,
);

/// Moodle times at or past 10000-01-01 name no instant the queue can hold.
const PAST_YEAR_9999: i64 = 253_402_300_800;

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

/// Rows waiting in the outbox (0 when there is no outbox); a row may hold many jobs.
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

/// Which outbox rows a relay round moves. Room work (a new activity's room, the recycle
/// bin, a room sync: priority below 0) has its own relay, so it reaches the queue within a
/// relay period even while the bulk relay is busy with a mass enrolment's jobs; the two
/// sets share no dedup key, so their relative order does not matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Rows of priority below 0 (one job each: room work is captured by row triggers).
    Room,
    /// Every other row: user-scoped fan-out work, statement batches included.
    Bulk,
}

impl Lane {
    fn filter(self) -> &'static str {
        match self {
            Lane::Room => "priority < 0",
            Lane::Bulk => "priority >= 0",
        }
    }

    fn lock_key(self) -> &'static str {
        match self {
            Lane::Room => "rcjobs_outbox_room",
            Lane::Bulk => "rcjobs_outbox",
        }
    }
}

/// Relays at most `batch` rows of `lane` of `prefix`'s outbox from `moodle` into the queue
/// at `queue` (the same pool when the queue lives in the Moodle database). See the module
/// docs. It holds a `moodle` connection while it enqueues through `queue`: one pool for both
/// needs at least two connections.
pub async fn relay_once(
    moodle: &PgPool,
    queue: &PgPool,
    prefix: &Prefix,
    lane: Lane,
    batch: i64,
) -> Result<RelayReport, RelayError> {
    let t = table(prefix);
    let mut tx = moodle.begin().await?;
    let locked: Option<bool> = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext($2), c.oid::int)
           FROM pg_class c WHERE c.oid = to_regclass($1)",
    )
    .bind(&t)
    .bind(lane.lock_key())
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
    let stored: Vec<Stored> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, kind, payload, priority, run_at, dedup_key, exclusion_key, jobs
           FROM {t} WHERE {filter} ORDER BY id LIMIT $1",
        filter = lane.filter()
    )))
    .bind(batch.max(1))
    .fetch_all(&mut *tx)
    .await?;
    let rows = expand(&mut tx, prefix, stored).await?;
    let Some(ids) = rows.0 else {
        return Ok(RelayReport::default());
    };
    let rows = rows.1;
    let jobs = coalesce(rows);
    let mut refused = 0;
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        refused += enqueue(queue, chunk).await?;
    }
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

/// Relays until the outbox is empty (or another relay holds it), room work first; the
/// summed report.
pub async fn relay_all(
    moodle: &PgPool,
    queue: &PgPool,
    prefix: &Prefix,
) -> Result<RelayReport, RelayError> {
    let mut total = relay_lane(moodle, queue, prefix, Lane::Room).await?;
    let bulk = relay_lane(moodle, queue, prefix, Lane::Bulk).await?;
    total.rows += bulk.rows;
    total.jobs += bulk.jobs;
    total.refused += bulk.refused;
    total.busy |= bulk.busy;
    Ok(total)
}

/// Relays `lane` until it is empty (or another relay holds it).
pub async fn relay_lane(
    moodle: &PgPool,
    queue: &PgPool,
    prefix: &Prefix,
    lane: Lane,
) -> Result<RelayReport, RelayError> {
    let mut total = RelayReport::default();
    loop {
        let r = relay_once(moodle, queue, prefix, lane, DEFAULT_BATCH).await?;
        total.rows += r.rows;
        total.jobs += r.jobs;
        total.refused += r.refused;
        total.busy |= r.busy;
        if r.busy || r.rows < DEFAULT_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// The jobs of `stored`, in order, and the ids of the rows read (`None`: nothing read). A
/// statement's captured rows (kind `rcjobs:<table>:ins|del`, see triggers_change_capture.sql)
/// become the jobs the row triggers used to enqueue: the same kinds, payloads and keys,
/// only for courses and modules that have a room (asked of Moodle now, in one query per
/// round), with the future enrolment windows scheduled.
async fn expand(
    tx: &mut sqlx::PgConnection,
    prefix: &Prefix,
    stored: Vec<Stored>,
) -> Result<(Option<Vec<i64>>, Vec<Row>), RelayError> {
    if stored.is_empty() {
        return Ok((None, Vec::new()));
    }
    let ids: Vec<i64> = stored.iter().map(|r| r.0).collect();
    // Every course and module the captured rows name, asked once.
    let (mut courses, mut cms) = (Vec::new(), Vec::new());
    for (_, kind, _, _, _, _, _, jobs) in &stored {
        let (Some(kind), Some(Value::Array(rows))) = (kind, jobs) else {
            continue;
        };
        for r in rows {
            let f = |i: usize| r.get(i).and_then(Value::as_i64);
            if kind.starts_with("rcjobs:user_enrolments:") {
                courses.extend(f(3));
            } else if kind.starts_with("rcjobs:role_assignments:") {
                match f(4) {
                    Some(50) => courses.extend(f(5)),
                    Some(70) => cms.extend(f(5)),
                    _ => {}
                }
            }
        }
    }
    courses.sort_unstable();
    courses.dedup();
    cms.sort_unstable();
    cms.dedup();
    let (with_rooms, cms_with_rooms): (HashSet<i64>, HashSet<i64>) =
        if courses.is_empty() && cms.is_empty() {
            (HashSet::new(), HashSet::new())
        } else {
            // The installed lookups (validated prefix); the same tests the row triggers make.
            let p = prefix.as_str();
            let a: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT c FROM unnest($1::bigint[]) c WHERE {p}rcjobs_course_has_rooms(c)"
            )))
            .bind(&courses)
            .fetch_all(&mut *tx)
            .await?;
            let b: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT c FROM unnest($1::bigint[]) c WHERE {p}rcjobs_cm_has_room(c)"
            )))
            .bind(&cms)
            .fetch_all(&mut *tx)
            .await?;
            (a.into_iter().collect(), b.into_iter().collect())
        };
    let now = Utc::now().timestamp();
    let mut out = Vec::new();
    for (id, kind, payload, priority, run_at, dedup, excl, jobs) in stored {
        let (Some(kind), Some(Value::Array(rows))) = (&kind, &jobs) else {
            if let (Some(kind), Some(payload)) = (kind, payload) {
                out.push((id, kind, payload, priority, run_at, dedup, excl));
            }
            continue;
        };
        for r in rows {
            let f = |i: usize| r.get(i).and_then(Value::as_i64);
            if let Some(op) = kind.strip_prefix("rcjobs:user_enrolments:") {
                let (Some(user), Some(enrol), Some(course)) = (f(1), f(2), f(3)) else {
                    continue;
                };
                if !with_rooms.contains(&course) {
                    continue;
                }
                let payload =
                    serde_json::json!({"userid": user, "courseid": course, "enrolid": enrol});
                let key = format!("enrolment:{course}:{user}");
                out.push((
                    id,
                    "enrolment".into(),
                    payload.clone(),
                    0,
                    None,
                    Some(key.clone()),
                    None,
                ));
                if op != "ins" {
                    continue;
                }
                for at in [f(4), f(5)].into_iter().flatten().filter(|t| *t > now) {
                    match DateTime::from_timestamp(at, 0).filter(|_| at < PAST_YEAR_9999) {
                        Some(t) => out.push((
                            id,
                            "enrolment".into(),
                            payload.clone(),
                            0,
                            Some(t),
                            Some(format!("{key}:at:{at}")),
                            None,
                        )),
                        None => tracing::warn!(
                            "rcjobs: enrolment at Moodle time {at} is past year 9999; no job scheduled for it"
                        ),
                    }
                }
            } else if let Some(op) = kind.strip_prefix("rcjobs:role_assignments:") {
                let (Some(user), Some(role), Some(ctx), Some(level), Some(inst)) =
                    (f(1), f(2), f(3), f(4), f(5))
                else {
                    continue;
                };
                let wanted = match level {
                    50 => with_rooms.contains(&inst),
                    70 => cms_with_rooms.contains(&inst),
                    _ => true, // system and category: every room below
                };
                if !wanted {
                    continue;
                }
                let kind = if op == "ins" {
                    "enrol_role_assign"
                } else {
                    "enrol_role_unassign"
                };
                let payload = serde_json::json!({
                    "courseid": f(6), "roleid": role, "userid": user,
                    "context": {"id": ctx, "contextlevel": level, "instanceid": inst},
                });
                out.push((
                    id,
                    kind.into(),
                    payload,
                    0,
                    None,
                    Some(format!("role:{level}:{inst}:{user}")),
                    None,
                ));
            } else {
                tracing::warn!(%kind, "outbox row of an unknown shape; skipped");
            }
        }
    }
    Ok((Some(ids), out))
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

/// The relay as a worker replica runs it, one loop per [`Lane`] ([`DEFAULT_INTERVAL`]
/// between empty rounds, none after a full one) until `stop`. A failed round (either
/// database away) is logged and retried after a growing pause of at most 5 s; the rows wait
/// in the outbox meanwhile.
pub async fn run(
    moodle: PgPool,
    queue: PgPool,
    prefix: Prefix,
    every: Duration,
    stop: CancellationToken,
) {
    tokio::join!(
        run_lane(&moodle, &queue, &prefix, Lane::Room, every, &stop),
        run_lane(&moodle, &queue, &prefix, Lane::Bulk, every, &stop),
    );
}

async fn run_lane(
    moodle: &PgPool,
    queue: &PgPool,
    prefix: &Prefix,
    lane: Lane,
    every: Duration,
    stop: &CancellationToken,
) {
    let mut failures: u32 = 0;
    loop {
        let wait = match relay_lane(moodle, queue, prefix, lane).await {
            Ok(r) => {
                if failures > 0 {
                    tracing::info!(?lane, "outbox relay recovered");
                }
                failures = 0;
                if r.rows > 0 {
                    tracing::debug!(
                        ?lane,
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
                    tracing::warn!(?lane, error = %e, failures, "outbox relay failed; the captured changes wait in the outbox");
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
