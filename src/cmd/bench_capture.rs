//! `rcjobs bench capture`: what the trigger set costs Moodle's own writes.
//!
//! Moodle's write patterns on a synthetic site, each in Moodle's transaction as Moodle writes
//! it (one statement per row where Moodle's API does so, with the standard log's event rows),
//! timed with no triggers, in plugin-interception mode (the plugin's observers' adhoc task
//! inserts included, and timed without the trigger too) and in change-capture mode. Each
//! transaction is rolled back, so every repetition writes the same rows; the commit's own
//! cost (paid by Moodle with or without us) is left out, which makes the ratios pessimistic.
//! Modes are interleaved per repetition and the fastest repetition kept, so drift and
//! interference on a shared machine hit every mode alike. Then one bulk sync is committed in change-capture mode and the
//! outbox relayed into the queue, to show what the workers' side costs.

use super::config::Settings;
use anyhow::Context;
use clap::Args;
use rcjobs_moodle::fixture::{self, FixtureSpec};
use rcjobs_moodle::triggers::{self, TriggerMode};
use rcjobs_moodle::{outbox, schema, Prefix};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// `rcjobs bench capture` arguments.
#[derive(Debug, Args)]
pub struct CaptureBenchArgs {
    /// Users enrolled one at a time through enrol_manual (one statement per row).
    #[arg(long, default_value_t = 300)]
    pub enrol_users: i64,
    /// Users enrolled by one cohort/flat-file sync in one transaction (one statement per table).
    #[arg(long, default_value_t = 5000)]
    pub sync_users: i64,
    /// Role changes (student -> editing teacher: unassign + assign).
    #[arg(long, default_value_t = 200)]
    pub role_changes: i64,
    /// User suspensions, each its own transaction.
    #[arg(long, default_value_t = 200)]
    pub suspensions: i64,
    /// Chat activities deleted (to the course recycle bin), each its own transaction.
    #[arg(long, default_value_t = 10)]
    pub module_deletes: i64,
    /// Repetitions per mode (the fastest is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Database created (and dropped) on the server of DATABASE_URL for the run.
    #[arg(long, default_value = "rcjobs_bench_capture")]
    pub database: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// How the site captures changes during one timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No rcjobs triggers; Moodle without mod_rocketchat's observers.
    None,
    /// Change-capture triggers.
    ChangeCapture,
    /// No rcjobs triggers; the plugin's observers queue their adhoc tasks.
    PluginTasks,
    /// The plugin's adhoc tasks intercepted by the plugin-mode trigger.
    Plugin,
}

const MODES: [Mode; 4] = [
    Mode::None,
    Mode::ChangeCapture,
    Mode::PluginTasks,
    Mode::Plugin,
];

/// The patterns, in report order.
const PATTERNS: [&str; 5] = [
    "enrol_manual, one row per statement",
    "cohort/flat-file sync, one transaction",
    "role changes",
    "user suspension",
    "module delete (to the recycle bin)",
];

/// One pattern's figures.
#[derive(Debug, Serialize)]
struct PatternResult {
    pattern: &'static str,
    /// Moodle's statements per repetition (without the plugin's task inserts).
    statements: u64,
    /// Jobs the change-capture triggers appended to the outbox per repetition.
    captured_rows: i64,
    none_ms: f64,
    change_capture_ms: f64,
    /// change_capture_ms / none_ms.
    change_capture_ratio: f64,
    /// (change_capture_ms - none_ms) per captured row, microseconds.
    change_capture_us_per_row: f64,
    plugin_tasks_ms: f64,
    plugin_mode_ms: f64,
    /// plugin_mode_ms / plugin_tasks_ms.
    plugin_ratio: f64,
}

/// The relay of one committed bulk sync.
#[derive(Debug, Serialize)]
struct RelayResult {
    outbox_rows: u64,
    jobs: u64,
    seconds: f64,
    rows_per_second: f64,
}

