//! The claim loop and handler tasks.

use super::acker::{self, Ack, AckKind, AckMsg};
use super::handler::{JobContext, JobError, JobHandler};
use super::hooks::{JobInfo, JobOutcome, LeaseLoss, QueueHooks};
use super::{maintenance, Wakeup, Worker, WorkerConfig};
use crate::lease::{self, ClaimedJob, Settle};
use crate::QueueError;
use chrono::Utc;
use futures::FutureExt;
use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

/// Where a leased job is inside this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Claimed, waiting for a handler slot.
    Buffered,
    /// Handler running.
    Running,
    /// Handler done, acknowledgement queued.
    Acking,
}

pub(crate) struct Slot {
    pub token: i32,
    pub info: JobInfo,
    pub lease: CancellationToken,
    pub phase: Phase,
    pub abort: Option<AbortHandle>,
    pub lost: bool,
    /// Local, conservative estimate of when the lease runs out (taken before the claim or
    /// renewal was sent, so never later than the database's `lease_until`).
    pub expires: Instant,
}

pub(crate) struct Shared {
    pub pool: PgPool,
    pub handlers: HashMap<String, Arc<dyn JobHandler>>,
    pub config: WorkerConfig,
    pub hooks: Arc<dyn QueueHooks>,
    pub id: Uuid,
    pub inflight: Mutex<HashMap<i64, Slot>>,
    pub ack_tx: mpsc::UnboundedSender<AckMsg>,
    pub freed: Notify,
    pub tracker: TaskTracker,
}

impl Shared {
    pub(crate) fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Slot>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) async fn run<F>(worker: Worker, shutdown: F) -> Result<(), QueueError>
where
    F: Future<Output = ()> + Send,
{
    crate::check_schema(&worker.pool).await?;
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    sqlx::query(
        "INSERT INTO rcjobs.worker (id, hostname, pid, queues, concurrency) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET last_seen = now()",
    )
    .bind(worker.id)
    .bind(&host)
    .bind(std::process::id() as i32)
    .bind(&worker.config.queues)
    .bind(worker.config.concurrency as i32)
    .execute(&worker.pool)
    .await?;

    let wakeup = worker
        .wakeup
        .clone()
        .unwrap_or_else(|| Wakeup::start(&worker.pool));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        pool: worker.pool.clone(),
        handlers: worker.handlers,
        config: worker.config,
        hooks: worker.hooks,
        id: worker.id,
        inflight: Mutex::new(HashMap::new()),
        ack_tx,
        freed: Notify::new(),
        tracker: TaskTracker::new(),
    });
    tracing::info!(worker.id = %shared.id, queues = ?shared.config.queues, concurrency = shared.config.concurrency,
        "rcjobs worker started");

    let acker = tokio::spawn(acker::run(shared.clone(), ack_rx));
    let stop_bg = CancellationToken::new();
    let heartbeat = tokio::spawn(maintenance::heartbeat(shared.clone(), stop_bg.clone()));
    let sweeper = shared
        .config
        .maintenance
        .then(|| tokio::spawn(maintenance::sweeper(shared.clone(), stop_bg.clone())));

    let sem = Arc::new(Semaphore::new(shared.config.concurrency));
    let mut buffer: VecDeque<ClaimedJob> = VecDeque::new();
    claim_loop(&shared, &sem, &mut buffer, wakeup, shutdown).await;

    // --- graceful shutdown ---
    tracing::info!(worker.id = %shared.id, buffered = buffer.len(), "rcjobs worker stopping");
    for job in buffer.drain(..) {
        let info = shared.slots().remove(&job.id).map(|s| s.info);
        if let Some(info) = info {
            let _ = shared.ack_tx.send(AckMsg::Ack(Ack {
                id: job.id,
                token: job.token,
                info,
                kind: AckKind::Settle(Settle::Release),
            }));
        }
    }
    shared.tracker.close();
    if tokio::time::timeout(shared.config.shutdown_timeout, shared.tracker.wait())
        .await
        .is_err()
    {
        let interrupted: Vec<(i64, Slot)> = {
            let mut slots = shared.slots();
            let ids: Vec<i64> = slots
                .iter()
                .filter(|(_, s)| s.phase == Phase::Running)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| slots.remove(&id).map(|s| (id, s)))
                .collect()
        };
        for (id, slot) in interrupted {
            if let Some(a) = &slot.abort {
                a.abort();
            }
            tracing::warn!(job.id = id, job.kind = %slot.info.kind, "rcjobs: handler interrupted by the shutdown deadline");
            shared.hooks.finished(
                &slot.info,
                JobOutcome::Interrupted,
                shared.config.shutdown_timeout,
            );
            let _ = shared.ack_tx.send(AckMsg::Ack(Ack {
                id,
                token: slot.token,
                info: slot.info,
                kind: AckKind::Settle(Settle::Retry {
                    run_at: Utc::now(),
                    error: "interrupted: the worker shut down before the job finished".into(),
                }),
            }));
        }
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let _ = shared.ack_tx.send(AckMsg::Stop(done_tx));
    let _ = done_rx.await;
    let _ = acker.await;
    stop_bg.cancel();
    let _ = heartbeat.await;
    if let Some(s) = sweeper {
        let _ = s.await;
    }
    if let Err(e) = sqlx::query("DELETE FROM rcjobs.worker WHERE id = $1")
        .bind(shared.id)
        .execute(&shared.pool)
        .await
    {
        tracing::warn!(error = %e, "rcjobs: could not deregister the worker");
    }
    tracing::info!(worker.id = %shared.id, "rcjobs worker stopped");
    Ok(())
}

