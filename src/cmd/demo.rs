//! `rcjobs demo`: the whole system on one machine. A dedicated database on the configured
//! Postgres server (`rcjobs_demo`, recreated each run if the demo created it; any other
//! database of that name is refused unless `--replace-database`), the queue and Moodle
//! schemas, a
//! synthetic site, the Rocket.Chat simulator (or `ROCKETCHAT_URL`), or with
//! `--chat-backend matrix` a real Synapse (the `MATRIX_*` settings, else the one
//! `scripts/ensure-synapse.sh` starts), several workers, the
//! Moodle trigger set; an initial convergence of every room, then a mass enrolment through
//! SQL as a cohort or flat-file sync writes it; progress bars and a summary. Exits non-zero
//! if Moodle and the chat server still differ at the deadline.

use super::config::{ChatBackendKind, Settings};
use crate::harness::chat::{total_calls, EndpointCalls, SimOptions};
use crate::harness::compare::{Mismatches, RoomTruth};
use crate::harness::run::{Run, RunSpec, SetupOptions};
use crate::harness::secs;
use crate::harness::workers::{RunCounters, WorkerOptions};
use anyhow::Context;
use clap::Args;
use rcjobs_moodle::fixture::{FixtureSpec, UserSet};
use rcjobs_worker::WorkerConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// `rcjobs demo` arguments (the defaults need no configuration).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The chat server: `rocketchat` (the simulator, or `ROCKETCHAT_URL`) or `matrix` (a
    /// real Synapse: the `MATRIX_*` settings, else `target/synapse/env` as
    /// `bash scripts/ensure-synapse.sh` writes it). Default: `CHAT_BACKEND`, else rocketchat.
    #[arg(long, value_enum)]
    pub chat_backend: Option<ChatBackendKind>,
    /// Moodle users in the synthetic site (default 20,000; 60 on Matrix).
    #[arg(long)]
    pub users: Option<u32>,
    /// Populated courses, each with one or two chat activities (default 200; 4 on Matrix).
    #[arg(long)]
    pub courses: Option<u32>,
    /// Courses each user is enrolled in before the mass enrolment (default 5; 2 on Matrix).
    #[arg(long)]
    pub enrolments_per_user: Option<u32>,
    /// Users the mass enrolment adds to one new course (one SQL statement). 2,000 by default
    /// keeps the demo around a minute; 10,000 works too (see BENCHMARKS.md, "End to end").
    /// On Matrix 40: Synapse force-joins about 8 users a second into one room.
    #[arg(long)]
    pub enrol: Option<usize>,
    /// Worker replicas started in this process.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Jobs each replica runs at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Simulated Rocket.Chat latency per API call, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub latency_ms: u64,
    /// Database created on the server of DATABASE_URL. If it exists and an earlier demo or
    /// bench created it, it is dropped and recreated; any other database is left alone and
    /// the demo stops, unless `--replace-database`.
    #[arg(long, default_value = "rcjobs_demo")]
    pub database: String,
    /// Drop and recreate `--database` even if rcjobs did not create it (its data is lost).
    #[arg(long)]
    pub replace_database: bool,
    /// Postgres connections the demo may open in total; it uses fewer when the server has
    /// fewer free (max_connections minus other clients), and stops early if the workers
    /// cannot fit.
    #[arg(long, default_value_t = crate::harness::workers::DEFAULT_CONNECTION_CAP)]
    pub max_connections: u32,
    /// Drop the database at the end (by default it stays for inspection with `rcjobs status`).
    #[arg(long)]
    pub drop_database: bool,
    /// Seconds each phase may take to converge before the demo gives up (exit status 1).
    #[arg(long, default_value_t = 600)]
    pub deadline_secs: u64,
    /// Seconds to wait, after convergence, for the queue to empty before summarising.
    #[arg(long, default_value_t = 60)]
    pub drain_secs: u64,
    /// Fixture seed (the same seed gives the same site).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print the summary as one JSON object (no progress bars).
    #[arg(long)]
    pub json: bool,
}

/// One phase's figures.
#[derive(Debug, Serialize)]
struct Phase {
    /// Chat server equal to Moodle, seconds after the phase started (the commit, for the
    /// enrolment).
    converge_s: Option<f64>,
    /// Queue empty again (within the drain wait), seconds after the phase started.
    drained_s: Option<f64>,
    /// Jobs left in the queue at the end of the phase.
    jobs_pending: i64,
    jobs_completed: u64,
    jobs_per_s: f64,
    jobs_retried: u64,
    jobs_snoozed: u64,
    jobs_dead: u64,
    rocketchat_calls: u64,
    rocketchat_calls_by_endpoint: BTreeMap<String, EndpointCalls>,
    rate_limited_429: u64,
    mismatches: Mismatches,
}

