//! Issue 18 §6's figure: how long a teacher waits for the room of a new activity, on an idle
//! worker and behind a backlog of fan-out work (`rcjobs bench e2e`, `BENCHMARKS.md`).
//!
//! One run: a synthetic site with the change-capture triggers, workers with the product's
//! handler defaults, everything converged first. A teacher (editing teacher of their own
//! course) then adds a chat activity the way Moodle writes it, once with nothing else queued
//! and once right after a mass enrolment into another course committed its backlog of
//! `enrolment` and `enrol_role_assign` jobs (priority 0, as the triggers give them). Each
//! activity is timed from its commit until the simulator holds its room with exactly the
//! members Moodle wants (the teacher, as moderator). How many backlog jobs were still due at
//! that moment is counted, so the figure is known to have been measured behind the backlog.

use super::compare::RoomTruth;
use super::run::Run;
use super::secs;
use super::workers::WorkerOptions;
use anyhow::Context;
use chrono::{DateTime, Utc};
use rcjobs_moodle::fixture::UserSet;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The target for the room behind the backlog.
pub const TARGET_S: f64 = 2.0;

/// The user-scoped kinds a mass enrolment's triggers enqueue (one each per enrolment and role
/// assignment).
const BACKLOG_KINDS: [&str; 2] = ["enrolment", "enrol_role_assign"];