async fn claim_loop<F>(
    shared: &Arc<Shared>,
    sem: &Arc<Semaphore>,
    buffer: &mut VecDeque<ClaimedJob>,
    wakeup: Wakeup,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let cfg = &shared.config;
    let limit = cfg.concurrency + cfg.prefetch;
    let min_claim = (cfg.batch_size.min(limit) / 2).max(1);
    let mut wake = wakeup.subscribe();
    let mut next_queue = 0usize;
    let mut error_backoff = Duration::from_millis(50);
    tokio::pin!(shutdown);
    loop {
        while !buffer.is_empty() {
            match sem.clone().try_acquire_owned() {
                Ok(permit) => {
                    if let Some(job) = buffer.pop_front() {
                        start_job(shared, job, permit);
                    }
                }
                Err(_) => break,
            }
        }
        // Every job still held counts, including those whose acknowledgement is queued: a
        // claim loop that outran a slow acker would pile up leases to renew and redeliver.
        let outstanding = shared.slots().len();
        let capacity = limit.saturating_sub(outstanding);
        let can_claim = capacity >= min_claim;
        let mut failed = false;
        if can_claim {
            wake.borrow_and_update();
            let mut got = 0usize;
            for _ in 0..cfg.queues.len() {
                let queue = &cfg.queues[next_queue % cfg.queues.len()];
                next_queue = next_queue.wrapping_add(1);
                let want = cfg.batch_size.min(capacity);
                let sent = Instant::now();
                match lease::claim(&shared.pool, queue, want, cfg.lease_ttl, shared.id).await {
                    Ok(jobs) => {
                        error_backoff = Duration::from_millis(50);
                        got = jobs.len();
                        if got > 0 {
                            shared.hooks.claim_batch(queue, got);
                            let mut names = Interner::default();
                            let mut slots = shared.slots();
                            for j in &jobs {
                                slots.insert(
                                    j.id,
                                    Slot {
                                        token: j.token,
                                        info: JobInfo {
                                            id: j.id,
                                            kind: names.get(&j.kind),
                                            queue: names.get(&j.queue),
                                            attempt: j.attempt,
                                        },
                                        lease: CancellationToken::new(),
                                        phase: Phase::Buffered,
                                        abort: None,
                                        lost: false,
                                        expires: sent + cfg.lease_ttl,
                                    },
                                );
                            }
                            drop(slots);
                            buffer.extend(jobs);
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, queue = %queue, "rcjobs: claim failed; retrying");
                        failed = true;
                        break;
                    }
                }
            }
            if got > 0 {
                continue;
            }
        }
        if failed {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(error_backoff) => {}
            }
            error_backoff = (error_backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = shared.freed.notified(), if !can_claim || !buffer.is_empty() => {}
            r = wake.changed(), if can_claim => {
                if r.is_err() {
                    // listener gone (cannot happen while we hold a Wakeup); fall back to polling
                    tokio::time::sleep(cfg.poll_interval).await;
                }
            }
            _ = tokio::time::sleep(cfg.poll_interval) => {}
        }
    }
}

/// Shares one `Arc<str>` among the jobs of a batch that carry the same kind or queue name
/// (a batch usually has one or two of each), instead of one allocation per job and name.
#[derive(Default)]
struct Interner(Vec<Arc<str>>);

impl Interner {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(a) = self.0.iter().find(|a| &***a == name) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(name);
        // a batch of many distinct names gains nothing from a longer search
        if self.0.len() < 8 {
            self.0.push(a.clone());
        }
        a
    }
}

