//! W queue workers in this process, each built like a separate replica, by the same wiring
//! as `rcjobs worker` (`rcjobs_worker::wiring`): its own database pool, its own chat client
//! (behind its own handle on the shared Postgres rate limiter, with its metrics), its own
//! claim loop.
//!
//! Pools are sized from a connection budget ([`plan_connections`]), not one connection per
//! concurrent job: a job holds a connection only for its short queries (Moodle reads, sync
//! state, the rate gate, its acknowledgement), never across a chat call, so a replica
//! running 16 jobs is served by about ten connections. A stock PostgreSQL has
//! `max_connections = 100`; the demo and `bench e2e` stay within [`DEFAULT_CONNECTION_CAP`].

use super::chat::{CallCounter, ChatServer};
use rcjobs_queue::{JobInfo, JobOutcome, QueueHooks, RetryPolicy};
use rcjobs_worker::wiring::{build_engine, build_worker, metrics_for, EngineParts, WorkerParts};
use rcjobs_worker::{CancellationToken, WorkerConfig};
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

/// Connections the demo and `bench e2e` open in total unless told otherwise (issue 14: the
/// whole demo fits in half of a stock server's 100).
pub const DEFAULT_CONNECTION_CAP: u32 = 50;

/// Connections of the harness's own pools: 4 for its queries (migrations, fixture, enrolment,
/// stats) and 4 for the comparator's Moodle reads.
pub const HARNESS_CONNECTIONS: u32 = 8;

/// Fewest connections a replica can work with: one held by LISTEN, and three shared by the
/// claim loop, acknowledgements, lease upkeep, maintenance and the jobs' queries.
pub const MIN_REPLICA_CONNECTIONS: u32 = 4;

/// How many connections each pool of a run gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// Pool size of each worker replica.
    pub per_replica: u32,
    /// Worker replicas.
    pub replicas: u32,
    /// The harness's own pools together.
    pub harness: u32,
    /// What the run may open in total (the cap, or less when the server has less free).
    pub budget: u32,
    /// `max_connections` of the server.
    pub max_connections: u32,
    /// Client connections of others when the plan was made.
    pub others: u32,
}

impl ConnectionPlan {
    /// Connections the run opens at most.
    pub fn total(&self) -> u32 {
        self.per_replica * self.replicas + self.harness
    }
}

impl std::fmt::Display for ConnectionPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} Postgres connections at most ({} workers x {} + {} for the harness; server max_connections {}, {} used by others)",
            self.total(),
            self.replicas,
            self.per_replica,
            self.harness,
            self.max_connections,
            self.others
        )
    }
}

/// Connections left free for others (psql sessions, monitoring, a migration): 5 % of
/// `max_connections`, at least 3.
pub fn headroom(max_connections: u32) -> u32 {
    (max_connections / 20).max(3)
}

/// Pool size a replica running `concurrency` jobs would like: half a connection per job plus
/// four for the runtime, never more than the CLI worker's `concurrency + 8`.
pub fn wanted_per_replica(concurrency: usize) -> u32 {
    let c = u32::try_from(concurrency).unwrap_or(u32::MAX / 4);
    (c / 2 + 4).clamp(MIN_REPLICA_CONNECTIONS, c.saturating_add(8))
}

/// Sizes the worker pools of a run with `replicas` x `concurrency` to what the server has
/// free and to `cap`. `own` is how many of `server.in_use` are this process's (they are part
/// of the plan, not someone else's). Fails, naming every number, when even
/// [`MIN_REPLICA_CONNECTIONS`] per replica does not fit.
pub fn plan_connections(
    server: &super::postgres::ServerConnections,
    own: u32,
    cap: u32,
    replicas: usize,
    concurrency: usize,
) -> anyhow::Result<ConnectionPlan> {
    let replicas = u32::try_from(replicas.max(1)).unwrap_or(u32::MAX);
    let others = server.in_use.saturating_sub(own);
    let spare = headroom(server.max_connections);
    let free = server
        .max_connections
        .saturating_sub(server.reserved)
        .saturating_sub(others)
        .saturating_sub(spare);
    let budget = free.min(cap);
    let need = HARNESS_CONNECTIONS.saturating_add(replicas.saturating_mul(MIN_REPLICA_CONNECTIONS));
    if budget < need {
        let limit = if cap < free {
            format!("the cap of {cap} (--max-connections)")
        } else {
            format!(
                "what the server has free: max_connections {} - {} reserved for superusers - {others} used by other clients - {spare} left spare = {free}",
                server.max_connections, server.reserved
            )
        };
        anyhow::bail!(
            "not enough Postgres connections: {replicas} workers need at least {need} \
             ({HARNESS_CONNECTIONS} for the harness + {replicas} x {MIN_REPLICA_CONNECTIONS}), \
             more than {limit}. Run fewer --workers, stop idle clients, or raise the server's \
             max_connections (the demo also takes --max-connections)"
        );
    }
    let per_replica = ((budget - HARNESS_CONNECTIONS) / replicas)
        .min(wanted_per_replica(concurrency))
        .max(MIN_REPLICA_CONNECTIONS);
    Ok(ConnectionPlan {
        per_replica,
        replicas,
        harness: HARNESS_CONNECTIONS,
        budget,
        max_connections: server.max_connections,
        others,
    })
}

