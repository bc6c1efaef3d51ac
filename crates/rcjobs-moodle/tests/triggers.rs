//! The trigger set: install/uninstall (twice), containment (captures need no queue, a broken
//! outbox never fails a Moodle write), plugin-mode interception of mod_rocketchat's exact customdata shapes, and one test
//! per captured table in change-capture mode, against the real queue schema.
#![allow(clippy::unwrap_used)]

use rcjobs_moodle::fixture::{self, FixtureSpec, UserSet};
use rcjobs_moodle::outbox;
use rcjobs_moodle::triggers::{self, TriggerMode};
use rcjobs_moodle::{schema, MoodleDb, Prefix};
use rcjobs_producer::Job;
use rcjobs_testkit::TestDb;
use serde_json::{json, Value};
use sqlx::PgPool;

const KINDS: &[&str] = &[
    "enrol_role_assign",
    "enrol_role_unassign",
    "enrolment",
    "enrol_user_to_rocketchat_group",
    "synchronize_group",
    "synchronize_user_everywhere",
    "unenrol_user_everywhere",
    "restore",
    "recyclebin",
];

struct Site {
    db: TestDb,
    p: Prefix,
    sum: fixture::FixtureSummary,
}

async fn site(with_queue: bool) -> Site {
    let db = TestDb::new().await;
    let p = Prefix::new("mdl_").unwrap();
    schema::create(&db.pool, &p).await.unwrap();
    let mut spec = FixtureSpec::new(60, 4, 3);
    spec.enrolments_per_user = 2;
    spec.empty_courses = 1;
    let sum = fixture::generate(&db.pool, &p, &spec).await.unwrap();
    if with_queue {
        rcjobs_queue::migrate(&db.pool).await.unwrap();
        for k in KINDS {
            rcjobs_queue::register_kind(&db.pool, &rcjobs_queue::KindSpec::new(*k))
                .await
                .unwrap();
        }
    }
    Site { db, p, sum }
}

/// Every job's exclusion key is the producer's for the same payload, and its dedup key too
/// (recycle-bin actions excepted: the trigger enqueues each one, never coalescing a
/// trash/restore/trash sequence).
fn assert_producer_keys(jobs: &[(String, Value, Option<String>, Option<String>)]) {
    for (kind, payload, dedup, excl) in jobs {
        let keys = Job::parse(kind, payload).unwrap().keys();
        assert_eq!(excl, &keys.exclusion_key, "{kind} {payload}");
        if kind != "recyclebin" {
            assert_eq!(dedup, &keys.dedup_key, "{kind} {payload}");
        }
    }
}

/// Moves what the triggers captured into the queue, as the workers' relay does.
async fn relay(pool: &PgPool) {
    let p = Prefix::new("mdl_").unwrap();
    let r = outbox::relay_all(pool, pool, &p).await.unwrap();
    assert_eq!(r.refused, 0, "{r:?}");
    assert_eq!(outbox::pending(pool, &p).await.unwrap(), 0);
}