fn start_job(shared: &Arc<Shared>, job: ClaimedJob, permit: OwnedSemaphorePermit) {
    let (info, lease) = {
        let mut slots = shared.slots();
        match slots.get_mut(&job.id) {
            Some(s) => {
                s.phase = Phase::Running;
                (s.info.clone(), s.lease.clone())
            }
            None => return,
        }
    };
    let wait = (job.started_at - job.run_at).to_std().unwrap_or_default();
    shared.hooks.claimed(&info, wait);
    let handler = shared.handlers.get(&job.kind).cloned();
    let ctx = JobContext {
        id: job.id,
        kind: job.kind,
        queue: job.queue,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        payload: job.payload,
        exclusion_key: job.exclusion_key,
        enqueued_at: job.enqueued_at,
        token: job.token,
        lease,
    };
    let sh = shared.clone();
    let id = job.id;
    let handle = shared.tracker.spawn(async move {
        let span = tracing::info_span!("job", job.id = ctx.id, job.kind = %ctx.kind, job.attempt = ctx.attempt);
        let started = Instant::now();
        let (result, outcome) = match handler {
            None => (
                Err(JobError::Permanent(format!("no handler registered for kind {:?} on this worker", ctx.kind))),
                JobOutcome::NoHandler,
            ),
            Some(h) => {
                let r = AssertUnwindSafe(h.run(&ctx)).catch_unwind().instrument(span.clone()).await;
                match r {
                    Ok(Ok(())) => (Ok(()), JobOutcome::Completed),
                    Ok(Err(e)) => {
                        let o = match &e {
                            JobError::Retryable(_) => JobOutcome::Retryable,
                            JobError::Permanent(_) => JobOutcome::Permanent,
                            JobError::Snooze { .. } => JobOutcome::Snoozed,
                        };
                        (Err(e), o)
                    }
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "non-string panic".into());
                        // A panic is a bug, not a fault that time fixes: retrying it would
                        // only repeat it for days at the default backoff.
                        (Err(JobError::Permanent(format!("handler panicked: {msg}"))), JobOutcome::Panicked)
                    }
                }
            }
        };
        let took = started.elapsed();
        sh.hooks.finished(&info, outcome, took);
        let kind = match result {
            Ok(()) => {
                span.in_scope(|| tracing::debug!(took_ms = took.as_secs_f64() * 1e3, "job completed"));
                AckKind::Complete
            }
            Err(JobError::Retryable(error)) => {
                let run_at = Utc::now()
                    + chrono::Duration::from_std(sh.config.retry.delay(ctx.attempt)).unwrap_or(chrono::Duration::zero());
                span.in_scope(|| tracing::warn!(error = %error, "job failed; will retry"));
                AckKind::Settle(Settle::Retry { run_at, error })
            }
            Err(JobError::Permanent(error)) => {
                span.in_scope(|| tracing::warn!(error = %error, "job failed permanently"));
                AckKind::Settle(Settle::Dead { error })
            }
            Err(JobError::Snooze { until, reason }) => {
                span.in_scope(|| tracing::info!(until = %until, reason = %reason, "job snoozed"));
                AckKind::Settle(Settle::Snooze { until })
            }
        };
        let owned = {
            let mut slots = sh.slots();
            match slots.get_mut(&ctx.id) {
                Some(s) if s.phase == Phase::Running => {
                    s.phase = Phase::Acking;
                    s.abort = None;
                    true
                }
                _ => false,
            }
        };
        drop(permit);
        sh.freed.notify_one();
        if owned {
            let _ = sh.ack_tx.send(AckMsg::Ack(Ack { id: ctx.id, token: ctx.token, info, kind }));
        }
    });
    if let Some(s) = shared.slots().get_mut(&id) {
        if s.phase == Phase::Running {
            s.abort = Some(handle.abort_handle());
        }
    }
}

/// Reports a lost lease once per slot.
pub(crate) fn lease_lost(shared: &Shared, id: i64, token: i32, why: LeaseLoss) {
    let info = {
        let mut slots = shared.slots();
        match slots.get_mut(&id) {
            Some(s) if s.token == token && !s.lost => {
                s.lost = true;
                s.lease.cancel();
                Some(s.info.clone())
            }
            _ => None,
        }
    };
    if let Some(info) = info {
        tracing::warn!(job.id = id, job.kind = %info.kind, job.attempt = info.attempt, reason = ?why,
            "rcjobs: lease lost; this attempt's result will be discarded");
        shared.hooks.lease_lost(&info, why);
    }
}
