//! The chaos suite: three `rcjobs worker` processes on a mixed workload of Moodle changes
//! (50,000 jobs by default; `RCJOBS_CHAOS_JOBS` scales it) while the test SIGKILLs random
//! workers and restarts them, restarts PostgreSQL once (`pg_ctl restart -m immediate`),
//! terminates worker backends with `pg_terminate_backend`, and the simulator answers 5 % of
//! calls with a 500 and holds some answers past the client's 30 s request timeout.
//!
//! At the end: no job lost (every enqueued id, recorded by an audit trigger in the same
//! transaction as the insert, is finished), none stuck (nothing ready/running/blocked), none
//! dead except the deliberately malformed payloads (dead with a reason), and the chat server
//! equals Moodle (0 mismatches). It prints its figures as `chaos-figures {json}`.
//!
//! Runs on a private PostgreSQL cluster (initdb in a temp dir, a free loopback port) so the
//! restart and the backend kills never touch the shared server. Bounded: the workload phase
//! fails at `RCJOBS_CHAOS_DEADLINE_SECS` (default 300 s + 1 s per 12 jobs), the drain 240 s
//! later (retries back off 60 s then 120 s: the worker's default policy, not settable from its
//! CLI). Measured in a debug build on a busy 2-core box: 5,000 jobs ≈ 6 min; the default
//! 50,000 takes far longer there (CI may set `RCJOBS_CHAOS_JOBS`).
#![allow(clippy::unwrap_used)]

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rcjobs_moodle::fixture::{FixtureSpec, FixtureSummary};
use serde_json::json;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::pg_cluster::PgCluster;
use support::procs::{WorkerProc, WorkerSpec};
use support::site;

const WORKERS: usize = 3;
/// Kinds the workers enqueue themselves (fan-in of user-scoped changes, periodic sync).
const FOLLOW_UP_KINDS: &[&str] = &["synchronize_group", "reconcile_all", "restore"];

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Jobs enqueued by producers (triggers, direct enqueues), not by workers.
async fn workload_jobs(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM rcjobs_test.enqueued WHERE kind <> ALL($1)")
        .bind(FOLLOW_UP_KINDS)
        .fetch_one(pool)
        .await
}

