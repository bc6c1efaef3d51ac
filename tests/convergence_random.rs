//! Randomized convergence with every default on: seeded Moodle changes written the way
//! Moodle writes them (one transaction per change, one statement per row, in the order of
//! `enrol_user()` / `unenrol_user()`, moodle.md §3), captured by the change-capture triggers;
//! three `rcjobs worker` processes with the periodic reconcile on (period shortened to 30 s),
//! one SIGKILLed every 10-20 s and restarted; the simulator failing 5 % of calls throughout.
//!
//! Judged by Moodle's truth computed with the test's own SQL (`support::truth`): within
//! `RCJOBS_CONVERGE_BOUND_SECS` (default 90 s) of the last change (or of the last enrolment
//! window a change set closing, whichever is later) the chat server equals
//! Moodle, no job is dead, none lost, none stuck. Prints `convergence-figures {json}`:
//! changes, kills, faults injected, time to converge, mismatches.
//!
//! Shared test server, nothing restarted. Sized for CI (`RCJOBS_CONVERGE_CHANGES`, default
//! 300 over about a minute; `RCJOBS_CONVERGE_SEED` picks another sequence).
#![allow(clippy::unwrap_used)]

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rcjobs_moodle::fixture::{FixtureSpec, FixtureSummary};
use rcjobs_testkit::TestDb;
use serde_json::json;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use support::procs::{WorkerProc, WorkerSpec};
use support::{site, truth};

const WORKERS: usize = 3;
const BOT: &str = "rcjobs.bot";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One Moodle change, as a kind name for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Change {
    Enrol,
    Unenrol,
    RoleSwap,
    SuspendEnrolment,
    SuspendUser,
    WindowCloses,
    BulkEnrol,
}

/// A job still in `rcjobs.job` at the end: id, kind, state, attempt, seconds until due,
/// dedup key, last error.
type LeftJob = (
    i64,
    String,
    String,
    i32,
    f64,
    Option<String>,
    Option<String>,
);

/// What a change leaves behind that the judge must wait for.
#[derive(Debug, Default)]
struct Horizon {
    /// The latest enrolment end set by a change (unix seconds).
    window_end: i64,
}

