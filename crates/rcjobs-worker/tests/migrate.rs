//! The sync schema's migrations: whether any is pending is read without the migrator's lock.
#![allow(clippy::unwrap_used)]

use rcjobs_testkit::TestDb;

#[tokio::test]
async fn pending_until_migrated_then_not() {
    let db = TestDb::new().await;
    assert!(rcjobs_worker::migrations_pending(&db.pool).await.unwrap());
    rcjobs_worker::migrate(&db.pool).await.unwrap();
    assert!(!rcjobs_worker::migrations_pending(&db.pool).await.unwrap());
    // a recorded migration missing from the table counts as pending again
    sqlx::query(
        "DELETE FROM rcjobs_sync._sqlx_migrations
         WHERE version = (SELECT max(version) FROM rcjobs_sync._sqlx_migrations)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert!(rcjobs_worker::migrations_pending(&db.pool).await.unwrap());
    // and no advisory lock is left behind by the check
    let locks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(locks, 0);
}
