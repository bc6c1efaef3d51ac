//! The `rcjobs bench queue` methodology, against apalis-postgres 1.0: bulk-enqueue N no-op jobs
//! (UNNEST batches through the backend's sink), drain them with W workers, then measure idle
//! enqueue-to-start latency over single enqueues spaced 10 ms apart.

use crate::db;
use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Benchmark flags (names and defaults as `rcjobs bench queue` where they overlap).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Jobs to enqueue and drain.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: usize,
    /// Workers (each its own apalis `Worker`, backend and LISTEN connection).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// apalis `Config::batch_size`: jobs per `get_jobs` call.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Handler concurrency per worker (tower `ConcurrencyLimitLayer`).
    #[arg(long, default_value_t = 1000)]
    pub concurrency: usize,
    /// Jobs per bulk-enqueue statement (`push_bulk` → one UNNEST insert).
    #[arg(long, default_value_t = 10_000)]
    pub enqueue_chunk: usize,
    /// Concurrent bulk-enqueue tasks.
    #[arg(long, default_value_t = 2)]
    pub enqueue_parallel: usize,
    /// Single enqueues for the idle latency measurement.
    #[arg(long, default_value_t = 200)]
    pub latency_samples: usize,
    /// Also poll every this many ms (0: LISTEN/NOTIFY only).
    #[arg(long, default_value_t = 0)]
    pub poll_ms: u64,
    /// Database created and dropped for the run.
    #[arg(long, default_value = "apalis_bench")]
    pub database: String,
    /// Keep the database after the run (for inspecting plans).
    #[arg(long)]
    pub keep_db: bool,
}

/// The job: a number, so latency probes can be told apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noop {
    n: u64,
    probe: bool,
}

/// Shared between handlers and the driver.
#[derive(Default)]
struct State {
    done: AtomicU64,
    record: AtomicBool,
    started: Mutex<HashMap<u64, Instant>>,
}

async fn noop(job: Noop, st: Data<Arc<State>>) -> Result<(), BoxDynError> {
    if job.probe && st.record.load(Ordering::Relaxed) {
        st.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.n, Instant::now());
    }
    st.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

const QUEUE: &str = "bench_noop";

fn storage(pool: &sqlx::PgPool, batch: usize) -> PostgresStorage<Noop> {
    PostgresStorage::new(pool).with_config(Config::default().queue(QUEUE).batch_size(batch))
}

async fn done_in_db(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'")
            .fetch_one(pool)
            .await?,
    )
}

/// Runs the benchmark and prints one JSON object.
pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let max = (a.workers * 5 + a.enqueue_parallel + 4) as u32;
    let pool = db::fresh(&a.database, max).await?;
    let out = phases(&pool, &a).await;
    if a.keep_db {
        pool.close().await;
    } else {
        db::drop_db(pool, &a.database).await;
    }
    println!("{}", serde_json::to_string(&out?)?);
    Ok(())
}

async fn phases(pool: &sqlx::PgPool, a: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    let pg_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await?;

    // 1. bulk enqueue
    let t0 = Instant::now();
    let per_task = a.jobs.div_ceil(a.enqueue_parallel.max(1));
    let mut tasks = Vec::new();
    for p in 0..a.enqueue_parallel.max(1) {
        let mut sink = storage(pool, a.batch);
        let (lo, hi) = (p * per_task, ((p + 1) * per_task).min(a.jobs));
        let chunk = a.enqueue_chunk.max(1);
        tasks.push(tokio::spawn(async move {
            let mut i = lo;
            while i < hi {
                let n = chunk.min(hi - i);
                let jobs: Vec<Noop> = (i..i + n)
                    .map(|k| Noop {
                        n: k as u64,
                        probe: false,
                    })
                    .collect();
                sink.push_bulk(jobs)
                    .await
                    .map_err(|e| anyhow::anyhow!("push_bulk: {e}"))?;
                i += n;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let enqueue_s = t0.elapsed().as_secs_f64();
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        queued as usize == a.jobs,
        "enqueued {queued} rows, wanted {}",
        a.jobs
    );
    sqlx::query("VACUUM ANALYZE apalis.jobs")
        .execute(pool)
        .await?;

    // 2. drain with W workers
    let st = Arc::new(State::default());
    let mut ctxs = Vec::new();
    let mut handles = Vec::new();
    let t1 = Instant::now();
    for i in 0..a.workers.max(1) {
        let ctx = WorkerContext::new(&format!("bench-w{i}"));
        ctxs.push(ctx.clone());
        let backend = storage(pool, a.batch).with_pubsub();
        let (st, conc, poll_ms) = (st.clone(), a.concurrency, a.poll_ms);
        handles.push(tokio::spawn(async move {
            if poll_ms > 0 {
                let w = WorkerBuilder::new(&ctx)
                    .backend(backend.poll_with_interval(Duration::from_millis(poll_ms)))
                    .concurrency(conc)
                    .data(st)
                    .build(noop);
                w.run().await
            } else {
                let w = WorkerBuilder::new(&ctx)
                    .backend(backend)
                    .concurrency(conc)
                    .data(st)
                    .build(noop);
                w.run().await
            }
        }));
    }
    let target = a.jobs as u64;
    let deadline = Instant::now() + Duration::from_secs(900);
    while st.done.load(Ordering::Relaxed) < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "drain did not finish in 15 minutes"
        );
        anyhow::ensure!(
            handles.iter().all(|h| !h.is_finished()),
            "a worker stopped during the drain"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let handled_s = t1.elapsed().as_secs_f64();
    // drained = every row acknowledged as Done in the database (as rcjobs counts acked jobs)
    while done_in_db(pool).await? < target as i64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "acknowledgements did not land in 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_s = t1.elapsed().as_secs_f64();

    // 3. idle latency: single enqueues, spaced out, workers idle
    tokio::time::sleep(Duration::from_millis(500)).await;
    st.record.store(true, Ordering::Relaxed);
    let mut sink = storage(pool, a.batch);
    let mut sent: Vec<(u64, Instant)> = Vec::with_capacity(a.latency_samples);
    for k in 0..a.latency_samples as u64 {
        let t = Instant::now();
        sink.push(Noop { n: k, probe: true })
            .await
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
        sent.push((k, t));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let want = target + a.latency_samples as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while st.done.load(Ordering::Relaxed) < want {
        anyhow::ensure!(
            Instant::now() < deadline,
            "latency jobs did not finish in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for c in &ctxs {
        let _ = c.stop();
    }
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
    }
    let started = st.started.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(k, t)| {
            started
                .get(k)
                .map(|s| s.duration_since(*t).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (lat.len() as f64 - 1.0)).round() as usize;
        lat[i.min(lat.len() - 1)]
    };
    Ok(serde_json::json!({
        "system": "apalis-postgres 1.0.0",
        "jobs": a.jobs,
        "workers": a.workers,
        "batch": a.batch,
        "concurrency": a.concurrency,
        "wakeup": if a.poll_ms > 0 { format!("pubsub+poll {} ms", a.poll_ms) } else { "pubsub".to_string() },
        "enqueue_jobs_per_s": (a.jobs as f64 / enqueue_s).round(),
        "enqueue_seconds": enqueue_s,
        "drain_jobs_per_s": (a.jobs as f64 / drain_s).round(),
        "drain_seconds": drain_s,
        "handled_jobs_per_s": (a.jobs as f64 / handled_s).round(),
        "latency_samples": lat.len(),
        "latency_p50_ms": pct(50.0),
        "latency_p99_ms": pct(99.0),
        "latency_max_ms": lat.last().copied().unwrap_or(f64::NAN),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "pg_version": pg_version,
    }))
}