/// Everything the site offers the patterns.
struct Site {
    prefix: Prefix,
    now: i64,
    student: i64,
    teacher: i64,
    /// (enrol instance, course context) of the enrol_manual target course.
    manual: (i64, i64),
    /// The same for the sync target course.
    sync: (i64, i64),
    /// Users not enrolled anywhere yet.
    free_users: Vec<i64>,
    /// (user, course context) of students of courses with rooms.
    students: Vec<(i64, i64)>,
    /// Active users to suspend.
    active: Vec<i64>,
    /// (cmid, instance, course, module) of chat activities.
    modules: Vec<(i64, i64, i64, i64)>,
}

/// Runs `rcjobs bench capture`.
pub async fn run(s: &Settings, a: CaptureBenchArgs) -> anyhow::Result<()> {
    let ok = a
        .database
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && a.database
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(ok, "--database must match ^[a-z][a-z0-9_]*$");
    anyhow::ensure!(a.reps > 0, "--reps must be at least 1");
    let base =
        sqlx::postgres::PgConnectOptions::from_str(&s.database_url).context("DATABASE_URL")?;
    let mut admin = base
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connect to the server")?;
    // identifier validated above
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        a.database
    )))
    .execute(&mut admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        a.database
    )))
    .execute(&mut admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "COMMENT ON DATABASE {} IS 'created by rcjobs bench capture: safe to drop'",
        a.database
    )))
    .execute(&mut admin)
    .await?;
    let opts = base
        .clone()
        .database(&a.database)
        .disable_statement_logging();
    // One connection: every mode's writes run in the same warm backend.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts.clone())
        .await?;
    // The relay's queue side (it holds a Moodle-side transaction meanwhile).
    let queue = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    let result = bench(&pool, &queue, &a).await;
    pool.close().await;
    queue.close().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        a.database
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    let out = result?;
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        print_table(&out);
    }
    Ok(())
}

fn print_table(out: &serde_json::Value) {
    println!(
        "{:<40} {:>6} {:>8} {:>9} {:>9} {:>7} {:>8} {:>9} {:>9} {:>7}",
        "pattern",
        "stmts",
        "captured",
        "none ms",
        "cc ms",
        "cc x",
        "us/row",
        "tasks ms",
        "plugin ms",
        "plug x"
    );
    for p in out["patterns"].as_array().into_iter().flatten() {
        println!(
            "{:<40} {:>6} {:>8} {:>9.2} {:>9.2} {:>7.2} {:>8.1} {:>9.2} {:>9.2} {:>7.2}",
            p["pattern"].as_str().unwrap_or(""),
            p["statements"],
            p["captured_rows"],
            p["none_ms"].as_f64().unwrap_or(0.0),
            p["change_capture_ms"].as_f64().unwrap_or(0.0),
            p["change_capture_ratio"].as_f64().unwrap_or(0.0),
            p["change_capture_us_per_row"].as_f64().unwrap_or(0.0),
            p["plugin_tasks_ms"].as_f64().unwrap_or(0.0),
            p["plugin_mode_ms"].as_f64().unwrap_or(0.0),
            p["plugin_ratio"].as_f64().unwrap_or(0.0),
        );
    }
    println!("relay: {}", out["relay"]);
    println!("machine: {}", out["machine"]);
}

