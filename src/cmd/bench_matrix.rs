//! `rcjobs bench e2e --chat-backend matrix`: the mass enrolment against a real Synapse
//! (issue 15 §6). N users (default 1,000) are enrolled into one course with one chat room in
//! one transaction, a share of them as editing teachers (moderators: power level 50), and
//! the time from the commit until the Matrix room equals Moodle is compared with two
//! baselines run against the same homeserver, each into a fresh room of its own:
//!
//! - **Moodle core's call pattern** (`communication_matrix`, `../shared/docs/matrix-synapse.md`
//!   §2.2): per user added, the admin `GET v2/users/{id}`, a `joined_members` listing of the
//!   whole room, then the admin force-join; after the adds, `GET admin/v1/rooms/{id}` and one
//!   power-level write;
//! - **the raw bound**: the same force-joins and the one power-level write, issued by the
//!   simplest loop (one call per member, one after the other).
//!
//! Synapse serialises a room's events (force-join is about 8 per second into one room
//! whatever the concurrency), so the raw bound is the physical limit; what rcjobs must win
//! on is the calls around it. The accounts exist before any arm (created by the harness,
//! untimed): SSO sites' accounts exist before their users join a course.

use super::bench_e2e::E2eBenchArgs;
use super::config::Settings;
use crate::harness::chat::{total_calls, CallCounter, EndpointCalls};
use crate::harness::matrix::{run_tag, Homeserver};
use crate::harness::run::{Run, RunSpec, SetupOptions};
use crate::harness::secs;
use crate::harness::workers::{RunCounters, WorkerOptions};
use anyhow::Context;
use futures::StreamExt;
use rcjobs_chat::{ChatBackend, NewRoom};
use rcjobs_moodle::fixture::FixtureSpec;
use rcjobs_worker::wiring::matrix::{ids, MatrixBackend};
use rcjobs_worker::WorkerConfig;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One editing teacher (a moderator) per this many enrolled users.
const USERS_PER_MODERATOR: usize = 25;

/// One baseline arm's figures.
#[derive(Debug, Serialize)]
struct Arm {
    seconds: f64,
    calls: u64,
    calls_per_member: f64,
    calls_by_route: BTreeMap<String, EndpointCalls>,
}

/// The benchmark's JSON object.
#[derive(Debug, Serialize)]
struct Figures {
    backend: &'static str,
    homeserver: String,
    synapse_version: Option<String>,
    users: usize,
    moderators: usize,
    workers: usize,
    concurrency: usize,
    enrol_statement_s: f64,
    /// Commit of the enrolment → the Matrix room equals Moodle.
    converge_s: f64,
    /// Commit → the queue has no due job left (the workers' calls are counted up to here).
    drained_s: f64,
    moodle_core_pattern_s: f64,
    raw_bound_s: f64,
    /// The workers' API calls per member added, up to the drain.
    calls_per_member: f64,
    calls: u64,
    calls_by_route: BTreeMap<String, EndpointCalls>,
    moodle_core_calls_per_member: f64,
    raw_bound_calls_per_member: f64,
    ratio_to_raw_bound: f64,
    moodle_core_over_rcjobs: f64,
    jobs_completed: u64,
    jobs_retried: u64,
    dead_jobs: i64,
    moodle_core_pattern: Arm,
    raw_bound: Arm,
    targets: Targets,
}

/// Issue 15 §6's targets, as measured.
#[derive(Debug, Serialize)]
struct Targets {
    within_1_2x_raw_bound: bool,
    at_most_1_1_calls_per_member: bool,
    not_slower_than_moodle_core: bool,
}

