//! Wiring into the queue runtime: one [`JobHandler`] for every kind, queue hooks feeding
//! Prometheus, the queue-stats sampler and the periodic `reconcile_all` scheduler.

use crate::chat_retry::CallRetry;
use crate::engine::{Engine, HandlerError, JobInfo};
use crate::handlers::next_period_start;
use async_trait::async_trait;
use rcjobs_metrics::{JobOutcome as MetricOutcome, Metrics, StateCount};
use rcjobs_producer::{EnqueueOptions, Job, Kind, ReconcileAll};
use rcjobs_queue::lease::SweepReport;
use rcjobs_queue::{
    JobContext, JobError, JobHandler, JobOutcome, LeaseLoss, QueueHooks, WorkerBuilder,
};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The queue handler for every rcjobs kind: parses, runs the [`Engine`], maps errors.
///
/// This is the one place that decides what a handler error means for the job: a database
/// blip ([`HandlerError::TransientDb`]) re-runs the job in place after a short, capped,
/// jittered wait; once those waits are used up it becomes a durable retry like any
/// [`HandlerError::Retryable`] (docs/decisions/0008-transient-database-errors.md).
#[derive(Debug, Clone)]
pub struct SyncHandler {
    engine: Arc<Engine>,
    db_retry: CallRetry,
}

/// The in-place re-runs after a database blip: about 0.5, 1, 2 and 4 s (jittered to
/// 50-150 %, at most 5 s each), so a Postgres restart or a killed connection costs seconds,
/// while a longer outage still reaches the queue's durable backoff after about 8 s.
pub fn default_db_retry() -> CallRetry {
    CallRetry {
        delays: vec![
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4),
        ],
        max_delay: Duration::from_secs(5),
    }
}

impl SyncHandler {
    /// A handler on `engine`.
    pub fn new(engine: Arc<Engine>) -> SyncHandler {
        SyncHandler {
            engine,
            db_retry: default_db_retry(),
        }
    }

    /// Replaces the in-place re-runs after a database blip ([`CallRetry::none`] = straight
    /// to the durable backoff).
    pub fn with_db_retry(mut self, db_retry: CallRetry) -> SyncHandler {
        self.db_retry = db_retry;
        self
    }
}

impl From<HandlerError> for JobError {
    fn from(e: HandlerError) -> JobError {
        match e {
            // Reached only once the in-place re-runs are used up: the outage is not a blip.
            HandlerError::Retryable(m) | HandlerError::TransientDb(m) => JobError::Retryable(m),
            HandlerError::Permanent(m) => JobError::Permanent(m),
            HandlerError::Snooze { until, reason } => JobError::Snooze { until, reason },
        }
    }
}

#[async_trait]
impl JobHandler for SyncHandler {
    async fn run(&self, job: &JobContext) -> Result<(), JobError> {
        let info = JobInfo {
            id: job.id,
            kind: job.kind.clone(),
            attempt: job.attempt,
            exclusion_key: job.exclusion_key.clone(),
            enqueued_at: job.enqueued_at,
        };
        let span = tracing::info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempt);
        let lost = || HandlerError::Retryable("lease lost; stopped".into());
        let mut reruns = 0;
        let result = loop {
            let work = self.engine.handle(&info, &job.payload);
            let r = async {
                tokio::select! {
                    r = work => r,
                    // Another worker owns the job now: stop touching the room at once.
                    () = job.lease_lost() => Err(lost()),
                }
            }
            .instrument(span.clone())
            .await;
            // A database blip: handlers are idempotent re-plans, so running the job again
            // in a moment is what the durable retry would do, minus the attempt and the
            // 60 s backoff. Bounded, so a real outage still ends in the durable backoff.
            let Err(HandlerError::TransientDb(m)) = r else {
                break r;
            };
            let Some(wait) = self.db_retry.delay(reruns) else {
                break Err(HandlerError::TransientDb(m));
            };
            reruns += 1;
            tracing::info!(parent: &span, error = %m, rerun = reruns, ?wait, "database blip; running the job again shortly");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = job.lease_lost() => break Err(lost()),
            }
        };
        let _g = span.enter();
        match result {
            Ok(summary) => {
                tracing::info!("{summary}");
                Ok(())
            }
            // The queue runtime logs the failure once, with what happens next (retry,
            // dead, snooze); logging it here too doubled every failure line.
            Err(e) => Err(e.into()),
        }
    }
}

