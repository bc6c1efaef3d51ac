//! Standalone mode end to end (issue 18 §2): a site without mod_rocketchat, a room declared
//! for a course, the change-capture triggers, real workers and the simulator (failing 5 % of
//! calls). The room is created, follows enrolments and roles, is archived while the course is
//! hidden, and deleted with the course; a category rule gives a new course its room.

#![allow(clippy::unwrap_used)]

mod common;

use common::{creating_accounts, faulty_chat, small_site, sql, Env};
use rcjobs_moodle::fixture::{mass_enrol, UserSet};
use rcjobs_moodle::standalone::{self, Declaration};
use rcjobs_moodle::triggers::{self, TriggerMode};
use std::collections::BTreeMap;

/// mod_rocketchat uninstalled the way Moodle leaves a site: no table, no module, no activities.
/// Waits until the workers' relay has moved every captured change out of the trigger set's
/// outbox, then until the queue drained (a change is in neither for a moment otherwise).
async fn drain(env: &Env) {
    let started = std::time::Instant::now();
    while rcjobs_moodle::outbox::pending(env.pool(), &env.prefix)
        .await
        .unwrap()
        > 0
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the outbox was not relayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    env.drain().await;
}

async fn remove_plugin(env: &Env) {
    for s in [
        "DELETE FROM {p}context WHERE contextlevel = 70",
        "DELETE FROM {p}course_modules WHERE module = (SELECT id FROM {p}modules WHERE name = 'rocketchat')",
        "DELETE FROM {p}modules WHERE name = 'rocketchat'",
        "DROP TABLE {p}rocketchat",
    ] {
        sqlx::query(sql(s)).execute(env.pool()).await.unwrap();
    }
    triggers::install(env.pool(), &env.prefix, TriggerMode::ChangeCapture)
        .await
        .unwrap();
}