/// The running replicas.
pub struct WorkerSet {
    stop: CancellationToken,
    /// Every replica's pool, closed on stop so that the next plan sees them gone.
    pools: Vec<sqlx::PgPool>,
    tasks: Vec<JoinHandle<Result<(), rcjobs_queue::QueueError>>>,
    /// Events of all replicas.
    pub counters: Arc<RunCounters>,
}

/// Starts `opts.count` replicas on the database of `db` (queue, sync state and Moodle in one
/// database, table prefix `prefix`), talking to `chat`, each with a pool of `conns`
/// connections (from [`plan_connections`]).
pub async fn start(
    db: &PgConnectOptions,
    prefix: &str,
    chat: &ChatServer,
    calls: Arc<CallCounter>,
    opts: &WorkerOptions,
    conns: u32,
) -> anyhow::Result<WorkerSet> {
    let counters = Arc::new(RunCounters::default());
    let stop = CancellationToken::new();
    let mut tasks = Vec::with_capacity(opts.count);
    let mut pools = Vec::with_capacity(opts.count);
    for _ in 0..opts.count.max(1) {
        let pool = super::postgres::pool(db, conns.max(MIN_REPLICA_CONNECTIONS)).await?;
        pools.push(pool.clone());
        let moodle = rcjobs_moodle::MoodleDb::new(pool.clone(), prefix)?;
        let connection = chat.connection()?;
        let engine = build_engine(EngineParts {
            pool: pool.clone(),
            moodle,
            metrics: metrics_for(&connection)?,
            chat: connection,
            config: opts.config.clone(),
            observer: Some(calls.clone()),
        })
        .await?;
        let queue = rcjobs_queue::Worker::builder(pool)
            .concurrency(opts.concurrency)
            .queues([opts.config.queue.clone()])
            .poll_interval(Duration::from_millis(500))
            // In-process runs are short: retry transient failures after ~1 s, not Moodle's 60 s.
            .retry_policy(RetryPolicy {
                base: Duration::from_secs(1),
                ..RetryPolicy::default()
            });
        let worker = build_worker(WorkerParts {
            engine,
            queue,
            hooks: Some(counters.clone()),
        })?;
        let s = stop.clone();
        tasks.push(tokio::spawn(async move {
            worker.run(async move { s.cancelled().await }).await
        }));
    }
    Ok(WorkerSet {
        stop,
        pools,
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
        for p in self.pools {
            p.close().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::postgres::ServerConnections;

    fn stock(in_use: u32) -> ServerConnections {
        // PostgreSQL 15 defaults: max_connections 100, superuser_reserved_connections 3.
        ServerConnections {
            max_connections: 100,
            reserved: 3,
            in_use,
        }
    }

    #[test]
    fn demo_defaults_fit_a_stock_server_in_fifty() {
        // 4 x 16 (the demo's and bench e2e's defaults), only our own admin connection open.
        let p = plan_connections(&stock(1), 1, DEFAULT_CONNECTION_CAP, 4, 16).expect("fits");
        assert!(p.total() <= DEFAULT_CONNECTION_CAP, "{p}");
        assert!(p.total() <= 100 - 3 - headroom(100), "{p}");
        assert!(p.per_replica >= MIN_REPLICA_CONNECTIONS, "{p}");
        assert_eq!(p.per_replica, 10, "{p}");
    }

    #[test]
    fn other_clients_shrink_the_pools() {
        // 60 connections held by someone else: 100 - 3 - 60 - 5 = 32 left.
        let p = plan_connections(&stock(61), 1, DEFAULT_CONNECTION_CAP, 4, 16).expect("fits");
        assert_eq!(p.budget, 32, "{p}");
        assert!(p.total() <= 32, "{p}");
        assert_eq!(p.others, 60);
    }

    #[test]
    fn small_concurrency_asks_for_little() {
        let p = plan_connections(&stock(1), 1, DEFAULT_CONNECTION_CAP, 2, 4).expect("fits");
        assert_eq!(p.per_replica, 6, "{p}");
        assert_eq!(p.total(), 20);
    }

    #[test]
    fn too_small_a_budget_fails_with_the_numbers() {
        let e = plan_connections(&stock(80), 1, DEFAULT_CONNECTION_CAP, 4, 16)
            .expect_err("does not fit")
            .to_string();
        for needle in [
            "max_connections 100",
            "79 used by other clients",
            "at least 24",
        ] {
            assert!(e.contains(needle), "{needle:?} missing in: {e}");
        }
        let e = plan_connections(&stock(1), 1, 20, 4, 16)
            .expect_err("cap too small")
            .to_string();
        assert!(e.contains("cap of 20"), "{e}");
    }

    #[test]
    fn wanted_is_bounded_by_the_cli_formula() {
        assert_eq!(wanted_per_replica(1), 4);
        assert_eq!(wanted_per_replica(16), 12);
        assert_eq!(wanted_per_replica(64), 36);
    }
}