/// How to measure.
#[derive(Debug, Clone)]
pub struct NewActivitySpec {
    /// Backlog jobs wanted: a mass enrolment of half as many users (each enrolment and its
    /// role assignment is one job).
    pub backlog: usize,
    /// Worker replicas and jobs per replica.
    pub workers: WorkerOptions,
    /// How long each wait may take before the measurement fails.
    pub deadline: Duration,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct NewActivityFigures {
    /// Commit of the activity → its room exists with the teacher as moderator, no backlog.
    pub idle_room_ready_s: f64,
    /// The same behind the backlog (the figure).
    pub new_activity_room_ready_s: f64,
    /// Behind the backlog, commit → the activity's room job in the queue (the capture's
    /// relay, when the triggers write to an outbox; server clock).
    pub activity_job_queued_after_s: Option<f64>,
    /// Behind the backlog, commit → a worker claimed that job (server clock).
    pub activity_job_claimed_after_s: Option<f64>,
    /// The same two on the idle worker.
    pub idle_activity_job_queued_after_s: Option<f64>,
    /// See `idle_activity_job_queued_after_s`.
    pub idle_activity_job_claimed_after_s: Option<f64>,
    /// `new_activity_room_ready_s / idle_room_ready_s`.
    pub ratio_to_idle: f64,
    /// Users of the mass enrolment behind which the second activity was created.
    pub backlog_users: u64,
    /// Backlog jobs not done when the activity committed: due or running in the queue, or
    /// still in the trigger set's outbox (the workers had started on them already).
    pub backlog_jobs: i64,
    /// Of those, still not done (queued, running or in the outbox) when the room was ready.
    pub backlog_jobs_pending_at_room_ready: i64,
    /// Every job not done then, counted the same way (the backlog's fan-in syncs included).
    pub jobs_pending_at_room_ready: i64,
    /// Seconds from the enrolment's commit to the activity's commit.
    pub activity_commit_after_backlog_s: f64,
    /// Members of each new room besides the bot (the teacher).
    pub room_members: usize,
    /// The target for the room behind the backlog.
    pub target_s: f64,
    /// Whether `new_activity_room_ready_s` is under the target.
    pub meets_target: bool,
    /// Jobs that went dead during the run.
    pub dead_jobs: i64,
}

/// Runs the measurement on a set-up run (workers not started yet); stops its workers at the end.
pub async fn measure(
    run: &mut Run,
    spec: &NewActivitySpec,
    say: &dyn Fn(&str),
) -> anyhow::Result<NewActivityFigures> {
    anyhow::ensure!(spec.backlog >= 2, "the backlog needs at least 2 jobs");
    let users = spec.backlog / 2;
    run.start_workers(&spec.workers).await?;
    run.install_triggers().await?;
    run.sync_everything().await?;
    let mut all = run.truth_all().await?;
    settle(run, &mut all, spec.deadline, "initial convergence").await?;

    let mut candidates = run
        .site
        .empty_courses_with_visible_rooms()
        .await?
        .into_iter()
        .filter(|(_, r)| r.len() == 1);
    let (mass_course, _) = candidates
        .next()
        .context("no empty course with exactly one visible chat room")?;
    let (course, course_rooms) = candidates
        .next()
        .context("no second empty course with exactly one visible chat room")?;
    let ids = run.site.active_user_ids(users + 1).await?;
    anyhow::ensure!(ids.len() == users + 1, "only {} active users", ids.len());
    let (students, teacher) = ids.split_at(users);
    let roles = run.site.fixture.roles;
    run.site
        .enrol_many(&run.pool, &[(course, teacher[0], roles.editingteacher)])
        .await?;
    let mut t = run.comparator.truth(&course_rooms).await?;
    settle(run, &mut t, spec.deadline, "teacher enrolled").await?;

    // 1. Idle: nothing else queued.
    let (cmid, committed) = add_activity(run, course, "New activity (idle)").await?;
    let idle = wait_ready(run, cmid, committed, spec.deadline).await?;
    let idle_job = job_times(run, cmid, committed.1).await?;
    say(&format!(
        "new activity on an idle worker: room ready with its teacher in {:.3} s",
        idle.s
    ));
    let mut t = run.comparator.truth(&course_rooms).await?;
    settle(run, &mut t, spec.deadline, "after the idle activity").await?;

    // 2. Behind the backlog: the mass enrolment commits, then at once the teacher's activity.
    say(&format!(
        "mass enrolment of {users} users into course {mass_course} ({} backlog jobs), then a new activity in course {course}",
        users * 2
    ));
    let backlog_users = rcjobs_moodle::fixture::mass_enrol(
        &run.pool,
        &run.site.prefix,
        mass_course,
        &UserSet::Ids(students.to_vec()),
        "student",
    )
    .await?;
    let enrolled = Instant::now();
    let (backlog_jobs, _) = pending_of(run, &BACKLOG_KINDS).await?;
    let (cmid, committed) = add_activity(run, course, "New activity (behind a backlog)").await?;
    let behind = wait_ready(run, cmid, committed, spec.deadline).await?;
    let behind_job = job_times(run, cmid, committed.1).await?;
    say(&format!(
        "new activity behind {backlog_jobs} pending fan-out jobs: room ready with its teacher in {:.3} s ({} backlog jobs still pending then; its job queued after {}, claimed after {}; target < {TARGET_S} s)",
        behind.s,
        behind.backlog_pending,
        shown(behind_job.0),
        shown(behind_job.1),
    ));
    let dead_jobs = super::progress::dead_jobs(&run.pool).await?;
    run.stop_workers().await?;
    Ok(NewActivityFigures {
        idle_room_ready_s: idle.s,
        new_activity_room_ready_s: behind.s,
        activity_job_queued_after_s: behind_job.0,
        activity_job_claimed_after_s: behind_job.1,
        idle_activity_job_queued_after_s: idle_job.0,
        idle_activity_job_claimed_after_s: idle_job.1,
        ratio_to_idle: (behind.s / idle.s.max(1e-3) * 10.0).round() / 10.0,
        backlog_users,
        backlog_jobs,
        backlog_jobs_pending_at_room_ready: behind.backlog_pending,
        jobs_pending_at_room_ready: behind.pending,
        activity_commit_after_backlog_s: secs(committed.0 - enrolled),
        room_members: behind.members,
        target_s: TARGET_S,
        meets_target: behind.s < TARGET_S,
        dead_jobs,
    })
}

fn shown(s: Option<f64>) -> String {
    s.map_or_else(|| "?".into(), |s| format!("{s:.3} s"))
}

/// Waits (untimed) until `truths` equal the chat server and no due job is left.
async fn settle(
    run: &Run,
    truths: &mut [RoomTruth],
    deadline: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let r = run
        .wait_converged(
            what,
            truths,
            Instant::now(),
            deadline,
            Duration::from_millis(100),
            true,
        )
        .await?;
    anyhow::ensure!(
        r.at.is_some(),
        "{what}: not settled within {deadline:?}: {:?}",
        r.mismatches
    );
    Ok(())
}

/// Jobs not done yet: (of `kinds`, of every kind), due or running in the queue plus, where
/// the trigger set captures into an outbox in the Moodle database (`{prefix}rcjobs_outbox`),
/// the rows still waiting there to be relayed into the queue. One statement, so that the
/// figures describe one moment.
async fn pending_of(run: &Run, kinds: &[&str]) -> anyhow::Result<(i64, i64)> {
    let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
    let prefix = &run.site.prefix;
    let outbox: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(prefix.apply("{prefix}rcjobs_outbox"))
        .fetch_one(&run.pool)
        .await?;
    let queued = "SELECT kind FROM rcjobs.job
                   WHERE state = 'running' OR (state IN ('ready', 'blocked') AND run_at <= now())";
    let sql = match outbox {
        // A row is one job, or (statement-level capture, kind `rcjobs:<table>:ins|del`) the
        // captured rows of one statement in `jobs`, each of which the relay turns into the
        // job its table's row trigger used to enqueue (triggers_change_capture.sql).
        Some(_) => format!(
            "SELECT count(*) FILTER (WHERE kind = ANY($1)), count(*) FROM ({queued}
               UNION ALL
               SELECT CASE WHEN o.kind LIKE 'rcjobs:user\\_enrolments:%' THEN 'enrolment'
                           WHEN o.kind = 'rcjobs:role_assignments:ins' THEN 'enrol_role_assign'
                           WHEN o.kind = 'rcjobs:role_assignments:del' THEN 'enrol_role_unassign'
                           ELSE o.kind END
                 FROM {} o
                CROSS JOIN LATERAL jsonb_array_elements(
                  CASE WHEN jsonb_typeof(o.jobs) = 'array' THEN o.jobs ELSE '[null]'::jsonb END) AS x) AS p",
            prefix.apply("{prefix}rcjobs_outbox")
        ),
        None => {
            format!("SELECT count(*) FILTER (WHERE kind = ANY($1)), count(*) FROM ({queued}) AS p")
        }
    };
    // The prefix is validated by `Prefix::new`; values are bound.
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&kinds)
        .fetch_one(&run.pool)
        .await?)
}

