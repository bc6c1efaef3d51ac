//! Scenario tests (issue 4 §6, issue 15 §5): Moodle changes on a real Moodle schema, the
//! jobs that follow, real queue workers; after each step the chat rooms equal Moodle truth
//! computed independently in SQL. The lifecycle runs on both backends with the same
//! assertions: the simulator behind the real Rocket.Chat client, and a real Synapse behind
//! the Matrix backend (smaller rooms: Synapse force-joins about 8 users a second per room).
//! The plugin's own flows (groups it made, ids it stores in Moodle) are Rocket.Chat's only.

#![allow(clippy::unwrap_used)]

mod backends;
mod common;

use backends::{Backend, Chat};
use common::{creating_accounts, faulty_chat, small_site, sql, Env};
use rcjobs_moodle::fixture::{mass_enrol, FixtureSpec, UserSet};
use rcjobs_sim::SimConfig;
use serde_json::json;
use std::time::Duration;

async fn course_ctx(env: &Env, course: i64) -> i64 {
    sqlx::query_scalar(sql(
        "SELECT id FROM {p}context WHERE contextlevel = 50 AND instanceid = $1",
    ))
    .bind(course)
    .fetch_one(env.pool())
    .await
    .unwrap()
}

async fn module_ctx(env: &Env, cmid: i64) -> i64 {
    sqlx::query_scalar(sql(
        "SELECT id FROM {p}context WHERE contextlevel = 70 AND instanceid = $1",
    ))
    .bind(cmid)
    .fetch_one(env.pool())
    .await
    .unwrap()
}

async fn role(env: &Env, shortname: &str) -> i64 {
    sqlx::query_scalar(sql("SELECT id FROM {p}role WHERE shortname = $1"))
        .bind(shortname)
        .fetch_one(env.pool())
        .await
        .unwrap()
}

async fn course_of(env: &Env, cmid: i64) -> i64 {
    sqlx::query_scalar(sql("SELECT course FROM {p}course_modules WHERE id = $1"))
        .bind(cmid)
        .fetch_one(env.pool())
        .await
        .unwrap()
}

/// Active members (in chat terms) of a course: users in the truth of some visible room.
async fn some_member(env: &Env, cmid: i64, moderator: bool, skip: usize) -> (i64, String) {
    let truth = env.truth(cmid).await;
    let name = truth
        .iter()
        .filter(|(_, m)| **m == moderator)
        .map(|(u, _)| u.clone())
        .nth(skip)
        .expect("a member");
    let id: i64 = sqlx::query_scalar(sql("SELECT id FROM {p}user WHERE username = $1"))
        .bind(&name)
        .fetch_one(env.pool())
        .await
        .unwrap();
    (id, name)
}

async fn user_row(env: &Env, userid: i64) -> serde_json::Value {
    sqlx::query_scalar(sql("SELECT row_to_json(u) FROM {p}user u WHERE id = $1"))
        .bind(userid)
        .fetch_one(env.pool())
        .await
        .unwrap()
}

/// A new chat activity copying `from_cmid`'s settings, in the same course, with group id
/// `rocketchatid` (what a restore or a duplication leaves in Moodle).
async fn insert_cm(env: &Env, from_cmid: i64, rocketchatid: &str) -> i64 {
    let p = env.pool();
    let inst: i64 = sqlx::query_scalar(sql(
        "INSERT INTO {p}rocketchat (course, name, timecreated, timemodified, intro, introformat, rocketchatid, displaytype, embbeded, moderatorroles, userroles)
         SELECT course, name || ' (copy)', timecreated, timemodified, intro, introformat, $2, displaytype, embbeded, moderatorroles, userroles
           FROM {p}rocketchat WHERE id = (SELECT instance FROM {p}course_modules WHERE id = $1) RETURNING id",
    ))
    .bind(from_cmid)
    .bind(rocketchatid)
    .fetch_one(p)
    .await
    .unwrap();
    let cmid: i64 = sqlx::query_scalar(sql(
        "INSERT INTO {p}course_modules (course, module, instance, section, added, visible, visibleoncoursepage, visibleold, deletioninprogress)
         SELECT course, module, $2, section, added, 1, 1, 1, 0 FROM {p}course_modules WHERE id = $1 RETURNING id",
    ))
    .bind(from_cmid)
    .bind(inst)
    .fetch_one(p)
    .await
    .unwrap();
    let ctx: i64 = sqlx::query_scalar(sql(
        "INSERT INTO {p}context (contextlevel, instanceid, path, depth, locked)
         SELECT 70, $2, '', depth, 0 FROM {p}context WHERE contextlevel = 70 AND instanceid = $1 RETURNING id",
    ))
    .bind(from_cmid)
    .bind(cmid)
    .fetch_one(p)
    .await
    .unwrap();
    sqlx::query(sql(
        "UPDATE {p}context c SET path = regexp_replace(o.path, '/[0-9]+$', '') || '/' || c.id
           FROM {p}context o WHERE c.id = $2 AND o.contextlevel = 70 AND o.instanceid = $1",
    ))
    .bind(from_cmid)
    .bind(ctx)
    .execute(p)
    .await
    .unwrap();
    cmid
}

