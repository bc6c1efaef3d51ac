//! `rcjobs bench e2e`: end-to-end benchmarks against the simulator (`docs` → BENCHMARKS.md).
//!
//! Default run: a synthetic site, the simulator with a per-call latency, W workers, the
//! trigger set, an initial convergence; then
//! 1. **mass**: N users enrolled into one course with one chat room in one statement;
//! 2. **many**: 200 courses × 50 users enrolled in one transaction;
//!
//! each timed from the enrolment's commit until the chat server equals Moodle (the
//! comparator polls the simulator's snapshot, which is not an API call). Then the plugin's
//! call pattern (per user, sequentially: `users.info`, then `groups.invite` of that user)
//! against the same simulator, into a fresh room: measured on a sample and extrapolated
//! linearly (printed as such), or in full with `--full-plugin`.
//!
//! `--rate-limited`: the simulator's REST limiter on (`--rate-limit CALLS/SECS`, default
//! Rocket.Chat's 10/60) with a bot that does not bypass it, and the workers' shared limiter
//! given the same budget; checks no lost change, no request beyond the limit after a 429,
//! and convergence within 1.2× of the lower bound the limiter allows.
//!
//! `--fail-rate P`: the simulator answers a share `P` of all API calls with a 500 (half of
//! them after applying the change) for the whole run; the plugin pattern, a baseline, still
//! runs fault-free.
//!
//! `rcjobs bench faults` ([`run_faults`]): the fault target of issue 13 in one invocation,
//! as ratios of runs made side by side: the mass enrolment fault-free and with faults, and a
//! room of `--room-members` filled and then changed with faults.

use super::config::Settings;
use crate::harness::chat::{total_calls, CallCounter, EndpointCalls, SimOptions};
use crate::harness::compare::Mismatches;
use crate::harness::run::{Run, RunSpec};
use crate::harness::secs;
use crate::harness::workers::{RunCounters, WorkerOptions};
use anyhow::Context;
use clap::Args;
use rcjobs_moodle::fixture::{FixtureSpec, UserSet};
use rcjobs_sim::RateLimit;
use rcjobs_worker::{RouteLimit, WorkerConfig};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `rcjobs bench e2e` arguments.
#[derive(Debug, Args)]
pub struct E2eBenchArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Simulated Rocket.Chat latency per API call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Users of the mass enrolment into one course (one room): 10,000 by default on the
    /// simulator, 1,000 on Matrix.
    #[arg(long)]
    pub users: Option<usize>,
    /// `matrix`: the mass enrolment against a real Synapse (`bench_matrix`), from the
    /// `MATRIX_*` settings or `target/synapse/env`. Default: `CHAT_BACKEND`, else the
    /// simulator.
    #[arg(long, value_enum)]
    pub chat_backend: Option<super::config::ChatBackendKind>,
    /// Courses of the second workload.
    #[arg(long, default_value_t = 200)]
    pub courses: usize,
    /// Users per course of the second workload.
    #[arg(long, default_value_t = 50)]
    pub users_per_course: usize,
    /// Worker replicas in this process.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Jobs each replica runs at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Users the plugin pattern is measured on before extrapolating linearly (0: no plugin
    /// pattern, and no ratio).
    #[arg(long, default_value_t = 500)]
    pub plugin_sample: usize,
    /// Run the plugin pattern over every user (10,000 users × 2 calls × 20 ms ≈ 400 s each workload).
    #[arg(long)]
    pub full_plugin: bool,
    /// Run the rate-limited scenario instead.
    #[arg(long)]
    pub rate_limited: bool,
    /// Limiter of the rate-limited scenario: CALLS/SECONDS per endpoint (whole seconds).
    #[arg(long, default_value = "10/60")]
    pub rate_limit: RateLimit,
    /// Rate-limited scenario: students enrolled.
    #[arg(long, default_value_t = 1000)]
    pub rl_students: usize,
    /// Rate-limited scenario: editing teachers enrolled (each one moderator call).
    #[arg(long, default_value_t = 12)]
    pub rl_teachers: usize,
    /// Database created (and dropped at the end) on the server of DATABASE_URL.
    #[arg(long, default_value = "rcjobs_bench_e2e")]
    pub database: String,
    /// Keep the database at the end.
    #[arg(long)]
    pub keep_database: bool,
    /// Also wait for the queue to empty after convergence (and report when).
    #[arg(long)]
    pub drain: bool,
    /// Seconds a phase may take before the benchmark fails.
    #[arg(long, default_value_t = 900)]
    pub deadline_secs: u64,
    /// Share of the simulator's API calls answered with a 500, for the whole run (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Fan-out jobs due when a teacher adds an activity (issue 18 §6: new activity → room
    /// ready with its teacher, idle and behind this backlog; a run of its own; 0: skipped).
    #[arg(long, default_value_t = 10_000)]
    pub new_activity_backlog: usize,
    /// Measure only the new activity's room (no mass, many or plugin pattern).
    #[arg(long)]
    pub new_activity_only: bool,
}

impl E2eBenchArgs {
    /// `--users` on the simulator.
    fn mass_users(&self) -> usize {
        self.users.unwrap_or(10_000)
    }
}

fn say(a: &E2eBenchArgs, msg: &str) {
    if !a.json {
        eprintln!("{msg}");
    }
}

/// Figures of one workload.
#[derive(Debug, Serialize)]
struct Workload {
    fail_rate: f64,
    rooms: usize,
    enrolments: i64,
    enrol_statement_s: f64,
    converge_s: f64,
    drained_s: Option<f64>,
    jobs_pending_at_convergence: i64,
    jobs_completed: u64,
    rocketchat_calls: u64,
    rocketchat_calls_by_endpoint: BTreeMap<String, EndpointCalls>,
    faults_injected: Option<u64>,
    jobs_retried: u64,
    dead_jobs: i64,
    mismatches_after: Mismatches,
    plugin_pattern_s: Option<f64>,
    plugin_pattern_extrapolated: bool,
    plugin_pattern_measured_users: usize,
    plugin_pattern_measured_s: Option<f64>,
    ratio: Option<f64>,
}

