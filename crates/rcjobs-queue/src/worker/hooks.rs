//! Events the runtime reports, so a metrics crate can count them without the queue
//! depending on it. Every method has a no-op default.

use crate::lease::SweepReport;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Identity of a job in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// Job id.
    pub id: i64,
    /// Kind.
    pub kind: Arc<str>,
    /// Queue.
    pub queue: Arc<str>,
    /// Attempt.
    pub attempt: i32,
}

/// How a handler run ended (before the acknowledgement reaches the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    /// Returned `Ok`.
    Completed,
    /// Returned `Retryable`.
    Retryable,
    /// Returned `Permanent`, or its payload did not decode.
    Permanent,
    /// Returned `Snooze`.
    Snoozed,
    /// No handler registered for its kind.
    NoHandler,
    /// Panicked; the job goes dead at once with the panic message.
    Panicked,
    /// Interrupted by the shutdown deadline.
    Interrupted,
}

impl JobOutcome {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::Retryable => "retryable",
            JobOutcome::Permanent => "permanent",
            JobOutcome::Snoozed => "snoozed",
            JobOutcome::NoHandler => "no_handler",
            JobOutcome::Panicked => "panicked",
            JobOutcome::Interrupted => "interrupted",
        }
    }
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLoss {
    /// The heartbeat could not renew it.
    Renewal,
    /// The acknowledgement's token was stale and the result was discarded.
    StaleAck,
}

/// Runtime events. Called on runtime tasks: keep them quick and non-blocking.
pub trait QueueHooks: Send + Sync + 'static {
    /// A job was claimed and is about to start; `wait` is start minus due time
    /// (enqueue-to-start for jobs that were due at once).
    fn claimed(&self, _job: &JobInfo, _wait: Duration) {}
    /// A handler returned (or panicked); `duration` is its run time.
    fn finished(&self, _job: &JobInfo, _outcome: JobOutcome, _duration: Duration) {}
    /// The database accepted the completion.
    fn completed(&self, _job: &JobInfo) {}
    /// The job was put back to run again at `run_at`.
    fn retried(&self, _job: &JobInfo, _run_at: DateTime<Utc>) {}
    /// The job was snoozed until `until` without using an attempt.
    fn snoozed(&self, _job: &JobInfo, _until: DateTime<Utc>) {}
    /// The job went dead.
    fn dead(&self, _job: &JobInfo, _reason: &str) {}
    /// A newer pending job with the same dedup key covers this one.
    fn superseded(&self, _job: &JobInfo) {}
    /// This worker lost the lease of a job.
    fn lease_lost(&self, _job: &JobInfo, _why: LeaseLoss) {}
    /// A sweep ran (by this worker); `report.expired` counts lease expiries.
    fn swept(&self, _report: &SweepReport) {}
    /// A claim returned `n` jobs from `queue`.
    fn claim_batch(&self, _queue: &str, _n: usize) {}
}

/// Hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl QueueHooks for NoHooks {}
