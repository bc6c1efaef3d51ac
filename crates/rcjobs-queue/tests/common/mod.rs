//! Shared test setup: a migrated database with a few kinds.
#![allow(dead_code, clippy::unwrap_used)]

use rcjobs_queue::KindSpec;
use rcjobs_testkit::TestDb;

/// A fresh database with the queue schema and kinds `noop`, `course` (requires `course_id`),
/// `flaky` (3 attempts).
pub async fn db() -> TestDb {
    let db = TestDb::new().await;
    rcjobs_queue::migrate(&db.pool).await.expect("migrate");
    for k in [
        KindSpec::new("noop"),
        KindSpec::new("course")
            .required_fields(["course_id"])
            .max_payload_bytes(1024),
        KindSpec::new("flaky").max_attempts(3),
    ] {
        rcjobs_queue::register_kind(&db.pool, &k)
            .await
            .expect("register kind");
    }
    db
}

/// Row count of a state in the hot table (tests only: the product never counts rows).
pub async fn count_state(db: &TestDb, state: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rcjobs.job WHERE state = $1")
        .bind(state)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// Final state of a job in history, if finished.
pub async fn history_state(db: &TestDb, id: i64) -> Option<String> {
    sqlx::query_scalar("SELECT state FROM rcjobs.job_history WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .unwrap()
}

use futures::future::BoxFuture;
use rcjobs_queue::{JobContext, JobError, JobHandler, Worker, WorkerBuilder};
use std::sync::Arc;
use std::time::Duration;

type HandlerFn = dyn Fn(JobContext) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync;

/// A handler from a closure.
pub struct FnHandler(pub Arc<HandlerFn>);

#[async_trait::async_trait]
impl JobHandler for FnHandler {
    async fn run(&self, job: &JobContext) -> Result<(), JobError> {
        (self.0)(job.clone()).await
    }
}

/// Wraps a closure as a handler.
pub fn handler<F, Fut>(f: F) -> Arc<dyn JobHandler>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), JobError>> + Send + 'static,
{
    Arc::new(FnHandler(Arc::new(move |c| Box::pin(f(c)))))
}

/// A handler that only counts its runs, and the counter.
pub fn counting() -> (Arc<std::sync::atomic::AtomicUsize>, Arc<dyn JobHandler>) {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    let h = handler(move |_| {
        r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok(()) }
    });
    (runs, h)
}

/// A builder with quick test settings: short leases, fast sweeps, fast retries.
pub fn quick_worker(db: &TestDb) -> WorkerBuilder {
    Worker::builder(db.pool.clone())
        .lease_ttl(Duration::from_secs(2))
        .sweep_interval(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(500))
        .shutdown_timeout(Duration::from_secs(5))
        .retry_policy(rcjobs_queue::RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            factor: 2.0,
            jitter: 0.0,
        })
}

/// A running worker and the means to stop it.
pub struct Running {
    pub stop: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), rcjobs_queue::QueueError>>,
}

impl Running {
    /// Stops the worker gracefully and waits for it.
    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("worker stops in time")
            .unwrap()
            .unwrap();
    }
}

/// Spawns `worker.run` until `Running::shutdown`.
pub fn spawn(worker: Worker) -> Running {
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { worker.run(async move { s.cancelled().await }).await });
    Running { stop, task }
}

/// Waits (bounded) until the job is in history, returning its final state.
pub async fn finished(db: &TestDb, id: i64) -> String {
    rcjobs_testkit::wait_for(
        &format!("job {id} to finish"),
        Duration::from_secs(30),
        || async { history_state(db, id).await },
    )
    .await
}

/// Claims up to 10 due jobs of the `default` queue for a throwaway worker id (30 s lease).
pub async fn claim_due(db: &TestDb) -> Vec<rcjobs_queue::lease::ClaimedJob> {
    rcjobs_queue::lease::claim(
        &db.pool,
        "default",
        10,
        Duration::from_secs(30),
        uuid::Uuid::new_v4(),
    )
    .await
    .unwrap()
}