async fn step(env: &Env, what: &str) {
    env.drain().await;
    let dead = env.dead_jobs().await;
    assert!(dead.is_empty(), "after {what}: dead jobs {dead:?}");
    let n = env.assert_converged().await;
    assert!(n > 0, "after {what}: no room checked");
}

/// [`step`] with the rooms read back from `chat`'s server.
async fn step_on(env: &Env, chat: &Chat<'_>, what: &str) {
    env.drain().await;
    let dead = env.dead_jobs().await;
    if !dead.is_empty() {
        env.dump().await;
    }
    assert!(dead.is_empty(), "after {what}: dead jobs {dead:?}");
    let n = chat.assert_converged(env).await;
    assert!(n > 0, "after {what}: no room checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_scenarios_converge() {
    lifecycle(Backend::RocketChat).await;
}

/// The same lifecycle on a real Synapse (`scripts/ensure-synapse.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_scenarios_converge_on_matrix() {
    lifecycle(Backend::Matrix).await;
}

async fn lifecycle(backend: Backend) {
    let rocketchat = backend == Backend::RocketChat;
    // Matrix: every user in both courses, so the first room has enough students for each
    // step's own; about 20 members a room.
    let (site, mass) = if rocketchat {
        (small_site(7), 80)
    } else {
        let mut s = FixtureSpec::new(28, 2, 7);
        s.enrolments_per_user = 2;
        s.empty_courses = 1;
        (s, 12)
    };
    let env = Env::new(site, faulty_chat(), creating_accounts()).await;
    let chat = Chat::new(&env, backend).await;
    let worker = chat.start_worker(&env, 4).await;
    let p = env.pool().clone();
    // What Moodle holds as a module's room id: the group id on Rocket.Chat; nothing on
    // Matrix (the plugin stores Rocket.Chat ids only; the worker's record is the truth).
    let moodle_id = |room: &str| {
        if rocketchat {
            room.to_owned()
        } else {
            String::new()
        }
    };
    let now = chrono::Utc::now().timestamp();

    // 0. First full sync: the worker creates every room and fills it.
    env.sync_all().await;
    step_on(&env, &chat, "initial sync").await;
    let visible: Vec<i64> = env
        .live_cmids()
        .await
        .into_iter()
        .filter(|(_, v)| *v)
        .map(|(c, _)| c)
        .collect();
    assert!(visible.len() >= 2);

    // 1. Mass enrolment into the empty course (Rocket.Chat: 80 users, then all of them: >
    //    100, several member pages), one `enrolment` job per user, plus duplicates.
    let course = env.fixture.empty_course_ids[0];
    let first = env.fixture.first_user_id;
    let n = mass_enrol(
        &p,
        &env.prefix,
        course,
        &UserSet::Range {
            first,
            last: first + mass - 1,
        },
        "student",
    )
    .await
    .unwrap();
    assert!(n > mass as u64 * 3 / 4);
    let adds_before = chat.add_calls();
    for u in (first..first + mass).chain(first..first + mass / 4) {
        env.enqueue_raw("enrolment", json!({"courseid": course, "userid": u}))
            .await;
    }
    step_on(&env, &chat, "mass enrolment").await;
    let adds = chat.add_calls() - adds_before;
    // Rocket.Chat takes invites in batches; Matrix has one force-join per user, two for an
    // account the worker had to create first (the join refused, then made again).
    let most = if rocketchat { 12 } else { 2 * n + 2 };
    assert!(
        adds <= most,
        "mass enrolment used {adds} add calls for {n} users"
    );
    // Add more (bots bypass the limiter; other users come in through a second batch).
    let extra: Vec<i64> = (first..=env.fixture.last_user_id).collect();
    mass_enrol(
        &p,
        &env.prefix,
        course,
        &UserSet::Ids(extra.clone()),
        "student",
    )
    .await
    .unwrap();
    env.enqueue_raw("enrolment", json!({"courseid": course}))
        .await;
    step_on(&env, &chat, "course-wide enrolment").await;

    let a = visible[0];
    let ca = course_of(&env, a).await;

    // 2. Unenrol (plugin shape of enrol_role_unassign, with the whole user row).
    let (u, _) = some_member(&env, a, false, 0).await;
    let row = user_row(&env, u).await;
    assert!(row.get("password").is_some());
    sqlx::query(sql("DELETE FROM {p}user_enrolments WHERE userid = $1 AND enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $2)"))
        .bind(u).bind(ca).execute(&p).await.unwrap();
    let cctx = course_ctx(&env, ca).await;
    sqlx::query(sql(
        "DELETE FROM {p}role_assignments WHERE userid = $1 AND contextid = $2",
    ))
    .bind(u)
    .bind(cctx)
    .execute(&p)
    .await
    .unwrap();
    env.enqueue_raw(
        "\\mod_rocketchat\\task\\enrol_role_unassign",
        json!({"courseid": ca, "roleid": role(&env, "student").await, "moodleuser": row,
               "context": {"contextlevel": 50, "id": cctx, "instanceid": ca}}),
    )
    .await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM rcjobs.job UNION ALL SELECT payload::text FROM rcjobs.job_history")
        .fetch_all(&p).await.unwrap();
    assert!(
        stored.iter().all(|s| !s.contains("password")),
        "a password hash reached the queue"
    );
    step_on(&env, &chat, "unenrol").await;

    // 3. Suspend an enrolment.
    let (u, _) = some_member(&env, a, false, 1).await;
    sqlx::query(sql("UPDATE {p}user_enrolments SET status = 1 WHERE userid = $1 AND enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $2)"))
        .bind(u).bind(ca).execute(&p).await.unwrap();
    env.enqueue_raw("enrolment", json!({"courseid": ca, "userid": u}))
        .await;
    step_on(&env, &chat, "enrolment suspended").await;

    // 4. Suspend a user.
    let (u, _) = some_member(&env, a, false, 2).await;
    sqlx::query(sql("UPDATE {p}user SET suspended = 1 WHERE id = $1"))
        .bind(u)
        .execute(&p)
        .await
        .unwrap();
    env.enqueue_raw("unenrol_user_everywhere", json!({"userid": u}))
        .await;
    step_on(&env, &chat, "user suspended").await;
    // ... and reactivate.
    sqlx::query(sql("UPDATE {p}user SET suspended = 0 WHERE id = $1"))
        .bind(u)
        .execute(&p)
        .await
        .unwrap();
    env.enqueue_raw("synchronize_user_everywhere", json!({"userid": u}))
        .await;
    step_on(&env, &chat, "user reactivated").await;

    // 5. Delete a user the way delete_user() does (enrolments and roles gone, username rewritten).
    let (u, _) = some_member(&env, a, false, 3).await;
    sqlx::query(sql("DELETE FROM {p}user_enrolments WHERE userid = $1"))
        .bind(u)
        .execute(&p)
        .await
        .unwrap();
    sqlx::query(sql("DELETE FROM {p}role_assignments WHERE userid = $1"))
        .bind(u)
        .execute(&p)
        .await
        .unwrap();
    sqlx::query(sql("UPDATE {p}user SET deleted = 1, username = 'gone@example.edu.' || $2, email = md5(email) WHERE id = $1"))
        .bind(u).bind(now).execute(&p).await.unwrap();
    env.enqueue_raw("unenrol_user_everywhere", json!({"userid": u}))
        .await;
    step_on(&env, &chat, "user deleted").await;

    // 6. Role change at course level: student → editingteacher (assign, then unassign).
    let (u, _) = some_member(&env, a, false, 4).await;
    let (student, teacher) = (
        role(&env, "student").await,
        role(&env, "editingteacher").await,
    );
    sqlx::query(sql("UPDATE {p}role_assignments SET roleid = $3 WHERE userid = $1 AND contextid = $2 AND roleid = $4"))
        .bind(u).bind(cctx).bind(teacher).bind(student).execute(&p).await.unwrap();
    for kind in ["enrol_role_assign", "enrol_role_unassign"] {
        env.enqueue_raw(kind, json!({"userid": u, "roleid": teacher, "courseid": ca,
                                     "context": {"contextlevel": 50, "id": cctx, "instanceid": ca}})).await;
    }
    step_on(&env, &chat, "course-level role change").await;

    // 7. Role at module level only: a moderator in room `a` only.
    let (u, name) = some_member(&env, a, false, 5).await;
    let mctx = module_ctx(&env, a).await;
    sqlx::query(sql("INSERT INTO {p}role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                     VALUES ($1, $2, $3, 0, 2, '', 0, 0)"))
        .bind(teacher).bind(mctx).bind(u).execute(&p).await.unwrap();
    env.enqueue_raw("enrol_role_assign", json!({"userid": u, "roleid": teacher,
                                                "context": {"contextlevel": 70, "id": mctx, "instanceid": a}})).await;
    step_on(&env, &chat, "module-level role").await;
    assert_eq!(
        env.truth(a).await.get(&name),
        Some(&true),
        "module role did not make {name} moderator"
    );

    // 7b. Role at category level: an editing teacher of the course's category moderates
    //     every room of its courses they are enrolled in.
    let (u, name) = some_member(&env, a, false, 5).await;
    let (catctx, cat): (i64, i64) =
        sqlx::query_as(sql("SELECT cc.id, cc.instanceid FROM {p}context c
           JOIN {p}context cc ON cc.contextlevel = 40 AND c.path LIKE cc.path || '/%'
          WHERE c.contextlevel = 50 AND c.instanceid = $1"))
        .bind(ca)
        .fetch_one(&p)
        .await
        .unwrap();
    sqlx::query(sql("INSERT INTO {p}role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                     VALUES ($1, $2, $3, 0, 2, '', 0, 0)"))
        .bind(teacher).bind(catctx).bind(u).execute(&p).await.unwrap();
    env.enqueue_raw("enrol_role_assign", json!({"userid": u, "roleid": teacher,
                                                "context": {"contextlevel": 40, "id": catctx, "instanceid": cat}})).await;
    step_on(&env, &chat, "category-level role").await;
    assert_eq!(
        env.truth(a).await.get(&name),
        Some(&true),
        "category role did not make {name} moderator"
    );

    // 8. An enrolment window closes: no event at all; the periodic reconcile catches it.
    let (u, _) = some_member(&env, a, false, 6).await;
    sqlx::query(sql("UPDATE {p}user_enrolments SET timeend = $3 WHERE userid = $1 AND enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $2)"))
        .bind(u).bind(ca).bind(now - 5).execute(&p).await.unwrap();
    env.sync_all().await;
    step_on(&env, &chat, "enrolment window closed").await;

    // 9. Cohort sync: a cohort enrol instance enrols users (roles owned by enrol_cohort);
    //    the plugin queues enrol_role_assign with whole user rows.
    let eid: i64 = sqlx::query_scalar(sql(
        "INSERT INTO {p}enrol (enrol, status, courseid, sortorder, roleid, customint1, timecreated, timemodified)
         VALUES ('cohort', 0, $1, 9, $2, 0, 0, 0) RETURNING id"))
        .bind(ca).bind(student).fetch_one(&p).await.unwrap();
    let cohort_users: Vec<i64> = sqlx::query_scalar(sql(
        "SELECT id FROM {p}user u WHERE deleted = 0 AND suspended = 0 AND id BETWEEN $1 AND $2
            AND NOT EXISTS (SELECT 1 FROM {p}user_enrolments ue JOIN {p}enrol e ON e.id = ue.enrolid WHERE e.courseid = $3 AND ue.userid = u.id)
          ORDER BY id LIMIT 5"))
        .bind(first).bind(env.fixture.last_user_id).bind(ca).fetch_all(&p).await.unwrap();
    for &cu in &cohort_users {
        sqlx::query(sql("INSERT INTO {p}user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified) VALUES (0, $1, $2, 0, 0, 2, 0, 0)"))
            .bind(eid).bind(cu).execute(&p).await.unwrap();
        sqlx::query(sql("INSERT INTO {p}role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder) VALUES ($1, $2, $3, 0, 2, 'enrol_cohort', $4, 0)"))
            .bind(student).bind(cctx).bind(cu).bind(eid).execute(&p).await.unwrap();
        let row = user_row(&env, cu).await;
        env.enqueue_raw("enrol_role_assign", json!({"courseid": ca, "roleid": student, "moodleuser": row,
                                                    "context": {"contextlevel": 50, "id": cctx, "instanceid": ca}})).await;
    }
    step_on(&env, &chat, "cohort sync").await;

    // 10. Recycle bin: trash → archived; restore (new cmid, old group id) → unarchived + synced.
    let room_a = env.room_id(a).await.unwrap();
    let (binned_user, binned_name) = some_member(&env, a, false, 7).await;
    sqlx::query(sql(
        "UPDATE {p}course_modules SET deletioninprogress = 1 WHERE id = $1",
    ))
    .bind(a)
    .execute(&p)
    .await
    .unwrap();
    env.enqueue_raw(
        "recyclebin",
        json!({"action": "trash", "cmid": a, "binid": 1}),
    )
    .await;
    step_on(&env, &chat, "trash").await;
    assert_eq!(
        chat.room(&room_a).await.map(|r| r.archived),
        Some(true),
        "trashed room not archived"
    );
    let a2 = insert_cm(&env, a, &moodle_id(&room_a)).await;
    sqlx::query(sql("DELETE FROM {p}course_modules WHERE id = $1"))
        .bind(a)
        .execute(&p)
        .await
        .unwrap();
    // Enrolment changes while the activity sat in the bin are applied to its room on restore.
    sqlx::query(sql("UPDATE {p}user_enrolments SET status = 1 WHERE userid = $1 AND enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $2)"))
        .bind(binned_user).bind(ca).execute(&p).await.unwrap();
    // Its event converges the course's other rooms now; the binned room waits for the restore.
    env.enqueue_raw("enrolment", json!({"courseid": ca, "userid": binned_user}))
        .await;
    env.drain().await;
    let (mut restore, mut purge) = (
        json!({"action": "restore", "cmid": a2, "binid": 1}),
        json!({"action": "purge", "binid": 1}),
    );
    if rocketchat {
        restore["rocketchatid"] = json!(room_a);
        purge["rocketchatid"] = json!(room_a);
    }
    env.enqueue_raw("recyclebin", restore).await;
    // A bin restore is followed by a "deleted" event for the same item: must not delete.
    env.enqueue_raw("recyclebin", purge).await;
    step_on(&env, &chat, "bin restore").await;
    assert_eq!(
        env.room_id(a2).await.as_deref(),
        Some(room_a.as_str()),
        "restored activity did not keep its room"
    );
    assert!(
        !env.truth(a2).await.is_empty(),
        "restored activity has no members to check"
    );
    assert!(
        !chat
            .room(&room_a)
            .await
            .unwrap()
            .members
            .contains_key(&binned_name),
        "change made while binned not applied"
    );

    // 11. Purge: trash then purge another activity: the worker created its room, so it goes.
    let b = visible[1];
    let room_b = env.room_id(b).await.unwrap();
    sqlx::query(sql(
        "UPDATE {p}course_modules SET deletioninprogress = 1 WHERE id = $1",
    ))
    .bind(b)
    .execute(&p)
    .await
    .unwrap();
    env.enqueue_raw(
        "recyclebin",
        json!({"action": "trash", "cmid": b, "binid": 2}),
    )
    .await;
    env.drain().await;
    sqlx::query(sql("DELETE FROM {p}course_modules WHERE id = $1"))
        .bind(b)
        .execute(&p)
        .await
        .unwrap();
    env.enqueue_raw("recyclebin", json!({"action": "purge", "binid": 2}))
        .await;
    step_on(&env, &chat, "purge").await;
    assert!(
        chat.room(&room_b).await.is_none(),
        "purged room still exists"
    );

    // 11b. The bin item lands while the module still looks live (Moodle deleting without
    //      the asynchronous flag, or the bin row committed first): the room is archived all
    //      the same, and emptying the bin by bin id alone deletes it.
    assert!(
        visible.len() >= 3,
        "fixture has at least three visible rooms"
    );
    let c = visible[2];
    let room_c = env.room_id(c).await.unwrap();
    env.enqueue_raw(
        "recyclebin",
        json!({"action": "trash", "cmid": c, "binid": 3}),
    )
    .await;
    env.drain().await;
    assert_eq!(
        chat.room(&room_c).await.map(|r| r.archived),
        Some(true),
        "room of a binned, still live-looking module not archived"
    );
    sqlx::query(sql("DELETE FROM {p}course_modules WHERE id = $1"))
        .bind(c)
        .execute(&p)
        .await
        .unwrap();
    env.enqueue_raw("recyclebin", json!({"action": "purge", "binid": 3}))
        .await;
    env.drain().await;
    assert!(
        chat.room(&room_c).await.is_none(),
        "emptying the bin left the room of a module binned while live"
    );

    if !rocketchat {
        // 13 (Matrix). Duplicate: Moodle holds no room id for the copy, so it gets a room of
        // its own; the original keeps its room.
        let e = insert_cm(&env, a2, "").await;
        env.enqueue_raw("restore", json!({"cmid": e})).await;
        env.enqueue_raw("restore", json!({"cmid": e})).await;
        step_on(&env, &chat, "duplicate").await;
        let copy_room = env.room_id(e).await.expect("the copy has a room");
        assert_ne!(copy_room, room_a, "the copy shares the original's room");
        assert_eq!(env.room_id(a2).await.as_deref(), Some(room_a.as_str()));
        assert!(!env.truth(e).await.is_empty());
        worker.stop().await;
        return;
    }

    // 12. A room the worker did not create (made by the plugin) is never deleted.
    let plugin_room = plugin_group(&env, "made_by_plugin").await;
    let d = insert_cm(&env, a2, &plugin_room).await;
    env.enqueue_raw("synchronize_group", json!({"rocketchatid": plugin_room}))
        .await;
    step_on(&env, &chat, "adopt plugin room").await;
    assert_eq!(env.room_id(d).await.as_deref(), Some(plugin_room.as_str()));
    sqlx::query(sql(
        "UPDATE {p}course_modules SET deletioninprogress = 1 WHERE id = $1",
    ))
    .bind(d)
    .execute(&p)
    .await
    .unwrap();
    env.enqueue_raw("recyclebin", json!({"action": "trash", "cmid": d}))
        .await;
    env.drain().await;
    sqlx::query(sql("DELETE FROM {p}course_modules WHERE id = $1"))
        .bind(d)
        .execute(&p)
        .await
        .unwrap();
    env.enqueue_raw("recyclebin", json!({"action": "purge", "cmid": d}))
        .await;
    step_on(&env, &chat, "purge of a plugin room").await;
    assert!(
        chat.room(&plugin_room).await.is_some(),
        "a room the worker did not create was deleted"
    );
    let kept: Option<String> =
        sqlx::query_scalar("SELECT code FROM rcjobs_sync.outcome WHERE cmid = $1 AND subject = ''")
            .bind(d)
            .fetch_optional(&p)
            .await
            .unwrap();
    assert_eq!(kept.as_deref(), Some("room_kept"));

    // 13. Duplicate, in the plugin's order: the copy's row is committed with the original's
    //     group id, then the plugin creates the copy's group and stores its id. Meanwhile the
    //     restore job waits (snoozes) instead of making a competing room; the room Moodle
    //     points at once it has its own id is the one converged.
    let e = insert_cm(&env, a2, &room_a).await;
    env.enqueue_raw("restore", json!({"cmid": e})).await;
    env.enqueue_raw("restore", json!({"cmid": e})).await;
    rcjobs_testkit::wait_for("restore of the copy waits", Duration::from_secs(30), || {
        let p = p.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM rcjobs.job WHERE kind = 'restore' AND snoozes > 0",
            )
            .fetch_one(&p)
            .await
            .ok()?;
            (n > 0).then_some(())
        }
    })
    .await;
    assert_eq!(env.room_id(e).await, None, "no competing room for the copy");
    let copy_group = plugin_group(&env, "copy_made_by_plugin").await;
    set_rocketchatid(&env, e, &copy_group).await;
    env.enqueue_raw("synchronize_group", json!({"cmid": e}))
        .await;
    step_on(&env, &chat, "duplicate").await;
    assert_eq!(env.room_id(e).await.as_deref(), Some(copy_group.as_str()));
    assert_eq!(env.room_id(a2).await.as_deref(), Some(room_a.as_str()));
    assert!(!env.truth(e).await.is_empty());
    let worker_rooms = env
        .sim
        .snapshot()
        .rooms
        .iter()
        .filter(|r| r.name.contains("(copy)") || r.name.ends_with("_2"))
        .count();
    assert_eq!(
        worker_rooms, 0,
        "the worker made a room of its own for the copy"
    );

    // 14. Recreate (or an admin fix): a live module's id changes to a fresh group. That group
    //     is converged; the previous room is left as it is, and the change is recorded.
    let before = chat.room(&room_a).await.unwrap();
    let fresh = plugin_group(&env, "recreated_by_plugin").await;
    set_rocketchatid(&env, a2, &fresh).await;
    env.enqueue_raw("synchronize_group", json!({"cmid": a2}))
        .await;
    step_on(&env, &chat, "recreate").await;
    assert_eq!(env.room_id(a2).await.as_deref(), Some(fresh.as_str()));
    assert_eq!(
        chat.room(&room_a).await.unwrap(),
        before,
        "the previous room was touched"
    );
    let prev: Option<String> =
        sqlx::query_scalar("SELECT previous_room_id FROM rcjobs_sync.room WHERE cmid = $1")
            .bind(a2)
            .fetch_one(&p)
            .await
            .unwrap();
    assert_eq!(prev.as_deref(), Some(room_a.as_str()));

    worker.stop().await;
}

/// A group made the way the plugin makes one (its own `groups.create`, as the bot). The
/// simulator fails 5 % of calls, so like an admin clicking again this retries a failed call
/// (under a new name: a 500 may come after the group was made).
async fn plugin_group(env: &Env, name: &str) -> String {
    use rcjobs_chat::ChatBackend;
    let backend = plugin_backend(env).await;
    for attempt in 0..20 {
        let name = if attempt == 0 {
            name.to_string()
        } else {
            format!("{name}-{attempt}")
        };
        match backend
            .create_room(&rcjobs_chat::NewRoom {
                name,
                ..Default::default()
            })
            .await
        {
            Ok(room) => return room.id,
            Err(rcjobs_chat::ChatError::Transient { .. }) => continue,
            Err(e) => panic!("creating a plugin group: {e}"),
        }
    }
    panic!("the simulator failed 20 group creations in a row")
}

/// A chat call made as the plugin or an admin would, again while the simulator answers 500
/// (every call used here converges: repeating it is harmless).
async fn as_admin<F, Fut>(what: &str, call: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = rcjobs_chat::ChatResult<()>>,
{
    for _ in 0..20 {
        match call().await {
            Ok(()) => return,
            Err(rcjobs_chat::ChatError::Transient { .. }) => continue,
            Err(e) => panic!("{what}: {e}"),
        }
    }
    panic!("{what}: the simulator failed 20 times in a row")
}

/// Stores `group` as the module's `rocketchatid`, as the plugin does after creating it.
async fn set_rocketchatid(env: &Env, cmid: i64, group: &str) {
    sqlx::query(sql(
        "UPDATE {p}rocketchat SET rocketchatid = $2 WHERE id = (SELECT instance FROM {p}course_modules WHERE id = $1)",
    ))
    .bind(cmid)
    .bind(group)
    .execute(env.pool())
    .await
    .unwrap();
}

async fn plugin_backend(env: &Env) -> rcjobs_rocketchat::RocketChatBackend {
    let rc = rcjobs_rocketchat::RocketChatConfig::new(
        url::Url::parse(&env.sim.base_url()).unwrap(),
        rcjobs_rocketchat::Auth::Token {
            user_id: env.sim.bot_user_id().to_owned(),
            token: rcjobs_rocketchat::Secret::new(env.sim.bot_token()),
        },
    );
    rcjobs_rocketchat::RocketChatBackend::connect(
        rcjobs_rocketchat::RocketChatClient::new(rc).unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_accounts_are_recorded_not_retried() {
    let cfg = rcjobs_worker::WorkerConfig {
        create_accounts: false,
        reconcile_interval_secs: common::TEST_RECONCILE_SECS,
        ..Default::default()
    };
    let env = Env::new(small_site(11), SimConfig::default(), cfg).await;
    // Only some Moodle users have chat accounts.
    let cmid = env
        .live_cmids()
        .await
        .into_iter()
        .find(|(_, v)| *v)
        .unwrap()
        .0;
    let truth = env.truth(cmid).await;
    assert!(truth.len() >= 4, "fixture room too small: {truth:?}");
    let with_account: Vec<&String> = truth.keys().step_by(2).collect();
    for u in &with_account {
        env.sim.add_user(rcjobs_sim::SeedUser::new(u));
    }
    let worker = env.start_worker(2).await;
    env.enqueue_raw("synchronize_group", json!({"cmid": cmid}))
        .await;
    env.drain().await;
    assert!(env.dead_jobs().await.is_empty());
    let room = env.room_id(cmid).await.unwrap();
    let (members, _) = env.chat_members(&room).unwrap();
    let expected: std::collections::BTreeMap<String, bool> = truth
        .iter()
        .filter(|(u, _)| with_account.contains(u))
        .map(|(u, m)| (u.clone(), *m))
        .collect();
    assert_eq!(members, expected, "the rest of the room converges");
    let missing: Vec<String> = sqlx::query_scalar("SELECT subject FROM rcjobs_sync.outcome WHERE cmid = $1 AND code = 'user_missing' ORDER BY subject")
        .bind(cmid).fetch_all(env.pool()).await.unwrap();
    let want: Vec<String> = truth
        .keys()
        .filter(|u| !with_account.contains(u))
        .cloned()
        .collect();
    assert_eq!(missing, want);
    let result: String =
        sqlx::query_scalar("SELECT last_result FROM rcjobs_sync.room WHERE cmid = $1")
            .bind(cmid)
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(result, "partial");
    let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.job_history WHERE kind = 'synchronize_group' AND state = 'completed'")
        .fetch_one(env.pool()).await.unwrap();
    assert!(completed >= 1, "the job completes with the recorded reason");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_room_is_finished_by_another() {
    let sim_cfg = SimConfig {
        latency: Duration::from_millis(25),
        ..SimConfig::default()
    };
    let env = Env::new(small_site(13), sim_cfg, creating_accounts()).await;
    let course = env.fixture.empty_course_ids[0];
    let cmid: i64 = sqlx::query_scalar(sql(
        "SELECT min(id) FROM {p}course_modules WHERE course = $1",
    ))
    .bind(course)
    .fetch_one(env.pool())
    .await
    .unwrap();
    sqlx::query(sql(
        "UPDATE {p}course_modules SET visible = 1, visibleoncoursepage = 1 WHERE course = $1",
    ))
    .bind(course)
    .execute(env.pool())
    .await
    .unwrap();
    // Everyone a moderator: one promote call per user keeps the sync busy for seconds.
    let mods: String = sqlx::query_scalar(sql("SELECT moderatorroles FROM {p}rocketchat r JOIN {p}course_modules cm ON cm.instance = r.id WHERE cm.id = $1"))
        .bind(cmid).fetch_one(env.pool()).await.unwrap();
    let mod_role: i64 = mods.split(',').next().unwrap().trim().parse().unwrap();
    let shortname: String = sqlx::query_scalar(sql("SELECT shortname FROM {p}role WHERE id = $1"))
        .bind(mod_role)
        .fetch_one(env.pool())
        .await
        .unwrap();
    mass_enrol(
        env.pool(),
        &env.prefix,
        course,
        &UserSet::Range {
            first: env.fixture.first_user_id,
            last: env.fixture.last_user_id,
        },
        &shortname,
    )
    .await
    .unwrap();
    assert!(env.truth(cmid).await.len() > 50);

    let a = env.crashable_worker(2);
    env.enqueue_raw("synchronize_group", json!({"cmid": cmid}))
        .await;
    let sim = &env.sim;
    rcjobs_testkit::wait_for(
        "worker A in the middle of the room",
        Duration::from_secs(30),
        || async { (sim.snapshot().count("POST groups.addModerator") >= 10).then_some(()) },
    )
    .await;
    tokio::task::block_in_place(|| a.crash()); // no acknowledgement; the lease runs out
    let promoted_by_a = env.sim.snapshot().count("POST groups.addModerator");
    let b = env.start_worker(2).await;
    env.drain().await;
    assert!(env.dead_jobs().await.is_empty());
    let room = env.room_id(cmid).await.unwrap();
    assert_eq!(env.chat_members(&room).unwrap().0, env.truth(cmid).await);
    // the event-driven sync (the periodic reconcile's own syncs carry `rsync:` keys)
    let attempt: i32 = sqlx::query_scalar("SELECT attempt FROM rcjobs.job_history WHERE kind = 'synchronize_group' AND dedup_key = $1 ORDER BY id DESC LIMIT 1")
        .bind(format!("sync:{cmid}"))
        .fetch_one(env.pool()).await.unwrap();
    assert!(attempt >= 2, "the crashed attempt counts");
    assert!(
        promoted_by_a < env.sim.snapshot().count("POST groups.addModerator"),
        "worker B finished the room"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_room_id_stays_shared_gets_a_room_after_the_wait() {
    let cfg = rcjobs_worker::WorkerConfig {
        duplicate_wait_secs: 3,
        ..creating_accounts()
    };
    let env = Env::new(small_site(5), faulty_chat(), cfg).await;
    let worker = env.start_worker(4).await;
    env.sync_all().await;
    step(&env, "initial sync").await;
    let (a, _) = env
        .live_cmids()
        .await
        .into_iter()
        .find(|(_, v)| *v)
        .unwrap();
    let room_a = env.room_id(a).await.unwrap();
    sqlx::query(sql(
        "UPDATE {p}rocketchat SET rocketchatid = $2 WHERE id = (SELECT instance FROM {p}course_modules WHERE id = $1)",
    ))
    .bind(a)
    .bind(&room_a)
    .execute(env.pool())
    .await
    .unwrap();
    // a copy whose own group id never comes (the plugin failed after committing the row)
    let copy = insert_cm(&env, a, &room_a).await;
    env.enqueue_raw("restore", json!({"cmid": copy})).await;
    rcjobs_testkit::wait_for("the copy gets a room", Duration::from_secs(30), || async {
        env.room_id(copy).await.filter(|r| *r != room_a)
    })
    .await;
    step(&env, "copy after the wait").await;
    assert_eq!(env.room_id(a).await.as_deref(), Some(room_a.as_str()));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_unarchive_permission_is_recorded_and_later_syncs_converge_once_granted() {
    use rcjobs_chat::ChatBackend;
    let env = Env::new(small_site(9), faulty_chat(), creating_accounts()).await;
    let worker = env.start_worker(4).await;
    env.sync_all().await;
    step(&env, "initial sync").await;
    let (cmid, _) = env
        .live_cmids()
        .await
        .into_iter()
        .find(|(_, v)| *v)
        .unwrap();
    let room = env.room_id(cmid).await.unwrap();
    // The room of a visible activity got archived (by hand, or a restore); the bot has only
    // the stock `bot` role, which may not unarchive.
    env.sim.revoke_permission("bot", "unarchive-room");
    let admin = plugin_backend(&env).await;
    as_admin("archiving the room", || admin.archive_room(&room)).await;
    for _ in 0..2 {
        env.enqueue_raw("synchronize_group", json!({"cmid": cmid}))
            .await;
        env.drain().await;
    }
    assert!(
        env.dead_jobs().await.is_empty(),
        "{:?}",
        env.dead_jobs().await
    );
    let code: Option<String> =
        sqlx::query_scalar("SELECT code FROM rcjobs_sync.outcome WHERE cmid = $1 AND subject = ''")
            .bind(cmid)
            .fetch_optional(env.pool())
            .await
            .unwrap();
    assert_eq!(code.as_deref(), Some("permission_missing"));
    assert!(env.chat_members(&room).unwrap().1, "still archived");
    // Granted: the next sync unarchives and converges.
    env.sim.grant_permission("bot", "unarchive-room");
    env.enqueue_raw("synchronize_group", json!({"cmid": cmid}))
        .await;
    step(&env, "permission granted").await;
    assert!(!env.chat_members(&room).unwrap().1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_ids_reach_moodle_only_when_turned_on() {
    let stored = |env: &Env, cmid: i64| {
        let pool = env.pool().clone();
        async move {
            let id: String = sqlx::query_scalar(sql(
                "SELECT rocketchatid FROM {p}rocketchat WHERE id = (SELECT instance FROM {p}course_modules WHERE id = $1)",
            ))
            .bind(cmid)
            .fetch_one(&pool)
            .await
            .unwrap();
            id
        }
    };
    // Off (the default): Moodle's database is not written.
    let env = Env::new(small_site(13), faulty_chat(), creating_accounts()).await;
    let worker = env.start_worker(4).await;
    env.sync_all().await;
    step(&env, "initial sync, default").await;
    let (cmid, _) = env.live_cmids().await[0];
    assert!(env.room_id(cmid).await.is_some());
    assert_eq!(stored(&env, cmid).await, "");
    worker.stop().await;

    // On: every room the worker creates is where Moodle reads it, and converges as before.
    let cfg = rcjobs_worker::WorkerConfig {
        write_room_ids: true,
        ..creating_accounts()
    };
    let env = Env::new(small_site(13), faulty_chat(), cfg).await;
    let worker = env.start_worker(4).await;
    env.sync_all().await;
    step(&env, "initial sync, write_room_ids").await;
    for (cmid, _) in env.live_cmids().await {
        let room = env.room_id(cmid).await.unwrap();
        assert_eq!(stored(&env, cmid).await, room, "cm {cmid}");
    }
    env.sync_all().await;
    step(&env, "resync with Moodle's id").await;
    worker.stop().await;
}
