//! Capture wherever the queue lives (issue 17 §4): the Moodle site and the queue in two
//! databases, a Moodle change becomes a job through the relay the workers run; two relays at
//! once move each row once; `install_with` refuses the setups that would drop captures.
#![allow(clippy::unwrap_used)]

use rcjobs_moodle::fixture::{self, FixtureSpec};
use rcjobs_moodle::outbox;
use rcjobs_moodle::triggers::{self, InstallOptions, TriggerMode};
use rcjobs_moodle::{schema, Prefix};
use rcjobs_testkit::TestDb;

async fn moodle_site(db: &TestDb, p: &Prefix) -> fixture::FixtureSummary {
    schema::create(&db.pool, p).await.unwrap();
    let mut spec = FixtureSpec::new(40, 3, 5);
    spec.enrolments_per_user = 1;
    spec.empty_courses = 1;
    fixture::generate(&db.pool, p, &spec).await.unwrap()
}

#[tokio::test]
async fn a_change_with_the_queue_in_another_database_becomes_a_job() {
    let moodle = TestDb::new().await;
    let queue = TestDb::new().await;
    let p = Prefix::new("mdl_").unwrap();
    let sum = moodle_site(&moodle, &p).await;
    rcjobs_queue::migrate(&queue.pool).await.unwrap();
    rcjobs_producer::register_kinds(&queue.pool).await.unwrap();
    triggers::install(&moodle.pool, &p, TriggerMode::ChangeCapture)
        .await
        .unwrap();
    // No queue schema in Moodle's database: before the outbox, every change ended as a
    // "schema rcjobs does not exist" warning and no job anywhere.
    let here: Option<String> = sqlx::query_scalar("SELECT to_regnamespace('rcjobs')::text")
        .fetch_one(&moodle.pool)
        .await
        .unwrap();
    assert_eq!(here, None);

    let user = sum.first_user_id;
    sqlx::query("UPDATE mdl_user SET suspended = 1 WHERE id = $1")
        .bind(user)
        .execute(&moodle.pool)
        .await
        .unwrap();
    let course = sum.empty_course_ids[0];
    let n = fixture::mass_enrol(
        &moodle.pool,
        &p,
        course,
        &fixture::UserSet::Range {
            first: sum.first_user_id,
            last: sum.first_user_id + 9,
        },
        "student",
    )
    .await
    .unwrap();
    assert_eq!(n, 10);
    assert!(outbox::pending(&moodle.pool, &p).await.unwrap() > 0);

    // Two replicas relaying at once: each row reaches the queue once.
    let (a, b) = tokio::join!(
        outbox::relay_all(&moodle.pool, &queue.pool, &p),
        outbox::relay_all(&moodle.pool, &queue.pool, &p)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let again = outbox::relay_all(&moodle.pool, &queue.pool, &p)
        .await
        .unwrap();
    assert_eq!(a.refused + b.refused + again.refused, 0);
    assert_eq!(outbox::pending(&moodle.pool, &p).await.unwrap(), 0);

    let jobs: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT kind, payload FROM rcjobs.job ORDER BY id")
            .fetch_all(&queue.pool)
            .await
            .unwrap();
    assert!(
        jobs.iter().any(
            |(k, pl)| k == "synchronize_user_everywhere" && pl["userid"].as_i64() == Some(user)
        ),
        "{jobs:?}"
    );
    let count = |kind: &str| jobs.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("enrol_role_assign"), 10, "{jobs:?}");
    assert_eq!(count("enrolment"), 10, "{jobs:?}");
    let relayed = a.jobs + b.jobs + again.jobs;
    assert_eq!(relayed as usize, jobs.len());
}

#[tokio::test]
async fn install_refuses_setups_that_would_drop_captures() {
    let moodle = TestDb::new().await;
    let p = Prefix::new("mdl_").unwrap();
    moodle_site(&moodle, &p).await;

    // Nobody could empty the outbox.
    let err = triggers::install_with(
        &moodle.pool,
        &p,
        TriggerMode::ChangeCapture,
        &InstallOptions {
            relay_role: Some("rcjobs_no_such_role".into()),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("relay role") && err.contains("does not exist"),
        "{err}"
    );

    // Triggers do not fire for sessions in replica mode.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} SET session_replication_role = replica",
        moodle.name
    )))
    .execute(&moodle.pool)
    .await
    .unwrap();
    let err = triggers::install(&moodle.pool, &p, TriggerMode::ChangeCapture)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("session_replication_role"), "{err}");
    assert!(triggers::installed(&moodle.pool, &p)
        .await
        .unwrap()
        .is_empty());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} RESET session_replication_role",
        moodle.name
    )))
    .execute(&moodle.pool)
    .await
    .unwrap();

    // A relay role that exists is granted what the relay needs.
    sqlx::query("DO $$ BEGIN CREATE ROLE rcjobs_test_relay NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        .execute(&moodle.pool)
        .await
        .unwrap();
    triggers::install_with(
        &moodle.pool,
        &p,
        TriggerMode::ChangeCapture,
        &InstallOptions {
            relay_role: Some("rcjobs_test_relay".into()),
        },
    )
    .await
    .unwrap();
    let (sel, del): (bool, bool) = sqlx::query_as(
        "SELECT has_table_privilege('rcjobs_test_relay', 'mdl_rcjobs_outbox', 'SELECT'),
                has_table_privilege('rcjobs_test_relay', 'mdl_rcjobs_outbox', 'DELETE')",
    )
    .fetch_one(&moodle.pool)
    .await
    .unwrap();
    assert!(sel && del);
    // The grant is the role's only dependency here; drop it so the role can go.
    sqlx::query("REVOKE ALL ON mdl_rcjobs_outbox FROM rcjobs_test_relay")
        .execute(&moodle.pool)
        .await
        .unwrap();
}