async fn fresh_counts(run: &Run) {
    run.calls.reset();
    if let Some(sim) = run.chat.sim() {
        sim.reset_counters();
    }
}

/// What [`measure`] saw.
struct Measured {
    converge_s: f64,
    drained_s: Option<f64>,
    pending_at_convergence: i64,
    jobs_completed: u64,
    /// Jobs the queue put back for a durable retry (after the handler's own retries).
    jobs_retried: u64,
    calls: BTreeMap<String, EndpointCalls>,
    /// Calls the simulator failed on purpose since the counters were reset.
    faults_injected: Option<u64>,
    after: Mismatches,
}

/// Waits for the chat server to equal Moodle on `rooms` from `committed`; checks every room
/// of the site once more; with `--drain`, also waits for the queue to empty.
async fn measure(
    run: &Run,
    a: &E2eBenchArgs,
    name: &str,
    rooms: &[rcjobs_moodle::Room],
    committed: Instant,
) -> anyhow::Result<Measured> {
    let deadline = Duration::from_secs(a.deadline_secs);
    let counter = |f: fn(&RunCounters) -> &std::sync::atomic::AtomicU64| {
        run.worker_counters()
            .map(|c| RunCounters::get(f(c)))
            .unwrap_or(0)
    };
    let done0 = counter(|c| &c.completed);
    let retried0 = counter(|c| &c.retried);
    let mut truths = run.comparator.truth(rooms).await?;
    let r = run
        .wait_converged(
            name,
            &mut truths,
            committed,
            deadline,
            Duration::from_millis(100),
            false,
        )
        .await?;
    let converge = r.at.with_context(|| {
        format!(
            "{name}: not converged within {} s: {:?}",
            a.deadline_secs, r.mismatches
        )
    })?;
    let calls = run.calls.snapshot();
    let faults_injected = run.chat.snapshot().map(|s| s.faults_injected);
    let pending = crate::harness::progress::pending_jobs(&run.pool).await?;
    let mut all = run.truth_all().await?;
    let after = run.compare(&mut all).await?;
    anyhow::ensure!(
        after.total() == 0,
        "{name}: mismatches after convergence: {after:?}"
    );
    let drained = if a.drain {
        let d = run
            .wait_converged(
                name,
                &mut truths,
                committed,
                deadline,
                Duration::from_millis(200),
                true,
            )
            .await?;
        anyhow::ensure!(
            d.at.is_some(),
            "{name}: queue did not drain within {} s",
            a.deadline_secs
        );
        Some(secs(committed.elapsed()))
    } else {
        None
    };
    let jobs = counter(|c| &c.completed) - done0;
    let jobs_retried = counter(|c| &c.retried) - retried0;
    say(
        a,
        &format!(
            "{name}: converged in {:.3} s ({} API calls, {} failed on purpose; {jobs_retried} durable job retries; {pending} jobs still pending then)",
            secs(converge),
            total_calls(&calls),
            faults_injected.unwrap_or(0),
        ),
    );
    Ok(Measured {
        converge_s: secs(converge),
        drained_s: drained,
        pending_at_convergence: pending,
        jobs_completed: jobs,
        jobs_retried,
        calls,
        faults_injected,
        after,
    })
}

/// The plugin pattern over the (room, users) of a workload, one fresh room per chat room,
/// stopping after `--plugin-sample` users unless `--full-plugin`. Returns (users measured,
/// seconds measured).
async fn plugin_pattern(
    run: &Run,
    a: &E2eBenchArgs,
    label: &str,
    rooms: &[Vec<String>],
) -> anyhow::Result<(usize, f64)> {
    let total: usize = rooms.iter().map(Vec::len).sum();
    let limit = if a.full_plugin {
        total
    } else {
        a.plugin_sample.min(total)
    };
    say(a, &format!("{label}: plugin pattern over {limit} of {total} users (sequential users.info + groups.invite)..."));
    let client = run.chat.client(Arc::new(CallCounter::default()), None)?;
    let (mut n, mut measured) = (0usize, Duration::ZERO);
    for (i, users) in rooms.iter().enumerate() {
        if n >= limit {
            break;
        }
        let take = (limit - n).min(users.len());
        let r = crate::harness::plugin::run(
            &client,
            &format!("plugin-pattern-{label}-{i}"),
            &users[..take],
        )
        .await?;
        if let Some(snap) = run.chat.snapshot() {
            let members = snap
                .rooms
                .iter()
                .find(|x| x.id == r.room_id)
                .map(|x| x.members.len())
                .unwrap_or(0);
            anyhow::ensure!(
                members == take + 1,
                "plugin pattern: room has {members} members, expected {}",
                take + 1
            );
        }
        measured += r.elapsed;
        n += take;
    }
    Ok((n, measured.as_secs_f64()))
}

