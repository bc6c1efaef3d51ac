//! Enqueue typed jobs: validation, keys, kind registry.

use crate::job::{Job, PayloadError};
use crate::kind::Kind;
use chrono::{DateTime, Utc};
use rcjobs_queue::{KindSpec, NewJob, QueueError};

pub use rcjobs_queue::Enqueued;

/// Why a job was not enqueued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The payload failed validation before reaching the database.
    #[error("job rejected before enqueue: {0}")]
    Payload(PayloadError),
    /// Job {index} of a batch failed validation (nothing of the batch was enqueued).
    #[error("job {index} of the batch rejected before enqueue: {error}")]
    InBatch {
        /// Position in the batch (0-based).
        index: usize,
        /// The validation error.
        error: PayloadError,
    },
    /// The queue refused the job or the database failed.
    #[error("queue: {0}")]
    Queue(QueueError),
}

impl EnqueueError {
    /// True when retrying later could succeed (database connection trouble).
    pub fn is_transient(&self) -> bool {
        matches!(self, EnqueueError::Queue(q) if q.is_transient())
    }
}

/// Per-call overrides of queue placement; keys default to [`Job::keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Named queue (default `default`).
    pub queue: Option<String>,
    /// Lower runs first (default 0).
    pub priority: i16,
    /// Earliest start (default now).
    pub run_at: Option<DateTime<Utc>>,
    /// Replaces the job's own dedup key (`Some(None)` removes it).
    pub dedup_key: Option<Option<String>>,
    /// Attempts before dead (default: the kind's).
    pub max_attempts: Option<i32>,
}

impl Job {
    /// The queue row for this job: stored payload, keys, and `opts`.
    pub fn to_new_job(&self, opts: &EnqueueOptions) -> NewJob {
        let keys = self.keys();
        let mut nj = NewJob::new(self.kind().as_str(), self.payload());
        if let Some(q) = &opts.queue {
            nj = nj.queue(q.clone());
        }
        nj.priority = opts.priority;
        nj.run_at = opts.run_at;
        nj.dedup_key = match &opts.dedup_key {
            Some(k) => k.clone(),
            None => keys.dedup_key,
        };
        nj.exclusion_key = keys.exclusion_key;
        nj.max_attempts = opts.max_attempts;
        nj
    }
}

/// Validates and enqueues one job with its default keys, on a pool or inside the caller's
/// transaction (`&mut *tx`: the job exists only if the transaction commits).
pub async fn enqueue<'e, E>(exec: E, job: &Job) -> Result<Enqueued, EnqueueError>
where
    E: sqlx::PgExecutor<'e>,
{
    enqueue_with(exec, job, &EnqueueOptions::default()).await
}

/// [`enqueue`] with placement overrides.
pub async fn enqueue_with<'e, E>(
    exec: E,
    job: &Job,
    opts: &EnqueueOptions,
) -> Result<Enqueued, EnqueueError>
where
    E: sqlx::PgExecutor<'e>,
{
    job.validate()?;
    Ok(rcjobs_queue::enqueue(exec, &job.to_new_job(opts)).await?)
}

/// Validates every job, then enqueues all in one statement (all or nothing); results are
/// in input order.
pub async fn enqueue_many<'e, E>(
    exec: E,
    jobs: &[(Job, EnqueueOptions)],
) -> Result<Vec<Enqueued>, EnqueueError>
where
    E: sqlx::PgExecutor<'e>,
{
    let mut rows = Vec::with_capacity(jobs.len());
    for (index, (job, opts)) in jobs.iter().enumerate() {
        job.validate()
            .map_err(|error| EnqueueError::InBatch { index, error })?;
        rows.push(job.to_new_job(opts));
    }
    Ok(rcjobs_queue::enqueue_many(exec, &rows).await?)
}

/// The queue registrations for every kind (required fields, default attempts, Moodle
/// component), as `rcjobs migrate` applies them.
pub fn kind_specs() -> Vec<KindSpec> {
    Kind::ALL
        .into_iter()
        .map(|k| {
            KindSpec::new(k.as_str())
                .required_fields(k.required_fields().iter().copied())
                .max_attempts(k.default_max_attempts())
                .component("mod_rocketchat")
                .description(describe(k))
        })
        .collect()
}

fn describe(k: Kind) -> &'static str {
    match k {
        Kind::EnrolRoleAssign => {
            "role assigned in a course or module context: converge the affected rooms"
        }
        Kind::EnrolRoleUnassign => {
            "role removed in a course or module context: converge the affected rooms"
        }
        Kind::Enrolment => {
            "enrolment created, updated (status, window) or deleted: converge the course's rooms"
        }
        Kind::EnrolUserToRocketchatGroup => "one user x one room: converge that room",
        Kind::SynchronizeGroup => "full convergence of one room (room lock room:<cmid>)",
        Kind::SynchronizeUserEverywhere => {
            "user updated: converge every room the user is or should be in"
        }
        Kind::UnenrolUserEverywhere => {
            "user suspended or deleted: converge every room the user was in"
        }
        Kind::Restore => {
            "restored or duplicated activity: its own room exists and holds the course's members"
        }
        Kind::Recyclebin => {
            "recycle bin: trash archives, restore unarchives and re-syncs, purge deletes"
        }
        Kind::ReconcileAll => "periodic drift repair: a sync of every room spread over the period",
        Kind::CleanHistory => {
            "course reset with reset_rocketchat: delete the room's messages up to the reset"
        }
    }
}

/// Registers every kind (idempotent).
pub async fn register_kinds(pool: &sqlx::PgPool) -> Result<(), QueueError> {
    for spec in kind_specs() {
        rcjobs_queue::register_kind(pool, &spec).await?;
    }
    Ok(())
}

// The causes are in the messages and deliberately not `source`s: error reports that walk the
// chain (`{:#}`) printed each of them twice.
impl From<PayloadError> for EnqueueError {
    fn from(e: PayloadError) -> Self {
        EnqueueError::Payload(e)
    }
}

impl From<QueueError> for EnqueueError {
    fn from(e: QueueError) -> Self {
        EnqueueError::Queue(e)
    }
}