/// Adds a chat activity to `course` in one transaction, in the order Moodle's
/// `add_moduleinfo()` writes it: the `course_modules` row with instance 0, the module's
/// `rocketchat` row (the plugin's default role mapping: editing teachers moderate, students and
/// teachers are members), the module context, then the instance linked. Returns the new cmid
/// and the commit's instant, on this process's clock and on the server's.
async fn add_activity(
    run: &Run,
    course: i64,
    name: &str,
) -> anyhow::Result<(i64, (Instant, DateTime<Utc>))> {
    let prefix = &run.site.prefix;
    let sql = |s: &str| sqlx::AssertSqlSafe(prefix.apply(s));
    let roles = run.site.fixture.roles;
    let now = rcjobs_moodle::unix_now();
    let mut tx = run.pool.begin().await?;
    let cmid: i64 = sqlx::query_scalar(sql(
        "INSERT INTO {prefix}course_modules (id, course, module, instance, section, added, visible,
                                             visibleoncoursepage, visibleold, deletioninprogress)
         SELECT (SELECT coalesce(max(id), 0) + 1 FROM {prefix}course_modules), $1,
                (SELECT id FROM {prefix}modules WHERE name = 'rocketchat'), 0, 0, $2, 1, 1, 1, 0
         RETURNING id",
    ))
    .bind(course)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .context("course_modules insert")?;
    let instance: i64 = sqlx::query_scalar(sql(
        "INSERT INTO {prefix}rocketchat (id, course, name, timecreated, timemodified, intro, introformat,
                                         rocketchatid, displaytype, embbeded, moderatorroles, userroles)
         SELECT (SELECT coalesce(max(id), 0) + 1 FROM {prefix}rocketchat), $1, $2, $3, $3, '', 1,
                '', 1, 1, $4, $5
         RETURNING id",
    ))
    .bind(course)
    .bind(name)
    .bind(now)
    .bind(roles.editingteacher.to_string())
    .bind(format!("{},{}", roles.student, roles.teacher))
    .fetch_one(&mut *tx)
    .await
    .context("rocketchat insert")?;
    sqlx::query(sql(
        "INSERT INTO {prefix}context (id, contextlevel, instanceid, path, depth, locked)
         SELECT n.id, 70, $1, c.path || '/' || n.id, c.depth + 1, 0
           FROM {prefix}context c, (SELECT max(id) + 1 AS id FROM {prefix}context) n
          WHERE c.contextlevel = 50 AND c.instanceid = $2",
    ))
    .bind(cmid)
    .bind(course)
    .execute(&mut *tx)
    .await
    .context("module context")?;
    sqlx::query(sql(
        "UPDATE {prefix}course_modules SET instance = $2 WHERE id = $1",
    ))
    .bind(cmid)
    .bind(instance)
    .execute(&mut *tx)
    .await
    .context("linking the instance")?;
    tx.commit().await?;
    let local = Instant::now();
    let server: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&run.pool)
        .await?;
    Ok((cmid, (local, server)))
}