async fn bench(
    pool: &PgPool,
    queue: &PgPool,
    a: &CaptureBenchArgs,
) -> anyhow::Result<serde_json::Value> {
    rcjobs_queue::migrate(pool).await?;
    rcjobs_producer::register_kinds(pool).await?;
    let prefix = Prefix::new("mdl_")?;
    schema::create(pool, &prefix).await?;
    create_logstore(pool).await?;
    let enrolled = (a.role_changes + a.suspensions).max(200);
    let users =
        u32::try_from(enrolled + a.enrol_users.max(a.sync_users)).context("too many users")?;
    let mut spec = FixtureSpec::new(users, 4, 17);
    spec.enrolments_per_user = 1;
    spec.empty_courses = 2;
    let sum = fixture::generate(pool, &prefix, &spec).await?;
    let site = site(pool, &prefix, &sum, a).await?;
    let mut times: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); PATTERNS.len()]; MODES.len()];
    let mut statements = vec![0u64; PATTERNS.len()];
    let mut captured = vec![0i64; PATTERNS.len()];
    for _ in 0..a.reps {
        for (mi, mode) in MODES.iter().enumerate() {
            install(pool, &prefix, *mode).await?;
            // A first, unreported pass compiles the (re)installed trigger functions and
            // caches their plans in the one connection, as a busy Moodle backend has them.
            for pi in 0..PATTERNS.len() {
                time_pattern(pool, &site, a, pi, *mode).await?;
            }
            for pi in 0..PATTERNS.len() {
                let (t, n, rows) = time_pattern(pool, &site, a, pi, *mode).await?;
                times[mi][pi].push(t.as_secs_f64() * 1000.0);
                if *mode == Mode::None {
                    statements[pi] = n;
                }
                if *mode == Mode::ChangeCapture {
                    captured[pi] = rows;
                }
            }
        }
    }
    // The fastest repetition: on a shared machine other work only ever adds time, so the
    // minimum is the figure closest to the writes' own cost, for every mode alike.
    let best = |v: &mut Vec<f64>| v.iter().copied().fold(f64::INFINITY, f64::min);
    let mut patterns = Vec::new();
    for (pi, name) in PATTERNS.iter().enumerate() {
        let none = best(&mut times[0][pi]);
        let cc = best(&mut times[1][pi]);
        let tasks = best(&mut times[2][pi]);
        let plugin = best(&mut times[3][pi]);
        patterns.push(PatternResult {
            pattern: name,
            statements: statements[pi],
            captured_rows: captured[pi],
            none_ms: none,
            change_capture_ms: cc,
            change_capture_ratio: cc / none,
            change_capture_us_per_row: if captured[pi] > 0 {
                (cc - none) * 1000.0 / captured[pi] as f64
            } else {
                0.0
            },
            plugin_tasks_ms: tasks,
            plugin_mode_ms: plugin,
            plugin_ratio: plugin / tasks,
        });
    }
    let relay = relay(pool, queue, &site, a).await?;
    let pg: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(pool)
        .await?;
    Ok(serde_json::json!({
        "patterns": patterns,
        "relay": relay,
        "reps": a.reps,
        "machine": machine(pg),
    }))
}

/// The standard log store's table, as Moodle creates it (the columns and indexes a log
/// insert maintains): every event of these patterns writes a row there in Moodle's
/// transaction, and the trigger set puts its course-reset trigger on it.
async fn create_logstore(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS mdl_logstore_standard_log (
           id bigserial PRIMARY KEY, eventname varchar(255) NOT NULL DEFAULT '',
           component varchar(100) NOT NULL DEFAULT '', action varchar(100) NOT NULL DEFAULT '',
           target varchar(100) NOT NULL DEFAULT '', objecttable varchar(50), objectid bigint,
           crud varchar(1) NOT NULL DEFAULT '', edulevel smallint NOT NULL DEFAULT 0,
           contextid bigint NOT NULL DEFAULT 0, contextlevel bigint NOT NULL DEFAULT 0,
           contextinstanceid bigint NOT NULL DEFAULT 0, userid bigint NOT NULL DEFAULT 0,
           courseid bigint, relateduserid bigint, anonymous smallint NOT NULL DEFAULT 0,
           other text, timecreated bigint NOT NULL DEFAULT 0, origin varchar(10), ip varchar(45),
           realuserid bigint);
         CREATE INDEX IF NOT EXISTS mdl_logsstanlog_tim_ix ON mdl_logstore_standard_log (timecreated);
         CREATE INDEX IF NOT EXISTS mdl_logsstanlog_couanotim_ix ON mdl_logstore_standard_log (courseid, anonymous, timecreated);
         CREATE INDEX IF NOT EXISTS mdl_logsstanlog_useconconcr_ix ON mdl_logstore_standard_log (userid, contextlevel, contextinstanceid, crud, edulevel, timecreated);
         CREATE INDEX IF NOT EXISTS mdl_logsstanlog_con_ix ON mdl_logstore_standard_log (contextid);",
    )
    .execute(pool)
    .await?;
    Ok(())
}