/// Runs `rcjobs bench e2e`.
pub async fn run(s: &Settings, a: E2eBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.workers > 0 && a.concurrency > 0,
        "--workers and --concurrency must be at least 1"
    );
    let backend = a.chat_backend.map_or_else(|| s.chat_backend(), Ok)?;
    if backend == super::config::ChatBackendKind::Matrix {
        return super::bench_matrix::run(s, &a).await;
    }
    anyhow::ensure!(
        s.rocketchat_url.is_none(),
        "bench e2e runs against the in-process simulator: unset ROCKETCHAT_URL"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.fail_rate),
        "--fail-rate must be between 0 and 1"
    );
    if a.rate_limited {
        rate_limited(s, &a).await
    } else if a.new_activity_only {
        let n = new_activity(s, &a).await?;
        let out = json!({
            "new_activity_room_ready_s": n.new_activity_room_ready_s,
            "new_activity_idle_room_ready_s": n.idle_room_ready_s,
            "new_activity_backlog_jobs": n.backlog_jobs,
            "new_activity_backlog_pending_at_room_ready": n.backlog_jobs_pending_at_room_ready,
            "new_activity": n,
            "latency_ms": a.latency_ms,
            "workers": a.workers,
            "concurrency": a.concurrency,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        });
        if a.json {
            println!("{}", serde_json::to_string(&out)?);
        } else {
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Ok(())
    } else {
        throughput(s, &a).await
    }
}

fn progress(a: &E2eBenchArgs) -> bool {
    !a.json && std::io::stderr().is_terminal()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mass,
    Many,
}

