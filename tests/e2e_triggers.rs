//! End to end through the change-capture triggers: a real SQL write on each captured Moodle
//! table → trigger → job → `rcjobs worker` process → simulator, then Moodle and chat agree
//! again (the comparator finds no difference and no job is due or running).
//!
//! Real worker processes of the built binary, the shared test server (a fresh database), the
//! simulator in-process. Bounded: each step waits at most [`STEP`].
#![allow(clippy::unwrap_used)]

mod support;

use rcjobs_moodle::fixture::FixtureSpec;
use rcjobs_sim::{RoomSnapshot, SimHandle};
use rcjobs_testkit::TestDb;
use rcjobs_worker::SyncState;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use support::procs::{WorkerProc, WorkerSpec};
use support::site::{self, Site};

/// Deadline of one step's convergence.
const STEP: Duration = Duration::from_secs(45);
/// The workers' chat username.
const BOT: &str = "rcjobs.bot";

/// Everything a step needs to wait and look.
struct Ctx {
    pool: PgPool,
    site: Site,
    sim: SimHandle,
    state: SyncState,
    worker: WorkerProc,
}

impl Ctx {
    /// Waits until no job is due or running and the comparator finds no difference (the
    /// queue is read first, so the comparison sees every finished job's effect).
    async fn settle(&mut self, what: &str) {
        let t = Instant::now();
        let mut last = String::new();
        loop {
            let dead: Option<serde_json::Value> = sqlx::query_scalar(
                "SELECT to_jsonb(h) FROM rcjobs.job_history h WHERE state = 'dead' LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .unwrap();
            assert!(dead.is_none(), "{what}: a job died: {dead:#?}");
            if self.busy().await == 0 {
                let m =
                    support::compare::compare(&self.site.moodle, &self.state, &self.sim, BOT).await;
                if m.total() == 0 {
                    println!("{what}: converged in {:.1} s", t.elapsed().as_secs_f64());
                    return;
                }
                last = format!("{m:?}");
            }
            assert!(
                self.worker.is_running(),
                "worker exited:\n{}",
                self.worker.log_tail()
            );
            assert!(
                t.elapsed() < STEP,
                "{what}: not converged within {STEP:?}; last comparison {last}\nworker log:\n{}",
                self.worker.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Jobs due (ready or blocked behind their lane) or running, and changes still in the
    /// trigger set's outbox (relayed into jobs shortly); jobs scheduled for later, such as an
    /// enrolment's end in 2038 or the next periodic reconcile, do not count.
    async fn busy(&self) -> i64 {
        let jobs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rcjobs.job
              WHERE state = 'running' OR (state IN ('ready', 'blocked') AND run_at <= now())",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap();
        jobs + rcjobs_moodle::outbox::pending(&self.pool, &self.site.prefix)
            .await
            .unwrap()
    }

    /// Waits until the room of `cmid` has `archived` = `want` (the comparator does not look
    /// at the flag); on timeout, shows the recycle-bin jobs' outcomes.
    async fn wait_archived(&self, cmid: i64, want: bool, what: &str) {
        let t = Instant::now();
        loop {
            if self.room(cmid).await.map(|r| r.archived) == Some(want) {
                return;
            }
            if t.elapsed() > STEP {
                let jobs: Vec<serde_json::Value> = sqlx::query_scalar(
                    "SELECT to_jsonb(h) FROM rcjobs.job_history h
                          WHERE kind IN ('recyclebin', 'restore') ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await
                .unwrap();
                panic!(
                    "{what}: room of cm {cmid} archived != {want} after {STEP:?}; room {:?}\nbin jobs: {jobs:#?}",
                    self.room(cmid).await.map(|r| (r.id, r.archived)),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the simulator no longer holds room `room_id`; on timeout, shows every
    /// recycle-bin job (queued or finished) and the worker's log.
    async fn wait_room_gone(&self, room_id: &str, what: &str) {
        let t = Instant::now();
        while self.sim.snapshot().rooms.iter().any(|r| r.id == room_id) {
            if t.elapsed() > STEP {
                let jobs: Vec<serde_json::Value> = sqlx::query_scalar(
                    "SELECT to_jsonb(j) FROM rcjobs.job j WHERE kind = 'recyclebin'
                     UNION ALL
                     SELECT to_jsonb(h) FROM rcjobs.job_history h WHERE kind = 'recyclebin'",
                )
                .fetch_all(&self.pool)
                .await
                .unwrap();
                panic!(
                    "{what}: room {room_id} still there after {STEP:?}\nbin jobs: {jobs:#?}\nworker log:\n{}",
                    self.worker.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Adds the module context of a new course module (as Moodle does when adding one).
    async fn module_context(&self, cmid: i64, courseid: i64) {
        sqlx::query(
            "INSERT INTO mdl_context (id, contextlevel, instanceid, path, depth, locked)
             SELECT (SELECT max(id) + 1 FROM mdl_context), 70, $1,
                    c.path || '/' || ((SELECT max(id) + 1 FROM mdl_context)), 4, 0
               FROM mdl_context c WHERE c.contextlevel = 50 AND c.instanceid = $2",
        )
        .bind(cmid)
        .bind(courseid)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// The chat room of `cmid`, as the simulator holds it now.
    async fn room(&self, cmid: i64) -> Option<RoomSnapshot> {
        let id = self.state.room(cmid).await.unwrap()?.room_id?;
        self.sim.snapshot().rooms.into_iter().find(|r| r.id == id)
    }

    /// `Some(moderator?)` when `user` is an active member of the room of `cmid`.
    async fn member(&self, cmid: i64, user: &str) -> Option<bool> {
        let room = self.room(cmid).await.expect("room exists");
        room.members
            .iter()
            .find(|m| m.active && m.username.eq_ignore_ascii_case(user))
            .map(|m| m.roles.iter().any(|r| r == "moderator"))
    }

    /// Rooms where `user` is an active member.
    fn rooms_of(&self, user: &str) -> usize {
        self.sim
            .snapshot()
            .rooms
            .iter()
            .filter(|r| {
                r.members
                    .iter()
                    .any(|m| m.active && m.username.eq_ignore_ascii_case(user))
            })
            .count()
    }

    async fn exec(&self, sql: &'static str, binds: &[i64]) {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A student whose only enrolment in a course is one active `user_enrolments` row, and who is
/// a plain (non-moderator) member of a visible room of that course.
#[derive(Debug, Clone)]
struct Target {
    ue_id: i64,
    userid: i64,
    username: String,
    enrolid: i64,
    courseid: i64,
    cmid: i64,
}

async fn pick_target(ctx: &Ctx) -> Target {
    let now = rcjobs_moodle::unix_now();
    let rows: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
        "SELECT ue.id, ue.userid, u.username, ue.enrolid, e.courseid
           FROM mdl_user_enrolments ue
           JOIN mdl_enrol e ON e.id = ue.enrolid
           JOIN mdl_user u ON u.id = ue.userid
          WHERE ue.status = 0 AND e.status = 0 AND u.suspended = 0 AND u.deleted = 0
            AND ue.timestart <= $1 AND ue.timeend > $1
            AND (SELECT count(*) FROM mdl_user_enrolments u2 JOIN mdl_enrol e2 ON e2.id = u2.enrolid
                  WHERE u2.userid = ue.userid AND e2.courseid = e.courseid) = 1
            AND NOT EXISTS (SELECT 1 FROM mdl_role_assignments ra JOIN mdl_context c ON c.id = ra.contextid
                             WHERE ra.userid = ue.userid AND c.contextlevel IN (10, 40))
          ORDER BY ue.id",
    )
    .bind(now)
    .fetch_all(&ctx.pool)
    .await
    .unwrap();
    for (ue_id, userid, username, enrolid, courseid) in rows {
        let cms: Vec<i64> = sqlx::query_scalar(
            "SELECT cm.id FROM mdl_course_modules cm JOIN mdl_modules m ON m.id = cm.module
              WHERE m.name = 'rocketchat' AND cm.course = $1 AND cm.visible = 1
                AND cm.visibleoncoursepage = 1 AND cm.deletioninprogress = 0 ORDER BY cm.id",
        )
        .bind(courseid)
        .fetch_all(&ctx.pool)
        .await
        .unwrap();
        for cmid in cms {
            if ctx.member(cmid, &username).await == Some(false) {
                return Target {
                    ue_id,
                    userid,
                    username,
                    enrolid,
                    courseid,
                    cmid,
                };
            }
        }
    }
    panic!("no plain student member found in the fixture");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_captured_table_write_reaches_the_chat() {
    let started = Instant::now();
    let db = TestDb::new().await;
    let pool = site::test_pool(&db.url, 4).await;
    site::migrate_all(&pool).await;
    let spec = FixtureSpec {
        enrolments_per_user: 2,
        ..FixtureSpec::new(150, 6, 11)
    };
    let site = site::create(&pool, &spec).await;
    site.install_triggers().await;
    // Faults on, as under load: 5 % of calls answer 500.
    let sim = site::start_sim(&site, |c| c.fail_rate = 0.05).await;
    // Bin restores and visibility changes unarchive: admin-only on a stock server, so a
    // deployment grants it to the bot's role (docs/handlers.md).
    sim.grant_permission("bot", "unarchive-room");
    let logs = support::log_dir("e2e-triggers");
    let mut wspec = WorkerSpec::for_sim(&db.url, &sim, logs);
    wspec.concurrency = 8;
    // A retry that outlives the in-handler ones comes back after 5 s, not Moodle's 60 s.
    wspec
        .args
        .extend(["--retry-base", "5"].into_iter().map(String::from));
    let mut worker = WorkerProc::spawn(&wspec, "w");
    worker.wait_registered(&pool, Duration::from_secs(60)).await;
    let state = SyncState::new(pool.clone());
    let mut ctx = Ctx {
        pool: pool.clone(),
        site,
        sim,
        state,
        worker,
    };

    // Initial convergence: every room created and filled.
    ctx.site.sync_everything().await;
    ctx.settle("initial sync").await;
    let t = pick_target(&ctx).await;
    println!("target: {t:?}");
    let (cmid, user) = (t.cmid, t.username.clone());

    // user_enrolments: delete = unenrol, insert = enrol, status = 1 = suspend.
    let ue: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT status, timestart, timeend, modifierid, timecreated, timemodified
           FROM mdl_user_enrolments WHERE id = $1",
    )
    .bind(t.ue_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    ctx.exec("DELETE FROM mdl_user_enrolments WHERE id = $1", &[t.ue_id])
        .await;
    ctx.settle("user_enrolments delete").await;
    assert_eq!(ctx.member(cmid, &user).await, None, "unenrolled user left");
    sqlx::query(
        "INSERT INTO mdl_user_enrolments (id, status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(t.ue_id)
    .bind(ue.0)
    .bind(t.enrolid)
    .bind(t.userid)
    .bind(ue.1)
    .bind(ue.2)
    .bind(ue.3)
    .bind(ue.4)
    .bind(ue.5)
    .execute(&pool)
    .await
    .unwrap();
    ctx.settle("user_enrolments insert").await;
    assert_eq!(ctx.member(cmid, &user).await, Some(false), "enrolled again");
    ctx.exec(
        "UPDATE mdl_user_enrolments SET status = 1 WHERE id = $1",
        &[t.ue_id],
    )
    .await;
    ctx.settle("user_enrolments suspend").await;
    assert_eq!(ctx.member(cmid, &user).await, None, "suspended enrolment");
    ctx.exec(
        "UPDATE mdl_user_enrolments SET status = 0 WHERE id = $1",
        &[t.ue_id],
    )
    .await;
    ctx.settle("user_enrolments reactivate").await;
    assert_eq!(ctx.member(cmid, &user).await, Some(false));

    // role_assignments: an editing teacher at course level moderates; removed, no longer.
    let editingteacher = ctx.site.fixture.roles.editingteacher;
    let ra_id: i64 = sqlx::query_scalar(
        "INSERT INTO mdl_role_assignments (id, roleid, contextid, userid, timemodified)
         SELECT (SELECT max(id) + 1 FROM mdl_role_assignments), $1, c.id, $2, 0
           FROM mdl_context c WHERE c.contextlevel = 50 AND c.instanceid = $3
         RETURNING id",
    )
    .bind(editingteacher)
    .bind(t.userid)
    .bind(t.courseid)
    .fetch_one(&pool)
    .await
    .unwrap();
    ctx.settle("role_assignments insert").await;
    assert_eq!(ctx.member(cmid, &user).await, Some(true), "now a moderator");
    ctx.exec("DELETE FROM mdl_role_assignments WHERE id = $1", &[ra_id])
        .await;
    ctx.settle("role_assignments delete").await;
    assert_eq!(
        ctx.member(cmid, &user).await,
        Some(false),
        "moderator no more"
    );

    // enrol: a disabled instance's users leave; enabled again, they come back.
    ctx.exec(
        "UPDATE mdl_enrol SET status = 1 WHERE id = $1",
        &[t.enrolid],
    )
    .await;
    ctx.settle("enrol disable").await;
    assert_eq!(ctx.member(cmid, &user).await, None, "instance disabled");
    ctx.exec(
        "UPDATE mdl_enrol SET status = 0 WHERE id = $1",
        &[t.enrolid],
    )
    .await;
    ctx.settle("enrol enable").await;
    assert_eq!(ctx.member(cmid, &user).await, Some(false));

    // user: suspended leaves every room; unsuspended comes back.
    let rooms_before = ctx.rooms_of(&user);
    assert!(rooms_before >= 1);
    ctx.exec(
        "UPDATE mdl_user SET suspended = 1 WHERE id = $1",
        &[t.userid],
    )
    .await;
    ctx.settle("user suspend").await;
    assert_eq!(ctx.rooms_of(&user), 0, "suspended user in no room");
    ctx.exec(
        "UPDATE mdl_user SET suspended = 0 WHERE id = $1",
        &[t.userid],
    )
    .await;
    ctx.settle("user unsuspend").await;
    assert_eq!(ctx.rooms_of(&user), rooms_before);

    // course_modules: deletion in progress archives the room; back to 0 unarchives it.
    ctx.exec(
        "UPDATE mdl_course_modules SET deletioninprogress = 1 WHERE id = $1",
        &[cmid],
    )
    .await;
    ctx.settle("course_modules deletioninprogress=1").await;
    ctx.wait_archived(cmid, true, "deletion in progress").await;
    ctx.exec(
        "UPDATE mdl_course_modules SET deletioninprogress = 0 WHERE id = $1",
        &[cmid],
    )
    .await;
    ctx.settle("course_modules deletioninprogress=0").await;
    ctx.wait_archived(cmid, false, "deletion cancelled").await;
    assert_eq!(ctx.member(cmid, &user).await, Some(false));

    // course_modules visibility: hidden archives the room (the comparator skips it then);
    // shown again unarchives and re-syncs it.
    ctx.exec(
        "UPDATE mdl_course_modules SET visible = 0 WHERE id = $1",
        &[cmid],
    )
    .await;
    ctx.settle("course_modules hidden").await;
    ctx.wait_archived(cmid, true, "activity hidden").await;
    ctx.exec(
        "UPDATE mdl_course_modules SET visible = 1 WHERE id = $1",
        &[cmid],
    )
    .await;
    ctx.settle("course_modules shown").await;
    ctx.wait_archived(cmid, false, "activity shown").await;
    assert_eq!(ctx.member(cmid, &user).await, Some(false));

    // rocketchat update: students made moderators of the room, then no longer.
    let student = ctx.site.fixture.roles.student;
    let mods: String = sqlx::query_scalar(
        "SELECT r.moderatorroles FROM mdl_rocketchat r
           JOIN mdl_course_modules cm ON cm.instance = r.id WHERE cm.id = $1",
    )
    .bind(cmid)
    .fetch_one(&pool)
    .await
    .unwrap();
    let set_mods = |m: String| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "UPDATE mdl_rocketchat r SET moderatorroles = $2 FROM mdl_course_modules cm
                  WHERE cm.instance = r.id AND cm.id = $1",
            )
            .bind(cmid)
            .bind(m)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    set_mods(format!("{mods},{student}")).await;
    ctx.settle("rocketchat moderatorroles + student").await;
    assert_eq!(
        ctx.member(cmid, &user).await,
        Some(true),
        "students moderate"
    );
    set_mods(mods).await;
    ctx.settle("rocketchat moderatorroles restored").await;
    assert_eq!(ctx.member(cmid, &user).await, Some(false));

    // rocketchat + course_modules insert: a new chat activity (Moodle's order: instance row,
    // module row with instance 0, then linked) gets a room holding the course's members.
    let now = rcjobs_moodle::unix_now();
    let new_rc: i64 = sqlx::query_scalar(
        "INSERT INTO mdl_rocketchat (id, course, name, timecreated, timemodified, intro, introformat,
                                     rocketchatid, displaytype, embbeded, moderatorroles, userroles)
         SELECT (SELECT max(id) + 1 FROM mdl_rocketchat), r.course, 'E2E new chat', $2, $2, '', 1,
                '', 1, 1, r.moderatorroles, r.userroles
           FROM mdl_rocketchat r JOIN mdl_course_modules cm ON cm.instance = r.id
          WHERE cm.id = $1
         RETURNING id",
    )
    .bind(cmid)
    .bind(now)
    .fetch_one(&pool)
    .await
    .unwrap();
    let new_cm: i64 = sqlx::query_scalar(
        "INSERT INTO mdl_course_modules (id, course, module, instance, section, added, visible,
                                         visibleoncoursepage, visibleold, deletioninprogress)
         SELECT (SELECT max(id) + 1 FROM mdl_course_modules), course, module, 0, 0, $2, 1, 1, 1, 0
           FROM mdl_course_modules WHERE id = $1
         RETURNING id",
    )
    .bind(cmid)
    .bind(now)
    .fetch_one(&pool)
    .await
    .unwrap();
    ctx.module_context(new_cm, t.courseid).await;
    ctx.exec(
        "UPDATE mdl_course_modules SET instance = $2 WHERE id = $1",
        &[new_cm, new_rc],
    )
    .await;
    ctx.settle("new chat activity").await;
    let room = ctx.room(new_cm).await.expect("new activity has a room");
    assert!(!room.archived);
    assert_eq!(
        ctx.member(new_cm, &user).await,
        Some(false),
        "course member"
    );

    // tool_recyclebin_course: binning archives the room; Moodle then deletes the module and
    // instance (not a purge while binned); emptying the bin purges the room.
    sqlx::query(
        "INSERT INTO mdl_tool_recyclebin_course (id, courseid, section, module, name, timecreated)
         SELECT coalesce((SELECT max(id) FROM mdl_tool_recyclebin_course), 0) + 1, cm.course, 0,
                cm.module, 'E2E new chat', $2
           FROM mdl_course_modules cm WHERE cm.id = $1",
    )
    .bind(new_cm)
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    ctx.exec(
        "UPDATE mdl_course_modules SET deletioninprogress = 1 WHERE id = $1",
        &[new_cm],
    )
    .await;
    ctx.settle("tool_recyclebin_course insert").await;
    assert!(
        ctx.room(new_cm).await.unwrap().archived,
        "binned room archived"
    );
    let room_id = ctx.room(new_cm).await.unwrap().id;
    ctx.exec("DELETE FROM mdl_course_modules WHERE id = $1", &[new_cm])
        .await;
    ctx.exec(
        "DELETE FROM mdl_context WHERE contextlevel = 70 AND instanceid = $1",
        &[new_cm],
    )
    .await;
    ctx.exec("DELETE FROM mdl_rocketchat WHERE id = $1", &[new_rc])
        .await;
    ctx.settle("binned activity deleted").await;
    assert!(
        ctx.sim.snapshot().rooms.iter().any(|r| r.id == room_id),
        "a binned activity's room is kept until the bin is emptied"
    );
    sqlx::query("DELETE FROM mdl_tool_recyclebin_course WHERE name = 'E2E new chat'")
        .execute(&pool)
        .await
        .unwrap();
    ctx.settle("tool_recyclebin_course delete").await;
    ctx.wait_room_gone(&room_id, "emptied from the bin: room purged")
        .await;

    // tool_recyclebin_course, restore path: the original activity is binned and deleted,
    // then restored from the bin: Moodle writes a new module row (already linked) and a new
    // instance of the same name and group, then deletes the bin item. The room is
    // unarchived and taken over by the new module.
    let (rc_id, rc_name): (i64, String) = sqlx::query_as(
        "SELECT r.id, r.name FROM mdl_rocketchat r JOIN mdl_course_modules cm ON cm.instance = r.id
          WHERE cm.id = $1",
    )
    .bind(cmid)
    .fetch_one(&pool)
    .await
    .unwrap();
    let old_room = ctx.room(cmid).await.unwrap().id;
    let binned_at = rcjobs_moodle::unix_now();
    sqlx::query(
        "INSERT INTO mdl_tool_recyclebin_course (id, courseid, section, module, name, timecreated)
         SELECT coalesce((SELECT max(id) FROM mdl_tool_recyclebin_course), 0) + 1, cm.course, 0,
                cm.module, $2, $3
           FROM mdl_course_modules cm WHERE cm.id = $1",
    )
    .bind(cmid)
    .bind(&rc_name)
    .bind(binned_at)
    .execute(&pool)
    .await
    .unwrap();
    ctx.exec(
        "UPDATE mdl_course_modules SET deletioninprogress = 1 WHERE id = $1",
        &[cmid],
    )
    .await;
    ctx.settle("original activity binned").await;
    ctx.wait_archived(cmid, true, "original binned").await;
    ctx.exec("DELETE FROM mdl_course_modules WHERE id = $1", &[cmid])
        .await;
    ctx.exec(
        "DELETE FROM mdl_context WHERE contextlevel = 70 AND instanceid = $1",
        &[cmid],
    )
    .await;
    ctx.exec("DELETE FROM mdl_rocketchat WHERE id = $1", &[rc_id])
        .await;
    ctx.settle("original activity deleted").await;
    let restored_rc: i64 = sqlx::query_scalar("SELECT max(id) + 1 FROM mdl_rocketchat")
        .fetch_one(&pool)
        .await
        .unwrap();
    let restored_cm: i64 = sqlx::query_scalar(
        "INSERT INTO mdl_course_modules (id, course, module, instance, section, added, visible,
                                         visibleoncoursepage, visibleold, deletioninprogress)
         SELECT (SELECT max(id) + 1 FROM mdl_course_modules), $1,
                (SELECT id FROM mdl_modules WHERE name = 'rocketchat'), $2, 0, $3, 1, 1, 1, 0
         RETURNING id",
    )
    .bind(t.courseid)
    .bind(restored_rc)
    .bind(binned_at)
    .fetch_one(&pool)
    .await
    .unwrap();
    ctx.module_context(restored_cm, t.courseid).await;
    sqlx::query(
        "INSERT INTO mdl_rocketchat (id, course, name, timecreated, timemodified, intro, introformat,
                                     rocketchatid, displaytype, embbeded, moderatorroles, userroles)
         VALUES ($1, $2, $3, $4, $4, '', 1, $5, 1, 1, $6, $7)",
    )
    .bind(restored_rc)
    .bind(t.courseid)
    .bind(&rc_name)
    .bind(binned_at)
    .bind(&old_room)
    .bind(editingteacher.to_string())
    .bind(ctx.site.fixture.roles.student.to_string())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM mdl_tool_recyclebin_course WHERE name = $1")
        .bind(&rc_name)
        .execute(&pool)
        .await
        .unwrap();
    ctx.settle("tool_recyclebin_course delete (restore)").await;
    ctx.wait_archived(restored_cm, false, "restored from the bin")
        .await;
    assert_eq!(
        ctx.room(restored_cm).await.unwrap().id,
        old_room,
        "the restored activity keeps its room"
    );
    assert_eq!(ctx.member(restored_cm, &user).await, Some(false));

    // user: deleted (Moodle rewrites the username in the same update) leaves every room.
    ctx.exec(
        "UPDATE mdl_user SET deleted = 1, username = 'deleted.' || id || '.' || extract(epoch FROM now())::bigint
          WHERE id = $1",
        &[t.userid],
    )
    .await;
    ctx.settle("user delete").await;
    assert_eq!(ctx.rooms_of(&user), 0, "deleted user in no room");

    // tool_recyclebin_category: a whole course is deleted to the category bin (its item is
    // written first, then delete_course removes the activities). Its rooms are archived at
    // once, not left writable with every former member.
    let course: i64 = sqlx::query_scalar("SELECT course FROM mdl_course_modules WHERE id = $1")
        .bind(restored_cm)
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO mdl_tool_recyclebin_category (categoryid, shortname, fullname, timecreated)
         SELECT c.category, c.shortname, c.fullname, $2 FROM mdl_course c WHERE c.id = $1",
    )
    .bind(course)
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    ctx.exec(
        "DELETE FROM mdl_course_modules WHERE course = $1 AND module = (SELECT id FROM mdl_modules WHERE name = 'rocketchat')",
        &[course],
    )
    .await;
    ctx.exec("DELETE FROM mdl_rocketchat WHERE course = $1", &[course])
        .await;
    ctx.settle("course deleted to the category bin").await;
    let archived = ctx
        .sim
        .snapshot()
        .rooms
        .iter()
        .find(|r| r.id == old_room)
        .map(|r| r.archived);
    assert_eq!(
        archived,
        Some(true),
        "the room of a course in the category bin is archived"
    );

    println!(
        "e2e_triggers: all steps in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