async fn site(
    pool: &PgPool,
    prefix: &Prefix,
    sum: &fixture::FixtureSummary,
    a: &CaptureBenchArgs,
) -> anyhow::Result<Site> {
    let role = |name: &'static str| async move {
        sqlx::query_scalar::<_, i64>("SELECT id FROM mdl_role WHERE shortname = $1")
            .bind(name)
            .fetch_one(pool)
            .await
    };
    let target = |course: i64| async move {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT e.id, c.id FROM mdl_enrol e JOIN mdl_context c ON c.contextlevel = 50 AND c.instanceid = e.courseid
              WHERE e.courseid = $1 AND e.enrol = 'manual' ORDER BY e.id LIMIT 1",
        )
        .bind(course)
        .fetch_one(pool)
        .await
    };
    let [manual_course, sync_course] = sum.empty_course_ids[..] else {
        anyhow::bail!("the fixture made no empty target courses");
    };
    // Enrolled elsewhere or not, none is in the (empty) target courses yet.
    let free_users: Vec<i64> = sqlx::query_scalar(
        "SELECT u.id FROM mdl_user u WHERE u.id BETWEEN $1 AND $2 ORDER BY u.id LIMIT $3",
    )
    .bind(sum.first_user_id)
    .bind(sum.last_user_id)
    .bind(a.enrol_users.max(a.sync_users))
    .fetch_all(pool)
    .await?;
    let student = role("student").await?;
    let students: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT DISTINCT ON (ra.userid) ra.userid, ra.contextid FROM mdl_role_assignments ra
           JOIN mdl_context c ON c.id = ra.contextid AND c.contextlevel = 50
          WHERE ra.roleid = $1 AND EXISTS (SELECT 1 FROM mdl_course_modules cm JOIN mdl_modules m ON m.id = cm.module
                                            WHERE m.name = 'rocketchat' AND cm.course = c.instanceid)
          ORDER BY ra.userid LIMIT $2",
    )
    .bind(student)
    .bind(a.role_changes)
    .fetch_all(pool)
    .await?;
    let active: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM mdl_user WHERE id BETWEEN $1 AND $2 AND suspended = 0 AND deleted = 0 ORDER BY id DESC LIMIT $3",
    )
    .bind(sum.first_user_id)
    .bind(sum.last_user_id)
    .bind(a.suspensions)
    .fetch_all(pool)
    .await?;
    let modules: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT cm.id, cm.instance, cm.course, cm.module FROM mdl_course_modules cm JOIN mdl_modules m ON m.id = cm.module
          WHERE m.name = 'rocketchat' ORDER BY cm.id LIMIT $1",
    )
    .bind(a.module_deletes)
    .fetch_all(pool)
    .await?;
    Ok(Site {
        prefix: prefix.clone(),
        now: rcjobs_moodle::unix_now(),
        student,
        teacher: role("editingteacher").await?,
        manual: target(manual_course).await?,
        sync: target(sync_course).await?,
        free_users,
        students,
        active,
        modules,
    })
}

async fn install(pool: &PgPool, prefix: &Prefix, mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::None | Mode::PluginTasks => triggers::uninstall(pool, prefix).await?,
        Mode::ChangeCapture => triggers::install(pool, prefix, TriggerMode::ChangeCapture).await?,
        Mode::Plugin => triggers::install(pool, prefix, TriggerMode::Plugin).await?,
    }
    Ok(())
}

/// Counts the statements of one timed transaction.
struct Tx<'c> {
    conn: &'c mut PgConnection,
    statements: u64,
}

