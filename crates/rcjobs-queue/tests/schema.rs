//! Migrations, schema version check, producer role permissions.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use rcjobs_queue::{check_schema, migrate, schema_version, QueueError, SCHEMA_VERSION};
use rcjobs_testkit::TestDb;

#[tokio::test]
async fn migrate_is_idempotent_and_versioned() {
    let db = TestDb::new().await;
    assert_eq!(schema_version(&db.pool).await.unwrap(), None);
    let err = check_schema(&db.pool).await.unwrap_err();
    assert!(matches!(err, QueueError::Schema(_)));
    assert!(err.to_string().contains("rcjobs migrate"), "{err}");

    migrate(&db.pool).await.unwrap();
    migrate(&db.pool).await.unwrap();
    assert_eq!(
        schema_version(&db.pool).await.unwrap(),
        Some(SCHEMA_VERSION)
    );
    check_schema(&db.pool).await.unwrap();

    // the bookkeeping table lives in our schema, not public
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs._sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(n >= 1);
}

#[tokio::test]
async fn older_schema_is_refused_with_a_clear_message() {
    let db = common::db().await;
    sqlx::query("CREATE OR REPLACE FUNCTION rcjobs.schema_version() RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 0 $$")
        .execute(&db.pool)
        .await
        .unwrap();
    let err = check_schema(&db.pool).await.unwrap_err().to_string();
    assert!(
        err.contains("version 0") && err.contains("rcjobs migrate"),
        "{err}"
    );
}

#[tokio::test]
async fn producer_role_can_enqueue_and_nothing_else() {
    let db = common::db().await;
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE rcjobs_producer")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar("SELECT rcjobs.enqueue('course', '{\"course_id\": 7}')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(id > 0);
    let bulk: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM rcjobs.enqueue_many(ARRAY['noop','noop'], ARRAY['{}','{}']::jsonb[])",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(bulk.len(), 2);
    for sql in [
        "SELECT count(*) FROM rcjobs.job",
        "SELECT count(*) FROM rcjobs.job_history",
        "SELECT count(*) FROM rcjobs.job_kind",
        "SELECT count(*) FROM rcjobs.task_adhoc",
    ] {
        sqlx::query("SAVEPOINT s").execute(&mut *tx).await.unwrap();
        let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
        assert_eq!(
            err.as_database_error().unwrap().code().as_deref(),
            Some("42501"),
            "{sql}: {err}"
        );
        sqlx::query("ROLLBACK TO SAVEPOINT s")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for sql in [
        "UPDATE rcjobs.job SET priority = 5",
        "DELETE FROM rcjobs.job",
        "SELECT rcjobs.cancel_job(1)",
        "SELECT * FROM rcjobs.complete_jobs(ARRAY[1::bigint], ARRAY[1])",
        "SELECT * FROM rcjobs.sweep()",
    ] {
        sqlx::query("SAVEPOINT s").execute(&mut *tx).await.unwrap();
        let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
        assert_eq!(
            err.as_database_error().unwrap().code().as_deref(),
            Some("42501"),
            "{sql}: {err}"
        );
        sqlx::query("ROLLBACK TO SAVEPOINT s")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rcjobs.job")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 3);
}

#[tokio::test]
async fn task_adhoc_view_has_moodle_names() {
    let db = common::db().await;
    rcjobs_queue::enqueue(
        &db.pool,
        &rcjobs_queue::NewJob::new("course", serde_json::json!({"course_id": 3})),
    )
    .await
    .unwrap();
    let row: (String, String, String, i64, i32, i32, Option<i64>, Option<String>, Option<i32>) = sqlx::query_as(
        "SELECT classname, component, customdata, nextruntime, faildelay, attemptsavailable, timestarted, hostname, pid
         FROM rcjobs.task_adhoc",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.0, "course");
    assert_eq!(row.1, "rcjobs");
    assert!(row.2.contains("course_id"));
    assert!(row.3 > 1_700_000_000);
    assert_eq!(row.4, 0);
    assert_eq!(row.5, 12);
    assert_eq!(row.6, None);
}
