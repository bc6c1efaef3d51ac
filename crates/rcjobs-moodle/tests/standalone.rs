//! Standalone mode on a site without mod_rocketchat: the change-capture set installs without
//! the plugin's table, rooms are declared per course, per activity and per category rule
//! (SQL API and the Rust wrapper), the model lists them with their desired membership, and
//! the capture triggers turn their courses' changes into jobs.
#![allow(clippy::unwrap_used)]

use rcjobs_moodle::fixture::{self, FixtureSpec};
use rcjobs_moodle::standalone::{self, Declaration};
use rcjobs_moodle::triggers::{self, TriggerMode};
use rcjobs_moodle::{schema, MoodleDb, MoodleError, Prefix};
use rcjobs_producer::Job;
use rcjobs_testkit::TestDb;
use serde_json::Value;
use sqlx::PgPool;

struct Site {
    db: TestDb,
    p: Prefix,
    sum: fixture::FixtureSummary,
}

/// A synthetic site, then mod_rocketchat removed the way an uninstall leaves it: no
/// `rocketchat` table, no `modules` row, no chat activities.
async fn site_without_plugin() -> Site {
    let db = TestDb::new().await;
    let p = Prefix::new("mdl_").unwrap();
    schema::create(&db.pool, &p).await.unwrap();
    let mut spec = FixtureSpec::new(40, 3, 5);
    spec.enrolments_per_user = 2;
    let sum = fixture::generate(&db.pool, &p, &spec).await.unwrap();
    for sql in [
        "DELETE FROM mdl_context WHERE contextlevel = 70",
        "DELETE FROM mdl_course_modules WHERE module = (SELECT id FROM mdl_modules WHERE name = 'rocketchat')",
        "DELETE FROM mdl_modules WHERE name = 'rocketchat'",
        "DROP TABLE mdl_rocketchat",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    rcjobs_queue::migrate(&db.pool).await.unwrap();
    rcjobs_producer::register_kinds(&db.pool).await.unwrap();
    Site { db, p, sum }
}

async fn drain(pool: &PgPool) -> Vec<(String, Value, Option<String>)> {
    // What the triggers captured, moved into the queue as the workers' relay does.
    let p = Prefix::new("mdl_").unwrap();
    rcjobs_moodle::outbox::relay_all(pool, pool, &p)
        .await
        .unwrap();
    let rows = sqlx::query_as("SELECT kind, payload, exclusion_key FROM rcjobs.job ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM rcjobs.job")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM rcjobs.lane")
        .execute(pool)
        .await
        .ok();
    rows
}

fn course_room(course: i64) -> Declaration {
    Declaration {
        course_id: course,
        ..Declaration::default()
    }
}

#[tokio::test]
async fn course_rooms_without_the_plugin() {
    let s = site_without_plugin().await;
    let pool = &s.db.pool;
    // Before the trigger set is there, a declaration says what is missing.
    let err = standalone::declare(pool, &s.p, &course_room(s.sum.course_ids[0]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MoodleError::Missing(m) if m.contains("install-triggers --mode change-capture")),
        "{err}"
    );
    triggers::install(pool, &s.p, TriggerMode::ChangeCapture)
        .await
        .unwrap();
    let installed = triggers::installed(pool, &s.p).await.unwrap();
    assert!(
        installed.iter().any(|t| t.starts_with("mdl_course.")),
        "{installed:?}"
    );
    assert!(!installed.iter().any(|t| t.starts_with("mdl_rocketchat.")));

    let course = s.sum.course_ids[0];
    let key = standalone::declare(pool, &s.p, &course_room(course))
        .await
        .unwrap();
    assert_eq!(key, -course);
    // Idempotent, and the creation is queued as room work with the room lock.
    assert_eq!(
        standalone::declare(pool, &s.p, &course_room(course))
            .await
            .unwrap(),
        key
    );
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].0, "restore");
    assert_eq!(jobs[0].2.as_deref(), Some(format!("room:{key}").as_str()));
    assert_eq!(
        Job::parse("restore", &jobs[0].1)
            .unwrap()
            .keys()
            .exclusion_key,
        jobs[0].2
    );

    // The model lists it as a room of the course, with the course's people.
    let m = MoodleDb::new(pool.clone(), "mdl_").unwrap();
    let room = m.room_by_cmid(key).await.unwrap().expect("declared room");
    assert_eq!(room.course_id, course);
    assert_eq!(room.instance_id, 0);
    assert_eq!(room.moderator_roles, vec![s.sum.roles.editingteacher]);
    assert_eq!(room.user_roles, vec![s.sum.roles.student]);
    assert_eq!(m.rooms_of_course(course).await.unwrap().len(), 1);
    assert_eq!(m.count_rooms().await.unwrap(), 1);
    let page = m.rooms_page(None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    let truth: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT ue.userid) FROM mdl_user_enrolments ue
           JOIN mdl_enrol e ON e.id = ue.enrolid
           JOIN mdl_user u ON u.id = ue.userid AND u.deleted = 0 AND u.suspended = 0
           JOIN mdl_context ctx ON ctx.contextlevel = 50 AND ctx.instanceid = e.courseid
           JOIN mdl_role_assignments ra ON ra.userid = ue.userid AND ra.contextid = ctx.id
                AND ra.roleid IN ($2, $3)
          WHERE e.courseid = $1 AND ue.status = 0 AND e.status = 0
            AND ue.timestart <= extract(epoch FROM now()) AND (ue.timeend = 0 OR ue.timeend > extract(epoch FROM now()))",
    )
    .bind(course)
    .bind(s.sum.roles.editingteacher)
    .bind(s.sum.roles.student)
    .fetch_one(pool)
    .await
    .unwrap();
    let members = m
        .desired_members(&room, rcjobs_moodle::unix_now())
        .await
        .unwrap();
    assert!(truth > 0);
    assert_eq!(members.len() as i64, truth);
    // A member's rooms include the declared one.
    let member = &members[0];
    let theirs = m
        .rooms_for_user(member.user_id, rcjobs_moodle::unix_now())
        .await
        .unwrap();
    assert!(theirs.iter().any(|r| r.room.cmid == key));
    let touching = m.rooms_touching_user(member.user_id).await.unwrap();
    assert!(touching.iter().any(|r| r.cmid == key));

    // Membership changes in that course are captured; another course's are not.
    let other = s.sum.course_ids[1];
    for c in [course, other] {
        sqlx::query(
            "UPDATE mdl_user_enrolments SET status = 1
              WHERE id = (SELECT ue.id FROM mdl_user_enrolments ue JOIN mdl_enrol e ON e.id = ue.enrolid
                           WHERE e.courseid = $1 ORDER BY ue.id LIMIT 1)",
        )
        .bind(c)
        .execute(pool)
        .await
        .unwrap();
    }
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].0, "enrolment");
    assert_eq!(jobs[0].1["courseid"], course);

    // Hiding the course syncs its room (archived as a hidden activity's would be).
    sqlx::query("UPDATE mdl_course SET visible = 0 WHERE id = $1")
        .bind(course)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].0, "synchronize_group");
    assert_eq!(jobs[0].1["cmid"], key);
    assert!(!m.room_by_cmid(key).await.unwrap().unwrap().visible);

    // Deleting the course for good purges its room and removes the declaration.
    for sql in [
        "DELETE FROM mdl_user_enrolments WHERE enrolid IN (SELECT id FROM mdl_enrol WHERE courseid = $1)",
        "DELETE FROM mdl_enrol WHERE courseid = $1",
        "DELETE FROM mdl_course WHERE id = $1",
    ] {
        sqlx::query(sql).bind(course).execute(pool).await.unwrap();
    }
    let jobs = drain(pool).await;
    let purge: Vec<_> = jobs.iter().filter(|j| j.0 == "recyclebin").collect();
    assert_eq!(purge.len(), 1, "{jobs:?}");
    assert_eq!(purge[0].1["action"], "purge");
    assert_eq!(purge[0].1["cmid"], key);
    assert!(standalone::declared_rooms(pool, &s.p)
        .await
        .unwrap()
        .is_empty());
    assert!(m.room_by_cmid(key).await.unwrap().is_none());
}

