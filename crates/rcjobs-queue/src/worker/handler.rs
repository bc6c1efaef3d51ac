//! What handlers implement and what they receive.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How a handler reports failure; decides what the queue does next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// Transient: try again after the backoff (dead when attempts are used up).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Cannot succeed: dead at once, with this reason.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Not now (e.g. a rate limit): run again at `until` without using an attempt.
    #[error("snoozed until {until}: {reason}")]
    Snooze {
        /// When to run again.
        until: DateTime<Utc>,
        /// Why (logged).
        reason: String,
    },
}

impl JobError {
    /// A retryable error from anything printable.
    pub fn retryable(e: impl std::fmt::Display) -> JobError {
        JobError::Retryable(e.to_string())
    }
    /// A permanent error from anything printable.
    pub fn permanent(e: impl std::fmt::Display) -> JobError {
        JobError::Permanent(e.to_string())
    }
    /// A snooze until `until`.
    pub fn snooze(until: DateTime<Utc>, reason: impl std::fmt::Display) -> JobError {
        JobError::Snooze {
            until,
            reason: reason.to_string(),
        }
    }
}

/// The payload did not match the handler's type. Converts into [`JobError::Permanent`]:
/// retrying cannot fix a payload.
#[derive(Debug, thiserror::Error)]
#[error("payload of job {id} ({kind}) does not decode: {source}")]
pub struct PayloadError {
    /// Job id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Decoder error.
    #[source]
    pub source: serde_json::Error,
}

impl From<PayloadError> for JobError {
    fn from(e: PayloadError) -> JobError {
        JobError::Permanent(e.to_string())
    }
}

/// Runs jobs of one or more kinds. Handlers should be idempotent: delivery is at least once.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Does the work of one job.
    async fn run(&self, job: &JobContext) -> Result<(), JobError>;
}

/// One attempt of one job, as the handler sees it.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Job id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// This attempt, from 1 (crash redeliveries count; snoozes do not).
    pub attempt: i32,
    /// Attempt limit.
    pub max_attempts: i32,
    /// Payload (a JSON object).
    pub payload: Value,
    /// Exclusion key, if any.
    pub exclusion_key: Option<String>,
    /// When the job was enqueued.
    pub enqueued_at: DateTime<Utc>,
    pub(crate) token: i32,
    pub(crate) lease: CancellationToken,
}

impl JobContext {
    /// A context for unit-testing a handler without a database (token 0, lease never lost).
    pub fn for_test(id: i64, kind: impl Into<String>, payload: Value) -> JobContext {
        JobContext {
            id,
            kind: kind.into(),
            queue: "default".into(),
            attempt: 1,
            max_attempts: 12,
            payload,
            exclusion_key: None,
            enqueued_at: Utc::now(),
            token: 0,
            lease: CancellationToken::new(),
        }
    }

    /// Decodes the payload; `?` turns a mismatch into a permanent failure.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        T::deserialize(&self.payload).map_err(|source| PayloadError {
            id: self.id,
            kind: self.kind.clone(),
            source,
        })
    }

    /// Whether this attempt is the last one allowed.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// True once the worker knows the lease is lost (not renewed in time, swept, or the job
    /// was finished elsewhere): the result of this attempt will be discarded.
    pub fn is_lease_lost(&self) -> bool {
        self.lease.is_cancelled()
    }

    /// Resolves when the lease is lost; long handlers can `select!` on it to stop early.
    pub async fn lease_lost(&self) {
        self.lease.cancelled().await
    }

    /// The fencing token of this attempt (for logs and diagnostics).
    pub fn fencing_token(&self) -> i32 {
        self.token
    }
}

/// A handler from a closure. The closure sees the context by reference and returns a
/// `'static` future, so take what you need from `ctx` before the `async move` block:
/// `handler_fn(|ctx| { let id = ctx.id; async move { Ok(()) } })`.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn JobHandler>
where
    F: Fn(&JobContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), JobError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

struct FnHandler<F>(F);

#[async_trait::async_trait]
impl<F, Fut> JobHandler for FnHandler<F>
where
    F: Fn(&JobContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), JobError>> + Send + 'static,
{
    async fn run(&self, job: &JobContext) -> Result<(), JobError> {
        (self.0)(job).await
    }
}
