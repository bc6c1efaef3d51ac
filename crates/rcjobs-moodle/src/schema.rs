//! Moodle's tables on PostgreSQL, for tests, the demo and benchmarks.
//!
//! The DDL is generated from Moodle's XMLDB files (copies in `xmldb/`) by [`crate::xmldb`] and
//! committed as `sql/moodle_schema.sql`; `tests/ddl.rs` checks that regenerating gives the
//! same text. Only the tables in [`TABLES`] are generated: what the model, the fixture and the
//! triggers touch, plus a few cheap neighbours.

use crate::{Prefix, Result};
use sqlx::PgPool;

/// Tables generated (names without prefix), in creation order.
pub const TABLES: &[&str] = &[
    "config",
    "config_plugins",
    "user",
    "course_categories",
    "course",
    "modules",
    "course_modules",
    "context",
    "role",
    "role_assignments",
    "enrol",
    "user_enrolments",
    "cohort",
    "cohort_members",
    "groups",
    "groups_members",
    "task_adhoc",
    "rocketchat",
    "rocketchatxrecyclebin",
    "tool_recyclebin_course",
    "tool_recyclebin_category",
];

/// The committed DDL, with the `{prefix}` placeholder.
pub const SCHEMA_SQL: &str = include_str!("../sql/moodle_schema.sql");

/// Regenerates [`SCHEMA_SQL`] from the three XMLDB files (core, mod_rocketchat, tool_recyclebin).
pub fn generate(core_xml: &str, rocketchat_xml: &str, recyclebin_xml: &str) -> Result<String> {
    Ok(crate::xmldb::generate(
        &[core_xml, rocketchat_xml, recyclebin_xml],
        TABLES,
    )?)
}

/// Creates the Moodle tables with `prefix` (idempotent: existing tables and indexes are kept).
pub async fn create(pool: &PgPool, prefix: &Prefix) -> Result<()> {
    let sql = prefix.apply(SCHEMA_SQL);
    let mut tx = pool.begin().await?;
    // Two concurrent creators would race on CREATE TABLE IF NOT EXISTS; serialise them.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rcjobs_moodle_schema'))")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether the prefixed `user` table exists (a cheap "is there a Moodle here" probe).
pub async fn exists(pool: &PgPool, prefix: &Prefix) -> Result<bool> {
    let name = format!("{}user", prefix.as_str());
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(name)
        .fetch_one(pool)
        .await?;
    Ok(found.is_some())
}
