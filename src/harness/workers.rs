//! W queue workers in this process, each built like a separate replica: its own database
//! pool, its own Rocket.Chat client (behind its own handle on the shared Postgres rate
//! limiter) and its own claim loop.

use super::chat::{CallCounter, ChatServer};
use rcjobs_chat::RequestGate;
use rcjobs_queue::{JobInfo, JobOutcome, QueueHooks, RetryPolicy};
use rcjobs_worker::runtime::WorkerStack;
use rcjobs_worker::{CancellationToken, Engine, PgRequestGate, WorkerConfig};
use sqlx::postgres::PgConnectOptions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What the workers did, from the queue runtime's events (all replicas together).
#[derive(Debug, Default)]
pub struct RunCounters {
    /// Jobs whose completion the database accepted.
    pub completed: AtomicU64,
    /// Jobs put back to run later after a retryable failure.
    pub retried: AtomicU64,
    /// Jobs snoozed (rate limited) without using an attempt.
    pub snoozed: AtomicU64,
    /// Jobs that went dead.
    pub dead: AtomicU64,
    /// The first few dead reasons.
    pub dead_reasons: Mutex<Vec<String>>,
}

impl RunCounters {
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

impl QueueHooks for RunCounters {
    fn finished(&self, job: &JobInfo, outcome: JobOutcome, _duration: Duration) {
        if outcome == JobOutcome::Retryable {
            tracing::debug!(job = job.id, kind = %job.kind, "job will be retried");
        }
    }
    fn completed(&self, _job: &JobInfo) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
    fn retried(&self, _job: &JobInfo, _run_at: chrono::DateTime<chrono::Utc>) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
    fn snoozed(&self, _job: &JobInfo, _until: chrono::DateTime<chrono::Utc>) {
        self.snoozed.fetch_add(1, Ordering::Relaxed);
    }
    fn dead(&self, job: &JobInfo, reason: &str) {
        self.dead.fetch_add(1, Ordering::Relaxed);
        let mut r = self.dead_reasons.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() < 10 {
            r.push(format!("job {} ({}): {reason}", job.id, job.kind));
        }
    }
}

/// How to run the workers.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Replicas.
    pub count: usize,
    /// Jobs run at once per replica.
    pub concurrency: usize,
    /// Handler settings (rate-limit budgets, account creation, ...).
    pub config: WorkerConfig,
}

/// The running replicas.
pub struct WorkerSet {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Result<(), rcjobs_queue::QueueError>>>,
    /// Events of all replicas.
    pub counters: Arc<RunCounters>,
}

/// Starts `opts.count` replicas on the database of `db` (queue, sync state and Moodle in one
/// database, table prefix `prefix`), talking to `chat`.
pub async fn start(
    db: &PgConnectOptions,
    prefix: &str,
    chat: &ChatServer,
    calls: Arc<CallCounter>,
    opts: &WorkerOptions,
) -> anyhow::Result<WorkerSet> {
    let counters = Arc::new(RunCounters::default());
    let stop = CancellationToken::new();
    let mut tasks = Vec::with_capacity(opts.count);
    for _ in 0..opts.count.max(1) {
        let conns = u32::try_from(opts.concurrency)
            .unwrap_or(64)
            .saturating_add(8);
        let pool = super::postgres::pool(db, conns).await?;
        let moodle = rcjobs_moodle::MoodleDb::new(pool.clone(), prefix)?;
        let gate: Arc<dyn RequestGate> = Arc::new(PgRequestGate::new(
            pool.clone(),
            opts.config.rate_limit.clone(),
        ));
        let backend = chat.backend(calls.clone(), Some(gate)).await?;
        let engine = Arc::new(Engine::new(
            pool.clone(),
            moodle,
            Arc::new(backend),
            opts.config.clone(),
            None,
        )?);
        let builder = rcjobs_queue::Worker::builder(pool)
            .concurrency(opts.concurrency)
            .queues([opts.config.queue.clone()])
            .poll_interval(Duration::from_millis(500))
            // In-process runs are short: retry transient failures after ~1 s, not Moodle's 60 s.
            .retry_policy(RetryPolicy {
                base: Duration::from_secs(1),
                ..RetryPolicy::default()
            })
            .hooks(counters.clone());
        let worker = WorkerStack::build(builder, engine, None)?;
        let s = stop.clone();
        tasks.push(tokio::spawn(async move {
            worker.run(async move { s.cancelled().await }).await
        }));
    }
    Ok(WorkerSet {
        stop,
        tasks,
        counters,
    })
}

impl WorkerSet {
    /// Asks every replica to drain and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        for t in self.tasks {
            t.await??;
        }
        Ok(())
    }
}