/// Moodle truth for a course room, computed here in SQL: active enrolment in the course and
/// an editingteacher (moderator) or student role in the course context or above.
async fn course_truth(env: &Env, course: i64) -> BTreeMap<String, bool> {
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<(String, bool)> = sqlx::query_as(sql(
        "SELECT u.username, bool_or(r.shortname = 'editingteacher')
           FROM {p}context cctx
           JOIN {p}role_assignments ra ON ra.contextid::text = ANY(string_to_array(btrim(cctx.path, '/'), '/'))
           JOIN {p}role r ON r.id = ra.roleid AND r.shortname IN ('editingteacher', 'student')
           JOIN {p}user u ON u.id = ra.userid AND u.deleted = 0 AND u.suspended = 0
          WHERE cctx.contextlevel = 50 AND cctx.instanceid = $1
            AND EXISTS (SELECT 1 FROM {p}user_enrolments ue JOIN {p}enrol e ON e.id = ue.enrolid
                         WHERE e.courseid = $1 AND ue.userid = u.id AND ue.status = 0 AND e.status = 0
                           AND ue.timestart <= $2 AND (ue.timeend = 0 OR ue.timeend > $2))
          GROUP BY u.username",
    ))
    .bind(course)
    .bind(now)
    .fetch_all(env.pool())
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// The declared room's chat members and archived flag, after the queue drained.
async fn room_state(env: &Env, key: i64) -> (String, BTreeMap<String, bool>, bool) {
    drain(env).await;
    let Some(id) = env.room_id(key).await else {
        env.dump().await;
        panic!("room {key} has no chat room");
    };
    let (members, archived) = env.chat_members(&id).expect("room exists in chat");
    (id, members, archived)
}

#[tokio::test]
async fn a_declared_course_room_lives_like_a_plugin_room() {
    let env = Env::new(small_site(41), faulty_chat(), creating_accounts()).await;
    remove_plugin(&env).await;
    let course = env.fixture.course_ids[0];
    let key = standalone::declare(
        env.pool(),
        &env.prefix,
        &Declaration {
            course_id: course,
            ..Declaration::default()
        },
    )
    .await
    .unwrap();
    let worker = env.start_worker(4).await;

    let (id, members, archived) = room_state(&env, key).await;
    let truth = course_truth(&env, course).await;
    assert!(truth.len() > 5 && truth.values().any(|m| *m), "{truth:?}");
    assert!(!archived);
    assert_eq!(members, truth, "created room equals Moodle");

    // A mass enrolment of users from elsewhere arrives through the triggers.
    let newcomers = UserSet::Range {
        first: env.fixture.last_user_id - 9,
        last: env.fixture.last_user_id,
    };
    mass_enrol(env.pool(), &env.prefix, course, &newcomers, "student")
        .await
        .unwrap();
    let (_, members, _) = room_state(&env, key).await;
    assert_eq!(
        members,
        course_truth(&env, course).await,
        "after mass enrolment"
    );

    // A suspended enrolment leaves; a teacher demoted to student loses the moderator flag.
    let (leaver,): (i64,) = sqlx::query_as(sql("UPDATE {p}user_enrolments SET status = 1
          WHERE id = (SELECT ue.id FROM {p}user_enrolments ue JOIN {p}enrol e ON e.id = ue.enrolid
                       WHERE e.courseid = $1 ORDER BY ue.id LIMIT 1) RETURNING userid"))
    .bind(course)
    .fetch_one(env.pool())
    .await
    .unwrap();
    let (_, members, _) = room_state(&env, key).await;
    let truth = course_truth(&env, course).await;
    let leaver_name: String = sqlx::query_scalar(sql("SELECT username FROM {p}user WHERE id = $1"))
        .bind(leaver)
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert!(!truth.contains_key(&leaver_name));
    assert_eq!(members, truth, "after a suspended enrolment");

    // Hidden course: archived; shown again: back and converged.
    for (visible, want_archived) in [(0, true), (1, false)] {
        sqlx::query(sql("UPDATE {p}course SET visible = $2 WHERE id = $1"))
            .bind(course)
            .bind(visible)
            .execute(env.pool())
            .await
            .unwrap();
        let (_, members, archived) = room_state(&env, key).await;
        assert_eq!(archived, want_archived, "course visible = {visible}");
        if !want_archived {
            assert_eq!(members, course_truth(&env, course).await);
        }
    }

    // A category rule: a course created there gets its room, with its teacher.
    let (cat, cat_path): (i64, String) =
        sqlx::query_as(sql("SELECT c.category, ctx.path FROM {p}course c
           JOIN {p}context ctx ON ctx.contextlevel = 40 AND ctx.instanceid = c.category
          WHERE c.id = $1"))
        .bind(course)
        .fetch_one(env.pool())
        .await
        .unwrap();
    let keys = standalone::declare_category(env.pool(), &env.prefix, cat, true, None, None)
        .await
        .unwrap();
    assert!(
        !keys.contains(&key),
        "an explicit declaration stays as it was"
    );
    // As Moodle's create_course writes it: the course row, then its context, then enrolment.
    let new_course: i64 = sqlx::query_scalar(sql(
        "INSERT INTO {p}course (category, fullname, shortname, visible) VALUES ($1, 'Fresh course', 'FRESH1', 1) RETURNING id",
    ))
    .bind(cat)
    .fetch_one(env.pool())
    .await
    .unwrap();
    let ctx: i64 = sqlx::query_scalar(sql(
        "INSERT INTO {p}context (contextlevel, instanceid, depth) VALUES (50, $1, 3) RETURNING id",
    ))
    .bind(new_course)
    .fetch_one(env.pool())
    .await
    .unwrap();
    sqlx::query(sql("UPDATE {p}context SET path = $2 WHERE id = $1"))
        .bind(ctx)
        .bind(format!("{cat_path}/{ctx}"))
        .execute(env.pool())
        .await
        .unwrap();
    sqlx::query(sql(
        "INSERT INTO {p}enrol (enrol, status, courseid) VALUES ('manual', 0, $1)",
    ))
    .bind(new_course)
    .execute(env.pool())
    .await
    .unwrap();
    let active: i64 = sqlx::query_scalar(sql(
        "SELECT min(id) FROM {p}user WHERE deleted = 0 AND suspended = 0 AND id >= $1",
    ))
    .bind(env.fixture.first_user_id)
    .fetch_one(env.pool())
    .await
    .unwrap();
    let teacher = UserSet::Ids(vec![active]);
    mass_enrol(
        env.pool(),
        &env.prefix,
        new_course,
        &teacher,
        "editingteacher",
    )
    .await
    .unwrap();
    let (_, members, archived) = room_state(&env, -new_course).await;
    let truth = course_truth(&env, new_course).await;
    assert_eq!(truth.len(), 1, "{truth:?}");
    assert!(truth.values().all(|m| *m));
    assert!(!archived);
    assert_eq!(
        members, truth,
        "the new course's room has its teacher as moderator"
    );

    // Deleted for good: the room rcjobs created goes with the course.
    for s in [
        "DELETE FROM {p}user_enrolments WHERE enrolid IN (SELECT id FROM {p}enrol WHERE courseid = $1)",
        "DELETE FROM {p}enrol WHERE courseid = $1",
        "DELETE FROM {p}course WHERE id = $1",
    ] {
        sqlx::query(sql(s)).bind(course).execute(env.pool()).await.unwrap();
    }
    drain(&env).await;
    assert!(
        env.chat_members(&id).is_none(),
        "the deleted course's room is deleted"
    );
    assert!(
        env.dead_jobs().await.is_empty(),
        "{:?}",
        env.dead_jobs().await
    );
    worker.stop().await;
}