async fn throughput(s: &Settings, a: &E2eBenchArgs) -> anyhow::Result<()> {
    let mass = workload_run(s, a, Kind::Mass).await?;
    let many = workload_run(s, a, Kind::Many).await?;
    let fresh = if a.new_activity_backlog > 0 {
        Some(new_activity(s, a).await?)
    } else {
        None
    };
    let w = &mass;
    let out = json!({
        "new_activity_room_ready_s": fresh.as_ref().map(|n| n.new_activity_room_ready_s),
        "new_activity_idle_room_ready_s": fresh.as_ref().map(|n| n.idle_room_ready_s),
        "new_activity_backlog_jobs": fresh.as_ref().map(|n| n.backlog_jobs),
        "new_activity_backlog_pending_at_room_ready": fresh.as_ref().map(|n| n.backlog_jobs_pending_at_room_ready),
        "new_activity": fresh,
        "converge_s": w.converge_s,
        "plugin_pattern_s": w.plugin_pattern_s,
        "plugin_pattern_extrapolated": w.plugin_pattern_extrapolated,
        "plugin_pattern_measured_users": w.plugin_pattern_measured_users,
        "ratio": w.ratio,
        "rocketchat_calls": w.rocketchat_calls,
        "targets": {"converge_s_below": 5.0, "ratio_at_least": 100.0},
        "meets_targets": w.converge_s < 5.0 && w.ratio.is_some_and(|r| r >= 100.0),
        "fail_rate": a.fail_rate,
        "users": a.mass_users(),
        "latency_ms": a.latency_ms,
        "workers": a.workers,
        "concurrency": a.concurrency,
        "workloads": {"mass": mass, "many": many},
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    if mass.plugin_pattern_extrapolated {
        say(
            a,
            &format!(
                "NOTE: plugin pattern EXTRAPOLATED linearly from {} users measured ({:.2} s); --full-plugin measures all of them",
                mass.plugin_pattern_measured_users,
                mass.plugin_pattern_measured_s.unwrap_or(0.0)
            ),
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// Issue 18 §6's figure in a run of its own (`crate::harness::new_activity`).
async fn new_activity(
    s: &Settings,
    a: &E2eBenchArgs,
) -> anyhow::Result<crate::harness::new_activity::NewActivityFigures> {
    let r = crate::harness::new_activity::NewActivityRun {
        database: a.database.clone(),
        keep_database: a.keep_database,
        latency: Duration::from_millis(a.latency_ms),
        progress: progress(a),
        spec: crate::harness::new_activity::NewActivitySpec {
            backlog: a.new_activity_backlog,
            workers: WorkerOptions {
                count: a.workers,
                concurrency: a.concurrency,
                config: WorkerConfig::default(),
            },
            deadline: Duration::from_secs(a.deadline_secs),
        },
    };
    let n = crate::harness::new_activity::run(s, &r, &|m| say(a, m)).await?;
    say(
        a,
        &format!(
            "new activity -> room ready with its teacher: idle {:.3} s, behind {} pending fan-out jobs {:.3} s ({:.1}x; {} of them still pending then; target < {} s: {})",
            n.idle_room_ready_s,
            n.backlog_jobs,
            n.new_activity_room_ready_s,
            n.ratio_to_idle,
            n.backlog_jobs_pending_at_room_ready,
            n.target_s,
            if n.meets_target { "MET" } else { "NOT MET" },
        ),
    );
    Ok(n)
}

/// One workload in a run of its own (fresh database, site, simulator and workers), so the
/// tail of one workload's jobs cannot slow the next one.
async fn workload_run(s: &Settings, a: &E2eBenchArgs, kind: Kind) -> anyhow::Result<Workload> {
    let needed_users = match kind {
        Kind::Mass => a.mass_users(),
        Kind::Many => a.users_per_course,
    };
    // A few % of generated users are deleted or suspended; leave room for them.
    let users = u32::try_from(needed_users + needed_users / 10 + 100)?;
    // Spare empty courses: those with a hidden activity (or two rooms, for `mass`) are skipped.
    let empty = u32::try_from(match kind {
        Kind::Mass => 8,
        Kind::Many => a.courses + a.courses / 4 + 10,
    })?;
    let spec = RunSpec {
        database: a.database.clone(),
        fixture: FixtureSpec {
            users,
            courses: 20,
            seed: 7,
            enrolments_per_user: 2,
            empty_courses: empty,
            now: rcjobs_moodle::unix_now(),
        },
        sim: SimOptions {
            latency: Duration::from_millis(a.latency_ms),
            fail_rate: a.fail_rate,
            ..SimOptions::default()
        },
        progress: progress(a),
    };
    let name = if kind == Kind::Mass { "mass" } else { "many" };
    say(a, &format!("{name}: setting up {users} users, 20 populated + {empty} empty courses, simulator latency {} ms, {:.1} % of calls failing", a.latency_ms, a.fail_rate * 100.0));
    let mut run = Run::setup(s, &spec).await?;
    let result = workload(&mut run, a, kind).await;
    run.teardown(!a.keep_database).await?;
    result
}

/// Installs the triggers, syncs every room of the site and waits until the chat server
/// equals Moodle and the queue has no due work left, so a measured change starts from a
/// quiet system.
async fn converge_initially(run: &Run, a: &E2eBenchArgs) -> anyhow::Result<()> {
    run.install_triggers().await?;
    run.sync_everything().await?;
    let t = Instant::now();
    let mut truths = run.truth_all().await?;
    let init = run
        .wait_converged(
            "initial",
            &mut truths,
            t,
            Duration::from_secs(a.deadline_secs),
            Duration::from_millis(100),
            true,
        )
        .await?;
    anyhow::ensure!(
        init.at.is_some(),
        "initial convergence failed: {:?}",
        init.mismatches
    );
    say(
        a,
        &format!(
            "initial convergence of {} rooms: {:.2} s",
            truths.len(),
            t.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

async fn workload(run: &mut Run, a: &E2eBenchArgs, kind: Kind) -> anyhow::Result<Workload> {
    let opts = WorkerOptions {
        count: a.workers,
        concurrency: a.concurrency,
        config: WorkerConfig::default(),
    };
    run.start_workers(&opts).await?;
    converge_initially(run, a).await?;
    let candidates = run.site.empty_courses_with_visible_rooms().await?;
    let student = run.site.fixture.roles.student;
    fresh_counts(run).await;
    let (rooms, enrolments, stmt, committed) = match kind {
        Kind::Mass => {
            let (course, rooms) = candidates
                .into_iter()
                .find(|(_, r)| r.len() == 1)
                .context("no empty course with exactly one visible chat room")?;
            let ids = run.site.active_user_ids(a.mass_users()).await?;
            anyhow::ensure!(
                ids.len() == a.mass_users(),
                "only {} active users",
                ids.len()
            );
            let t_stmt = Instant::now();
            let n = rcjobs_moodle::fixture::mass_enrol(
                &run.pool,
                &run.site.prefix,
                course,
                &UserSet::Ids(ids),
                "student",
            )
            .await?;
            let committed = Instant::now();
            (
                rooms,
                i64::try_from(n)?,
                secs(committed - t_stmt),
                committed,
            )
        }
        Kind::Many => {
            anyhow::ensure!(
                candidates.len() >= a.courses,
                "only {} usable empty courses",
                candidates.len()
            );
            let ids = run.site.active_user_ids(a.users_per_course).await?;
            anyhow::ensure!(
                ids.len() == a.users_per_course,
                "only {} active users",
                ids.len()
            );
            let chosen = &candidates[..a.courses];
            let rows: Vec<(i64, i64, i64)> = chosen
                .iter()
                .flat_map(|(c, _)| ids.iter().map(move |&u| (*c, u, student)))
                .collect();
            let t_stmt = Instant::now();
            let (ue, _) = run.site.enrol_many(&run.pool, &rows).await?;
            let committed = Instant::now();
            (
                chosen
                    .iter()
                    .flat_map(|(_, r)| r.iter().cloned())
                    .collect::<Vec<_>>(),
                ue,
                secs(committed - t_stmt),
                committed,
            )
        }
    };
    let name = if kind == Kind::Mass { "mass" } else { "many" };
    let m = measure(run, a, name, &rooms, committed).await?;

    // The plugin pattern over the same (room, user) pairs, into fresh rooms: the baseline,
    // fault-free (the plugin's loop has no retries, so one fault would end it).
    let plugin = if a.plugin_sample == 0 && !a.full_plugin {
        None
    } else {
        if let Some(sim) = run.chat.sim() {
            sim.set_fail_rate(0.0);
        }
        let truth = run.comparator.truth(&rooms).await?;
        let pairs: Vec<Vec<String>> = truth
            .iter()
            .map(|t| t.desired.keys().cloned().collect())
            .collect();
        let total_pairs: usize = pairs.iter().map(Vec::len).sum();
        let (measured_users, measured_s) = plugin_pattern(run, a, name, &pairs).await?;
        // The same two calls per user whichever room they go to: scale linearly.
        let plugin_s = measured_s * total_pairs as f64 / measured_users.max(1) as f64;
        Some((
            measured_users,
            measured_users < total_pairs,
            secs(Duration::from_secs_f64(plugin_s)),
            secs(Duration::from_secs_f64(measured_s)),
        ))
    };
    let dead_jobs = crate::harness::progress::dead_jobs(&run.pool).await?;
    run.stop_workers().await?;
    Ok(Workload {
        fail_rate: a.fail_rate,
        rooms: rooms.len(),
        enrolments,
        enrol_statement_s: stmt,
        converge_s: m.converge_s,
        drained_s: m.drained_s,
        jobs_pending_at_convergence: m.pending_at_convergence,
        jobs_completed: m.jobs_completed,
        rocketchat_calls: total_calls(&m.calls),
        rocketchat_calls_by_endpoint: m.calls,
        faults_injected: m.faults_injected,
        jobs_retried: m.jobs_retried,
        dead_jobs,
        mismatches_after: m.after,
        plugin_pattern_s: plugin.map(|p| p.2),
        plugin_pattern_extrapolated: plugin.is_some_and(|p| p.1),
        plugin_pattern_measured_users: plugin.map_or(0, |p| p.0),
        plugin_pattern_measured_s: plugin.map(|p| p.3),
        ratio: plugin.map(|p| (p.2 / m.converge_s.max(1e-3) * 10.0).round() / 10.0),
    })
}

/// The lower bound a fixed-window limiter of `limit` puts on `n` calls to one endpoint: the
/// first window's calls go at once, each further window waits a whole window.
fn bound_for(n: u64, limit: &RateLimit) -> Duration {
    let windows = n.div_ceil(u64::from(limit.calls)).max(1);
    limit.window * u32::try_from(windows - 1).unwrap_or(u32::MAX)
}

async fn rate_limited(s: &Settings, a: &E2eBenchArgs) -> anyhow::Result<()> {
    let limit = a.rate_limit;
    let per_secs = limit.window.as_secs();
    anyhow::ensure!(
        per_secs > 0 && Duration::from_secs(per_secs) == limit.window,
        "--rate-limit needs a whole number of seconds (the workers' limiter counts in seconds)"
    );
    let total = a.rl_students + a.rl_teachers;
    let spec = RunSpec {
        database: a.database.clone(),
        fixture: FixtureSpec {
            users: u32::try_from(total + total / 10 + 100)?,
            courses: 4,
            seed: 11,
            enrolments_per_user: 1,
            empty_courses: 8,
            now: rcjobs_moodle::unix_now(),
        },
        sim: SimOptions {
            latency: Duration::from_millis(a.latency_ms),
            rate_limit: None,
            limited_bot: true,
            fail_rate: a.fail_rate,
        },
        progress: progress(a),
    };
    say(
        a,
        &format!(
            "rate-limited run: limiter {}/{} s per endpoint, bot without the bypass permission",
            limit.calls, per_secs
        ),
    );
    let mut run = Run::setup(s, &spec).await?;
    let result = rate_limited_phases(&mut run, a, limit).await;
    run.teardown(!a.keep_database).await?;
    let (out, ok) = result?;
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    anyhow::ensure!(
        ok,
        "rate-limited run: a change was lost or a request went beyond the limit after a 429"
    );
    Ok(())
}

async fn rate_limited_phases(
    run: &mut Run,
    a: &E2eBenchArgs,
    limit: RateLimit,
) -> anyhow::Result<(serde_json::Value, bool)> {
    // Phase 1, limiter off: rooms created and filled.
    let opts = WorkerOptions {
        count: a.workers,
        concurrency: a.concurrency,
        config: WorkerConfig::default(),
    };
    run.start_workers(&opts).await?;
    run.install_triggers().await?;
    run.sync_everything().await?;
    let mut truths = run.truth_all().await?;
    let init = run
        .wait_converged(
            "initial",
            &mut truths,
            Instant::now(),
            Duration::from_secs(a.deadline_secs),
            Duration::from_millis(100),
            true,
        )
        .await?;
    anyhow::ensure!(
        init.at.is_some(),
        "initial convergence failed: {:?}",
        init.mismatches
    );
    run.stop_workers().await?;

    // Phase 2: the server's limiter on; the workers' shared limiter given the same budget.
    let sim = run
        .chat
        .sim()
        .context("the rate-limited run needs the simulator")?;
    sim.set_rate_limit(Some(limit));
    let mut cfg = WorkerConfig::default();
    cfg.rate_limit.default_limit = Some(RouteLimit {
        calls: limit.calls,
        per_secs: limit.window.as_secs(),
    });
    run.start_workers(&WorkerOptions {
        count: a.workers,
        concurrency: a.concurrency,
        config: cfg,
    })
    .await?;
    let (course, rooms) = run
        .site
        .empty_courses_with_visible_rooms()
        .await?
        .into_iter()
        .find(|(_, r)| r.len() == 1)
        .context("no empty course with exactly one visible chat room")?;
    let ids = run
        .site
        .active_user_ids(a.rl_students + a.rl_teachers)
        .await?;
    anyhow::ensure!(
        ids.len() == a.rl_students + a.rl_teachers,
        "only {} active users",
        ids.len()
    );
    let roles = run.site.fixture.roles;
    let rows: Vec<(i64, i64, i64)> = ids
        .iter()
        .enumerate()
        .map(|(i, &u)| {
            (
                course,
                u,
                if i < a.rl_teachers {
                    roles.editingteacher
                } else {
                    roles.student
                },
            )
        })
        .collect();
    fresh_counts(run).await;
    let (ue, _) = run.site.enrol_many(&run.pool, &rows).await?;
    let committed = Instant::now();
    let deadline = Duration::from_secs(a.deadline_secs);
    let mut truths = run.comparator.truth(&rooms).await?;
    let conv = run
        .wait_converged(
            "rate-limited",
            &mut truths,
            committed,
            deadline,
            Duration::from_millis(100),
            false,
        )
        .await?;
    let calls = run.calls.snapshot();
    let pending = crate::harness::progress::pending_jobs(&run.pool).await?;
    let drained_s = if a.drain && conv.at.is_some() {
        let d = run
            .wait_converged(
                "rate-limited",
                &mut truths,
                committed,
                deadline,
                Duration::from_millis(200),
                true,
            )
            .await?;
        d.at.map(|_| secs(committed.elapsed()))
    } else {
        None
    };
    let server = run.chat.snapshot();
    let dead = crate::harness::progress::dead_jobs(&run.pool).await?;
    let mut all = run.truth_all().await?;
    let after = run.compare(&mut all).await?;
    run.stop_workers().await?;

    // The bound from the calls the work needs at least (one room read, member listing and
    // room-roles read,
    // invites in batches of 500, one moderator call per teacher), and from the calls made.
    let needed: BTreeMap<&str, u64> = [
        ("groups.info", 1u64),
        ("groups.members", 1),
        ("groups.roles", 1),
        ("groups.invite", u64::try_from(ue)?.div_ceil(500)),
        ("groups.addModerator", u64::try_from(a.rl_teachers)?),
    ]
    .into_iter()
    .collect();
    let bound = needed
        .values()
        .map(|n| bound_for(*n, &limit))
        .max()
        .unwrap_or_default();
    let made_bound = calls
        .values()
        .map(|c| bound_for(c.calls - c.rate_limited, &limit))
        .max()
        .unwrap_or_default();
    let over_limit: BTreeMap<&String, u64> = calls
        .iter()
        .filter(|(_, c)| c.rate_limited > 1)
        .map(|(k, c)| (k, c.rate_limited - 1))
        .collect();
    let total_429: u64 = calls.values().map(|c| c.rate_limited).sum();
    let converge = conv.at;
    let lost = after.total() + u64::try_from(dead.max(0))?;
    let within = match converge {
        Some(t) if !bound.is_zero() => t.as_secs_f64() <= 1.2 * bound.as_secs_f64(),
        Some(_) => true,
        None => false,
    };
    let ok = lost == 0
        && over_limit.is_empty()
        && converge.is_some()
        && (!a.drain || drained_s.is_some());
    say(
        a,
        &format!(
            "rate-limited: converged in {} (lower bound {:.1} s from the calls the work needs; {:.1} s from the calls made), {} answers 429",
            converge.map(|t| format!("{:.2} s", t.as_secs_f64())).unwrap_or_else(|| "NEVER".into()),
            bound.as_secs_f64(),
            made_bound.as_secs_f64(),
            total_429
        ),
    );
    let out = json!({
        "rate_limit": {"calls": limit.calls, "window_s": limit.window.as_secs_f64()},
        "bot_bypasses_limiter": false,
        "enrolments": ue,
        "students": a.rl_students,
        "teachers": a.rl_teachers,
        "converge_s": converge.map(secs),
        "drained_s": drained_s,
        "jobs_pending_at_convergence": pending,
        "lower_bound_s": secs(bound),
        "lower_bound_from_calls_made_s": secs(made_bound),
        "calls_needed_by_endpoint": needed,
        "ratio_to_bound": converge.filter(|_| !bound.is_zero()).map(|t| (t.as_secs_f64() / bound.as_secs_f64() * 100.0).round() / 100.0),
        "within_1_2x_bound": within,
        "rocketchat_calls": total_calls(&calls),
        "rocketchat_calls_by_endpoint": calls,
        "answers_429": total_429,
        "server_429": server.as_ref().map(|s| s.rate_limited),
        "requests_beyond_limit_after_first_429": over_limit.values().sum::<u64>(),
        "lost_changes": lost,
        "dead_jobs": dead,
        "mismatches_after": after,
        "ok": ok,
    });
    Ok((out, ok))
}

/// `rcjobs bench faults` arguments.
#[derive(Debug, Args)]
pub struct FaultsBenchArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Share of the simulator's API calls answered with a 500 in the faulty runs (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub fail_rate: f64,
    /// Simulated Rocket.Chat latency per API call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Users of the mass enrolment into one course (one room).
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Pairs of mass-enrolment runs (fault-free, then faulty), each in a fresh run; the
    /// ratio reported is the median of the pairs'.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Members of the room of the second part (editing teachers included).
    #[arg(long, default_value_t = 1000)]
    pub room_members: usize,
    /// Of those, editing teachers (one moderator grant each).
    #[arg(long, default_value_t = 20)]
    pub room_teachers: usize,
    /// The change to the full room: members unenrolled, and as many new students enrolled.
    #[arg(long, default_value_t = 50)]
    pub change_users: usize,
    /// The change to the full room: students given the editing-teacher role.
    #[arg(long, default_value_t = 5)]
    pub change_teachers: usize,
    /// Worker replicas in this process.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Jobs each replica runs at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Database created (and dropped at the end) on the server of DATABASE_URL.
    #[arg(long, default_value = "rcjobs_bench_faults")]
    pub database: String,
    /// Keep the database at the end.
    #[arg(long)]
    pub keep_database: bool,
    /// Seconds a phase may take before the benchmark fails.
    #[arg(long, default_value_t = 900)]
    pub deadline_secs: u64,
}

/// Issue 13's targets.
const MASS_RATIO_AT_MOST: f64 = 1.5;
const ROOM_CONVERGE_S_AT_MOST: f64 = 30.0;

impl FaultsBenchArgs {
    /// The e2e settings one run of this bench uses: no plugin pattern, no drain.
    fn e2e(&self, fail_rate: f64) -> E2eBenchArgs {
        E2eBenchArgs {
            json: self.json,
            latency_ms: self.latency_ms,
            users: Some(self.users),
            chat_backend: None,
            courses: 0,
            users_per_course: 0,
            workers: self.workers,
            concurrency: self.concurrency,
            plugin_sample: 0,
            full_plugin: false,
            rate_limited: false,
            rate_limit: RateLimit {
                calls: 10,
                window: Duration::from_secs(60),
            },
            rl_students: 0,
            rl_teachers: 0,
            database: self.database.clone(),
            keep_database: self.keep_database,
            drain: false,
            deadline_secs: self.deadline_secs,
            fail_rate,
            new_activity_backlog: 0,
            new_activity_only: false,
        }
    }
}

/// One timed change of the room part.
#[derive(Debug, Serialize)]
struct RoomPhase {
    fail_rate: f64,
    /// Rows the change wrote (`None` for the fills, which only enrol).
    change: Option<crate::harness::changes::ChangeCounts>,
    enrol_statement_s: f64,
    converge_s: f64,
    jobs_pending_at_convergence: i64,
    jobs_completed: u64,
    jobs_retried: u64,
    rocketchat_calls: u64,
    rocketchat_calls_by_endpoint: BTreeMap<String, EndpointCalls>,
    faults_injected: Option<u64>,
}

impl RoomPhase {
    fn of(fail_rate: f64, stmt: f64, m: Measured) -> RoomPhase {
        RoomPhase {
            fail_rate,
            change: None,
            enrol_statement_s: stmt,
            converge_s: m.converge_s,
            jobs_pending_at_convergence: m.pending_at_convergence,
            jobs_completed: m.jobs_completed,
            jobs_retried: m.jobs_retried,
            rocketchat_calls: total_calls(&m.calls),
            rocketchat_calls_by_endpoint: m.calls,
            faults_injected: m.faults_injected,
        }
    }
}

/// The room part's figures.
#[derive(Debug, Serialize)]
struct RoomFigures {
    members: usize,
    teachers: usize,
    /// Filling an empty room with the members, no faults (the reference).
    fill_fault_free: RoomPhase,
    /// The same members into a second empty room, with faults.
    fill: RoomPhase,
    /// A change to that full room, with faults.
    change: RoomPhase,
    dead_jobs: i64,
}

/// The median of `v` (NaN when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|x, y| x.total_cmp(y));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ratio(faulty: f64, fault_free: f64) -> f64 {
    (faulty / fault_free.max(1e-3) * 100.0).round() / 100.0
}

/// Runs `rcjobs bench faults`: (a) `--rounds` pairs of the mass enrolment, fault-free then
/// with `--fail-rate`, each in a fresh run, and their ratio; (b) in one run, a room of
/// `--room-members` filled fault-free (reference), a second one filled with faults, and a
/// change to it with faults, each timed from the commit until the chat server equals Moodle.
/// The workers run the product defaults (periodic reconcile included) with the harness's
/// short durable retry.
pub async fn run_faults(s: &Settings, f: FaultsBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        f.workers > 0 && f.concurrency > 0 && f.rounds > 0,
        "--workers, --concurrency and --rounds must be at least 1"
    );
    anyhow::ensure!(
        s.rocketchat_url.is_none(),
        "bench faults runs against the in-process simulator: unset ROCKETCHAT_URL"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&f.fail_rate),
        "--fail-rate must be between 0 and 1"
    );
    anyhow::ensure!(
        f.room_teachers + f.change_teachers + f.change_users <= f.room_members,
        "--room-members must cover --room-teachers, --change-teachers and --change-users"
    );
    let quiet = f.e2e(0.0);
    let mut pairs = Vec::with_capacity(f.rounds);
    for round in 1..=f.rounds {
        say(
            &quiet,
            &format!("mass, round {round} of {}: fault-free", f.rounds),
        );
        let ff = workload_run(s, &quiet, Kind::Mass).await?;
        say(
            &quiet,
            &format!(
                "mass, round {round} of {}: {:.1} % of calls failing",
                f.rounds,
                f.fail_rate * 100.0
            ),
        );
        let faulty = workload_run(s, &f.e2e(f.fail_rate), Kind::Mass).await?;
        pairs.push((ff, faulty));
    }
    let ratios: Vec<f64> = pairs
        .iter()
        .map(|(ff, x)| ratio(x.converge_s, ff.converge_s))
        .collect();
    let mass_ratio = median(&ratios);
    let room = room_run(s, &f).await?;
    let room_worst = room.fill.converge_s.max(room.change.converge_s);
    let mass_ok = mass_ratio <= MASS_RATIO_AT_MOST;
    let room_ok = room_worst <= ROOM_CONVERGE_S_AT_MOST;
    let lost = room.dead_jobs
        + pairs
            .iter()
            .map(|(ff, x)| ff.dead_jobs + x.dead_jobs)
            .sum::<i64>();
    let summary = [
        format!("fault injection: {:.1} % of chat calls answered 500", f.fail_rate * 100.0),
        format!(
            "mass enrolment of {} users, commit -> equal: fault-free {} s, faulty {} s; ratio {} (median of {}; target <= {MASS_RATIO_AT_MOST}): {}",
            f.users,
            pairs.iter().map(|p| format!("{:.2}", p.0.converge_s)).collect::<Vec<_>>().join(" / "),
            pairs.iter().map(|p| format!("{:.2}", p.1.converge_s)).collect::<Vec<_>>().join(" / "),
            mass_ratio,
            ratios.len(),
            if mass_ok { "MET" } else { "NOT MET" },
        ),
        format!(
            "room of {} members: fill fault-free {:.2} s, fill faulty {:.2} s ({:.2}x), change faulty {:.2} s (target <= {ROOM_CONVERGE_S_AT_MOST} s): {}",
            room.members,
            room.fill_fault_free.converge_s,
            room.fill.converge_s,
            ratio(room.fill.converge_s, room.fill_fault_free.converge_s),
            room.change.converge_s,
            if room_ok { "MET" } else { "NOT MET" },
        ),
    ];
    for line in &summary {
        eprintln!("{line}");
    }
    let out = json!({
        "fail_rate": f.fail_rate,
        "latency_ms": f.latency_ms,
        "workers": f.workers,
        "concurrency": f.concurrency,
        "mass": {
            "users": f.users,
            "converge_s_fault_free": pairs.iter().map(|p| p.0.converge_s).collect::<Vec<_>>(),
            "converge_s_faulty": pairs.iter().map(|p| p.1.converge_s).collect::<Vec<_>>(),
            "ratios": ratios,
            "ratio": mass_ratio,
            "runs": pairs.iter().map(|(ff, x)| json!({"fault_free": ff, "faulty": x})).collect::<Vec<_>>(),
        },
        "room": room,
        "targets": {
            "mass_ratio_at_most": MASS_RATIO_AT_MOST,
            "room_converge_s_at_most": ROOM_CONVERGE_S_AT_MOST,
        },
        "meets_targets": mass_ok && room_ok,
        "lost_changes": lost,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    if f.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    // Missed targets are figures to report; a dead job is a change given up on.
    anyhow::ensure!(lost == 0, "{lost} jobs went dead under faults");
    Ok(())
}

/// The room part in a run of its own.
async fn room_run(s: &Settings, f: &FaultsBenchArgs) -> anyhow::Result<RoomFigures> {
    let total = f.room_members + f.change_users;
    let spec = RunSpec {
        database: f.database.clone(),
        fixture: FixtureSpec {
            users: u32::try_from(total + total / 10 + 100)?,
            courses: 4,
            seed: 13,
            enrolments_per_user: 1,
            // Two courses with exactly one visible room are needed; some have two or hide one.
            empty_courses: 16,
            now: rcjobs_moodle::unix_now(),
        },
        sim: SimOptions {
            latency: Duration::from_millis(f.latency_ms),
            ..SimOptions::default()
        },
        progress: !f.json && std::io::stderr().is_terminal(),
    };
    let a = f.e2e(f.fail_rate);
    say(
        &a,
        &format!(
            "room: setting up a site for a room of {} members ({} editing teachers)",
            f.room_members, f.room_teachers
        ),
    );
    let mut run = Run::setup(s, &spec).await?;
    let result = room_phases(&mut run, f, &a).await;
    run.teardown(!f.keep_database).await?;
    result
}

/// Waits (untimed) until `rooms` equal Moodle and no due job is left, between phases.
async fn settle(run: &Run, a: &E2eBenchArgs, rooms: &[rcjobs_moodle::Room]) -> anyhow::Result<()> {
    let mut truths = run.comparator.truth(rooms).await?;
    let d = run
        .wait_converged(
            "settle",
            &mut truths,
            Instant::now(),
            Duration::from_secs(a.deadline_secs),
            Duration::from_millis(200),
            true,
        )
        .await?;
    anyhow::ensure!(
        d.at.is_some(),
        "queue did not drain within {} s",
        a.deadline_secs
    );
    Ok(())
}

async fn room_phases(
    run: &mut Run,
    f: &FaultsBenchArgs,
    a: &E2eBenchArgs,
) -> anyhow::Result<RoomFigures> {
    run.start_workers(&WorkerOptions {
        count: f.workers,
        concurrency: f.concurrency,
        config: WorkerConfig::default(),
    })
    .await?;
    converge_initially(run, a).await?;
    let mut candidates = run
        .site
        .empty_courses_with_visible_rooms()
        .await?
        .into_iter()
        .filter(|(_, r)| r.len() == 1);
    let (reference, reference_rooms) = candidates
        .next()
        .context("no empty course with exactly one visible chat room")?;
    let (course, rooms) = candidates
        .next()
        .context("no second empty course with exactly one visible chat room")?;
    let ids = run
        .site
        .active_user_ids(f.room_members + f.change_users)
        .await?;
    anyhow::ensure!(
        ids.len() == f.room_members + f.change_users,
        "only {} active users",
        ids.len()
    );
    let roles = run.site.fixture.roles;
    let (members, newcomers) = ids.split_at(f.room_members);
    let rows_for = |c: i64| -> Vec<(i64, i64, i64)> {
        members
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                let role = if i < f.room_teachers {
                    roles.editingteacher
                } else {
                    roles.student
                };
                (c, u, role)
            })
            .collect()
    };
    anyhow::ensure!(
        run.chat.sim().is_some(),
        "the room part needs the simulator"
    );
    let set_fail_rate = |run: &Run, p: f64| {
        if let Some(s) = run.chat.sim() {
            s.set_fail_rate(p);
        }
    };

    // 1. Reference: fill an empty room fault-free.
    fresh_counts(run).await;
    let t = Instant::now();
    run.site.enrol_many(&run.pool, &rows_for(reference)).await?;
    let committed = Instant::now();
    let m = measure(run, a, "room fill, fault-free", &reference_rooms, committed).await?;
    let fill_fault_free = RoomPhase::of(0.0, secs(committed - t), m);
    settle(run, a, &reference_rooms).await?;

    // 2. The same members into a second empty room, with faults.
    set_fail_rate(run, f.fail_rate);
    fresh_counts(run).await;
    let t = Instant::now();
    run.site.enrol_many(&run.pool, &rows_for(course)).await?;
    let committed = Instant::now();
    let m = measure(run, a, "room fill, faulty", &rooms, committed).await?;
    let fill = RoomPhase::of(f.fail_rate, secs(committed - t), m);
    settle(run, a, &rooms).await?;

    // 3. A change to the full room, with faults: the last students leave, as many new ones
    // arrive, and the first students become editing teachers, in one transaction.
    let change = crate::harness::changes::CourseChange {
        course,
        unenrol: members[f.room_members - f.change_users..].to_vec(),
        enrol: newcomers.to_vec(),
        promote: members[f.room_teachers..f.room_teachers + f.change_teachers].to_vec(),
    };
    fresh_counts(run).await;
    let t = Instant::now();
    let counts = crate::harness::changes::apply(&run.site, &run.pool, &change).await?;
    let committed = Instant::now();
    let m = measure(run, a, "room change, faulty", &rooms, committed).await?;
    let mut changed = RoomPhase::of(f.fail_rate, secs(committed - t), m);
    changed.change = Some(counts);
    set_fail_rate(run, 0.0);
    let dead = crate::harness::progress::dead_jobs(&run.pool).await?;
    run.stop_workers().await?;
    Ok(RoomFigures {
        members: f.room_members,
        teachers: f.room_teachers,
        fill_fault_free,
        fill,
        change: changed,
        dead_jobs: dead,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratio_rounds_to_hundredths_and_survives_zero() {
        assert_eq!(ratio(3.0, 2.0), 1.5);
        assert_eq!(ratio(1.0, 3.0), 0.33);
        assert!(ratio(1.0, 0.0).is_finite());
    }
}