#[derive(Debug, Serialize)]
struct Summary {
    database: String,
    pg_version: String,
    chat_server: String,
    users: u32,
    courses: u32,
    rooms: usize,
    workers: usize,
    concurrency: usize,
    /// Postgres connections the run may open at most (workers' pools plus the harness's).
    max_connections_used: u32,
    latency_ms: u64,
    setup_s: f64,
    enrolled_users: u64,
    enrol_statement_s: f64,
    initial: Phase,
    mass_enrolment: Phase,
    final_mismatches: Mismatches,
    database_kept: bool,
}

fn say(json: bool, msg: &str) {
    if !json {
        eprintln!("{msg}");
    }
}

/// Runs one phase: waits for convergence, then (up to `drain`) for the queue to empty, and
/// collects the figures.
async fn phase(
    run: &Run,
    name: &str,
    start: Instant,
    mut truths: Vec<RoomTruth>,
    deadline: Duration,
    drain: Duration,
    json: bool,
) -> anyhow::Result<Phase> {
    let c = run.worker_counters().context("workers are not running")?;
    let (done0, retried0, snoozed0, dead0) = (
        RunCounters::get(&c.completed),
        RunCounters::get(&c.retried),
        RunCounters::get(&c.snoozed),
        RunCounters::get(&c.dead),
    );
    let r = run
        .wait_converged(
            name,
            &mut truths,
            start,
            deadline,
            Duration::from_millis(500),
            false,
        )
        .await?;
    let calls = run.calls.snapshot();
    let mut drained_s = None;
    let mut mismatches = r.mismatches;
    if r.at.is_some() {
        let d = run
            .wait_converged(
                name,
                &mut truths,
                start,
                start.elapsed() + drain,
                Duration::from_millis(200),
                true,
            )
            .await?;
        drained_s = d.at.map(|_| secs(start.elapsed()));
        mismatches = d.mismatches;
    }
    let elapsed = start.elapsed();
    let jobs = RunCounters::get(&c.completed) - done0;
    let p = Phase {
        converge_s: r.at.map(secs),
        drained_s,
        jobs_pending: crate::harness::progress::pending_jobs(&run.pool).await?,
        jobs_completed: jobs,
        jobs_per_s: (jobs as f64 / elapsed.as_secs_f64().max(1e-3)).round(),
        jobs_retried: RunCounters::get(&c.retried) - retried0,
        jobs_snoozed: RunCounters::get(&c.snoozed) - snoozed0,
        jobs_dead: RunCounters::get(&c.dead) - dead0,
        rocketchat_calls: total_calls(&calls),
        rate_limited_429: calls.values().map(|e| e.rate_limited).sum(),
        rocketchat_calls_by_endpoint: calls,
        mismatches,
    };
    match (p.converge_s, p.drained_s) {
        (Some(t), Some(d)) => say(
            json,
            &format!(
                "{name}: the chat server equals Moodle after {t:.2} s; queue drained after {d:.2} s"
            ),
        ),
        (Some(t), None) => say(
            json,
            &format!(
                "{name}: the chat server equals Moodle after {t:.2} s; {} jobs still queued",
                p.jobs_pending
            ),
        ),
        (None, _) => say(
            json,
            &format!("{name}: NOT converged within {} s", deadline.as_secs()),
        ),
    }
    Ok(p)
}

/// The site's sizes: the flags, else the backend's defaults (a real Synapse fills a room at
/// about 8 users a second, so its demo is small).
struct Sizes {
    users: u32,
    courses: u32,
    enrolments_per_user: u32,
    enrol: usize,
}

impl Sizes {
    fn of(a: &DemoArgs, backend: ChatBackendKind) -> Sizes {
        let (users, courses, per_user, enrol) = match backend {
            ChatBackendKind::Rocketchat => (20_000, 200, 5, 2_000),
            ChatBackendKind::Matrix => (60, 4, 2, 40),
        };
        Sizes {
            users: a.users.unwrap_or(users),
            courses: a.courses.unwrap_or(courses),
            enrolments_per_user: a.enrolments_per_user.unwrap_or(per_user),
            enrol: a.enrol.unwrap_or(enrol),
        }
    }
}