/// Registers [`SyncHandler`] for every kind of [`Kind::ALL`].
pub fn register_all(mut builder: WorkerBuilder, engine: Arc<Engine>) -> WorkerBuilder {
    let handler: Arc<dyn JobHandler> = Arc::new(SyncHandler::new(engine));
    for k in Kind::ALL {
        builder = builder.register(k.as_str(), handler.clone());
    }
    builder
}

/// One worker replica as users run it: the queue worker with every handler registered, the
/// periodic reconcile scheduler (on unless the engine's `reconcile_interval_secs` is 0) and,
/// given metrics, the queue-stats sampler. The CLI, the demo and bench harness and the tests
/// all start workers through this, so what they test is what users run.
#[derive(Debug)]
pub struct WorkerStack {
    worker: rcjobs_queue::Worker,
    engine: Arc<Engine>,
    pool: PgPool,
    moodle_pool: PgPool,
    queue: String,
    reconcile: Option<Duration>,
    metrics: Option<Metrics>,
}

impl WorkerStack {
    /// Registers every handler on `builder` (configure its pool, concurrency, queues, hooks
    /// and policies first) and builds the replica around `engine`.
    pub fn build(
        builder: WorkerBuilder,
        engine: Arc<Engine>,
        metrics: Option<Metrics>,
    ) -> Result<WorkerStack, rcjobs_queue::QueueError> {
        let pool = engine.pool.clone();
        let moodle_pool = engine.moodle.pool().clone();
        let cfg = engine.config();
        let queue = cfg.queue.clone();
        let reconcile = (cfg.reconcile_interval_secs > 0)
            .then(|| Duration::from_secs(cfg.reconcile_interval_secs));
        let worker = register_all(builder, engine.clone()).build()?;
        Ok(WorkerStack {
            worker,
            engine,
            pool,
            moodle_pool,
            queue,
            reconcile,
            metrics,
        })
    }

    /// This replica's worker id.
    pub fn id(&self) -> uuid::Uuid {
        self.worker.id()
    }

    /// Runs the replica until `shutdown` resolves and the queue worker has drained; the
    /// background tasks stop with it. It first says which permissions the bot lacks
    /// ([`crate::preflight`]).
    pub async fn run<F>(self, shutdown: F) -> Result<(), rcjobs_queue::QueueError>
    where
        F: std::future::Future<Output = ()> + Send,
    {
        check_moodle_settings(&self.engine).await;
        crate::preflight::check_capabilities(&self.engine).await;
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        if let Some(every) = self.reconcile {
            tasks.push(tokio::spawn(run_reconcile_scheduler(
                self.pool.clone(),
                self.queue.clone(),
                every,
                stop.clone(),
            )));
        }
        // The capture outbox (docs/decisions/0011-capture.md): every replica runs the relay;
        // an advisory lock lets one at a time move rows.
        tasks.push(tokio::spawn(rcjobs_moodle::outbox::run(
            self.moodle_pool.clone(),
            self.pool.clone(),
            self.engine.moodle.prefix().clone(),
            rcjobs_moodle::outbox::DEFAULT_INTERVAL,
            stop.clone(),
        )));
        if let Some(m) = self.metrics.clone() {
            tasks.push(tokio::spawn(run_outbox_sampler(
                self.moodle_pool.clone(),
                self.engine.moodle.prefix().clone(),
                m,
                stop.clone(),
            )));
        }
        if let Some(m) = self.metrics {
            tasks.push(tokio::spawn(run_stats_sampler(
                self.pool.clone(),
                self.moodle_pool.clone(),
                m,
                Duration::from_secs(5),
                stop.clone(),
            )));
        }
        let result = self.worker.run(shutdown).await;
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        result
    }
}