/// (kind, payload, dedup_key, exclusion_key) of every job, in id order, then deleted (the
/// outbox relayed first).
async fn drain(pool: &PgPool) -> Vec<(String, Value, Option<String>, Option<String>)> {
    relay(pool).await;
    let rows: Vec<(String, Value, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT kind, payload, dedup_key, exclusion_key FROM rcjobs.job ORDER BY id",
    )
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

/// Moodle's own tables, indexes and rows (rcjobs's declared-room tables, `mdl_rcjobs_*`, are
/// created by the install and kept by the uninstall: they are not Moodle's).
async fn moodle_fingerprint(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
           SELECT 'ra' || count(*) x FROM mdl_role_assignments UNION ALL SELECT 'ue' || count(*) FROM mdl_user_enrolments
           UNION ALL SELECT 'u' || count(*) FROM mdl_user UNION ALL SELECT 'r' || count(*) FROM mdl_rocketchat
           UNION ALL SELECT 't' || count(*) FROM information_schema.tables
                      WHERE table_name LIKE 'mdl\\_%' AND table_name NOT LIKE 'mdl\\_rcjobs\\_%'
           UNION ALL SELECT 'i' || count(*) FROM pg_indexes
                      WHERE tablename LIKE 'mdl\\_%' AND tablename NOT LIKE 'mdl\\_rcjobs\\_%') t",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn install_twice_switch_modes_and_uninstall_leaves_moodle_untouched() {
    let s = site(false).await;
    let before = moodle_fingerprint(&s.db.pool).await;
    for _ in 0..2 {
        triggers::install(&s.db.pool, &s.p, TriggerMode::ChangeCapture)
            .await
            .unwrap();
    }
    let cc = triggers::installed(&s.db.pool, &s.p).await.unwrap();
    assert_eq!(cc.len(), 17, "{cc:?}");
    triggers::install(&s.db.pool, &s.p, TriggerMode::Plugin)
        .await
        .unwrap();
    assert_eq!(
        triggers::installed(&s.db.pool, &s.p).await.unwrap(),
        vec!["mdl_task_adhoc.mdl_rcjobs_task_adhoc"]
    );
    for _ in 0..2 {
        triggers::uninstall(&s.db.pool, &s.p).await.unwrap();
    }
    assert!(triggers::installed(&s.db.pool, &s.p)
        .await
        .unwrap()
        .is_empty());
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'mdl\\_rcjobs\\_%'")
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    assert_eq!(moodle_fingerprint(&s.db.pool).await, before);
    // A bad prefix never reaches SQL.
    assert!(Prefix::new("mdl_; drop table x").is_err());
}

#[tokio::test]
async fn capture_needs_no_queue_and_a_broken_outbox_never_fails_moodle() {
    let s = site(false).await;
    let pool = &s.db.pool;
    triggers::install(pool, &s.p, TriggerMode::ChangeCapture)
        .await
        .unwrap();
    let course = s.sum.course_ids[0];
    let writes = || async {
        let n = fixture::mass_enrol(
            pool,
            &s.p,
            course,
            &UserSet::Range {
                first: s.sum.first_user_id,
                last: s.sum.last_user_id,
            },
            "student",
        )
        .await
        .unwrap();
        sqlx::query("UPDATE mdl_user SET suspended = 1 - suspended WHERE id = $1")
            .bind(s.sum.first_user_id)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM mdl_role_assignments WHERE userid = $1")
            .bind(s.sum.first_user_id)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE mdl_enrol SET status = 1 - status WHERE courseid = $1")
            .bind(course)
            .execute(pool)
            .await
            .unwrap();
        n
    };
    // No queue in this database at all: the changes wait in the outbox.
    assert!(writes().await > 0);
    let captured = outbox::pending(pool, &s.p).await.unwrap();
    assert!(captured > 0);

    // Plugin mode: the task is captured and dropped, whatever the queue.
    triggers::install(pool, &s.p, TriggerMode::Plugin)
        .await
        .unwrap();
    let task = "INSERT INTO mdl_task_adhoc (component, classname, nextruntime, customdata, timecreated)
         VALUES ('mod_rocketchat', '\\mod_rocketchat\\task\\synchronize_user_everywhere', 1, '{\"userid\":5}', 1)";
    sqlx::query(task).execute(pool).await.unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM mdl_task_adhoc")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(kept, 0);
    assert_eq!(outbox::pending(pool, &s.p).await.unwrap(), captured + 1);

    // A queue refusing every job (schema there, no kind registered): the relay drops the
    // refused jobs with a warning instead of blocking on them, as the triggers did.
    rcjobs_queue::migrate(pool).await.unwrap();
    let r = outbox::relay_all(pool, pool, &s.p).await.unwrap();
    assert!(r.refused > 0 && r.rows as i64 == captured + 1, "{r:?}");
    assert_eq!(outbox::pending(pool, &s.p).await.unwrap(), 0);

    // A broken outbox (gone, or the grant revoked) never fails a Moodle write; in plugin
    // mode the task stays for Moodle's cron.
    sqlx::query("DROP TABLE mdl_rcjobs_outbox")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(task).execute(pool).await.unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM mdl_task_adhoc")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    triggers::uninstall(pool, &s.p).await.unwrap();
    sqlx::query("DELETE FROM mdl_user_enrolments")
        .execute(pool)
        .await
        .unwrap();
    // A reinstall recreates the outbox; dropping it under the change-capture triggers
    // leaves every Moodle write working.
    triggers::install(pool, &s.p, TriggerMode::ChangeCapture)
        .await
        .unwrap();
    sqlx::query("DROP TABLE mdl_rcjobs_outbox")
        .execute(pool)
        .await
        .unwrap();
    assert!(writes().await > 0);
    sqlx::query("UPDATE mdl_course_modules SET deletioninprogress = 1 WHERE course = $1")
        .bind(course)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM mdl_rocketchat WHERE course = $1")
        .bind(course)
        .execute(pool)
        .await
        .unwrap();
}