/// Runs `rcjobs demo`.
pub async fn run(s: &Settings, a: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.workers > 0 && a.concurrency > 0,
        "--workers and --concurrency must be at least 1"
    );
    let backend = a.chat_backend.map_or_else(|| s.chat_backend(), Ok)?;
    let size = Sizes::of(&a, backend);
    // Matrix has no simulator: find the homeserver (or say how to get one) and check that it
    // answers before minutes of setup.
    let homeserver = match backend {
        ChatBackendKind::Rocketchat => None,
        ChatBackendKind::Matrix => {
            let hs = crate::harness::matrix::Homeserver::find(s)?;
            hs.backend(std::sync::Arc::new(
                crate::harness::chat::CallCounter::default(),
            ))
            .await?;
            Some(hs)
        }
    };
    let t_setup = Instant::now();
    let deadline = Duration::from_secs(a.deadline_secs);
    let drain = Duration::from_secs(a.drain_secs);
    say(
        a.json,
        &format!(
            "rcjobs demo: database {} on the server of {}",
            a.database,
            s.describe_database()
        ),
    );
    let spec = RunSpec {
        database: a.database.clone(),
        fixture: FixtureSpec {
            users: size.users,
            courses: size.courses,
            seed: a.seed,
            enrolments_per_user: size.enrolments_per_user,
            // Targets for the mass enrolment (one whose activities are all visible is used).
            empty_courses: 4,
            now: rcjobs_moodle::unix_now(),
        },
        sim: SimOptions {
            latency: Duration::from_millis(a.latency_ms),
            ..SimOptions::default()
        },
        progress: !a.json && std::io::stderr().is_terminal(),
    };
    let setup = SetupOptions {
        purpose: "demo",
        replace_database: a.replace_database,
        replace_flag: Some("--replace-database"),
        max_connections: a.max_connections,
        workers: Some((a.workers, a.concurrency)),
        chat: homeserver.as_ref().map(|h| h.connection()),
    };
    let mut run = Run::setup_with(s, &spec, &setup).await?;
    let f = &run.site.fixture;
    say(
        a.json,
        &format!(
            "site: {} users, {} courses, {} chat activities, {} enrolments, {} role assignments (generated in {:.1} s); chat: {}",
            size.users,
            f.course_ids.len() + f.empty_course_ids.len(),
            f.rooms,
            f.user_enrolments,
            f.role_assignments,
            f.elapsed.as_secs_f64(),
            run.chat.describe()
        ),
    );
    let mut config = WorkerConfig::default();
    if homeserver.is_some() {
        // Synapse keeps rooms across demos: names of this run's own, so no earlier demo's
        // room (found by its alias) is adopted with its members.
        config.naming.site_id = crate::harness::matrix::run_tag();
    }
    let opts = WorkerOptions {
        count: a.workers,
        concurrency: a.concurrency,
        config,
    };
    run.start_workers(&opts).await?;
    run.install_triggers().await?;
    let plan = run
        .connection_plan()
        .map(|p| format!("; {p}"))
        .unwrap_or_default();
    say(
        a.json,
        &format!(
            "{} workers x {} running; Moodle change-capture triggers installed{plan}",
            a.workers, a.concurrency
        ),
    );
    let setup_s = secs(t_setup.elapsed());

    // 1. Initial convergence: every room created and filled.
    say(a.json, "initial convergence: one sync per chat activity");
    // Moodle does not change during this phase: read the desired state before starting.
    let truths = run.truth_all().await?;
    run.sync_everything().await?;
    let initial = phase(
        &run,
        "initial",
        Instant::now(),
        truths,
        deadline,
        drain,
        a.json,
    )
    .await?;

    // 2. Mass enrolment in one SQL statement; triggers turn it into jobs in the same commit.
    let (course, rooms) = run
        .site
        .empty_courses_with_visible_rooms()
        .await?
        .into_iter()
        .next()
        .context("the site has no empty course with visible chat activities")?;
    let ids = run.site.active_user_ids(size.enrol).await?;
    // Only the target course's rooms change: read the others before the clock starts, the
    // target's after the commit (inside the timed phase).
    let mut truths: Vec<RoomTruth> = run
        .truth_all()
        .await?
        .into_iter()
        .filter(|t| !rooms.iter().any(|r| r.cmid == t.cmid))
        .collect();
    run.calls.reset();
    if let Some(sim) = run.chat.sim() {
        sim.reset_counters();
    }
    say(
        a.json,
        &format!(
            "mass enrolment: {} users into course {course} ({} chat room(s)) in one statement",
            ids.len(),
            rooms.len()
        ),
    );
    let t_stmt = Instant::now();
    let enrolled = rcjobs_moodle::fixture::mass_enrol(
        &run.pool,
        &run.site.prefix,
        course,
        &UserSet::Ids(ids),
        "student",
    )
    .await
    .context("mass enrolment")?;
    let committed = Instant::now();
    let enrol_statement_s = secs(committed - t_stmt);
    truths.extend(run.comparator.truth(&rooms).await?);
    let mass = phase(
        &run,
        "mass enrolment",
        committed,
        truths,
        deadline,
        drain,
        a.json,
    )
    .await?;

    // 3. Final check against a fresh read of Moodle.
    let mut truths = run.truth_all().await?;
    let final_mismatches = run.compare(&mut truths).await?;
    let summary = Summary {
        database: a.database.clone(),
        pg_version: crate::harness::postgres::server_version(&run.pool).await,
        chat_server: run.chat.describe(),
        users: size.users,
        courses: size.courses,
        rooms: truths.len(),
        workers: a.workers,
        concurrency: a.concurrency,
        max_connections_used: run.connection_plan().map(|p| p.total()).unwrap_or(0),
        latency_ms: a.latency_ms,
        setup_s,
        enrolled_users: enrolled,
        enrol_statement_s,
        initial,
        mass_enrolment: mass,
        final_mismatches,
        database_kept: !a.drop_database,
    };
    run.teardown(a.drop_database).await?;
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    let m = &summary.final_mismatches;
    anyhow::ensure!(
        m.total() == 0 && summary.mass_enrolment.converge_s.is_some(),
        "Moodle and the chat server still differ: {} missing rooms, {} missing members, {} extra members, {} wrong moderator flags (e.g. {:?})",
        m.rooms_missing,
        m.missing_members,
        m.extra_members,
        m.wrong_moderator,
        m.examples
    );
    Ok(())
}

