//! Three small experiments on apalis-postgres 1.0 semantics, each printing what it observed as
//! JSON: (a) retry backoff of a failing job, (b) recovery time after SIGKILL of a worker,
//! (c) ordering and exclusion of jobs that share a key.

use crate::db;
use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A job carrying a key and a sequence number within that key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    key: String,
    seq: u32,
}

/// One row of `apalis.jobs`, as far as the experiments care.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
struct Row {
    id: String,
    status: String,
    attempts: i32,
    max_attempts: i32,
    run_at: String,
    lock_by: Option<String>,
    last_result: Option<String>,
}

async fn rows(pool: &sqlx::PgPool) -> anyhow::Result<Vec<Row>> {
    Ok(sqlx::query_as(
        "SELECT id, status, attempts, max_attempts, \
         to_char(run_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US') AS run_at, lock_by, last_result::text AS last_result \
         FROM apalis.jobs ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// Records every change of the jobs table's rows (sampled every 10 ms) with its time offset.
fn sample_transitions(
    pool: sqlx::PgPool,
    t0: Instant,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: BTreeMap<String, Row> = BTreeMap::new();
        loop {
            if let Ok(rs) = rows(&pool).await {
                for r in rs {
                    if last.get(&r.id) != Some(&r) {
                        let mut v = serde_json::to_value(&r).unwrap_or_default();
                        v["t_ms"] = serde_json::json!((t0.elapsed().as_secs_f64() * 1e3).round());
                        log.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                        last.insert(r.id.clone(), r);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

fn ms(t0: Instant, t: Instant) -> f64 {
    (t.duration_since(t0).as_secs_f64() * 1e3).round()
}

// ---------------------------------------------------------------- (a) retry

/// `retry` flags.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// `max_attempts` of the failing job.
    #[arg(long, default_value_t = 4)]
    max_attempts: usize,
    /// Give up observing after this many seconds.
    #[arg(long, default_value_t = 100)]
    observe_secs: u64,
}

type Starts = Arc<Mutex<Vec<(String, u32, usize, Instant, Option<Instant>)>>>;

async fn always_fail(job: Probe, attempt: Attempt, log: Data<Starts>) -> Result<(), BoxDynError> {
    log.lock().unwrap_or_else(|p| p.into_inner()).push((
        job.key,
        job.seq,
        attempt.current(),
        Instant::now(),
        None,
    ));
    Err("deliberate failure".into())
}

/// (a) One job whose handler always fails, default config, no retry layer: when does each
/// attempt start, and does the row's `run_at` move?
pub async fn retry(a: RetryArgs) -> anyhow::Result<()> {
    let name = "apalis_sem_retry";
    let pool = db::fresh(name, 8).await?;
    let res = retry_inner(&pool, &a).await;
    db::drop_db(pool, name).await;
    println!("{}", serde_json::to_string_pretty(&res?)?);
    Ok(())
}

async fn retry_inner(pool: &sqlx::PgPool, a: &RetryArgs) -> anyhow::Result<serde_json::Value> {
    let cfg = Config::default().queue("retry");
    let mut sink = PostgresStorage::<Probe>::new(pool).with_config(cfg.clone());
    let t0 = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sampler = sample_transitions(pool.clone(), t0, log.clone());
    let starts: Starts = Arc::default();
    let ctx = WorkerContext::new("retry-w");
    let backend = PostgresStorage::<Probe>::new(pool)
        .with_config(cfg)
        .with_pubsub();
    let worker = WorkerBuilder::new(&ctx)
        .backend(backend)
        .data(starts.clone())
        .build(always_fail);
    let h = tokio::spawn(worker.run());
    tokio::time::sleep(Duration::from_millis(500)).await; // worker registered and listening
    let task = TaskBuilder::new(Probe {
        key: "k".into(),
        seq: 0,
    })
    .max_attempts(a.max_attempts)
    .build();
    let t_enq = Instant::now();
    sink.push_task(task)
        .await
        .map_err(|e| anyhow::anyhow!("push: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(a.observe_secs);
    loop {
        let r = rows(pool).await?;
        let finished = r.first().is_some_and(|r| {
            r.attempts as usize >= a.max_attempts && r.status != "Running" && r.status != "Queued"
        });
        if finished || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampler.abort();
    let _ = ctx.stop();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    let starts: Vec<_> = starts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(_, _, att, t, _)| serde_json::json!({"attempt_ctx": att, "started_ms_after_enqueue": ms(t_enq, *t)}))
        .collect();
    let transitions = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(serde_json::json!({
        "experiment": "retry: always-failing handler, Config::default(), pubsub, no retry layer",
        "enqueued_at_ms": ms(t0, t_enq),
        "handler_starts": starts,
        "row_transitions": transitions,
        "final_row": rows(pool).await?,
    }))
}

// ---------------------------------------------------------------- (b) crash

/// `crash` flags.
#[derive(Debug, Args)]
pub struct CrashArgs {
    /// Jobs held by the worker that gets killed.
    #[arg(long, default_value_t = 3)]
    jobs: usize,
    /// Override `heartbeat_interval` (seconds); default: `Config::default()`.
    #[arg(long)]
    heartbeat_secs: Option<u64>,
    /// Override `missed_heartbeats`; default: `Config::default()`.
    #[arg(long)]
    missed: Option<usize>,
}

/// `crash-child` flags (internal).
#[derive(Debug, Args)]
pub struct CrashChildArgs {
    #[arg(long)]
    database: String,
    #[arg(long)]
    heartbeat_secs: Option<u64>,
    #[arg(long)]
    missed: Option<usize>,
}

fn crash_config(hb: Option<u64>, missed: Option<usize>) -> Config {
    let mut c = Config::default().queue("crash");
    if let Some(h) = hb {
        c = c.heartbeat_interval(Duration::from_secs(h));
    }
    if let Some(m) = missed {
        c = c.missed_heartbeats(m);
    }
    c
}

async fn hang(_job: Probe) -> Result<(), BoxDynError> {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

/// The worker process that takes the jobs and is then SIGKILLed.
pub async fn crash_child(a: CrashChildArgs) -> anyhow::Result<()> {
    let pool = db::existing(&a.database, 4).await?;
    let backend = PostgresStorage::<Probe>::new(&pool)
        .with_config(crash_config(a.heartbeat_secs, a.missed))
        .with_pubsub();
    WorkerBuilder::new("crash-victim")
        .backend(backend)
        .build(hang)
        .run()
        .await?;
    Ok(())
}

/// (b) A worker process takes jobs and is SIGKILLed; a second worker with the same config
/// starts right after. How long until the jobs run again?
pub async fn crash(a: CrashArgs) -> anyhow::Result<()> {
    let name = "apalis_sem_crash";
    let pool = db::fresh(name, 8).await?;
    let res = crash_inner(&pool, &a, name).await;
    db::drop_db(pool, name).await;
    println!("{}", serde_json::to_string_pretty(&res?)?);
    Ok(())
}

async fn record(job: Probe, attempt: Attempt, log: Data<Starts>) -> Result<(), BoxDynError> {
    log.lock().unwrap_or_else(|p| p.into_inner()).push((
        job.key,
        job.seq,
        attempt.current(),
        Instant::now(),
        None,
    ));
    Ok(())
}

async fn crash_inner(
    pool: &sqlx::PgPool,
    a: &CrashArgs,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let cfg = crash_config(a.heartbeat_secs, a.missed);
    let mut sink = PostgresStorage::<Probe>::new(pool).with_config(cfg.clone());
    let jobs: Vec<Probe> = (0..a.jobs as u32)
        .map(|seq| Probe {
            key: "k".into(),
            seq,
        })
        .collect();
    sink.push_bulk(jobs)
        .await
        .map_err(|e| anyhow::anyhow!("push: {e}"))?;
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("crash-child").arg("--database").arg(name);
    if let Some(h) = a.heartbeat_secs {
        cmd.arg("--heartbeat-secs").arg(h.to_string());
    }
    if let Some(m) = a.missed {
        cmd.arg("--missed").arg(m.to_string());
    }
    let mut child = cmd
        .kill_on_drop(true)
        .spawn()
        .context("spawn crash-child")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rows(pool).await?;
        if r.iter()
            .filter(|r| r.status == "Running" && r.lock_by.as_deref() == Some("crash-victim"))
            .count()
            == a.jobs
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "child did not take the jobs: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = rows(pool).await?;
    let t_kill = Instant::now();
    child.start_kill()?; // SIGKILL
    let status = child.wait().await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let sampler = sample_transitions(pool.clone(), t_kill, log.clone());
    let starts: Starts = Arc::default();
    let ctx = WorkerContext::new("crash-rescuer");
    let backend = PostgresStorage::<Probe>::new(pool)
        .with_config(cfg.clone())
        .with_pubsub();
    let worker = WorkerBuilder::new(&ctx)
        .backend(backend)
        .data(starts.clone())
        .build(record);
    let h = tokio::spawn(worker.run());
    let limit = cfg.orphaned_duration() + cfg.heartbeat_interval * 2 + Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    while starts.lock().unwrap_or_else(|p| p.into_inner()).len() < a.jobs
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampler.abort();
    let _ = ctx.stop();
    let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    let reruns: Vec<_> = starts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(_, seq, att, t, _)| serde_json::json!({"seq": seq, "attempt_ctx": att, "rerun_s_after_kill": ms(t_kill, *t) / 1e3}))
        .collect();
    Ok(serde_json::json!({
        "experiment": "crash: SIGKILL a worker process holding jobs, start a rescuer worker with the same config",
        "heartbeat_interval_s": cfg.heartbeat_interval.as_secs(),
        "missed_heartbeats": cfg.missed_heartbeats,
        "orphaned_duration_s": cfg.orphaned_duration().as_secs(),
        "child_exit": format!("{status}"),
        "rows_when_killed": held,
        "reruns": reruns,
        "all_rerun": reruns.len() == a.jobs,
        "observed_for_s": t_kill.elapsed().as_secs_f64(),
        "row_transitions_after_kill": log.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    }))
}

// ---------------------------------------------------------------- (c) ordering

/// `ordering` flags.
#[derive(Debug, Args)]
pub struct OrderingArgs {
    /// Keys.
    #[arg(long, default_value_t = 2)]
    keys: u32,
    /// Jobs per key, enqueued one at a time in sequence order.
    #[arg(long, default_value_t = 20)]
    per_key: u32,
    /// Workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Handler run time in ms.
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
}

#[derive(Clone)]
struct OrdState {
    log: Starts,
    work: Duration,
}

async fn ordered(job: Probe, attempt: Attempt, st: Data<OrdState>) -> Result<(), BoxDynError> {
    let start = Instant::now();
    // seq 0 of every key fails its first attempt: do later jobs of the key wait for its retry?
    let fail = job.seq == 0 && attempt.current() <= 1;
    tokio::time::sleep(st.work).await;
    st.log.lock().unwrap_or_else(|p| p.into_inner()).push((
        job.key,
        job.seq,
        attempt.current(),
        start,
        Some(Instant::now()),
    ));
    if fail {
        return Err("first attempt of seq 0 fails".into());
    }
    Ok(())
}

/// (c) Jobs sharing a key, enqueued in order, 2 workers: do they overlap, run out of order,
/// and does a failing head-of-line job hold the rest back?
pub async fn ordering(a: OrderingArgs) -> anyhow::Result<()> {
    let name = "apalis_sem_order";
    let pool = db::fresh(name, 16).await?;
    let res = ordering_inner(&pool, &a).await;
    db::drop_db(pool, name).await;
    println!("{}", serde_json::to_string_pretty(&res?)?);
    Ok(())
}

async fn ordering_inner(
    pool: &sqlx::PgPool,
    a: &OrderingArgs,
) -> anyhow::Result<serde_json::Value> {
    let cfg = Config::default().queue("ordered");
    let mut sink = PostgresStorage::<Probe>::new(pool).with_config(cfg.clone());
    // enqueue first (one statement per job, in sequence order), then start workers
    for seq in 0..a.per_key {
        for k in 0..a.keys {
            sink.push(Probe {
                key: format!("course-{k}"),
                seq,
            })
            .await
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
        }
    }
    let st = OrdState {
        log: Arc::default(),
        work: Duration::from_millis(a.work_ms),
    };
    let t0 = Instant::now();
    let mut ctxs = Vec::new();
    let mut hs = Vec::new();
    for i in 0..a.workers {
        let ctx = WorkerContext::new(&format!("order-w{i}"));
        ctxs.push(ctx.clone());
        let backend = PostgresStorage::<Probe>::new(pool)
            .with_config(cfg.clone())
            .with_pubsub();
        let w = WorkerBuilder::new(&ctx)
            .backend(backend)
            .data(st.clone())
            .build(ordered);
        hs.push(tokio::spawn(w.run()));
    }
    let total = (a.keys * (a.per_key + 1)) as usize; // + one retry of each seq 0
    let deadline = Instant::now() + Duration::from_secs(120);
    while st.log.lock().unwrap_or_else(|p| p.into_inner()).len() < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    for c in &ctxs {
        let _ = c.stop();
    }
    for h in hs {
        let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    }
    let log = st.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut per_key = serde_json::Map::new();
    for k in 0..a.keys {
        let key = format!("course-{k}");
        let mut runs: Vec<_> = log.iter().filter(|r| r.0 == key).cloned().collect();
        runs.sort_by_key(|r| r.3);
        let start_order: Vec<String> = runs.iter().map(|r| format!("{}#{}", r.1, r.2)).collect();
        // max simultaneous runs of this key
        let mut edges: Vec<(Instant, i32)> = runs
            .iter()
            .flat_map(|r| [(r.3, 1), (r.4.unwrap_or(r.3), -1)])
            .collect();
        edges.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
        let (mut cur, mut max_conc) = (0, 0);
        for (_, d) in edges {
            cur += d;
            max_conc = max_conc.max(cur);
        }
        // start-order inversions among first attempts
        let firsts: Vec<u32> = runs.iter().filter(|r| r.2 <= 1).map(|r| r.1).collect();
        let inversions = firsts.windows(2).filter(|w| w[1] < w[0]).count();
        // how many later jobs of the key finished before seq 0 finally succeeded
        let seq0_ok = runs
            .iter()
            .filter(|r| r.1 == 0)
            .map(|r| r.4)
            .max()
            .flatten();
        let overtook = seq0_ok.map(|t| {
            runs.iter()
                .filter(|r| r.1 > 0 && r.4.is_some_and(|e| e < t))
                .count()
        });
        per_key.insert(
            key,
            serde_json::json!({
                "start_order_seq#attempt": start_order,
                "max_concurrent_same_key": max_conc,
                "first_attempt_start_inversions": inversions,
                "later_jobs_done_before_seq0_succeeded": overtook,
            }),
        );
    }
    Ok(serde_json::json!({
        "experiment": "ordering: keys x per_key jobs enqueued in order, seq 0 fails once, Config::default(), pubsub",
        "workers": a.workers,
        "runs_observed": log.len(),
        "runs_expected": total,
        "elapsed_s": elapsed.as_secs_f64(),
        "per_key": per_key,
    }))
}
