//! `rcjobs bench queue|e2e|faults|capture`.

use super::config::Settings;
use super::cpu_times::{cpu_used, CpuTimes};
use anyhow::Context;
use clap::{Args, Subcommand};
use rcjobs_queue::{handler_fn, JobInfo, KindSpec, NewJob, QueueHooks, Wakeup, Worker};
use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `rcjobs bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Queue benchmark: bulk enqueue, drain with no-op handlers, idle enqueue-to-start latency.
    Queue(QueueBenchArgs),
    /// End to end: mass enrolments through triggers, workers and the simulator vs the plugin's call pattern.
    E2e(super::bench_e2e::E2eBenchArgs),
    /// Chat faults: the mass enrolment fault-free and with failing calls (their ratio), and a
    /// room of 1,000 members filled and changed with failing calls.
    Faults(super::bench_e2e::FaultsBenchArgs),
    /// What the trigger set costs Moodle's own writes: Moodle's write patterns with no
    /// triggers, in plugin-interception and in change-capture mode, as ratios.
    Capture(super::bench_capture::CaptureBenchArgs),
}

/// `rcjobs bench queue` arguments.
#[derive(Debug, Args)]
pub struct QueueBenchArgs {
    /// Jobs to enqueue and drain.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: usize,
    /// In-process workers, each with its own claim loop (leases and fencing on).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Jobs per claim statement.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Handler concurrency per worker.
    #[arg(long, default_value_t = 1000)]
    pub concurrency: usize,
    /// How the bulk enqueue sends jobs: `copy` (rcjobs_queue::enqueue_copy) or `unnest`
    /// (rcjobs.enqueue_many, the SQL function non-Rust producers call).
    #[arg(long, value_enum, default_value_t = EnqueueMethod::Copy)]
    pub enqueue_method: EnqueueMethod,
    /// Acknowledgement statements in flight per worker.
    #[arg(long, default_value_t = 2)]
    pub ack_parallelism: usize,
    /// How long a small batch of acknowledgements may wait for more, in milliseconds.
    #[arg(long, default_value_t = 2.0)]
    pub ack_linger_ms: f64,
    /// Jobs per bulk-enqueue statement.
    #[arg(long, default_value_t = 10_000)]
    pub enqueue_chunk: usize,
    /// Concurrent bulk-enqueue connections.
    #[arg(long, default_value_t = 2)]
    pub enqueue_parallel: usize,
    /// Single enqueues for the idle latency measurement.
    #[arg(long, default_value_t = 300)]
    pub latency_samples: usize,
    /// Database created (and dropped) on the server of DATABASE_URL for the run.
    #[arg(long, default_value = "rcjobs_bench")]
    pub database: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `rcjobs bench …`.
pub async fn run(s: &Settings, c: BenchCommand) -> anyhow::Result<()> {
    match c {
        BenchCommand::Queue(a) => bench_queue(s, a).await,
        BenchCommand::E2e(a) => super::bench_e2e::run(s, a).await,
        BenchCommand::Faults(a) => super::bench_e2e::run_faults(s, a).await,
        BenchCommand::Capture(a) => super::bench_capture::run(s, a).await,
    }
}

struct Counting {
    done: AtomicU64,
}

impl QueueHooks for Counting {
    fn completed(&self, _job: &JobInfo) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

struct Starts {
    started: Mutex<HashMap<i64, Instant>>,
    record: std::sync::atomic::AtomicBool,
}

fn validate_db_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(ok, "--database must match ^[a-z][a-z0-9_]*$");
    Ok(())
}

async fn bench_queue(s: &Settings, a: QueueBenchArgs) -> anyhow::Result<()> {
    validate_db_name(&a.database)?;
    let base =
        sqlx::postgres::PgConnectOptions::from_str(&s.database_url).context("DATABASE_URL")?;
    let mut admin = base
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connect to the server")?;
    // identifier validated above
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        a.database
    )))
    .execute(&mut admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        a.database
    )))
    .execute(&mut admin)
    .await?;
    let opts = base
        .clone()
        .database(&a.database)
        .disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections((a.workers * 5 + a.enqueue_parallel + 4) as u32)
        .connect_with(opts)
        .await?;
    let result = run_phases(&pool, &a).await;
    pool.close().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        a.database
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    let out = result?;
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// How `bench queue` bulk-enqueues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnqueueMethod {
    /// `COPY … FROM STDIN` (rcjobs_queue::enqueue_copy).
    Copy,
    /// One `rcjobs.enqueue_many` statement (UNNEST) per chunk.
    Unnest,
}

async fn run_phases(pool: &PgPool, a: &QueueBenchArgs) -> anyhow::Result<serde_json::Value> {
    rcjobs_queue::migrate(pool).await?;
    rcjobs_queue::register_kind(pool, &KindSpec::new("bench_noop")).await?;
    let pg_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await?;

    // 1. bulk enqueue
    let cpu0 = CpuTimes::read();
    let t0 = Instant::now();
    let per_task = a.jobs.div_ceil(a.enqueue_parallel.max(1));
    let mut tasks = Vec::new();
    for p in 0..a.enqueue_parallel.max(1) {
        let pool = pool.clone();
        let lo = p * per_task;
        let hi = ((p + 1) * per_task).min(a.jobs);
        let chunk = a.enqueue_chunk.max(1);
        let method = a.enqueue_method;
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            let mut i = lo;
            while i < hi {
                let n = chunk.min(hi - i);
                let jobs: Vec<NewJob> = (i..i + n)
                    .map(|k| NewJob::new("bench_noop", serde_json::json!({"n": k})))
                    .collect();
                match method {
                    EnqueueMethod::Copy => {
                        rcjobs_queue::enqueue_copy(&mut conn, &jobs).await?;
                    }
                    EnqueueMethod::Unnest => {
                        rcjobs_queue::enqueue_many(&mut *conn, &jobs).await?;
                    }
                }
                i += n;
            }
            Ok::<_, rcjobs_queue::QueueError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let enqueue_s = t0.elapsed().as_secs_f64();
    let enqueue_cpu = cpu_used(cpu0, CpuTimes::read());
    sqlx::query("VACUUM ANALYZE rcjobs.job")
        .execute(pool)
        .await?;

    // 2. drain with W workers
    let hooks = Arc::new(Counting {
        done: AtomicU64::new(0),
    });
    let starts = Arc::new(Starts {
        started: Mutex::new(HashMap::new()),
        record: false.into(),
    });
    let st = starts.clone();
    let handler = handler_fn(move |ctx| {
        if st.record.load(Ordering::Relaxed) {
            let now = Instant::now();
            st.started
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ctx.id, now);
        }
        async { Ok(()) }
    });
    let wakeup = Wakeup::start(pool);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    let cpu1 = CpuTimes::read();
    let t1 = Instant::now();
    for i in 0..a.workers.max(1) {
        let w = Worker::builder(pool.clone())
            .concurrency(a.concurrency)
            .batch_size(a.batch)
            .prefetch(a.batch)
            .ack_parallelism(a.ack_parallelism)
            .ack_linger(Duration::from_secs_f64(a.ack_linger_ms.max(0.0) / 1e3))
            .maintenance(i == 0)
            .hooks(hooks.clone())
            .wakeup(wakeup.clone())
            .register("bench_noop", handler.clone())
            .build()?;
        let mut s = stop_rx.clone();
        workers.push(tokio::spawn(async move {
            w.run(async move {
                let _ = s.wait_for(|v| *v).await;
            })
            .await
        }));
    }
    let target = a.jobs as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while hooks.done.load(Ordering::Relaxed) < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "drain did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let drain_s = t1.elapsed().as_secs_f64();
    let drain_cpu = cpu_used(cpu1, CpuTimes::read());

    // 3. idle latency: single enqueues, spaced out, workers idle. The drain left 200k dead
    // rows and as many new history rows; vacuum them now, or autovacuum does it in the
    // middle of the measurement and it measures the vacuum.
    sqlx::query("VACUUM ANALYZE rcjobs.job, rcjobs.job_history")
        .execute(pool)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu2 = CpuTimes::read();
    starts.record.store(true, Ordering::Relaxed);
    // (id, before the call, the call's own round trip incl. its durable commit)
    let mut sent: Vec<(i64, Instant, f64)> = Vec::with_capacity(a.latency_samples);
    for k in 0..a.latency_samples {
        let t = Instant::now();
        let e = rcjobs_queue::enqueue(
            pool,
            &NewJob::new("bench_noop", serde_json::json!({"latency": k})),
        )
        .await?;
        sent.push((e.id, t, t.elapsed().as_secs_f64() * 1e3));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let want = target + a.latency_samples as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while hooks.done.load(Ordering::Relaxed) < want {
        anyhow::ensure!(Instant::now() < deadline, "latency jobs did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let latency_cpu = cpu_used(cpu2, CpuTimes::read());
    let _ = stop.send(true);
    for w in workers {
        w.await??;
    }
    let started = starts
        .started
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(id, t, _)| {
            started
                .get(id)
                .map(|s| s.duration_since(*t).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(|x, y| x.total_cmp(y));
    let mut calls: Vec<f64> = sent.iter().map(|s| s.2).collect();
    calls.sort_by(|x, y| x.total_cmp(y));
    let pct_of = |v: &[f64], p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
        v[i.min(v.len() - 1)]
    };
    let pct = |p: f64| pct_of(&lat, p);
    Ok(serde_json::json!({
        "jobs": a.jobs,
        "workers": a.workers,
        "batch": a.batch,
        "ack_parallelism": a.ack_parallelism,
        "ack_linger_ms": a.ack_linger_ms,
        "enqueue_method": format!("{:?}", a.enqueue_method).to_lowercase(),
        "concurrency": a.concurrency,
        "enqueue_jobs_per_s": (a.jobs as f64 / enqueue_s).round(),
        "enqueue_seconds": enqueue_s,
        "drain_jobs_per_s": (a.jobs as f64 / drain_s).round(),
        "drain_seconds": drain_s,
        "latency_samples": lat.len(),
        "latency_p50_ms": pct(50.0),
        "latency_p99_ms": pct(99.0),
        "latency_max_ms": lat.last().copied().unwrap_or(f64::NAN),
        // the enqueue call alone (its commit waits for the WAL flush): the part of the
        // latency spent before the job exists for workers
        "enqueue_call_p50_ms": pct_of(&calls, 50.0),
        "enqueue_call_p99_ms": pct_of(&calls, 99.0),
        // machine-wide CPU time per job (all processes: database, workers, producers), a
        // figure less at the mercy of a noisy host than jobs/s; steal is time the
        // hypervisor gave to others
        "enqueue_cpu_us_per_job": enqueue_cpu.map(|c| c.busy_s * 1e6 / a.jobs as f64),
        "drain_cpu_us_per_job": drain_cpu.map(|c| c.busy_s * 1e6 / a.jobs as f64),
        "drain_steal_pct": drain_cpu.map(|c| c.steal_pct),
        "latency_steal_pct": latency_cpu.map(|c| c.steal_pct),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "pg_version": pg_version,
        "leases_and_fencing": true,
    }))
}