fn print_phase(name: &str, p: &Phase) {
    if !name.is_empty() {
        println!("{name}");
    }
    match p.converge_s {
        Some(t) => println!("  time to converge        {t:.2} s"),
        None => println!("  time to converge        NOT CONVERGED"),
    }
    match p.drained_s {
        Some(d) => println!("  queue drained           {d:.2} s"),
        None => println!(
            "  queue drained           not yet: {} jobs still queued",
            p.jobs_pending
        ),
    }
    println!(
        "  jobs completed          {} ({} jobs/s; {} retried, {} snoozed, {} dead)",
        p.jobs_completed, p.jobs_per_s, p.jobs_retried, p.jobs_snoozed, p.jobs_dead
    );
    println!(
        "  chat API calls          {} ({} answered 429)",
        p.rocketchat_calls, p.rate_limited_429
    );
    for (endpoint, c) in &p.rocketchat_calls_by_endpoint {
        println!("    {endpoint:<22}{:>8}", c.calls);
    }
}

fn print_summary(s: &Summary) {
    println!();
    println!("rcjobs demo summary");
    println!("  chat server             {}", s.chat_server);
    println!(
        "  Postgres                {} (database {})",
        s.pg_version, s.database
    );
    println!(
        "  site                    {} users, {} courses, {} chat rooms",
        s.users, s.courses, s.rooms
    );
    println!(
        "  workers                 {} x concurrency {}; simulated latency {} ms/call",
        s.workers, s.concurrency, s.latency_ms
    );
    println!("  setup                   {:.1} s", s.setup_s);
    print_phase(
        "initial convergence (every room created and filled)",
        &s.initial,
    );
    println!(
        "mass enrolment: {} users in one statement ({:.2} s), timed from its commit",
        s.enrolled_users, s.enrol_statement_s
    );
    print_phase("", &s.mass_enrolment);
    let m = &s.final_mismatches;
    println!(
        "mismatches Moodle vs the chat server: {} ({} rooms compared, {} missing rooms, {} missing members, {} extra members, {} wrong moderator flags; {} hidden activities with archived rooms not compared)",
        m.total(),
        m.rooms_compared,
        m.rooms_missing,
        m.missing_members,
        m.extra_members,
        m.wrong_moderator,
        m.rooms_archived_skipped
    );
    if s.database_kept {
        println!("database {} kept for inspection (e.g. `rcjobs status` with DATABASE_URL pointing at it)", s.database);
    }
}
