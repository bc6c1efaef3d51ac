//! The SQL trigger set that turns Moodle activity into rcjobs jobs (`rcjobs.enqueue`).
//!
//! Two modes (install one; installing switches):
//! * [`TriggerMode::Plugin`]: a `BEFORE INSERT` trigger on `task_adhoc` turns each adhoc task
//!   mod_rocketchat queues into a job, reduced to ids, and drops the row (`RETURN NULL`), so
//!   Moodle's cron never runs it. If the enqueue fails for any reason, the row goes through
//!   unchanged and Moodle's cron runs it as before: nothing is lost.
//! * [`TriggerMode::ChangeCapture`]: `AFTER` row triggers on `role_assignments`,
//!   `user_enrolments`, `enrol`, `user`, `course_modules`, `rocketchat`,
//!   `tool_recyclebin_course` and `tool_recyclebin_category`, plus `logstore_standard_log`
//!   (course resets, one `WHEN` test per log row) when that table exists, for sites that do
//!   not run the plugin's observers; and `course` plus a second `course_modules` trigger for
//!   the rooms declared in standalone mode ([`crate::standalone`]). `rocketchat` is optional:
//!   without the plugin, change capture serves the declared rooms alone.
//!
//! Both modes create the standalone tables (`{prefix}rcjobs_room`, `{prefix}rcjobs_room_rule`)
//! if missing; [`uninstall`] keeps them (they hold the operator's declarations).
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
/// Change capture on the plugin's own table, where it exists.
const ROCKETCHAT_SQL: &str = include_str!("../sql/triggers_rocketchat.sql");
/// Change capture of course-wide life cycle: the category bin and course reset.
const LIFECYCLE_SQL: &str = include_str!("../sql/triggers_lifecycle.sql");
/// The standalone-mode tables (declared rooms and category rules), used by both modes.
pub const STANDALONE_TABLES_SQL: &str = include_str!("../sql/standalone_tables.sql");
const STANDALONE_SQL: &str = include_str!("../sql/standalone.sql");

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
    /// Tables (without prefix) that must exist for this mode; it also puts triggers on
    /// `rocketchat` where the plugin is installed (change capture works without it: a site
    /// without mod_rocketchat declares its rooms, see [`crate::standalone`]).
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            TriggerMode::Plugin => &["task_adhoc", "rocketchat"],
            TriggerMode::ChangeCapture => &[
                "role_assignments",
                "user_enrolments",
                "enrol",
                "user",
                "course_modules",
                "tool_recyclebin_course",
                "tool_recyclebin_category",
                "course",
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

async fn table_exists(
    conn: &mut PgConnection,
    schema: &str,
    prefix: &Prefix,
    table: &str,
) -> Result<bool> {
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{schema}.{}{table}", prefix.as_str()))
        .fetch_one(&mut *conn)
        .await?;
    Ok(found.is_some())
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
        .chain([
            "modules",
            "context",
            "course_modules",
            "course",
            "course_categories",
            "config_plugins",
            "role",
        ])
        .collect();
    for t in needed {
        if !table_exists(&mut tx, &schema, prefix, t).await? {
            return Err(MoodleError::Missing(format!(
                "table {schema}.{}{t}",
                prefix.as_str()
            )));
        }
    }
    drop_all(&mut tx, &schema, prefix).await?;
    let scripts: &[&str] = match mode {
        TriggerMode::Plugin => &[STANDALONE_TABLES_SQL, COMMON_SQL, PLUGIN_SQL],
        TriggerMode::ChangeCapture => &[
            STANDALONE_TABLES_SQL,
            COMMON_SQL,
            CHANGE_CAPTURE_SQL,
            LIFECYCLE_SQL,
            STANDALONE_SQL,
        ],
    };
    let plugin_table = table_exists(&mut tx, &schema, prefix, "rocketchat").await?;
    let extra: &[&str] = match mode {
        TriggerMode::ChangeCapture if plugin_table => &[ROCKETCHAT_SQL],
        _ => &[],
    };
    for script in scripts.iter().chain(extra) {
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