impl Tx<'_> {
    async fn exec(&mut self, sql: &'static str, args: &[i64]) -> anyhow::Result<()> {
        let mut q = sqlx::query(sql);
        for a in args {
            q = q.bind(*a);
        }
        q.execute(&mut *self.conn).await?;
        self.statements += 1;
        Ok(())
    }

    /// A standard log row for one event, as Moodle's log store writes it.
    async fn log(&mut self, event: &'static str, ctx: i64, user: i64) -> anyhow::Result<()> {
        self.exec(
            match event {
                "user_enrolment_created" => "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, objecttable, objectid, crud, edulevel, contextid, contextlevel, contextinstanceid, userid, relateduserid, other, timecreated, origin)
                    VALUES ('\\core\\event\\user_enrolment_created', 'core', 'created', 'user_enrolment', 'user_enrolments', $1, 'c', 0, $1, 50, 0, 2, $2, '{\"enrol\":\"manual\"}', $3, 'web')",
                "role_assigned" => "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, objecttable, objectid, crud, edulevel, contextid, contextlevel, contextinstanceid, userid, relateduserid, other, timecreated, origin)
                    VALUES ('\\core\\event\\role_assigned', 'core', 'assigned', 'role', 'role', $1, 'c', 0, $1, 50, 0, 2, $2, '{\"id\":1,\"component\":\"\",\"itemid\":0}', $3, 'web')",
                "role_unassigned" => "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, objecttable, objectid, crud, edulevel, contextid, contextlevel, contextinstanceid, userid, relateduserid, other, timecreated, origin)
                    VALUES ('\\core\\event\\role_unassigned', 'core', 'unassigned', 'role', 'role', $1, 'd', 0, $1, 50, 0, 2, $2, '{\"id\":1,\"component\":\"\",\"itemid\":0}', $3, 'web')",
                "user_updated" => "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, objecttable, objectid, crud, edulevel, contextid, contextlevel, contextinstanceid, userid, relateduserid, other, timecreated, origin)
                    VALUES ('\\core\\event\\user_updated', 'core', 'updated', 'user', 'user', $2, 'u', 0, $1, 30, $2, 2, $2, NULL, $3, 'web')",
                _ => "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, objecttable, objectid, crud, edulevel, contextid, contextlevel, contextinstanceid, userid, relateduserid, other, timecreated, origin)
                    VALUES ('\\core\\event\\course_module_deleted', 'core', 'deleted', 'course_module', 'course_modules', $2, 'd', 0, $1, 50, 0, 2, NULL, '{\"modulename\":\"rocketchat\"}', $3, 'web')",
            },
            &[ctx, user, rcjobs_moodle::unix_now()],
        )
        .await
    }

    /// The adhoc task a mod_rocketchat observer queues (its customdata shape).
    async fn task(&mut self, class: &'static str, user: i64, ctx: i64) -> anyhow::Result<()> {
        let now = rcjobs_moodle::unix_now();
        let q = if class == "synchronize_user_everywhere" {
            sqlx::query(
                "INSERT INTO mdl_task_adhoc (component, classname, nextruntime, customdata, timecreated)
                 VALUES ('mod_rocketchat', '\\mod_rocketchat\\task\\synchronize_user_everywhere', 0,
                         json_build_object('userid', $1::text)::text, $2)",
            )
            .bind(user)
            .bind(now)
        } else {
            sqlx::query(
                "INSERT INTO mdl_task_adhoc (component, classname, nextruntime, customdata, timecreated)
                 VALUES ('mod_rocketchat', '\\mod_rocketchat\\task\\' || $4, 0,
                         json_build_object('moodleuser', json_build_object('id', $1::text, 'username', 'user' || $1),
                           'courseid', '0', 'roleid', '5',
                           'context', json_build_object('id', $3::text, 'contextlevel', '50', 'instanceid', '0'))::text, $2)",
            )
            .bind(user)
            .bind(now)
            .bind(ctx)
            .bind(class)
        };
        q.execute(&mut *self.conn).await?;
        Ok(())
    }
}

