//! The worker runtime: claim loop, handler tasks, batched acknowledgements, lease
//! heartbeats, sweeper, graceful shutdown.

mod acker;
mod config;
mod handler;
mod hooks;
mod maintenance;
mod runtime;
mod wakeup;

pub use config::WorkerConfig;
pub use handler::{handler_fn, JobContext, JobError, JobHandler, PayloadError};
pub use hooks::{JobInfo, JobOutcome, LeaseLoss, NoHooks, QueueHooks};
pub use wakeup::Wakeup;

use crate::retry::RetryPolicy;
use crate::QueueError;
use sqlx::PgPool;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A worker: serves some queues with registered handlers until its shutdown future resolves.
pub struct Worker {
    pool: PgPool,
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    config: WorkerConfig,
    hooks: Arc<dyn QueueHooks>,
    wakeup: Option<Wakeup>,
    id: Uuid,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<&String> = self.handlers.keys().collect();
        kinds.sort();
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("kinds", &kinds)
            .field("config", &self.config)
            .finish()
    }
}

impl Worker {
    /// Starts building a worker on `pool`. The runtime itself holds up to five connections
    /// (claim, acknowledge, heartbeat, sweeper, LISTEN); size the pool accordingly.
    pub fn builder(pool: PgPool) -> WorkerBuilder {
        WorkerBuilder {
            pool,
            handlers: HashMap::new(),
            config: WorkerConfig::default(),
            hooks: Arc::new(NoHooks),
            wakeup: None,
        }
    }

    /// This run's worker id (row in `rcjobs.worker`, `worker_id` of the jobs it leases).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Runs until `shutdown` resolves, then stops claiming, hands back prefetched jobs that
    /// did not start, waits for running handlers up to `shutdown_timeout` (interrupted ones
    /// go back to the queue), flushes acknowledgements and deregisters.
    ///
    /// Fails at once when the database schema is missing or older than this binary needs.
    /// Database outages while running are logged and retried, not returned.
    pub async fn run<F>(self, shutdown: F) -> Result<(), QueueError>
    where
        F: Future<Output = ()> + Send,
    {
        runtime::run(self, shutdown).await
    }
}

/// Builder for [`Worker`].
pub struct WorkerBuilder {
    pool: PgPool,
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    config: WorkerConfig,
    hooks: Arc<dyn QueueHooks>,
    wakeup: Option<Wakeup>,
}

impl WorkerBuilder {
    /// Runs jobs of `kind` with `handler` (a later registration of the same kind wins).
    pub fn register(mut self, kind: impl Into<String>, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.insert(kind.into(), handler);
        self
    }
    /// Handlers running at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }
    /// Queues to serve (replaces the default `["default"]`).
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.queues = queues.into_iter().map(Into::into).collect();
        self
    }
    /// Most jobs per claim statement.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.batch_size = n.max(1);
        self
    }
    /// Jobs claimed ahead of free handler slots.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.config.prefetch = n;
        self
    }
    /// Acknowledgement statements in flight at once (at least one).
    pub fn ack_parallelism(mut self, n: usize) -> Self {
        self.config.ack_parallelism = n.max(1);
        self
    }
    /// How long a small batch of acknowledgements may wait for more (default 2 ms).
    pub fn ack_linger(mut self, d: Duration) -> Self {
        self.config.ack_linger = d;
        self
    }
    /// Lease length; the heartbeat defaults to a third of it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self.config.heartbeat_interval = ttl / 3;
        self
    }
    /// Lease renewal period.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.config.heartbeat_interval = d;
        self
    }
    /// Sweep period.
    pub fn sweep_interval(mut self, d: Duration) -> Self {
        self.config.sweep_interval = d;
        self
    }
    /// Fallback poll period.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.config.poll_interval = d;
        self
    }
    /// Shutdown deadline for running handlers.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.config.shutdown_timeout = d;
        self
    }
    /// Retry backoff.
    pub fn retry_policy(mut self, p: RetryPolicy) -> Self {
        self.config.retry = p;
        self
    }
    /// Whether this worker sweeps, compacts counters and prunes history (default true).
    pub fn maintenance(mut self, on: bool) -> Self {
        self.config.maintenance = on;
        self
    }
    /// History retention for finished jobs and for dead jobs.
    pub fn history_retention(mut self, keep: Duration, keep_dead: Duration) -> Self {
        self.config.history_retention = keep;
        self.config.dead_retention = keep_dead;
        self
    }
    /// Replaces the whole configuration.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }
    /// Event hooks (metrics).
    pub fn hooks(mut self, hooks: Arc<dyn QueueHooks>) -> Self {
        self.hooks = hooks;
        self
    }
    /// Shares a LISTEN connection between workers of one process (default: own one).
    pub fn wakeup(mut self, w: Wakeup) -> Self {
        self.wakeup = Some(w);
        self
    }
    /// Validates the settings and builds the worker.
    pub fn build(self) -> Result<Worker, QueueError> {
        let c = &self.config;
        if c.queues.is_empty() {
            return Err(QueueError::Conflict(
                "a worker needs at least one queue".into(),
            ));
        }
        if c.heartbeat_interval >= c.lease_ttl || c.heartbeat_interval.is_zero() {
            return Err(QueueError::Conflict(format!(
                "heartbeat interval {:?} must be positive and shorter than the lease TTL {:?}",
                c.heartbeat_interval, c.lease_ttl
            )));
        }
        Ok(Worker {
            pool: self.pool,
            handlers: self.handlers,
            config: self.config,
            hooks: self.hooks,
            wakeup: self.wakeup,
            id: Uuid::new_v4(),
        })
    }
}