fn php_user_row(id: i64) -> Value {
    // What json_encode($DB->get_record('user', ...)) gives: every column, ids as strings.
    json!({"id": id.to_string(), "auth": "manual", "confirmed": "1", "policyagreed": "0", "deleted": "0",
           "suspended": "0", "mnethostid": "1", "username": format!("user{id}"),
           "password": "$2y$10$abcdefghijklmnopqrstuuJ9tzZ0sQ1p2O3i4U5y6T7r8E9w0Q1a2",
           "idnumber": "", "firstname": "Ana", "lastname": "Martin", "email": format!("user{id}@example.edu"),
           "secret": "s3cr3t", "lastip": "10.0.0.1"})
}

#[tokio::test]
async fn plugin_mode_turns_the_plugins_tasks_into_id_only_jobs() {
    let s = site(true).await;
    let pool = &s.db.pool;
    triggers::install(pool, &s.p, TriggerMode::Plugin)
        .await
        .unwrap();
    let m = MoodleDb::new(pool.clone(), "mdl_").unwrap();
    let room = m
        .rooms_of_course(s.sum.course_ids[0])
        .await
        .unwrap()
        .remove(0);
    let cctx = room.course_context_id.unwrap();
    let u = s.sum.first_user_id;
    let role_data = json!({"courseid": room.course_id.to_string(), "roleid": "5", "moodleuser": php_user_row(u),
        "context": {"contextlevel": 50, "id": cctx, "instanceid": room.course_id}});
    let members: serde_json::Map<String, Value> = (u..u + 3)
        .map(|i| (i.to_string(), php_user_row(i)))
        .collect();
    let tasks = [
        ("enrol_role_assign", role_data.clone()),
        ("enrol_role_unassign", role_data),
        (
            "enrol_user_to_rocketchat_group",
            json!({"rocketchatid": room.rocketchatid, "moderatorroles": "3", "userroles": "5,4", "userid": u, "coursecontextid": cctx}),
        ),
        (
            "synchronize_group",
            json!({"rocketchatid": room.rocketchatid, "moodlemembers": members, "moderatorrolesids": ["3"], "userrolesids": ["5", "4"], "coursecontextid": cctx}),
        ),
        ("synchronize_user_everywhere", json!({"userid": u})),
        ("unenrol_user_everywhere", json!({"userid": u.to_string()})),
    ];
    for (class, data) in &tasks {
        sqlx::query(
            "INSERT INTO mdl_task_adhoc (component, classname, nextruntime, customdata, timecreated, attemptsavailable)
             VALUES ('mod_rocketchat', $1, 1, $2, 1, 12)",
        )
        .bind(format!("\\mod_rocketchat\\task\\{class}"))
        .bind(data.to_string())
        .execute(pool)
        .await
        .unwrap();
    }
    // Another component's task is not touched.
    sqlx::query("INSERT INTO mdl_task_adhoc (component, classname, nextruntime, customdata) VALUES ('core', '\\core\\task\\foo', 1, '{}')")
        .execute(pool)
        .await
        .unwrap();
    let left: Vec<String> = sqlx::query_scalar("SELECT component FROM mdl_task_adhoc")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec!["core"],
        "the plugin's rows never reach Moodle's cron"
    );

    let jobs = drain(pool).await;
    let kinds: Vec<&str> = jobs.iter().map(|j| j.0.as_str()).collect();
    assert_eq!(kinds, tasks.iter().map(|t| t.0).collect::<Vec<_>>());
    let ctx = json!({"id": cctx, "contextlevel": 50, "instanceid": room.course_id});
    assert_eq!(
        jobs[0].1,
        json!({"courseid": room.course_id, "roleid": 5, "userid": u, "context": ctx})
    );
    assert_eq!(jobs[1].1, jobs[0].1);
    // Keys are exactly the producer's for the same payload, so SQL- and Rust-enqueued
    // duplicates fold together; user-scoped and cmid-less jobs take no exclusion key.
    assert_producer_keys(&jobs);
    assert_eq!(
        jobs[0].2.as_deref(),
        Some(format!("role:50:{}:{u}", room.course_id).as_str())
    );
    assert_eq!(
        jobs[2].2.as_deref(),
        Some(format!("enrol_user:rc:{}:{u}", room.rocketchatid).as_str())
    );
    assert_eq!(jobs[5].2.as_deref(), Some(format!("user:{u}").as_str()));
    assert!(jobs.iter().all(|j| j.3.is_none()), "{jobs:?}");
    assert_eq!(
        jobs[2].1,
        json!({"rocketchatid": room.rocketchatid, "userid": u, "coursecontextid": cctx})
    );
    assert_eq!(
        jobs[3].1,
        json!({"rocketchatid": room.rocketchatid, "coursecontextid": cctx})
    );
    assert_eq!(
        jobs[3].2.as_deref(),
        Some(format!("sync:rc:{}", room.rocketchatid).as_str())
    );
    assert_eq!(jobs[4].1, json!({"userid": u}));
    assert_eq!(jobs[5].1, json!({"userid": u}));
    let all = serde_json::to_string(&jobs.iter().map(|j| &j.1).collect::<Vec<_>>()).unwrap();
    for secret in [
        "$2y$",
        "password",
        "s3cr3t",
        "moodleuser",
        "moodlemembers",
        "@example.edu",
    ] {
        assert!(
            !all.contains(secret),
            "{secret} leaked into the queue: {all}"
        );
    }

    // Malformed customdata: the task is left to Moodle instead of being lost.
    sqlx::query("INSERT INTO mdl_task_adhoc (component, classname, nextruntime, customdata) VALUES ('mod_rocketchat', '\\mod_rocketchat\\task\\enrol_role_assign', 1, 'not json')")
        .execute(pool)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mdl_task_adhoc WHERE component = 'mod_rocketchat'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn change_capture_enqueues_per_captured_table() {
    let s = site(true).await;
    let pool = &s.db.pool;
    triggers::install(pool, &s.p, TriggerMode::ChangeCapture)
        .await
        .unwrap();
    let m = MoodleDb::new(pool.clone(), "mdl_").unwrap();
    let course = s.sum.empty_course_ids[0];
    let rooms = m.rooms_of_course(course).await.unwrap();
    let room = &rooms[0];
    let cctx = room.course_context_id.unwrap();
    let u = s.sum.first_user_id + 1;
    let student = m.role_id("student").await.unwrap().unwrap();
    drain(pool).await;

    // user_enrolments + role_assignments (one mass enrolment of 3 users).
    let n = fixture::mass_enrol(
        pool,
        &s.p,
        course,
        &UserSet::Ids(vec![u, u + 1, u + 2]),
        "student",
    )
    .await
    .unwrap();
    let jobs = drain(pool).await;
    let enrolments = jobs.iter().filter(|j| j.0 == "enrolment").count();
    let assigns: Vec<_> = jobs.iter().filter(|j| j.0 == "enrol_role_assign").collect();
    assert_eq!(enrolments as u64, n);
    assert_eq!(assigns.len() as u64, n);
    let enrol_id: i64 = sqlx::query_scalar("SELECT enrolid FROM mdl_user_enrolments WHERE userid = $1 AND enrolid IN (SELECT id FROM mdl_enrol WHERE courseid = $2)")
        .bind(u).bind(course).fetch_one(pool).await.unwrap();
    assert!(jobs.iter().any(|j| j.0 == "enrolment"
        && j.1 == json!({"userid": u, "courseid": course, "enrolid": enrol_id})
        && j.2.as_deref() == Some(format!("enrolment:{course}:{u}").as_str())
        && j.3.is_none()));
    assert_producer_keys(&jobs);
    assert!(
        jobs.iter().all(|j| j.3.is_none()),
        "a mass enrolment is not serialised behind a lock: {jobs:?}"
    );
    assert!(assigns.iter().any(|j| j.1
        == json!({"courseid": course, "roleid": student, "userid": u,
        "context": {"id": cctx, "contextlevel": 50, "instanceid": course}})));

    // Suspending an enrolment, and a window closing later (a job scheduled at timeend).
    let later = rcjobs_moodle::unix_now() + 3600;
    sqlx::query("UPDATE mdl_user_enrolments SET timeend = $1 WHERE userid = $2 AND enrolid = $3")
        .bind(later)
        .bind(u)
        .bind(enrol_id)
        .execute(pool)
        .await
        .unwrap();
    relay(pool).await;
    let at: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM run_at)::float8 FROM rcjobs.job WHERE dedup_key LIKE '%:at:%'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        at as i64, later,
        "a job is scheduled for the moment the window closes"
    );
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(
        jobs[1].2.as_deref(),
        Some(format!("enrolment:{course}:{u}:at:{later}").as_str())
    );
    assert!(jobs[1].3.is_none());
    // A timeend past year 9999 (seen in Moodle data): the change is captured, nothing is
    // scheduled for a moment the queue cannot hold, and no stored run_at is poisoned.
    sqlx::query(
        "UPDATE mdl_user_enrolments SET timeend = 9000000000000 WHERE userid = $1 AND enrolid = $2",
    )
    .bind(u)
    .bind(enrol_id)
    .execute(pool)
    .await
    .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1, "only the immediate job: {jobs:?}");
    assert_eq!(
        jobs[0].2.as_deref(),
        Some(format!("enrolment:{course}:{u}").as_str())
    );
    // An irrelevant update (timemodified) enqueues nothing.
    sqlx::query("UPDATE mdl_user_enrolments SET timemodified = 5 WHERE userid = $1")
        .bind(u)
        .execute(pool)
        .await
        .unwrap();
    assert!(drain(pool).await.is_empty());

    // role_assignments delete at module level.
    sqlx::query("INSERT INTO mdl_role_assignments (roleid, contextid, userid, component, itemid) VALUES ($1, $2, $3, '', 0)")
        .bind(student).bind(room.context_id).bind(u).execute(pool).await.unwrap();
    sqlx::query("DELETE FROM mdl_role_assignments WHERE contextid = $1 AND userid = $2")
        .bind(room.context_id)
        .bind(u)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(
        jobs.iter().map(|j| j.0.as_str()).collect::<Vec<_>>(),
        vec!["enrol_role_assign", "enrol_role_unassign"]
    );
    assert_eq!(
        jobs[1].1,
        json!({"courseid": course, "roleid": student, "userid": u,
        "context": {"id": room.context_id, "contextlevel": 70, "instanceid": room.cmid}})
    );
    assert_eq!(
        jobs[1].2.as_deref(),
        Some(format!("role:70:{}:{u}", room.cmid).as_str())
    );
    assert_producer_keys(&jobs);

    // enrol status change -> synchronize_group per room.
    sqlx::query("UPDATE mdl_enrol SET status = 1 WHERE courseid = $1 AND enrol = 'manual'")
        .bind(course)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), rooms.len());
    assert_eq!(jobs[0].0, "synchronize_group");
    assert_eq!(
        jobs[0].1,
        json!({"rocketchatid": room.rocketchatid, "coursecontextid": cctx, "cmid": room.cmid, "courseid": course})
    );
    assert_eq!(
        jobs[0].2.as_deref(),
        Some(format!("sync:{}", room.cmid).as_str())
    );
    assert_eq!(
        jobs[0].3.as_deref(),
        Some(format!("room:{}", room.cmid).as_str())
    );
    assert_producer_keys(&jobs);

    // user suspended, then deleted (old username travels).
    sqlx::query("UPDATE mdl_user SET suspended = 1 WHERE id = $1")
        .bind(u)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE mdl_user SET deleted = 1, username = 'gone.123' WHERE id = $1")
        .bind(u)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE mdl_user SET firstname = 'x' WHERE id = $1")
        .bind(u + 1)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[0].0.as_str(), &jobs[0].1),
        ("synchronize_user_everywhere", &json!({"userid": u}))
    );
    assert_eq!(
        jobs[1].1,
        json!({"userid": u, "username": format!("user{u}")})
    );
    assert_eq!(jobs[0].2.as_deref(), Some(format!("user:{u}").as_str()));
    // The deletion keeps its own dedup key so it never folds into a pending job without the
    // old username.
    assert_eq!(
        jobs[1].2.as_deref(),
        Some(format!("user:{u}:deleted").as_str())
    );
    assert!(jobs.iter().all(|j| j.3.is_none()), "{jobs:?}");

    // rocketchat role mapping change -> synchronize_group; insert -> restore.
    sqlx::query("UPDATE mdl_rocketchat SET userroles = '5' WHERE id = $1")
        .bind(room.instance_id)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0, "synchronize_group");
    assert_producer_keys(&jobs);
    let modid = m.rocketchat_module_id().await.unwrap().unwrap();
    // Adding an activity the way Moodle does: cm with instance 0, the instance, then link.
    let new_cm: i64 = sqlx::query_scalar("INSERT INTO mdl_course_modules (course, module, instance, added) VALUES ($1, $2, 0, extract(epoch from now())::bigint) RETURNING id")
        .bind(course).bind(modid).fetch_one(pool).await.unwrap();
    let inst: i64 = sqlx::query_scalar("INSERT INTO mdl_rocketchat (course, name, rocketchatid, moderatorroles, userroles) VALUES ($1, 'New chat', 'GRP123', '3', '5') RETURNING id")
        .bind(course).fetch_one(pool).await.unwrap();
    sqlx::query("UPDATE mdl_course_modules SET instance = $1 WHERE id = $2")
        .bind(inst)
        .bind(new_cm)
        .execute(pool)
        .await
        .unwrap();
    // the new activity's room is claimed ahead of any fan-out backlog
    relay(pool).await;
    let priority: i16 =
        sqlx::query_scalar("SELECT priority FROM rcjobs.job WHERE kind = 'restore'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(priority, -20);
    let jobs = drain(pool).await;
    assert_eq!(
        jobs.iter().map(|j| j.0.as_str()).collect::<Vec<_>>(),
        vec!["restore"]
    );
    assert_eq!(
        jobs[0].1,
        json!({"cmid": new_cm, "courseid": course, "instanceid": inst, "rocketchatid": "GRP123"})
    );
    assert_eq!(
        jobs[0].2.as_deref(),
        Some(format!("restore:{new_cm}").as_str())
    );
    assert_eq!(
        jobs[0].3.as_deref(),
        Some(format!("room:{new_cm}").as_str())
    );
    assert_producer_keys(&jobs);

    // Recycle bin: flag for deletion -> trash; bin row -> trash with binid; instance deleted
    // while binned -> nothing more; bin row deleted without a restore -> purge.
    sqlx::query("UPDATE mdl_course_modules SET deletioninprogress = 1 WHERE id = $1")
        .bind(new_cm)
        .execute(pool)
        .await
        .unwrap();
    let bin: i64 = sqlx::query_scalar("INSERT INTO mdl_tool_recyclebin_course (courseid, section, module, name, timecreated) VALUES ($1, 0, $2, 'New chat', extract(epoch from now())::bigint) RETURNING id")
        .bind(course).bind(modid).fetch_one(pool).await.unwrap();
    sqlx::query("DELETE FROM mdl_rocketchat WHERE id = $1")
        .bind(inst)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM mdl_course_modules WHERE id = $1")
        .bind(new_cm)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(
        jobs[0].1,
        json!({"action": "trash", "cmid": new_cm, "courseid": course, "instanceid": inst, "rocketchatid": "GRP123"})
    );
    assert_eq!(
        jobs[1].1,
        json!({"action": "trash", "binid": bin, "courseid": course, "cmid": new_cm, "instanceid": inst, "rocketchatid": "GRP123"})
    );
    for j in &jobs {
        assert_eq!(j.3.as_deref(), Some(format!("room:{new_cm}").as_str()));
    }
    sqlx::query("DELETE FROM mdl_tool_recyclebin_course WHERE id = $1")
        .bind(bin)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].1,
        json!({"action": "purge", "binid": bin, "courseid": course, "name": "New chat"})
    );
    assert_eq!(jobs[0].3, None, "no cmid, no room lock");

    // Bin restore: the activity comes back (new cm + instance), then the bin row is deleted.
    let bin2: i64 = sqlx::query_scalar("INSERT INTO mdl_tool_recyclebin_course (courseid, section, module, name, timecreated) VALUES ($1, 0, $2, $3, extract(epoch from now())::bigint - 10) RETURNING id")
        .bind(course).bind(modid).bind(&room.name).fetch_one(pool).await.unwrap();
    drain(pool).await;
    let cm2: i64 = sqlx::query_scalar("INSERT INTO mdl_course_modules (course, module, instance, added) VALUES ($1, $2, 0, extract(epoch from now())::bigint) RETURNING id")
        .bind(course).bind(modid).fetch_one(pool).await.unwrap();
    let inst2: i64 = sqlx::query_scalar(
        "INSERT INTO mdl_rocketchat (course, name, rocketchatid) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(course)
    .bind(&room.name)
    .bind(&room.rocketchatid)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query("UPDATE mdl_course_modules SET instance = $1 WHERE id = $2")
        .bind(inst2)
        .bind(cm2)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM mdl_tool_recyclebin_course WHERE id = $1")
        .bind(bin2)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    let last = jobs.last().unwrap();
    assert_eq!(last.0, "recyclebin");
    assert_eq!(last.1["action"], "restore");
    assert_eq!(last.1["cmid"], json!(cm2));
    assert_eq!(last.1["binid"], json!(bin2));
    assert_eq!(last.3.as_deref(), Some(format!("room:{cm2}").as_str()));
    let restore = jobs.iter().find(|j| j.0 == "restore").unwrap();
    assert_eq!(
        restore.2.as_deref(),
        Some(format!("restore:{cm2}").as_str())
    );

    // A plain delete (no bin) -> purge with the group id.
    sqlx::query("DELETE FROM mdl_rocketchat WHERE id = $1")
        .bind(room.instance_id)
        .execute(pool)
        .await
        .unwrap();
    let jobs = drain(pool).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].1,
        json!({"action": "purge", "cmid": room.cmid, "courseid": course, "instanceid": room.instance_id, "rocketchatid": room.rocketchatid})
    );
    assert_eq!(
        jobs[0].3.as_deref(),
        Some(format!("room:{}", room.cmid).as_str())
    );

    // Courses without chat activities produce no jobs at all.
    let quiet = s.sum.course_ids.iter().copied().find(|_| true).unwrap();
    sqlx::query("DELETE FROM mdl_course_modules WHERE course = $1")
        .bind(quiet)
        .execute(pool)
        .await
        .unwrap();
    drain(pool).await;
    fixture::mass_enrol(
        pool,
        &s.p,
        quiet,
        &UserSet::Range {
            first: s.sum.first_user_id,
            last: s.sum.last_user_id,
        },
        "student",
    )
    .await
    .unwrap();
    assert!(drain(pool).await.is_empty());
}