/// Runs pattern `pi` once in `mode`, rolled back: (time of Moodle's writes, Moodle's
/// statements, outbox rows written).
async fn time_pattern(
    pool: &PgPool,
    site: &Site,
    a: &CaptureBenchArgs,
    pi: usize,
    mode: Mode,
) -> anyhow::Result<(Duration, u64, i64)> {
    let tasks = matches!(mode, Mode::PluginTasks | Mode::Plugin);
    let mut conn = pool.acquire().await?;
    let mut elapsed = Duration::ZERO;
    let mut statements = 0;
    let mut captured = 0;
    // One transaction per pattern run, or per event for suspensions and module deletes.
    let units: usize = match pi {
        3 => site.active.len(),
        4 => site.modules.len(),
        _ => 1,
    };
    for unit in 0..units {
        let t = Instant::now();
        sqlx::query("BEGIN").execute(&mut *conn).await?;
        let mut tx = Tx {
            conn: &mut conn,
            statements: 0,
        };
        match pi {
            0 => {
                let (enrol, ctx) = site.manual;
                for &u in site.free_users.iter().take(a.enrol_users as usize) {
                    tx.exec(
                        "SELECT id FROM mdl_user_enrolments WHERE enrolid = $1 AND userid = $2",
                        &[enrol, u],
                    )
                    .await?;
                    tx.exec(
                        "INSERT INTO mdl_user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
                         VALUES (0, $1, $2, $3, 0, 2, $3, $3)",
                        &[enrol, u, site.now],
                    )
                    .await?;
                    tx.log("user_enrolment_created", ctx, u).await?;
                    tx.exec(
                        "SELECT id FROM mdl_role_assignments WHERE roleid = $1 AND contextid = $2 AND userid = $3 AND component = '' AND itemid = 0",
                        &[site.student, ctx, u],
                    )
                    .await?;
                    tx.exec(
                        "INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                         VALUES ($1, $2, $3, $4, 2, '', 0, 0)",
                        &[site.student, ctx, u, site.now],
                    )
                    .await?;
                    tx.log("role_assigned", ctx, u).await?;
                    if tasks {
                        tx.task("enrol_role_assign", u, ctx).await?;
                    }
                }
            }
            1 => {
                let (enrol, ctx) = site.sync;
                let n = a.sync_users.min(site.free_users.len() as i64);
                let (first, last) = (
                    site.free_users.first().copied().unwrap_or(0),
                    site.free_users
                        .get((n - 1).max(0) as usize)
                        .copied()
                        .unwrap_or(0),
                );
                tx.exec(
                    "INSERT INTO mdl_user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
                     SELECT 0, $1, u.id, $4, 0, 2, $4, $4 FROM mdl_user u
                      WHERE u.id BETWEEN $2 AND $3",
                    &[enrol, first, last, site.now],
                )
                .await?;
                tx.exec(
                    "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, objecttable, objectid, crud, contextid, contextlevel, userid, relateduserid, timecreated, origin)
                     SELECT '\\core\\event\\user_enrolment_created', 'core', 'created', 'user_enrolment', 'user_enrolments', ue.id, 'c', $2, 50, 2, ue.userid, $3, 'cli'
                       FROM mdl_user_enrolments ue WHERE ue.enrolid = $1",
                    &[enrol, ctx, site.now],
                )
                .await?;
                tx.exec(
                    "INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                     SELECT $1, $2, ue.userid, $4, 2, '', 0, 0 FROM mdl_user_enrolments ue WHERE ue.enrolid = $3",
                    &[site.student, ctx, enrol, site.now],
                )
                .await?;
                tx.exec(
                    "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, objecttable, objectid, crud, contextid, contextlevel, userid, relateduserid, timecreated, origin)
                     SELECT '\\core\\event\\role_assigned', 'core', 'assigned', 'role', 'role', ra.roleid, 'c', $1, 50, 2, ra.userid, $2, 'cli'
                       FROM mdl_role_assignments ra WHERE ra.contextid = $1",
                    &[ctx, site.now],
                )
                .await?;
                if tasks {
                    // The plugin's observer queues one task per role assignment.
                    for &u in site.free_users.iter().take(n as usize) {
                        tx.task("enrol_role_assign", u, ctx).await?;
                    }
                }
            }
            2 => {
                for &(u, ctx) in &site.students {
                    tx.exec(
                        "DELETE FROM mdl_role_assignments WHERE roleid = $1 AND contextid = $2 AND userid = $3",
                        &[site.student, ctx, u],
                    )
                    .await?;
                    tx.log("role_unassigned", ctx, u).await?;
                    tx.exec(
                        "INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                         VALUES ($1, $2, $3, $4, 2, '', 0, 0)",
                        &[site.teacher, ctx, u, site.now],
                    )
                    .await?;
                    tx.log("role_assigned", ctx, u).await?;
                    if tasks {
                        tx.task("enrol_role_unassign", u, ctx).await?;
                        tx.task("enrol_role_assign", u, ctx).await?;
                    }
                }
            }
            3 => {
                let u = site.active[unit];
                tx.exec(
                    "UPDATE mdl_user SET suspended = 1, timemodified = $2 WHERE id = $1",
                    &[u, site.now],
                )
                .await?;
                tx.log("user_updated", 1, u).await?;
                if tasks {
                    tx.task("synchronize_user_everywhere", u, 0).await?;
                }
            }
            _ => {
                // course_delete_module() with the course recycle bin enabled.
                let (cmid, instance, course, module) = site.modules[unit];
                tx.exec(
                    "UPDATE mdl_course_modules SET deletioninprogress = 1 WHERE id = $1",
                    &[cmid],
                )
                .await?;
                tx.exec(
                    "INSERT INTO mdl_tool_recyclebin_course (courseid, section, module, name, timecreated)
                     SELECT $1, cm.section, $2, r.name, $4 FROM mdl_course_modules cm JOIN mdl_rocketchat r ON r.id = $3 WHERE cm.id = $5",
                    &[course, module, instance, site.now, cmid],
                )
                .await?;
                tx.exec("DELETE FROM mdl_rocketchat WHERE id = $1", &[instance])
                    .await?;
                tx.exec(
                    "DELETE FROM mdl_context WHERE contextlevel = 70 AND instanceid = $1",
                    &[cmid],
                )
                .await?;
                tx.exec("DELETE FROM mdl_course_modules WHERE id = $1", &[cmid])
                    .await?;
                tx.log("course_module_deleted", 1, cmid).await?;
            }
        }
        elapsed += t.elapsed();
        statements += tx.statements;
        let has_outbox: bool =
            sqlx::query_scalar("SELECT to_regclass('mdl_rcjobs_outbox') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        if has_outbox {
            captured += sqlx::query_scalar::<_, i64>(
                "SELECT coalesce(sum(CASE WHEN jobs IS NULL THEN 1 ELSE jsonb_array_length(jobs) END), 0)::bigint
                   FROM mdl_rcjobs_outbox",
            )
                .fetch_one(&mut *conn)
                .await?;
        }
        sqlx::query("ROLLBACK").execute(&mut *conn).await?;
    }
    Ok((elapsed, statements, captured))
}

