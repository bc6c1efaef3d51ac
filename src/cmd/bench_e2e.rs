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
    /// Users of the mass enrolment into one course (one room).
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
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
    /// Users the plugin pattern is measured on before extrapolating linearly.
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
}

fn say(a: &E2eBenchArgs, msg: &str) {
    if !a.json {
        eprintln!("{msg}");
    }
}

/// Figures of one workload.
#[derive(Debug, Serialize)]
struct Workload {
    rooms: usize,
    enrolments: i64,
    enrol_statement_s: f64,
    converge_s: f64,
    drained_s: Option<f64>,
    jobs_pending_at_convergence: i64,
    jobs_completed: u64,
    rocketchat_calls: u64,
    rocketchat_calls_by_endpoint: BTreeMap<String, EndpointCalls>,
    mismatches_after: Mismatches,
    plugin_pattern_s: f64,
    plugin_pattern_extrapolated: bool,
    plugin_pattern_measured_users: usize,
    plugin_pattern_measured_s: f64,
    ratio: f64,
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
    calls: BTreeMap<String, EndpointCalls>,
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
    let done0 = run
        .worker_counters()
        .map(|c| RunCounters::get(&c.completed))
        .unwrap_or(0);
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
    let jobs = run
        .worker_counters()
        .map(|c| RunCounters::get(&c.completed))
        .unwrap_or(0)
        - done0;
    say(
        a,
        &format!(
            "{name}: converged in {:.3} s ({} API calls; {pending} jobs still pending then)",
            secs(converge),
            total_calls(&calls)
        ),
    );
    Ok(Measured {
        converge_s: secs(converge),
        drained_s: drained,
        pending_at_convergence: pending,
        jobs_completed: jobs,
        calls,
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
    anyhow::ensure!(
        s.rocketchat_url.is_none(),
        "bench e2e runs against the in-process simulator: unset ROCKETCHAT_URL"
    );
    if a.rate_limited {
        rate_limited(s, &a).await
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
    let w = &mass;
    let out = json!({
        "converge_s": w.converge_s,
        "plugin_pattern_s": w.plugin_pattern_s,
        "plugin_pattern_extrapolated": w.plugin_pattern_extrapolated,
        "plugin_pattern_measured_users": w.plugin_pattern_measured_users,
        "ratio": w.ratio,
        "rocketchat_calls": w.rocketchat_calls,
        "targets": {"converge_s_below": 5.0, "ratio_at_least": 100.0},
        "meets_targets": w.converge_s < 5.0 && w.ratio >= 100.0,
        "users": a.users,
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
                mass.plugin_pattern_measured_users, mass.plugin_pattern_measured_s
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

/// One workload in a run of its own (fresh database, site, simulator and workers), so the
/// tail of one workload's jobs cannot slow the next one.
async fn workload_run(s: &Settings, a: &E2eBenchArgs, kind: Kind) -> anyhow::Result<Workload> {
    let needed_users = match kind {
        Kind::Mass => a.users,
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
            ..SimOptions::default()
        },
        progress: progress(a),
    };
    let name = if kind == Kind::Mass { "mass" } else { "many" };
    say(a, &format!("{name}: setting up {users} users, 20 populated + {empty} empty courses, simulator latency {} ms", a.latency_ms));
    let mut run = Run::setup(s, &spec).await?;
    let result = workload(&mut run, a, kind).await;
    run.teardown(!a.keep_database).await?;
    result
}

async fn workload(run: &mut Run, a: &E2eBenchArgs, kind: Kind) -> anyhow::Result<Workload> {
    let opts = WorkerOptions {
        count: a.workers,
        concurrency: a.concurrency,
        config: WorkerConfig::default(),
    };
    run.start_workers(&opts).await?;
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
    let candidates = run.site.empty_courses_with_visible_rooms().await?;
    let student = run.site.fixture.roles.student;
    fresh_counts(run).await;
    let (rooms, enrolments, stmt, committed) = match kind {
        Kind::Mass => {
            let (course, rooms) = candidates
                .into_iter()
                .find(|(_, r)| r.len() == 1)
                .context("no empty course with exactly one visible chat room")?;
            let ids = run.site.active_user_ids(a.users).await?;
            anyhow::ensure!(ids.len() == a.users, "only {} active users", ids.len());
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

    // The plugin pattern over the same (room, user) pairs, into fresh rooms.
    let truth = run.comparator.truth(&rooms).await?;
    let pairs: Vec<Vec<String>> = truth
        .iter()
        .map(|t| t.desired.keys().cloned().collect())
        .collect();
    let total_pairs: usize = pairs.iter().map(Vec::len).sum();
    let (measured_users, measured_s) = plugin_pattern(run, a, name, &pairs).await?;
    let extrapolated = measured_users < total_pairs;
    // The same two calls per user whichever room they go to: scale linearly.
    let plugin_s = measured_s * total_pairs as f64 / measured_users.max(1) as f64;
    let (plugin_s, measured_s) = (
        secs(Duration::from_secs_f64(plugin_s)),
        secs(Duration::from_secs_f64(measured_s)),
    );
    run.stop_workers().await?;
    Ok(Workload {
        rooms: rooms.len(),
        enrolments,
        enrol_statement_s: stmt,
        converge_s: m.converge_s,
        drained_s: m.drained_s,
        jobs_pending_at_convergence: m.pending_at_convergence,
        jobs_completed: m.jobs_completed,
        rocketchat_calls: total_calls(&m.calls),
        rocketchat_calls_by_endpoint: m.calls,
        mismatches_after: m.after,
        plugin_pattern_s: plugin_s,
        plugin_pattern_extrapolated: extrapolated,
        plugin_pattern_measured_users: measured_users,
        plugin_pattern_measured_s: measured_s,
        ratio: (plugin_s / m.converge_s.max(1e-3) * 10.0).round() / 10.0,
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