fn say(a: &E2eBenchArgs, msg: &str) {
    if !a.json {
        eprintln!("{msg}");
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs the Matrix mass-enrolment benchmark.
pub async fn run(s: &Settings, a: &E2eBenchArgs) -> anyhow::Result<()> {
    let n = a.users.unwrap_or(1_000);
    anyhow::ensure!(n > 0, "--users must be at least 1");
    let hs = Homeserver::find(s)?;
    let counter = Arc::new(CallCounter::default());
    let admin = hs.backend(counter.clone()).await?;
    say(a, &format!("bench e2e on Matrix: {}", hs.describe()));

    // Deleted and suspended users are a few % of the generated ones: leave room for them.
    let spec = RunSpec {
        database: a.database.clone(),
        fixture: FixtureSpec {
            users: u32::try_from(n + n / 5 + 20)?,
            courses: 0,
            seed: 7,
            enrolments_per_user: 0,
            // Fixture course 2 is the first with exactly one room, visible.
            empty_courses: 3,
            now: rcjobs_moodle::unix_now(),
        },
        sim: Default::default(),
        progress: !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let setup = SetupOptions {
        purpose: "bench e2e",
        workers: Some((a.workers, a.concurrency)),
        chat: Some(hs.connection()),
        ..SetupOptions::default()
    };
    let mut run = Run::setup_with(s, &spec, &setup).await?;
    let result = measure(&mut run, a, &hs, &admin, &counter, n).await;
    run.teardown(!a.keep_database).await?;
    let f = result?;
    if a.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        say(
            a,
            &format!(
                "{} users ({} moderators): rcjobs {:.1} s ({:.2} calls/member), Moodle core's pattern {:.1} s ({:.2} calls/member), raw bound {:.1} s: {:.2}x the raw bound, Moodle core {:.2}x rcjobs",
                f.users, f.moderators, f.converge_s, f.calls_per_member, f.moodle_core_pattern_s,
                f.moodle_core_calls_per_member, f.raw_bound_s, f.ratio_to_raw_bound, f.moodle_core_over_rcjobs
            ),
        );
        println!("{}", serde_json::to_string_pretty(&f)?);
    }
    Ok(())
}

async fn measure(
    run: &mut Run,
    a: &E2eBenchArgs,
    hs: &Homeserver,
    admin: &MatrixBackend,
    counter: &Arc<CallCounter>,
    n: usize,
) -> anyhow::Result<Figures> {
    let (course, rooms) = run
        .site
        .empty_courses_with_visible_rooms()
        .await?
        .into_iter()
        .find(|(_, r)| r.len() == 1)
        .context("no empty course with exactly one visible chat room")?;
    let ids = run.site.active_user_ids(n).await?;
    anyhow::ensure!(ids.len() == n, "only {} active users", ids.len());
    let moderators = n / USERS_PER_MODERATOR;
    let usernames = usernames_of(run, &ids).await?;
    let user_ids: Vec<String> = usernames
        .iter()
        .map(|u| admin.user_id_of(u))
        .collect::<Result<_, _>>()
        .context("a generated username is not a Matrix localpart")?;
    say(a, &format!("creating {n} accounts (untimed)"));
    seed_accounts(admin, &user_ids).await?;

    let mut config = WorkerConfig::default();
    config.naming.site_id = run_tag();
    run.start_workers(&WorkerOptions {
        count: a.workers,
        concurrency: a.concurrency,
        config,
    })
    .await?;
    run.install_triggers().await?;
    run.sync_everything().await?;
    let mut truths = run.truth_all().await?;
    let init = run
        .wait_converged(
            "initial",
            &mut truths,
            Instant::now(),
            Duration::from_secs(a.deadline_secs),
            Duration::from_millis(200),
            true,
        )
        .await?;
    anyhow::ensure!(
        init.at.is_some(),
        "initial convergence failed: {:?}",
        init.mismatches
    );

    // rcjobs: one transaction, as a cohort or flat-file sync writes it.
    let roles = run.site.fixture.roles;
    let rows: Vec<(i64, i64, i64)> = ids
        .iter()
        .enumerate()
        .map(|(i, &u)| {
            let role = if i < moderators {
                roles.editingteacher
            } else {
                roles.student
            };
            (course, u, role)
        })
        .collect();
    say(
        a,
        &format!("rcjobs: enrolling {n} users into course {course}"),
    );
    run.calls.reset();
    let counts = run.worker_counters().context("workers are not running")?;
    let (done0, retried0) = (
        RunCounters::get(&counts.completed),
        RunCounters::get(&counts.retried),
    );
    let t_stmt = Instant::now();
    run.site.enrol_many(&run.pool, &rows).await?;
    let committed = Instant::now();
    let deadline = Duration::from_secs(a.deadline_secs);
    let mut truths = run.comparator.truth(&rooms).await?;
    let c = run
        .wait_converged(
            "rcjobs",
            &mut truths,
            committed,
            deadline,
            Duration::from_millis(250),
            false,
        )
        .await?;
    let converge =
        c.at.with_context(|| format!("not converged within {deadline:?}: {:?}", c.mismatches))?;
    let d = run
        .wait_converged(
            "rcjobs",
            &mut truths,
            committed,
            deadline,
            Duration::from_millis(250),
            true,
        )
        .await?;
    anyhow::ensure!(
        d.at.is_some(),
        "the queue did not drain within {deadline:?}"
    );
    let drained = committed.elapsed();
    let calls_by_route = run.calls.snapshot();
    let calls = total_calls(&calls_by_route);
    let counts = run.worker_counters().context("workers are not running")?;
    let jobs_completed = RunCounters::get(&counts.completed) - done0;
    let jobs_retried = RunCounters::get(&counts.retried) - retried0;
    let dead_jobs = crate::harness::progress::dead_jobs(&run.pool).await?;
    // The baselines run alone on the homeserver.
    run.stop_workers().await?;

    let tag = run_tag();
    say(a, "Moodle core's call pattern, into a fresh room");
    let core = moodle_core_pattern(admin, counter, &tag, &user_ids, moderators, n).await?;
    say(a, "raw bound, into a fresh room");
    let raw = raw_bound(admin, counter, &tag, &user_ids, moderators, n).await?;

    let converge_s = secs(converge);
    let calls_per_member = round2(calls as f64 / n as f64);
    let targets = Targets {
        within_1_2x_raw_bound: converge_s <= 1.2 * raw.seconds,
        at_most_1_1_calls_per_member: calls_per_member <= 1.1,
        not_slower_than_moodle_core: converge_s <= core.seconds,
    };
    Ok(Figures {
        backend: "matrix",
        homeserver: hs.config.homeserver_url.to_string(),
        synapse_version: hs.synapse_version.clone(),
        users: n,
        moderators,
        workers: a.workers,
        concurrency: a.concurrency,
        enrol_statement_s: secs(committed - t_stmt),
        converge_s,
        drained_s: secs(drained),
        moodle_core_pattern_s: core.seconds,
        raw_bound_s: raw.seconds,
        calls_per_member,
        calls,
        calls_by_route,
        moodle_core_calls_per_member: core.calls_per_member,
        raw_bound_calls_per_member: raw.calls_per_member,
        ratio_to_raw_bound: round2(converge_s / raw.seconds.max(1e-3)),
        moodle_core_over_rcjobs: round2(core.seconds / converge_s.max(1e-3)),
        jobs_completed,
        jobs_retried,
        dead_jobs,
        moodle_core_pattern: core,
        raw_bound: raw,
        targets,
    })
}

/// The chat usernames of Moodle users `ids` (the identity mapping the workers use).
async fn usernames_of(run: &Run, ids: &[i64]) -> anyhow::Result<Vec<String>> {
    let p = run.site.prefix.as_str();
    let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, username FROM {p}user WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(run.site.moodle.pool())
    .await?;
    let by_id: BTreeMap<i64, String> = rows.into_iter().collect();
    ids.iter()
        .map(|id| {
            by_id
                .get(id)
                .map(|u| u.to_lowercase())
                .with_context(|| format!("user {id} vanished"))
        })
        .collect()
}

/// Creates the accounts that do not exist yet, a few at a time (the admin PUT is an upsert;
/// without a password it is cheap).
async fn seed_accounts(admin: &MatrixBackend, user_ids: &[String]) -> anyhow::Result<()> {
    let client = admin.client();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(user_ids)
        .map(|id| async move {
            if client.user(id).await?.is_none() {
                let local = ids::username_of(id, admin.server_name());
                client
                    .put_user(id, &local, &format!("{local}@example.edu"))
                    .await?;
            }
            Ok(())
        })
        .buffer_unordered(4)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A fresh room for a baseline (untimed), made as the workers make theirs.
async fn fresh_room(admin: &MatrixBackend, name: String) -> anyhow::Result<String> {
    let room = admin
        .create_room(&NewRoom {
            name,
            read_only: false,
            retention_days: None,
        })
        .await
        .context("creating a baseline room")?;
    Ok(room.id)
}

/// The power levels with the first `moderators` of `user_ids` at 50, written in one PUT
/// (the read before it is the arm's setup, untimed: Moodle core writes without reading).
async fn levels_with_moderators(
    admin: &MatrixBackend,
    room: &str,
    user_ids: &[String],
    moderators: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut levels = admin.client().power_levels(room).await?;
    let users = levels
        .as_object_mut()
        .context("power levels are not an object")?
        .entry("users")
        .or_insert_with(|| json!({}));
    for id in &user_ids[..moderators] {
        users[id.as_str()] = json!(50);
    }
    Ok(levels)
}

/// Moodle core's adds: per user `GET v2/users`, `GET joined_members` (the whole room), then
/// the force-join if not joined; then `GET admin/v1/rooms` and one power-level write.
async fn moodle_core_pattern(
    admin: &MatrixBackend,
    counter: &CallCounter,
    tag: &str,
    user_ids: &[String],
    moderators: usize,
    n: usize,
) -> anyhow::Result<Arm> {
    let client = admin.client();
    let room = fresh_room(admin, format!("{tag} moodle core")).await?;
    let levels = levels_with_moderators(admin, &room, user_ids, moderators).await?;
    counter.reset();
    let t = Instant::now();
    for id in user_ids {
        anyhow::ensure!(client.user(id).await?.is_some(), "{id} has no account");
        let joined = client.joined_members(&room).await?;
        if !joined.iter().any(|m| m == id) {
            client.admin_join(&room, id).await?;
        }
    }
    if moderators > 0 {
        client.room_details(&room).await?;
        client.put_power_levels(&room, &levels).await?;
    }
    let figures = arm(counter, secs(t.elapsed()), n);
    check_filled(admin, &room, n).await?;
    Ok(figures)
}

/// The raw bound: the same joins and the one power-level write, nothing else.
async fn raw_bound(
    admin: &MatrixBackend,
    counter: &CallCounter,
    tag: &str,
    user_ids: &[String],
    moderators: usize,
    n: usize,
) -> anyhow::Result<Arm> {
    let client = admin.client();
    let room = fresh_room(admin, format!("{tag} raw bound")).await?;
    let levels = levels_with_moderators(admin, &room, user_ids, moderators).await?;
    counter.reset();
    let t = Instant::now();
    for id in user_ids {
        client.admin_join(&room, id).await?;
    }
    if moderators > 0 {
        client.put_power_levels(&room, &levels).await?;
    }
    let figures = arm(counter, secs(t.elapsed()), n);
    check_filled(admin, &room, n).await?;
    Ok(figures)
}

fn arm(counter: &CallCounter, seconds: f64, n: usize) -> Arm {
    let calls_by_route = counter.snapshot();
    let calls = total_calls(&calls_by_route);
    Arm {
        seconds,
        calls,
        calls_per_member: round2(calls as f64 / n as f64),
        calls_by_route,
    }
}

/// A baseline counts only if its room really holds every user (plus the bot).
async fn check_filled(admin: &MatrixBackend, room: &str, n: usize) -> anyhow::Result<()> {
    let joined = admin.client().joined_members(room).await?;
    anyhow::ensure!(
        joined.len() == n + 1,
        "baseline room {room} has {} members, expected {}",
        joined.len(),
        n + 1
    );
    Ok(())
}