/// Copies the capture outbox's backlog into the metrics every 5 s until `stop` (one count of
/// a table the relay keeps near empty).
async fn run_outbox_sampler(
    moodle: PgPool,
    prefix: rcjobs_moodle::Prefix,
    metrics: Metrics,
    stop: CancellationToken,
) {
    loop {
        if let Ok(n) = rcjobs_moodle::outbox::pending(&moodle, &prefix).await {
            metrics.set_capture_outbox_rows(n);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Reads the settings Moodle supplies once at start-up, so each replica says which ones it
/// took from Moodle and which ones its TOML overrides before any job runs; then checks the
/// permissions that only Moodle's settings ask for (the preflight sees the TOML's).
async fn check_moodle_settings(engine: &Engine) {
    let effective = match engine.effective_settings().await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "could not read mod_rocketchat's settings from Moodle; the room jobs will try again");
            return;
        }
    };
    let mut needed = Vec::new();
    if effective.retention_feature {
        needed.push(rcjobs_chat::Capability::EditRetention);
    }
    if effective.create_accounts && !engine.config().create_accounts {
        needed.push(rcjobs_chat::Capability::CreateUsers);
    }
    if needed.is_empty() {
        return;
    }
    match engine.chat.missing_capabilities(&needed).await {
        Ok(missing) => {
            for (c, permission) in missing {
                tracing::warn!(
                    permission = %permission,
                    "the bot lacks `{permission}`, needed for {}: grant it to the bot's role; until then the rooms concerned record `permission_missing`",
                    c.purpose()
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the bot's permissions; not checked"),
    }
}

/// Queue runtime events → `rcjobs_*` metrics.
#[derive(Debug, Clone)]
pub struct MetricsHooks {
    metrics: Metrics,
}

impl MetricsHooks {
    /// Hooks feeding `metrics`.
    pub fn new(metrics: Metrics) -> MetricsHooks {
        MetricsHooks { metrics }
    }
}

impl QueueHooks for MetricsHooks {
    fn claimed(&self, job: &rcjobs_queue::JobInfo, wait: Duration) {
        self.metrics.job_started(&job.kind, wait);
    }

    fn finished(&self, job: &rcjobs_queue::JobInfo, outcome: JobOutcome, duration: Duration) {
        let o = match outcome {
            JobOutcome::Completed => MetricOutcome::Completed,
            JobOutcome::Retryable | JobOutcome::Interrupted => MetricOutcome::Retried,
            JobOutcome::Snoozed => MetricOutcome::Snoozed,
            JobOutcome::Permanent | JobOutcome::NoHandler | JobOutcome::Panicked => {
                MetricOutcome::Dead
            }
        };
        self.metrics.job_finished(&job.kind, o, duration);
    }

    fn swept(&self, report: &SweepReport) {
        if report.expired > 0 {
            self.metrics.leases_expired(report.expired);
        }
    }

    fn lease_lost(&self, job: &rcjobs_queue::JobInfo, _why: LeaseLoss) {
        tracing::warn!(job = job.id, kind = %job.kind, "lease lost");
    }
}

/// Copies the queue's counter table into the jobs-by-state and oldest-ready gauges, and the
/// queue and Moodle pools' use into the pool gauges (the same pool twice when Moodle shares
/// the queue's database), every `every`, until `stop`.
pub async fn run_stats_sampler(
    pool: PgPool,
    moodle_pool: PgPool,
    metrics: Metrics,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        for (name, p) in [("queue", &pool), ("moodle", &moodle_pool)] {
            metrics.set_db_pool(
                name,
                p.size(),
                u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
                p.options().get_max_connections(),
            );
        }
        match rcjobs_queue::stats(&pool).await {
            Ok(s) => {
                let rows = due_and_scheduled(&s);
                metrics.set_jobs_by_state(rows.iter().map(|(q, k, st, n)| StateCount {
                    queue: q,
                    kind: k,
                    state: st,
                    count: *n,
                }));
                let mut queues: Vec<&str> = s.counts.iter().map(|c| c.queue.as_str()).collect();
                queues.sort_unstable();
                queues.dedup();
                for q in queues {
                    let age = s
                        .oldest_ready_age_by_queue
                        .iter()
                        .find(|(name, a)| name == q && *a > 0.0)
                        .map(|(_, a)| Duration::from_secs_f64(*a));
                    metrics.set_oldest_ready_age(q, age);
                }
            }
            Err(e) => tracing::debug!(error = %e, "queue stats sample failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// The counter rows as metrics report them: `ready` and `blocked` less the jobs not due yet,
/// which become a `scheduled` row per (queue, kind).
fn due_and_scheduled(s: &rcjobs_queue::QueueStats) -> Vec<(String, String, &'static str, i64)> {
    use rcjobs_queue::JobState;
    let mut rows: Vec<(String, String, &'static str, i64)> = s
        .counts
        .iter()
        .map(|c| {
            let later = match c.state {
                JobState::Ready | JobState::Blocked => s.scheduled_in(&c.queue, &c.kind, c.state),
                _ => 0,
            };
            (
                c.queue.clone(),
                c.kind.clone(),
                c.state.as_str(),
                c.count - later,
            )
        })
        .collect();
    let mut scheduled: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
    for c in &s.scheduled {
        *scheduled
            .entry((c.queue.as_str(), c.kind.as_str()))
            .or_default() += c.count;
    }
    rows.extend(
        scheduled
            .into_iter()
            .map(|((q, k), n)| (q.to_string(), k.to_string(), "scheduled", n)),
    );
    rows
}

/// Enqueues the `reconcile_all` of the **next** period (dedup key
/// `reconcile_all:<period start>`, run at the period start) now and every `interval / 4`
/// (at most a minute) until `stop`. Every replica does this; because the job is always for
/// a period that has not started, it is still pending when other replicas enqueue it, so
/// the dedup key makes exactly one run per period however many replicas there are.
pub async fn run_reconcile_scheduler(
    pool: PgPool,
    queue: String,
    interval: Duration,
    stop: CancellationToken,
) {
    let secs = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
    let tick = (interval / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let start = next_period_start(chrono::Utc::now().timestamp(), secs);
        let job = Job::ReconcileAll(ReconcileAll {
            v: 1,
            period_start: Some(start),
            period_secs: Some(secs),
        });
        let opts = EnqueueOptions {
            queue: Some(queue.clone()),
            run_at: chrono::DateTime::from_timestamp(start, 0),
            ..EnqueueOptions::default()
        };
        if let Err(e) = rcjobs_producer::enqueue_with(&pool, &job, &opts).await {
            tracing::warn!(error = %e, "scheduling reconcile_all failed; will retry");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::due_and_scheduled;
    use rcjobs_queue::{JobState, QueueStats, StateCount};

    fn row(q: &str, k: &str, state: JobState, count: i64) -> StateCount {
        StateCount {
            queue: q.into(),
            kind: k.into(),
            state,
            count,
        }
    }

    #[test]
    fn jobs_not_due_are_reported_as_scheduled_not_ready() {
        let s = QueueStats {
            counts: vec![
                row("default", "synchronize_group", JobState::Ready, 253),
                row("default", "synchronize_group", JobState::Blocked, 3),
                row("default", "synchronize_group", JobState::Running, 2),
                row("default", "enrolment", JobState::Ready, 10),
            ],
            scheduled: vec![
                row("default", "synchronize_group", JobState::Ready, 250),
                row("default", "synchronize_group", JobState::Blocked, 1),
            ],
            oldest_ready_age_seconds: 0.0,
            oldest_ready_age_by_queue: Vec::new(),
            workers: Vec::new(),
        };
        let rows = due_and_scheduled(&s);
        let get = |k: &str, st: &str| {
            rows.iter()
                .find(|r| r.1 == k && r.2 == st)
                .map(|r| r.3)
                .unwrap()
        };
        assert_eq!(get("synchronize_group", "ready"), 3);
        assert_eq!(get("synchronize_group", "blocked"), 2);
        assert_eq!(get("synchronize_group", "running"), 2);
        assert_eq!(get("synchronize_group", "scheduled"), 251);
        assert_eq!(get("enrolment", "ready"), 10);
        assert!(!rows
            .iter()
            .any(|r| r.1 == "enrolment" && r.2 == "scheduled"));
    }
}