/// Writes one random change in its own transaction, statement by statement as Moodle does.
/// Returns what it did, or None when the draw found nothing to change.
async fn change(
    pool: &PgPool,
    fx: &FixtureSummary,
    rng: &mut StdRng,
    horizon: &mut Horizon,
) -> Option<Change> {
    let now = rcjobs_moodle::unix_now();
    let user = rng.random_range(fx.first_user_id..=fx.last_user_id);
    let course = fx.course_ids[rng.random_range(0..fx.course_ids.len())];
    let (student, teacher) = (fx.roles.student, fx.roles.editingteacher);
    let mut tx = pool.begin().await.unwrap();
    let draw = rng.random_range(0..100);
    let did = if draw < 2 {
        // a cohort or flat-file sync: 60 users enrolled in one transaction, row by row
        let first = rng.random_range(fx.first_user_id..=fx.last_user_id - 60);
        let mut n = 0;
        for u in first..first + 60 {
            let ue: Option<i64> = sqlx::query_scalar(
                "INSERT INTO mdl_user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
                 SELECT 0, e.id, $2, $3, 0, 2, $3, $3 FROM mdl_enrol e
                  WHERE e.courseid = $1 AND e.enrol = 'manual' ORDER BY e.id LIMIT 1
                 ON CONFLICT (enrolid, userid) DO NOTHING RETURNING id",
            )
            .bind(course)
            .bind(u)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
            if ue.is_some() {
                n += 1;
                sqlx::query(
                    "INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                     SELECT $3, c.id, $2, $4, 2, '', 0, 0 FROM mdl_context c WHERE c.contextlevel = 50 AND c.instanceid = $1",
                )
                .bind(course)
                .bind(u)
                .bind(student)
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
        }
        (n > 0).then_some(Change::BulkEnrol)
    } else if draw < 30 {
        // enrol_user(): user_enrolments row, then the role on the course context
        let role = if rng.random_bool(0.15) {
            teacher
        } else {
            student
        };
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO mdl_user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
             SELECT 0, e.id, $2, $3, 0, 2, $3, $3 FROM mdl_enrol e
              WHERE e.courseid = $1 AND e.enrol = 'manual' ORDER BY e.id LIMIT 1
             ON CONFLICT (enrolid, userid) DO NOTHING RETURNING id",
        )
        .bind(course)
        .bind(user)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .unwrap();
        if inserted.is_some() {
            sqlx::query(
                "INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                 SELECT $3, c.id, $2, $4, 2, '', 0, 0 FROM mdl_context c WHERE c.contextlevel = 50 AND c.instanceid = $1",
            )
            .bind(course)
            .bind(user)
            .bind(role)
            .bind(now)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        inserted.map(|_| Change::Enrol)
    } else if draw < 55 {
        // unenrol_user(): the enrolment row goes; on the last enrolment in the course, every
        // role of the user in the course context and below goes after it
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT ue.id, ue.userid, e.courseid FROM mdl_user_enrolments ue JOIN mdl_enrol e ON e.id = ue.enrolid
              WHERE e.courseid = $1 ORDER BY random() LIMIT 1",
        )
        .bind(course)
        .fetch_optional(&mut *tx)
        .await
        .unwrap();
        if let Some((ue, u, c)) = row {
            sqlx::query("DELETE FROM mdl_user_enrolments WHERE id = $1")
                .bind(ue)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(
                "DELETE FROM mdl_role_assignments ra USING mdl_context cc, mdl_context x
                  WHERE cc.contextlevel = 50 AND cc.instanceid = $2
                    AND (x.id = cc.id OR x.path LIKE cc.path || '/%') AND ra.contextid = x.id AND ra.userid = $1
                    AND NOT EXISTS (SELECT 1 FROM mdl_user_enrolments o JOIN mdl_enrol oe ON oe.id = o.enrolid
                                     WHERE oe.courseid = $2 AND o.userid = $1)",
            )
            .bind(u)
            .bind(c)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        row.map(|_| Change::Unenrol)
    } else if draw < 72 {
        // role_unassign() then role_assign(): student <-> editing teacher on the course
        let ra: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT ra.id, ra.userid, ra.contextid, ra.roleid FROM mdl_role_assignments ra
               JOIN mdl_context c ON c.id = ra.contextid AND c.contextlevel = 50 AND c.instanceid = $1
              WHERE ra.roleid IN ($2, $3) ORDER BY random() LIMIT 1",
        )
        .bind(course)
        .bind(student)
        .bind(teacher)
        .fetch_optional(&mut *tx)
        .await
        .unwrap();
        if let Some((id, u, ctx, role)) = ra {
            sqlx::query("DELETE FROM mdl_role_assignments WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .unwrap();
            let other = if role == student { teacher } else { student };
            sqlx::query(
                "INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                 SELECT $1, $2, $3, $4, 2, '', 0, 0
                  WHERE NOT EXISTS (SELECT 1 FROM mdl_role_assignments WHERE roleid = $1 AND contextid = $2 AND userid = $3)",
            )
            .bind(other)
            .bind(ctx)
            .bind(u)
            .bind(now)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        ra.map(|_| Change::RoleSwap)
    } else if draw < 84 {
        let n = sqlx::query(
            "UPDATE mdl_user_enrolments SET status = 1 - status, timemodified = $2
              WHERE id = (SELECT ue.id FROM mdl_user_enrolments ue JOIN mdl_enrol e ON e.id = ue.enrolid
                           WHERE e.courseid = $1 ORDER BY random() LIMIT 1)",
        )
        .bind(course)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
        (n > 0).then_some(Change::SuspendEnrolment)
    } else if draw < 92 {
        sqlx::query(
            "UPDATE mdl_user SET suspended = 1 - suspended, timemodified = $2 WHERE id = $1",
        )
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        Some(Change::SuspendUser)
    } else {
        // an enrolment whose window closes in a few seconds: no event when it does; the job
        // the trigger schedules for timeend (or the periodic reconcile) must catch it
        let end = now + rng.random_range(3..20);
        horizon.window_end = horizon.window_end.max(end);
        let n = sqlx::query(
            "UPDATE mdl_user_enrolments SET timeend = $2, timemodified = $3
              WHERE id = (SELECT ue.id FROM mdl_user_enrolments ue JOIN mdl_enrol e ON e.id = ue.enrolid
                           WHERE e.courseid = $1 AND ue.timeend = 0 ORDER BY random() LIMIT 1)",
        )
        .bind(course)
        .bind(end)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
        (n > 0).then_some(Change::WindowCloses)
    };
    tx.commit().await.unwrap();
    did
}

/// The workers: SIGKILLs one at random when `next_kill` has passed, restarts the killed
/// one 1.5 s later, and panics if one exits by itself.
struct Fleet {
    spec: WorkerSpec,
    procs: Vec<WorkerProc>,
    restart_at: Vec<Option<Instant>>,
    next_kill: Instant,
    kills: u32,
}

impl Fleet {
    fn tick(&mut self, rng: &mut StdRng) {
        let now = Instant::now();
        for i in 0..self.procs.len() {
            match self.restart_at[i] {
                Some(at) if at <= now => {
                    self.procs[i].start(&self.spec);
                    self.restart_at[i] = None;
                }
                Some(_) => {}
                None => assert!(
                    self.procs[i].is_running(),
                    "worker {} exited by itself:\n{}",
                    self.procs[i].name,
                    self.procs[i].log_tail()
                ),
            }
        }
        if now >= self.next_kill && self.restart_at.iter().all(Option::is_none) {
            let i = rng.random_range(0..self.procs.len());
            self.procs[i].sigkill();
            self.kills += 1;
            self.restart_at[i] = Some(now + Duration::from_millis(1500));
            self.next_kill = now + Duration::from_secs(rng.random_range(10..=20));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_moodle_changes_converge_under_faults_kills_and_the_periodic_reconcile() {
    let seed = env_num("RCJOBS_CONVERGE_SEED", 20_261_204);
    let target = env_num("RCJOBS_CONVERGE_CHANGES", 300);
    let bound = Duration::from_secs(env_num("RCJOBS_CONVERGE_BOUND_SECS", 90));
    let db = TestDb::new().await;
    let pool = site::test_pool(&db.url, 4).await;
    site::migrate_all(&pool).await;
    site::install_job_audit(&pool).await;
    let spec = FixtureSpec {
        enrolments_per_user: 2,
        ..FixtureSpec::new(600, 8, seed)
    };
    let site = site::create(&pool, &spec).await;
    site.install_triggers().await;
    let sim = site::start_sim(&site, |c| c.fail_rate = 0.05).await;
    let logs = support::log_dir("convergence");
    let mut wspec = WorkerSpec::for_sim(&db.url, &sim, logs.clone());
    wspec.concurrency = 8;
    // Shortened, never off: the reconcile runs several times in the test. The durable retry
    // base likewise (Moodle's 60 s would make the test mostly wait).
    wspec.args.extend(
        ["--reconcile-interval", "30", "--retry-base", "5"]
            .into_iter()
            .map(String::from),
    );
    let mut fleet = Fleet {
        procs: (0..WORKERS)
            .map(|i| WorkerProc::spawn(&wspec, &format!("w{i}")))
            .collect(),
        spec: wspec,
        restart_at: vec![None; WORKERS],
        next_kill: Instant::now() + Duration::from_secs(10),
        kills: 0,
    };
    for w in &mut fleet.procs {
        w.wait_registered(&pool, Duration::from_secs(60)).await;
    }
    let mut rng = StdRng::seed_from_u64(seed);

    // First sync of every room (creates them), faults and kills already on.
    let started = Instant::now();
    site.sync_everything().await;
    let initial = loop {
        fleet.tick(&mut rng);
        let d = truth::diff(&pool, &sim, BOT).await;
        if d.total() == 0 {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "initial sync did not converge within {bound:?}: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // The changes, about five a second.
    let mut made: std::collections::BTreeMap<String, u64> = Default::default();
    let mut n = 0u64;
    let mut horizon = Horizon::default();
    let load = Instant::now();
    while n < target {
        fleet.tick(&mut rng);
        if let Some(c) = change(&pool, &site.fixture, &mut rng, &mut horizon).await {
            *made.entry(format!("{c:?}")).or_default() += 1;
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last_change = Instant::now();
    let last_change_unix = rcjobs_moodle::unix_now();
    let at_last = truth::diff(&pool, &sim, BOT).await;

    // Converged: the chat server equals Moodle and nothing is left to run, once every
    // enrolment window a change set has closed (no event marks that moment).
    let (converged, last) = loop {
        fleet.tick(&mut rng);
        let windows_closed = rcjobs_moodle::unix_now() > horizon.window_end;
        let d = truth::diff(&pool, &sim, BOT).await;
        let (pending, _) = site::pending(&pool).await.unwrap();
        if d.total() == 0 && pending == 0 && windows_closed {
            break (last_change.elapsed(), d);
        }
        if rcjobs_moodle::unix_now()
            > horizon.window_end.max(last_change_unix) + bound.as_secs() as i64
        {
            break (last_change.elapsed(), d);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let f = site::fates(&pool).await;
    let snap = sim.snapshot();
    let figures = json!({
        "seed": seed,
        "rooms": last.rooms,
        "memberships": last.desired,
        "changes": n,
        "changes_by_kind": made,
        "change_phase_s": last_change.duration_since(load).as_secs_f64(),
        "workers": WORKERS,
        "sigkills": fleet.kills,
        "chat_calls": snap.total_requests,
        "faults_injected": snap.faults_injected,
        "initial_sync_s": initial.as_secs_f64(),
        "mismatches_at_last_change": at_last.total(),
        "converge_after_last_change_s": converged.as_secs_f64(),
        "mismatches_at_end": last.total(),
        "last_window_closes_after_last_change_s": horizon.window_end - last_change_unix,
        "jobs_enqueued": f.enqueued,
        "dead": f.dead.len(),
        "lost": f.lost,
        "stuck": f.unfinished,
        "scheduled": f.scheduled,
    });
    println!("convergence-figures {figures}");
    let left: Vec<LeftJob> = sqlx::query_as(
        "SELECT id, kind, state, attempt, extract(epoch FROM run_at - now())::float8, dedup_key, last_error
           FROM rcjobs.job ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for j in left.iter().filter(|j| j.3 > 0 || j.4 <= 0.0) {
        println!("convergence: left to run {j:?}");
    }
    assert_eq!(
        last.total(),
        0,
        "chat differs from Moodle {bound:?} after the last change: {last:?}"
    );
    assert!(f.dead.is_empty(), "dead jobs: {:?}", f.dead);
    assert_eq!(f.lost, 0, "jobs lost");
    assert_eq!(f.unfinished, 0, "jobs stuck");
    assert!(snap.faults_injected > 0, "the fault injection did not fire");
    assert!(fleet.kills >= 3, "only {} kills", fleet.kills);
    for w in &mut fleet.procs {
        w.sigkill();
    }
    let _ = std::fs::remove_dir_all(&logs);
}