#[tokio::test]
async fn category_rules_cover_new_courses_and_bad_input_is_refused() {
    let s = site_without_plugin().await;
    let pool = &s.db.pool;
    triggers::install(pool, &s.p, TriggerMode::ChangeCapture)
        .await
        .unwrap();
    let cat: i64 = sqlx::query_scalar("SELECT category FROM mdl_course WHERE id = $1")
        .bind(s.sum.course_ids[0])
        .fetch_one(pool)
        .await
        .unwrap();
    let in_cat: i64 = sqlx::query_scalar("SELECT count(*) FROM mdl_course WHERE category = $1")
        .bind(cat)
        .fetch_one(pool)
        .await
        .unwrap();
    let keys = standalone::declare_category(pool, &s.p, cat, true, None, None)
        .await
        .unwrap();
    assert_eq!(keys.len() as i64, in_cat);
    assert_eq!(drain(pool).await.len() as i64, in_cat);
    assert_eq!(
        standalone::category_rules(pool, &s.p).await.unwrap().len(),
        1
    );

    // A course created in the category gets its room declared and created.
    let new_course: i64 = sqlx::query_scalar(
        "INSERT INTO mdl_course (category, fullname, shortname) VALUES ($1, 'New course', 'NEW1') RETURNING id",
    )
    .bind(cat)
    .fetch_one(pool)
    .await
    .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].0, "restore");
    assert_eq!(jobs[0].1["cmid"], -new_course);
    let d = standalone::declared_rooms(pool, &s.p).await.unwrap();
    let mine = d.iter().find(|r| r.course_id == new_course).unwrap();
    assert_eq!(mine.category_rule, Some(cat));
    assert_eq!(mine.name, "New course");

    // An activity's room: named after nothing we can read (no module table), so the course.
    let cmid: i64 = sqlx::query_scalar(
        "WITH m AS (INSERT INTO mdl_modules (name) VALUES ('forum') RETURNING id)
         INSERT INTO mdl_course_modules (course, module, instance, section, added)
         SELECT $1, m.id, 7, 0, 0 FROM m RETURNING id",
    )
    .bind(new_course)
    .fetch_one(pool)
    .await
    .unwrap();
    let cctx: (i64, String) = sqlx::query_as(
        "SELECT id, path FROM mdl_context WHERE contextlevel = 50 AND instanceid = $1",
    )
    .bind(new_course)
    .fetch_one(pool)
    .await
    .unwrap_or((0, String::new()));
    if cctx.0 == 0 {
        // The bare course insert above made no context: give both the rows Moodle would.
        let parent: String = sqlx::query_scalar(
            "SELECT path FROM mdl_context WHERE contextlevel = 40 AND instanceid = $1",
        )
        .bind(cat)
        .fetch_one(pool)
        .await
        .unwrap();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO mdl_context (contextlevel, instanceid, depth, path) VALUES (50, $1, 3, '') RETURNING id",
        )
        .bind(new_course)
        .fetch_one(pool)
        .await
        .unwrap();
        sqlx::query("UPDATE mdl_context SET path = $2 WHERE id = $1")
            .bind(id)
            .bind(format!("{parent}/{id}"))
            .execute(pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO mdl_context (contextlevel, instanceid, depth, path)
         SELECT 70, $1, 4, path || '/0' FROM mdl_context WHERE contextlevel = 50 AND instanceid = $2",
    )
    .bind(cmid)
    .bind(new_course)
    .execute(pool)
    .await
    .unwrap();
    let key = standalone::declare(
        pool,
        &s.p,
        &Declaration {
            course_id: new_course,
            cmid: Some(cmid),
            name: Some("Project chat".into()),
            ..Declaration::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(key, cmid);
    drain(pool).await;
    let m = MoodleDb::new(pool.clone(), "mdl_").unwrap();
    assert_eq!(m.rooms_of_course(new_course).await.unwrap().len(), 2);
    // Hiding the activity syncs its room; a module role there is captured.
    sqlx::query("UPDATE mdl_course_modules SET visible = 0 WHERE id = $1")
        .bind(cmid)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].0, "synchronize_group");
    assert_eq!(jobs[0].1["cmid"], cmid);

    // Refusals say why, and change nothing.
    for (d, want) in [
        (course_room(999_999), "no course 999999"),
        (course_room(1), "front page"),
        (
            Declaration {
                course_id: s.sum.course_ids[1],
                cmid: Some(cmid),
                ..Declaration::default()
            },
            "has no course module",
        ),
    ] {
        let e = standalone::declare(pool, &s.p, &d).await.unwrap_err();
        assert!(
            matches!(&e, MoodleError::Invalid(m) if m.contains(want)),
            "{e}"
        );
    }
    let e = standalone::declare_category(pool, &s.p, 424_242, true, None, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no course category 424242"), "{e}");
    assert!(drain(pool).await.is_empty());

    // Uninstalling the triggers keeps the declarations.
    triggers::uninstall(pool, &s.p).await.unwrap();
    assert_eq!(
        standalone::declared_rooms(pool, &s.p).await.unwrap().len() as i64,
        in_cat + 2
    );
}