/// Moodle changes in batches, one transaction each, the way Moodle's own writes arrive:
/// enrolments (user_enrolments + role_assignments), unenrolments, role changes between
/// student and editing teacher, suspensions toggled, plus direct SQL enqueues of
/// `synchronize_user_everywhere`. Returns (batches committed, batches failed and retried).
async fn generate(
    pool: PgPool,
    fx: FixtureSummary,
    target: i64,
    done: Arc<AtomicBool>,
    made: Arc<AtomicI64>,
) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(0xc4a05);
    let (mut ok, mut failed) = (0u64, 0u64);
    let courses = fx.course_ids.clone();
    let (student, teacher) = (fx.roles.student, fx.roles.editingteacher);
    loop {
        match workload_jobs(&pool).await {
            Ok(n) => {
                made.store(n, Ordering::Relaxed);
                if n >= target {
                    break;
                }
            }
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let op = rng.random_range(0..100);
        let now = rcjobs_moodle::unix_now();
        let r = if op < 35 {
            // enrol 80 (user, course) pairs as students on the manual instance
            let users: Vec<i64> = (0..80)
                .map(|_| rng.random_range(fx.first_user_id..=fx.last_user_id))
                .collect();
            let cs: Vec<i64> = (0..80)
                .map(|_| courses[rng.random_range(0..courses.len())])
                .collect();
            sqlx::query(
                "WITH input AS (SELECT DISTINCT ON (c, u) c, u FROM unnest($1::bigint[], $2::bigint[]) AS t(c, u)),
                 inst AS (SELECT DISTINCT ON (e.courseid) e.courseid, e.id FROM mdl_enrol e
                           WHERE e.enrol = 'manual' AND e.courseid IN (SELECT c FROM input) ORDER BY e.courseid, e.id),
                 ctx AS (SELECT instanceid AS course, id FROM mdl_context WHERE contextlevel = 50 AND instanceid IN (SELECT c FROM input)),
                 ue AS (INSERT INTO mdl_user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
                        SELECT 0, inst.id, i.u, $3, 0, 2, $3, $3 FROM input i JOIN inst ON inst.courseid = i.c
                        ON CONFLICT (enrolid, userid) DO NOTHING RETURNING userid, enrolid)
                 INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                 SELECT $4, ctx.id, i.u, $3, 2, '', 0, 0 FROM input i JOIN ctx ON ctx.course = i.c
                  WHERE NOT EXISTS (SELECT 1 FROM mdl_role_assignments x WHERE x.userid = i.u AND x.contextid = ctx.id AND x.roleid = $4)",
            )
            .bind(&cs)
            .bind(&users)
            .bind(now)
            .bind(student)
            .execute(&pool)
            .await
            .map(|_| ())
        } else if op < 65 {
            // unenrol 70 manual enrolments: role assignments at the course, then the enrolment
            sqlx::query(
                "WITH v AS (SELECT ue.id, ue.userid, e.courseid FROM mdl_user_enrolments ue JOIN mdl_enrol e ON e.id = ue.enrolid
                             WHERE e.enrol = 'manual' AND e.courseid = ANY($1) ORDER BY random() LIMIT 70),
                 ra AS (DELETE FROM mdl_role_assignments ra USING v, mdl_context ctx
                         WHERE ctx.contextlevel = 50 AND ctx.instanceid = v.courseid AND ra.contextid = ctx.id AND ra.userid = v.userid
                         RETURNING 1)
                 DELETE FROM mdl_user_enrolments ue USING v WHERE ue.id = v.id",
            )
            .bind(&courses)
            .execute(&pool)
            .await
            .map(|_| ())
        } else if op < 90 {
            // 60 role changes at course contexts: student <-> editing teacher
            sqlx::query(
                "WITH v AS (SELECT ra.id, ra.userid, ra.contextid, ra.roleid FROM mdl_role_assignments ra
                              JOIN mdl_context ctx ON ctx.id = ra.contextid
                             WHERE ctx.contextlevel = 50 AND ra.roleid IN ($1, $2) ORDER BY random() LIMIT 60),
                 d AS (DELETE FROM mdl_role_assignments ra USING v WHERE ra.id = v.id RETURNING v.userid, v.contextid, v.roleid)
                 INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                 SELECT CASE WHEN d.roleid = $1 THEN $2 ELSE $1 END, d.contextid, d.userid, $3, 2, '', 0, 0 FROM d
                 ON CONFLICT DO NOTHING",
            )
            .bind(student)
            .bind(teacher)
            .bind(now)
            .execute(&pool)
            .await
            .map(|_| ())
        } else if op < 96 {
            // suspend / unsuspend 15 users
            sqlx::query(
                "UPDATE mdl_user SET suspended = 1 - suspended, timemodified = $3
                  WHERE id IN (SELECT id FROM mdl_user WHERE deleted = 0 AND id BETWEEN $1 AND $2 ORDER BY random() LIMIT 15)",
            )
            .bind(fx.first_user_id)
            .bind(fx.last_user_id)
            .bind(now)
            .execute(&pool)
            .await
            .map(|_| ())
        } else {
            // direct SQL enqueues (a non-Rust producer): re-check 30 users everywhere
            let users: Vec<i64> = (0..30)
                .map(|_| rng.random_range(fx.first_user_id..=fx.last_user_id))
                .collect();
            sqlx::query(
                "SELECT rcjobs.enqueue('synchronize_user_everywhere', jsonb_build_object('userid', u),
                                       exclusion_key => 'user:' || u)
                   FROM unnest($1::bigint[]) AS u",
            )
            .bind(&users)
            .execute(&pool)
            .await
            .map(|_| ())
        };
        match r {
            Ok(()) => ok += 1,
            Err(_) => {
                // The server restarted or our backend was terminated: the batch rolled back
                // (or committed and lost its answer); either way the audit counts what landed.
                failed += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    (ok, failed)
}

/// Payloads the handlers must refuse: they go dead at once with a reason.
async fn enqueue_malformed(pool: &PgPool) -> Vec<i64> {
    let bad = [
        ("enrolment", json!({"courseid": "not-a-number"})),
        ("enrolment", json!({"courseid": 3, "unexpected": true})),
        (
            "synchronize_user_everywhere",
            json!({"userid": {"nested": 1}}),
        ),
        (
            "enrol_role_assign",
            json!({"roleid": 5, "context": "not-an-object", "userid": 3}),
        ),
        ("recyclebin", json!({"action": "shred", "cmid": 1})),
    ];
    let mut ids = Vec::new();
    for (kind, payload) in bad {
        let id: i64 = sqlx::query_scalar("SELECT rcjobs.enqueue($1, $2)")
            .bind(kind)
            .bind(&payload)
            .fetch_one(pool)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// The killed worker's leases: waits until each was released (swept back to the queue,
/// claimed again or finished) and returns how long after the kill that was; `None` when it
/// held none. Released, not re-run: a swept job keeps its place, so it runs at once unless
/// it is a low-priority one (a periodic reconcile at priority 10) waiting, by design, behind
/// the suite's backlog of ordinary jobs.
async fn recovery_time(
    pool: PgPool,
    worker: uuid::Uuid,
    killed_at: Instant,
) -> Option<(usize, f64)> {
    let leased: Vec<(i64, i32)> = loop {
        match sqlx::query_as(
            "SELECT id, token FROM rcjobs.job WHERE worker_id = $1 AND state = 'running'",
        )
        .bind(worker)
        .fetch_all(&pool)
        .await
        {
            Ok(v) => break v,
            Err(_) if killed_at.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(_) => return None,
        }
    };
    if leased.is_empty() {
        return None;
    }
    let ids: Vec<i64> = leased.iter().map(|l| l.0).collect();
    let tokens: Vec<i32> = leased.iter().map(|l| l.1).collect();
    loop {
        let waiting: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM unnest($1::bigint[], $2::int[]) AS l(id, token)
              WHERE EXISTS (SELECT 1 FROM rcjobs.job j
                             WHERE j.id = l.id AND j.token = l.token AND j.state = 'running')",
        )
        .bind(&ids)
        .bind(&tokens)
        .fetch_one(&pool)
        .await;
        if let Ok(0) = waiting {
            return Some((ids.len(), killed_at.elapsed().as_secs_f64()));
        }
        if killed_at.elapsed() > Duration::from_secs(300) {
            let stuck: Vec<serde_json::Value> = sqlx::query_scalar(
                "SELECT to_jsonb(j) - 'payload' - 'errors' FROM rcjobs.job j
                  JOIN unnest($1::bigint[], $2::int[]) AS l(id, token) ON j.id = l.id AND j.token = l.token
                 WHERE j.state = 'running'",
            )
            .bind(&ids)
            .bind(&tokens)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            println!(
                "chaos: leases of worker {worker}, killed 300 s ago, never released: {stuck:?}"
            );
            return Some((ids.len(), f64::INFINITY));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn terminate_worker_backends(pool: &PgPool, n: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE t) FROM (
           SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
              AND application_name <> 'rcjobs-test'
            ORDER BY random() LIMIT $1) s",
    )
    .bind(n)
    .fetch_one(pool)
    .await
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn chaos_nothing_lost_nothing_stuck_chat_equals_moodle() {
    let target = env_num("RCJOBS_CHAOS_JOBS", 50_000) as i64;
    // Measured here: 15-35 jobs/s under chaos in a debug build on a busy 2-core box.
    let deadline = Duration::from_secs(env_num(
        "RCJOBS_CHAOS_DEADLINE_SECS",
        300 + target as u64 / 12,
    ));
    let started = Instant::now();

    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let cluster = Arc::new(cluster);
    cluster.create_db("chaos");
    let url = cluster.url("chaos");
    let pool = site::test_pool(&url, 6).await;
    site::migrate_all(&pool).await;
    site::install_job_audit(&pool).await;
    let spec = FixtureSpec {
        enrolments_per_user: 2,
        ..FixtureSpec::new(2000, 60, 2026)
    };
    let site = site::create(&pool, &spec).await;
    site.install_triggers().await;
    let sim = site::start_sim(&site, |c| {
        c.fail_rate = 0.05;
        c.timeout_rate = 0.001;
        c.slow_delay = Duration::from_secs(8); // past the workers' 5 s request timeout (below)
    })
    .await;
    let logs = support::log_dir("chaos");
    let mut wspec = WorkerSpec::for_sim(&url, &sim, logs.clone());
    // Moodle's 60 s first retry would make the suite mostly wait; the retry path is the same
    // with a 2 s base. The request timeout is shortened so injected slow answers time out.
    wspec.args.extend(
        ["--retry-base", "2", "--chat-timeout", "5"]
            .into_iter()
            .map(String::from),
    );
    let mut workers: Vec<WorkerProc> = (0..WORKERS)
        .map(|i| WorkerProc::spawn(&wspec, &format!("w{i}")))
        .collect();
    let mut ids = Vec::new();
    for w in &mut workers {
        ids.push(Some(
            w.wait_registered(&pool, Duration::from_secs(60)).await,
        ));
    }
    let setup_s = started.elapsed().as_secs_f64();
    println!("chaos: setup {setup_s:.1} s; logs in {}", logs.display());

    // The workload: a first sync of every room (creates them), malformed jobs, Moodle changes.
    let load_start = Instant::now();
    site.sync_everything().await;
    let malformed = enqueue_malformed(&pool).await;
    let gen_done = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicI64::new(0));
    let gen_pool = site::test_pool(&url, 2).await;
    let generator = tokio::spawn(generate(
        gen_pool,
        site.fixture.clone(),
        target,
        gen_done.clone(),
        made.clone(),
    ));

    // Chaos until the workload is generated and nothing is due, with every disturbance seen
    // at least a few times; never past the deadline.
    let mut rng = StdRng::seed_from_u64(0xbad5eed);
    let mut kills = 0u32;
    let mut restarts_due: Vec<(usize, Instant)> = Vec::new();
    let mut recoveries = Vec::new();
    let mut terminated = 0i64;
    let mut terminations = 0u32;
    let mut pg_restart: Option<f64> = None;
    let mut next_kill = Instant::now() + Duration::from_secs(6);
    let mut next_term = Instant::now() + Duration::from_secs(3);
    let pg_restart_at = Instant::now() + Duration::from_secs(20);
    let mut last_report = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_kill {
            let alive: Vec<usize> = (0..WORKERS)
                .filter(|&i| ids[i].is_some() && workers[i].is_running())
                .collect();
            if alive.len() == WORKERS {
                let i = alive[rng.random_range(0..alive.len())];
                workers[i].sigkill();
                let killed_at = Instant::now();
                kills += 1;
                recoveries.push(tokio::spawn(recovery_time(
                    pool.clone(),
                    ids[i].take().unwrap(),
                    killed_at,
                )));
                restarts_due.push((i, killed_at + Duration::from_millis(1500)));
            }
            next_kill = now + Duration::from_secs(rng.random_range(6..10));
        }
        let (due_now, later): (Vec<_>, Vec<_>) =
            restarts_due.drain(..).partition(|(_, at)| *at <= now);
        restarts_due = later;
        for (i, _) in due_now {
            workers[i].start(&wspec);
        }
        for i in 0..WORKERS {
            if ids[i].is_none() {
                if let Some(pid) = workers[i].pid() {
                    ids[i] = sqlx::query_scalar("SELECT id FROM rcjobs.worker WHERE pid = $1 ORDER BY started_at DESC LIMIT 1")
                        .bind(pid as i32)
                        .fetch_optional(&pool)
                        .await
                        .ok()
                        .flatten();
                }
            }
            if !workers[i].is_running() && !restarts_due.iter().any(|(j, _)| *j == i) {
                panic!(
                    "worker {} exited by itself:\n{}",
                    workers[i].name,
                    workers[i].log_tail()
                );
            }
        }
        if now >= next_term {
            terminated += terminate_worker_backends(&pool, 2).await;
            terminations += 1;
            next_term = now + Duration::from_secs(rng.random_range(3..6));
        }
        if pg_restart.is_none() && now >= pg_restart_at {
            let c = cluster.clone();
            let down = tokio::task::spawn_blocking(move || c.restart("immediate"))
                .await
                .unwrap();
            pg_restart = Some(down.as_secs_f64());
            println!(
                "chaos: postgres restarted (-m immediate), {:.2} s down",
                down.as_secs_f64()
            );
        }
        let due = site::pending(&pool).await.map(|p| p.1).unwrap_or(i64::MAX);
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "chaos: t={:.0}s workload jobs {} / {target}, due or running {due}, kills {kills}, terminated {terminated}",
                load_start.elapsed().as_secs_f64(),
                made.load(Ordering::Relaxed)
            );
        }
        let enough =
            kills >= 3 && pg_restart.is_some() && terminations >= 3 && restarts_due.is_empty();
        if gen_done.load(Ordering::Relaxed) && due == 0 && enough {
            break;
        }
        assert!(
            load_start.elapsed() < deadline,
            "workload not absorbed within {deadline:?}: {} of {target} jobs generated, {due} due or running",
            made.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let chaos_s = load_start.elapsed().as_secs_f64();
    let (batches, batches_failed) = generator.await.unwrap();

    // Recovery: faults off, every worker up; retries come back on their own backoff.
    sim.set_fail_rate(0.0);
    sim.set_timeout_rate(0.0);
    for w in &mut workers {
        assert!(
            w.is_running(),
            "worker {} is down:\n{}",
            w.name,
            w.log_tail()
        );
    }
    let drain = support::wait_drained(&pool, Duration::from_secs(240)).await;
    let total_s = load_start.elapsed().as_secs_f64();

    let mut rec = Vec::new();
    for r in recoveries {
        if let Some((n, s)) = r.await.unwrap() {
            rec.push((n, s));
        }
    }
    let rec_s: Vec<f64> = rec.iter().map(|r| r.1).collect();
    let (rec_median, rec_max) = support::median_max(&rec_s);

    let state = rcjobs_worker::SyncState::new(pool.clone());
    let m = support::compare::compare(&site.moodle, &state, &sim, "rcjobs.bot").await;
    let f = site::fates(&pool).await;
    let workload = workload_jobs(&pool).await.unwrap();
    let snap = sim.snapshot();
    let retries = f
        .error_classes
        .iter()
        .find(|c| c.0 == "retry")
        .map_or(0, |c| c.1);
    let expiries = f
        .error_classes
        .iter()
        .find(|c| c.0 == "expire")
        .map_or(0, |c| c.1);
    let figures = json!({
        "jobs_enqueued": f.enqueued,
        "workload_jobs": workload,
        "follow_up_jobs": f.enqueued - workload,
        "completed": f.completed,
        "superseded": f.superseded,
        "dead": f.dead.len(),
        "dead_designed": malformed.len(),
        "lost": f.lost,
        "stuck": f.unfinished,
        "workers": WORKERS,
        "sigkills": kills,
        "postgres_restarts": 1,
        "postgres_down_s": pg_restart,
        "backends_terminated": terminated,
        "retries": retries,
        "lease_expiries": expiries,
        "jobs_run_more_than_once": f.rerun_jobs,
        "recovery_s": rec_s,
        "recovery_median_s": rec_median,
        "recovery_max_s": rec_max,
        "chat_calls": snap.total_requests,
        "moodle_batches": batches,
        "moodle_batches_failed": batches_failed,
        "rooms": m.rooms,
        "memberships_compared": m.desired_members,
        "mismatches": m.total(),
        "setup_s": setup_s,
        "chaos_phase_s": chaos_s,
        "drain_s": drain.as_secs_f64(),
        "total_s": total_s,
        "jobs_per_s": f.enqueued as f64 / total_s,
    });
    println!("chaos-figures {figures}");
    println!("chaos: error history by class: {:?}", f.error_classes);
    let kinds: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT kind, count(*), avg(extract(epoch FROM finished_at - started_at))::float8,
                avg(extract(epoch FROM started_at - enqueued_at))::float8
           FROM rcjobs.job_history GROUP BY 1 ORDER BY 2 DESC",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (k, n, run, wait) in &kinds {
        println!("chaos: {k:32} {n:7} jobs, mean run {run:.3} s, mean wait {wait:.1} s");
    }

    assert_eq!(f.lost, 0, "jobs lost");
    assert_eq!(f.unfinished, 0, "jobs stuck");
    assert_eq!(f.cancelled, 0, "jobs cancelled");
    assert_eq!(
        f.superseded_dangling, 0,
        "superseded jobs whose successor did not finish"
    );
    let dead_ids: Vec<i64> = f.dead.iter().map(|d| d.0).collect();
    assert_eq!(
        dead_ids, malformed,
        "dead jobs other than the malformed ones: {:?}",
        f.dead
    );
    for (id, kind, err) in &f.dead {
        assert!(
            err.as_deref().is_some_and(|e| !e.is_empty()),
            "dead job {id} ({kind}) has no reason"
        );
    }
    assert_eq!(
        f.completed + f.superseded + f.dead.len() as i64 + f.scheduled,
        f.enqueued
    );
    assert!(
        workload >= target,
        "only {workload} workload jobs of {target}"
    );
    assert_eq!(m.total(), 0, "chat differs from Moodle: {m:?}");
    assert!(kills >= 3 && terminated >= 1 && pg_restart.is_some());
    assert!(
        rec_s.iter().all(|s| s.is_finite()),
        "a killed worker's leases were never released: {rec_s:?}"
    );

    for w in &mut workers {
        let st = w.sigterm(Duration::from_secs(40));
        assert_eq!(
            st.map(|s| s.success()),
            Some(true),
            "worker {} did not drain cleanly:\n{}",
            w.name,
            w.log_tail()
        );
    }
    drop(pool);
    if std::env::var_os("RCJOBS_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&logs);
    }
}
