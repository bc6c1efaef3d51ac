//! The SQL trigger set that turns Moodle activity into rcjobs jobs (`rcjobs.enqueue`).
//!
//! Two modes (install one; installing switches):
//! * [`TriggerMode::Plugin`]: a `BEFORE INSERT` trigger on `task_adhoc` turns each adhoc task
//!   mod_rocketchat queues into a job, reduced to ids, and drops the row (`RETURN NULL`), so
//!   Moodle's cron never runs it. If the enqueue fails for any reason, the row goes through
//!   unchanged and Moodle's cron runs it as before: nothing is lost.
//! * [`TriggerMode::ChangeCapture`]: `AFTER` row triggers on `role_assignments`,
//!   `user_enrolments`, `enrol`, `user`, `course_modules`, `rocketchat` and
//!   `tool_recyclebin_course`, for sites that do not run the plugin's observers.
//!
//! Containment: every trigger body runs in `BEGIN … EXCEPTION WHEN OTHERS THEN RAISE WARNING`
//! so a missing or broken rcjobs schema, a missing grant or a refused payload never makes the
//! Moodle write fail. Each trigger does a constant number of index lookups per row.
//!
//! Objects are schema-qualified (the Moodle schema is the connection's `current_schema()` at
//! install time) and named `<prefix>rcjobs_*`, so several Moodle sites (prefixes) can share a
//! database and [`uninstall`] drops exactly what [`install`] created. Payloads are documented
//! in `docs/moodle-queries.md` ("Trigger payloads").

use crate::{MoodleError, Prefix, Result};
use sqlx::{PgConnection, PgPool};

const COMMON_SQL: &str = include_str!("../sql/triggers_common.sql");
const PLUGIN_SQL: &str = include_str!("../sql/triggers_plugin.sql");
const CHANGE_CAPTURE_SQL: &str = include_str!("../sql/triggers_change_capture.sql");

/// Which trigger set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerMode {
    /// Intercept mod_rocketchat's adhoc tasks (`task_adhoc`).
    Plugin,
    /// Capture changes of the Moodle tables directly.
    ChangeCapture,
}

impl std::fmt::Display for TriggerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TriggerMode::Plugin => "plugin",
            TriggerMode::ChangeCapture => "change-capture",
        })
    }
}

impl TriggerMode {
    /// Tables (without prefix) that carry this mode's triggers.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            TriggerMode::Plugin => &["task_adhoc"],
            TriggerMode::ChangeCapture => &[
                "role_assignments",
                "user_enrolments",
                "enrol",
                "user",
                "course_modules",
                "rocketchat",
                "tool_recyclebin_course",
            ],
        }
    }
}

/// The Moodle schema: the connection's current schema (a plain lower-case identifier).
async fn moodle_schema(conn: &mut PgConnection) -> Result<String> {
    let s: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut *conn)
        .await?;
    let s =
        s.ok_or_else(|| MoodleError::Missing("no current schema (empty search_path?)".into()))?;
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(MoodleError::Invalid(format!(
            "unsupported Moodle schema name {s:?}"
        )));
    }
    Ok(s)
}

fn render(sql: &str, schema: &str, prefix: &Prefix) -> String {
    prefix.apply(sql).replace("{schema}", schema)
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%")
}

async fn drop_all(conn: &mut PgConnection, schema: &str, prefix: &Prefix) -> Result<u64> {
    let funcs: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = $1 AND p.proname LIKE $2 ORDER BY 1",
    )
    .bind(schema)
    .bind(format!("{}rcjobs\\_%", like_escape(prefix.as_str())))
    .fetch_all(&mut *conn)
    .await?;
    for f in &funcs {
        // `f` comes from regprocedure output (quoted as needed) of a name we matched above.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP FUNCTION IF EXISTS {f} CASCADE"
        )))
        .execute(&mut *conn)
        .await?;
    }
    Ok(funcs.len() as u64)
}

/// Installs the `mode` trigger set (removing any previously installed rcjobs triggers first),
/// in one transaction. Idempotent and safe to run concurrently.
pub async fn install(pool: &PgPool, prefix: &Prefix, mode: TriggerMode) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rcjobs_moodle_triggers'))")
        .execute(&mut *tx)
        .await?;
    let schema = moodle_schema(&mut tx).await?;
    let needed: Vec<&str> = mode
        .tables()
        .iter()
        .copied()
        .chain(["modules", "context", "course_modules", "rocketchat"])
        .collect();
    for t in needed {
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(format!("{schema}.{}{t}", prefix.as_str()))
            .fetch_one(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(MoodleError::Missing(format!(
                "table {schema}.{}{t}",
                prefix.as_str()
            )));
        }
    }
    drop_all(&mut tx, &schema, prefix).await?;
    let body = match mode {
        TriggerMode::Plugin => PLUGIN_SQL,
        TriggerMode::ChangeCapture => CHANGE_CAPTURE_SQL,
    };
    for script in [COMMON_SQL, body] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(render(script, &schema, prefix)))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(%mode, prefix = prefix.as_str(), %schema, "rcjobs trigger set installed");
    Ok(())
}

/// Removes every rcjobs trigger and trigger function for this prefix (both modes). Moodle's
/// tables and data are untouched. Idempotent.
pub async fn uninstall(pool: &PgPool, prefix: &Prefix) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rcjobs_moodle_triggers'))")
        .execute(&mut *tx)
        .await?;
    let schema = moodle_schema(&mut tx).await?;
    let n = drop_all(&mut tx, &schema, prefix).await?;
    tx.commit().await?;
    tracing::info!(
        prefix = prefix.as_str(),
        functions = n,
        "rcjobs trigger set removed"
    );
    Ok(())
}

/// Names of the rcjobs triggers currently installed for this prefix, as `table.trigger`.
pub async fn installed(pool: &PgPool, prefix: &Prefix) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname || '.' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE NOT t.tgisinternal AND t.tgname LIKE $1 AND c.relnamespace = current_schema()::regnamespace
          ORDER BY 1",
    )
    .bind(format!("{}rcjobs\\_%", like_escape(prefix.as_str())))
    .fetch_all(pool)
    .await?)
}
