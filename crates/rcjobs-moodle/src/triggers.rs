//! The SQL trigger set that turns Moodle activity into rcjobs jobs.
//!
//! The triggers do not call the queue: they append the job each change asks for to the
//! capture outbox, `{prefix}rcjobs_outbox` in the Moodle database, and the workers relay it
//! into the queue ([`crate::outbox`]). So a capture costs Moodle one plain append (no
//! validation, dedup or lane lock inside Moodle's transaction) and works wherever the queue
//! lives: the same database, another one, another server (docs/decisions/0011-capture.md).
//!
//! Two modes (install one; installing switches):
//! * [`TriggerMode::Plugin`]: a `BEFORE INSERT` trigger on `task_adhoc` turns each adhoc task
//!   mod_rocketchat queues into a job, reduced to ids, and drops the row (`RETURN NULL`), so
//!   Moodle's cron never runs it. If the capture fails for any reason, the row goes through
//!   unchanged and Moodle's cron runs it as before: nothing is lost.
//! * [`TriggerMode::ChangeCapture`]: `AFTER` triggers (statement-level with transition
//!   tables for the inserts and deletes of `role_assignments` and `user_enrolments`, which
//!   Moodle's bulk enrolment paths write by the thousand; row-level elsewhere) on `role_assignments`,
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
//! so a missing grant or a broken outbox never makes the Moodle write fail. Each trigger does
//! a constant number of index lookups per row. [`install_with`] refuses a setup in which a
//! captured change could be dropped (see [`InstallOptions`]).
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

/// Who must reach the outbox besides the installing role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOptions {
    /// The role the workers use on the Moodle database (`MOODLE_DATABASE_URL`), when it is
    /// not the installing role: it is granted `SELECT, DELETE` on the outbox (the relay), and
    /// the install is refused if it does not exist.
    pub relay_role: Option<String>,
}

/// Installs the `mode` trigger set with the default [`InstallOptions`] (the workers use the
/// installing role on the Moodle database).
pub async fn install(pool: &PgPool, prefix: &Prefix, mode: TriggerMode) -> Result<()> {
    install_with(pool, prefix, mode, &InstallOptions::default()).await
}

/// Whether `role` names an existing role (a plain identifier check first: it is spliced into
/// a GRANT).
fn valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 63
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reasons a captured change could be dropped in this database, checked before installing.
async fn refusals(
    conn: &mut PgConnection,
    schema: &str,
    prefix: &Prefix,
    mode: TriggerMode,
    opts: &InstallOptions,
) -> Result<Vec<String>> {
    let mut why = Vec::new();
    // A role or database set to session_replication_role = replica fires no ordinary
    // trigger: Moodle's writes under it would never be captured.
    let tables: Vec<String> = mode
        .tables()
        .iter()
        .map(|t| format!("{schema}.{}{t}", prefix.as_str()))
        .collect();
    let replica: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT coalesce(r.rolname, '(every role)') || ' in ' || coalesce(d.datname, 'every database')
           FROM pg_db_role_setting s
           LEFT JOIN pg_roles r ON r.oid = s.setrole
           LEFT JOIN pg_database d ON d.oid = s.setdatabase
          WHERE (s.setdatabase = 0 OR d.datname = current_database())
            AND (s.setrole = 0 OR r.rolname = current_user OR r.oid IN (
                   SELECT c.relowner FROM pg_class c WHERE c.oid = ANY (
                     SELECT to_regclass(t) FROM unnest($1::text[]) t)))
            AND EXISTS (SELECT 1 FROM unnest(s.setconfig) g WHERE g = 'session_replication_role=replica')
          ORDER BY 1",
    )
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    for r in replica {
        why.push(format!(
            "session_replication_role = replica is set for {r}: triggers do not fire there, so Moodle's writes would not be captured"
        ));
    }
    if let Some(role) = &opts.relay_role {
        let exists: bool = valid_role(role)
            && sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(role)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            why.push(format!(
                "relay role {role:?} does not exist: no worker could move the captured changes out of the outbox"
            ));
        }
    }
    Ok(why)
}

/// The roles Moodle writes the captured tables as (their owners) and the installer: each
/// must be able to append to the outbox, or its changes would end as warnings.
async fn grant_writers(conn: &mut PgConnection, schema: &str, prefix: &Prefix) -> Result<()> {
    let outbox = format!("{schema}.{}rcjobs_outbox", prefix.as_str());
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT quote_ident(pg_get_userbyid(c.relowner)) FROM pg_class c
          WHERE c.relnamespace = $1::regnamespace AND c.relname LIKE $2 AND c.relkind = 'r'
            AND NOT has_table_privilege(c.relowner, $3::regclass, 'INSERT')",
    )
    .bind(schema)
    .bind(format!("{}%", like_escape(prefix.as_str())))
    .bind(&outbox)
    .fetch_all(&mut *conn)
    .await?;
    for o in owners {
        // `o` is quote_ident output of an existing role; `outbox` the validated names.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "GRANT INSERT ON {outbox} TO {o}"
        )))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Installs the `mode` trigger set (removing any previously installed rcjobs triggers first),
/// in one transaction, and the capture outbox if missing. Idempotent and safe to run
/// concurrently. Refused, with every reason, when a captured change could be dropped.
pub async fn install_with(
    pool: &PgPool,
    prefix: &Prefix,
    mode: TriggerMode,
    opts: &InstallOptions,
) -> Result<()> {
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
    let why = refusals(&mut tx, &schema, prefix, mode, opts).await?;
    if !why.is_empty() {
        return Err(MoodleError::Invalid(format!(
            "refusing to install the {mode} trigger set, captured changes could be dropped: {}",
            why.join("; ")
        )));
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
    grant_writers(&mut tx, &schema, prefix).await?;
    if let Some(role) = &opts.relay_role {
        // Checked by `refusals`: an existing role of plain identifier characters.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "GRANT SELECT, DELETE ON {schema}.{}rcjobs_outbox TO \"{role}\"",
            prefix.as_str()
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(%mode, prefix = prefix.as_str(), %schema, "rcjobs trigger set installed");
    Ok(())
}

/// Removes every rcjobs trigger and trigger function for this prefix (both modes). Moodle's
/// tables and data are untouched, and so is the outbox: rows still in it get relayed.
/// Idempotent.
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