/// Commits one bulk sync in change-capture mode and times the relay of its outbox rows.
async fn relay(
    pool: &PgPool,
    queue: &PgPool,
    site: &Site,
    a: &CaptureBenchArgs,
) -> anyhow::Result<RelayResult> {
    install(pool, &site.prefix, Mode::ChangeCapture).await?;
    let (enrol, ctx) = site.sync;
    let n = a.sync_users.min(site.free_users.len() as i64);
    let (first, last) = (
        site.free_users.first().copied().unwrap_or(0),
        site.free_users
            .get((n - 1).max(0) as usize)
            .copied()
            .unwrap_or(0),
    );
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO mdl_user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
         SELECT 0, $1, u.id, $4, 0, 2, $4, $4 FROM mdl_user u
          WHERE u.id BETWEEN $2 AND $3",
    )
    .bind(enrol)
    .bind(first)
    .bind(last)
    .bind(site.now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO mdl_role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
         SELECT $1, $2, ue.userid, $4, 2, '', 0, 0 FROM mdl_user_enrolments ue WHERE ue.enrolid = $3",
    )
    .bind(site.student)
    .bind(ctx)
    .bind(enrol)
    .bind(site.now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let t = Instant::now();
    let r = outbox::relay_all(pool, queue, &site.prefix).await?;
    let secs = t.elapsed().as_secs_f64();
    Ok(RelayResult {
        outbox_rows: r.rows,
        jobs: r.jobs,
        seconds: secs,
        rows_per_second: r.rows as f64 / secs.max(1e-9),
    })
}

/// What the figures were measured on.
fn machine(postgres: String) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "postgres": postgres,
        "os": std::env::consts::OS,
    })
}