/// When the room job of `cmid` (the `restore` the link enqueues) reached the queue and when a
/// worker first claimed it, in seconds after `committed` (server clock).
async fn job_times(
    run: &Run,
    cmid: i64,
    committed: DateTime<Utc>,
) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let (queued, claimed): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT min(enqueued_at), min(started_at) FROM (
             SELECT enqueued_at, started_at FROM rcjobs.job
              WHERE kind = 'restore' AND payload->>'cmid' = $1::text
             UNION ALL
             SELECT enqueued_at, started_at FROM rcjobs.job_history
              WHERE kind = 'restore' AND payload->>'cmid' = $1::text) AS j",
    )
    .bind(cmid)
    .fetch_one(&run.pool)
    .await?;
    // Enqueued inside the activity's own transaction (triggers writing to the queue), the
    // job's enqueued_at is that transaction's start, before the commit: 0, not negative.
    let after = |t: Option<DateTime<Utc>>| {
        t.and_then(|t| (t - committed).num_microseconds())
            .map(|us| secs(Duration::from_micros(u64::try_from(us).unwrap_or(0))))
    };
    Ok((after(queued), after(claimed)))
}

/// What [`wait_ready`] saw.
struct Ready {
    s: f64,
    backlog_pending: i64,
    pending: i64,
    members: usize,
}

/// Polls until the room of `cmid` exists and equals Moodle (the teacher in it as moderator):
/// the sync state every 5 ms until the worker has recorded a room, then the simulator every
/// 10 ms (its snapshot copies the whole server, so not more often).
async fn wait_ready(
    run: &Run,
    cmid: i64,
    committed: (Instant, DateTime<Utc>),
    deadline: Duration,
) -> anyhow::Result<Ready> {
    let committed = committed.0;
    let room = run
        .site
        .moodle
        .room_by_cmid(cmid)
        .await?
        .with_context(|| format!("course module {cmid} is not a live chat activity"))?;
    let mut truths = run.comparator.truth(std::slice::from_ref(&room)).await?;
    let desired = truths[0].desired.clone();
    anyhow::ensure!(
        desired.len() == 1 && desired.values().all(|m| *m),
        "the new activity of course {} should want its teacher alone, as moderator: {desired:?}",
        room.course_id
    );
    loop {
        if truths[0].room_id.is_none() {
            run.comparator.resolve_rooms(&mut truths).await?;
        }
        if truths[0].room_id.is_some() {
            let m = run.compare(&mut truths).await?;
            if m.total() == 0 {
                let s = secs(committed.elapsed());
                let (backlog_pending, pending) = pending_of(run, &BACKLOG_KINDS).await?;
                return Ok(Ready {
                    s,
                    backlog_pending,
                    pending,
                    members: desired.len(),
                });
            }
        }
        anyhow::ensure!(
            committed.elapsed() < deadline,
            "the room of the new activity (cm {cmid}) was not ready within {deadline:?}"
        );
        let poll = if truths[0].room_id.is_some() { 10 } else { 5 };
        tokio::time::sleep(Duration::from_millis(poll)).await;
    }
}

/// A measurement in a run of its own (fresh database, site, simulator and workers).
#[derive(Debug, Clone)]
pub struct NewActivityRun {
    /// Database created (and dropped at the end unless `keep_database`).
    pub database: String,
    /// Keep the database at the end.
    pub keep_database: bool,
    /// Simulated chat latency per call.
    pub latency: Duration,
    /// Draw progress bars.
    pub progress: bool,
    /// What to measure.
    pub spec: NewActivitySpec,
}

/// Sets up a site big enough for the backlog, measures, tears down.
pub async fn run(
    settings: &crate::cmd::config::Settings,
    r: &NewActivityRun,
    say: &dyn Fn(&str),
) -> anyhow::Result<NewActivityFigures> {
    let needed = r.spec.backlog / 2 + 1;
    let spec = super::run::RunSpec {
        database: r.database.clone(),
        fixture: rcjobs_moodle::fixture::FixtureSpec {
            // A few % of generated users are deleted or suspended; leave room for them.
            users: u32::try_from(needed + needed / 10 + 100)?,
            courses: 4,
            seed: 17,
            enrolments_per_user: 1,
            // Two courses with exactly one visible room are needed; some have two or hide one.
            empty_courses: 16,
            now: rcjobs_moodle::unix_now(),
        },
        sim: super::chat::SimOptions {
            latency: r.latency,
            ..super::chat::SimOptions::default()
        },
        progress: r.progress,
    };
    say(&format!(
        "new activity: setting up a site for a backlog of {} jobs, simulator latency {} ms",
        r.spec.backlog,
        r.latency.as_millis()
    ));
    let mut run = Run::setup(settings, &spec).await?;
    let result = measure(&mut run, &r.spec, say).await;
    run.teardown(!r.keep_database).await?;
    result
}
