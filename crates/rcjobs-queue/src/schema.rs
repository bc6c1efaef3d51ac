//! Migrations and the schema-version check.

use crate::QueueError;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use std::borrow::Cow;

/// The schema version this binary needs (`rcjobs.schema_version()` in the database).
pub const SCHEMA_VERSION: i32 = 5;

/// The embedded migrations; their bookkeeping table lives in the `rcjobs` schema so other
/// components' migrations in the same database do not collide with ours.
pub fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("../../migrations");
    m.table_name = Cow::Borrowed("rcjobs._sqlx_migrations");
    m.create_schemas = Cow::Borrowed(&[Cow::Borrowed("rcjobs")]);
    m.set_ignore_missing(true);
    m
}

/// Creates or upgrades the queue schema. Re-running it is a no-op.
pub async fn migrate(pool: &PgPool) -> Result<(), QueueError> {
    migrator().run(pool).await?;
    Ok(())
}

/// The schema version in the database, or `None` when the schema was never migrated.
pub async fn schema_version(pool: &PgPool) -> Result<Option<i32>, QueueError> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regprocedure('rcjobs.schema_version()')::text")
            .fetch_one(pool)
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let v: i32 = sqlx::query_scalar("SELECT rcjobs.schema_version()")
        .fetch_one(pool)
        .await?;
    Ok(Some(v))
}

/// Fails with a clear message when the database schema is missing or older than
/// [`SCHEMA_VERSION`]; workers call this before claiming anything.
pub async fn check_schema(pool: &PgPool) -> Result<(), QueueError> {
    match schema_version(pool).await? {
        None => Err(QueueError::Schema(
            "the database has no rcjobs schema; run `rcjobs migrate` first".into(),
        )),
        Some(v) if v < SCHEMA_VERSION => Err(QueueError::Schema(format!(
            "the database's rcjobs schema is version {v}, older than the version {SCHEMA_VERSION} this binary needs; run `rcjobs migrate`"
        ))),
        Some(_) => Ok(()),
    }
}
