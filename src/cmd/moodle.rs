//! `rcjobs moodle …`: Moodle schema, synthetic site, mass enrolment and the trigger set.
//!
//! `fixture` and `mass-enrol` write users, courses and enrolments: they are for synthetic
//! sites only. A Moodle database counts as synthetic ([`classify`]) when
//!
//! 1. it has no prefixed table outside the ones rcjobs generates ([`schema::TABLES`]; a real
//!    Moodle has hundreds, `mdl_forum`, `mdl_assign`, ...) and its own `{prefix}rcjobs_*`
//!    (declared rooms), and
//! 2. it carries the mark: a `{prefix}config` row named [`SYNTHETIC_MARK`] (written when
//!    rcjobs created the schema in an empty database, or by a fixture run on such a
//!    schema), or a database comment from the demo/bench harness, or its `{prefix}user`
//!    table is still empty (a Moodle install always has the guest and admin users).
//!
//! Anything else is refused unless `--allow-real-moodle` is given; a run so forced does not
//! mark the database synthetic.

use super::config::Settings;
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use rcjobs_moodle::fixture::{self, FixtureSpec, UserSet};
use rcjobs_moodle::triggers::{self, TriggerMode};
use rcjobs_moodle::{schema, Prefix};
use sqlx::PgPool;

/// Name of the `{prefix}config` row that marks a Moodle database as synthetic (rcjobs-made).
pub const SYNTHETIC_MARK: &str = "rcjobs_synthetic_site";

/// `rcjobs moodle …`.
#[derive(Debug, Subcommand)]
pub enum MoodleCommand {
    /// Create Moodle's tables (generated from Moodle's XMLDB) with the configured prefix.
    /// Idempotent: existing tables and data are kept.
    Schema,
    /// Fill the Moodle schema with a deterministic synthetic site.
    Fixture(FixtureArgs),
    /// Enrol many users into one course in one SQL statement (as a cohort/flat-file sync does).
    MassEnrol(MassEnrolArgs),
    /// Install the trigger set that turns Moodle changes into rcjobs jobs (idempotent).
    InstallTriggers(InstallTriggersArgs),
    /// Remove every rcjobs trigger and trigger function from the Moodle database.
    UninstallTriggers,
}

/// `rcjobs moodle fixture`.
#[derive(Debug, Args)]
pub struct FixtureArgs {
    /// Number of users.
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    /// Number of populated courses.
    #[arg(long, default_value_t = 20)]
    pub courses: u32,
    /// Seed (same seed, same site).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Courses per user.
    #[arg(long, default_value_t = 10)]
    pub enrolments_per_user: u32,
    /// Extra courses with chat activities but no enrolments (mass-enrolment targets).
    #[arg(long, default_value_t = 0)]
    pub empty_courses: u32,
    /// Create the schema first if it is missing.
    #[arg(long)]
    pub create_schema: bool,
    /// Write into a database that looks like a real Moodle site (not marked synthetic).
    #[arg(long)]
    pub allow_real_moodle: bool,
}

/// `rcjobs moodle mass-enrol`.
#[derive(Debug, Args)]
pub struct MassEnrolArgs {
    /// Course id.
    #[arg(long)]
    pub course: i64,
    /// First user id of the range.
    #[arg(long)]
    pub first_user: i64,
    /// Last user id of the range (inclusive).
    #[arg(long)]
    pub last_user: i64,
    /// Role short name to assign at the course context.
    #[arg(long, default_value = "student")]
    pub role: String,
    /// Write into a database that looks like a real Moodle site (not marked synthetic).
    #[arg(long)]
    pub allow_real_moodle: bool,
}

/// Trigger mode on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Intercept mod_rocketchat's adhoc tasks in `task_adhoc`.
    Plugin,
    /// Capture changes of Moodle tables directly (sites without the plugin's observers).
    ChangeCapture,
}

/// `rcjobs moodle install-triggers`.
#[derive(Debug, Args)]
pub struct InstallTriggersArgs {
    /// Which trigger set.
    #[arg(long, value_enum, default_value_t = ModeArg::Plugin)]
    pub mode: ModeArg,
    /// The role the workers use on the Moodle database (`MOODLE_DATABASE_URL`), when it is
    /// not the installing role: granted `SELECT, DELETE` on the capture outbox
    /// (`{prefix}rcjobs_outbox`), which the workers relay into the queue. The install is
    /// refused if the role does not exist.
    #[arg(long)]
    pub relay_role: Option<String>,
}

pub(crate) async fn pool(s: &Settings) -> anyhow::Result<PgPool> {
    let what = if s.moodle_database_url.is_some() {
        "MOODLE_DATABASE_URL"
    } else {
        "DATABASE_URL (no MOODLE_DATABASE_URL)"
    };
    let opts = crate::harness::postgres::parse_url(what, s.moodle_url())?;
    // One eager connection first: a refusal is reported at once with the server's reason.
    crate::harness::postgres::pool(&opts, 4).await
}

/// What kind of Moodle database the configured one is (module docs: the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteKind {
    /// No `{prefix}user` table: no Moodle schema yet.
    NoSchema,
    /// The schema exists but has no users (nothing a real site could lose).
    Empty,
    /// Marked synthetic by rcjobs.
    Synthetic,
    /// Looks like a real site; the reason says why.
    Real(String),
}

/// Classifies the Moodle database of `pool` for `prefix`.
pub async fn classify(pool: &PgPool, prefix: &Prefix) -> anyhow::Result<SiteKind> {
    let p = prefix.as_str();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))
            AND starts_with(c.relname, $1)
          ORDER BY 1",
    )
    .bind(p)
    .fetch_all(pool)
    .await
    .context("listing Moodle tables")?;
    let foreign: Vec<&String> = tables
        .iter()
        .filter(|t| {
            let own = t.strip_prefix(p);
            // rcjobs's own tables (declared rooms) are not Moodle's.
            !own.is_some_and(|o| o.starts_with("rcjobs_"))
                && !schema::TABLES.iter().any(|g| own == Some(*g))
        })
        .collect();
    if !foreign.is_empty() {
        let examples: Vec<&str> = foreign.iter().take(3).map(|t| t.as_str()).collect();
        return Ok(SiteKind::Real(format!(
            "it has {} Moodle tables rcjobs does not create (e.g. {})",
            foreign.len(),
            examples.join(", ")
        )));
    }
    if !schema::exists(pool, prefix).await? {
        return Ok(SiteKind::NoSchema);
    }
    let marked: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {p}config WHERE name = $1)
             OR coalesce(shobj_description((SELECT oid FROM pg_database
                                             WHERE datname = current_database()), 'pg_database'),
                         '') LIKE $2"
    )))
    .bind(SYNTHETIC_MARK)
    .bind(format!("{}%", crate::harness::postgres::OWNED_MARK))
    .fetch_one(pool)
    .await
    .context("looking for the synthetic-site mark")?;
    if marked {
        return Ok(SiteKind::Synthetic);
    }
    let users: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {p}user")))
            .fetch_one(pool)
            .await?;
    if users == 0 {
        return Ok(SiteKind::Empty);
    }
    Ok(SiteKind::Real(format!(
        "{p}user has {users} users and {p}config has no {SYNTHETIC_MARK} row"
    )))
}

/// Writes the synthetic-site mark (idempotent).
async fn mark_synthetic(pool: &PgPool, prefix: &Prefix) -> anyhow::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}config (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        prefix.as_str()
    )))
    .bind(SYNTHETIC_MARK)
    .bind(format!(
        "synthetic site made by rcjobs {}",
        env!("CARGO_PKG_VERSION")
    ))
    .execute(pool)
    .await
    .context("marking the Moodle database as synthetic")?;
    Ok(())
}

/// Refuses to write into a database that looks like a real Moodle unless `allow`; returns the
/// classification.
async fn guard(pool: &PgPool, prefix: &Prefix, cmd: &str, allow: bool) -> anyhow::Result<SiteKind> {
    let kind = classify(pool, prefix).await?;
    if let SiteKind::Real(why) = &kind {
        anyhow::ensure!(
            allow,
            "refusing `rcjobs moodle {cmd}`: the Moodle database (prefix {prefix}) looks like a real \
             site: {why}. It writes users, courses and enrolments. Point MOODLE_DATABASE_URL at a \
             throw-away database (`rcjobs moodle schema` there marks it synthetic), or pass \
             --allow-real-moodle if this really is a test site"
        );
        tracing::warn!(%why, "writing into a Moodle database that is not marked synthetic (--allow-real-moodle)");
    }
    Ok(kind)
}

/// Runs `rcjobs moodle …`.
pub async fn run(s: &Settings, c: MoodleCommand) -> anyhow::Result<()> {
    let prefix = Prefix::new(&s.moodle_prefix)?;
    let pool = pool(s).await?;
    match c {
        MoodleCommand::Schema => {
            // Only a schema created from nothing here is ours to call synthetic.
            let fresh = classify(&pool, &prefix).await? == SiteKind::NoSchema;
            schema::create(&pool, &prefix).await?;
            if fresh {
                mark_synthetic(&pool, &prefix).await?;
            }
            println!(
                "Moodle schema ready ({} tables, prefix {prefix})",
                schema::TABLES.len()
            );
        }
        MoodleCommand::Fixture(a) => {
            let kind = guard(&pool, &prefix, "fixture", a.allow_real_moodle).await?;
            if a.create_schema {
                schema::create(&pool, &prefix).await?;
            }
            anyhow::ensure!(
                schema::exists(&pool, &prefix).await?,
                "no Moodle schema with prefix {prefix}: run `rcjobs moodle schema` (or pass --create-schema)"
            );
            if matches!(kind, SiteKind::NoSchema | SiteKind::Empty) {
                // Marked before the users exist, so a later run still recognises it.
                mark_synthetic(&pool, &prefix).await?;
            }
            let mut spec = FixtureSpec::new(a.users, a.courses, a.seed);
            spec.enrolments_per_user = a.enrolments_per_user;
            spec.empty_courses = a.empty_courses;
            let sum = fixture::generate(&pool, &prefix, &spec).await?;
            println!(
                "fixture: {} users (ids {}..={}), {} courses (+{} empty: {:?}), {} chat rooms, {} enrol instances, \
                 {} user enrolments, {} role assignments, {} cohorts / {} members in {:.1?}",
                a.users,
                sum.first_user_id,
                sum.last_user_id,
                sum.course_ids.len(),
                sum.empty_course_ids.len(),
                sum.empty_course_ids,
                sum.rooms,
                sum.enrol_instances,
                sum.user_enrolments,
                sum.role_assignments,
                sum.cohorts,
                sum.cohort_members,
                sum.elapsed
            );
        }
        MoodleCommand::MassEnrol(a) => {
            guard(&pool, &prefix, "mass-enrol", a.allow_real_moodle).await?;
            let users = UserSet::Range {
                first: a.first_user,
                last: a.last_user,
            };
            let n = fixture::mass_enrol(&pool, &prefix, a.course, &users, &a.role).await?;
            println!("enrolled {n} users into course {}", a.course);
        }
        MoodleCommand::InstallTriggers(a) => {
            let mode = match a.mode {
                ModeArg::Plugin => TriggerMode::Plugin,
                ModeArg::ChangeCapture => TriggerMode::ChangeCapture,
            };
            let opts = triggers::InstallOptions {
                relay_role: a.relay_role,
            };
            triggers::install_with(&pool, &prefix, mode, &opts).await?;
            println!(
                "installed the {mode} trigger set (prefix {prefix}); captured changes wait in {prefix}rcjobs_outbox until a worker relays them"
            );
        }
        MoodleCommand::UninstallTriggers => {
            triggers::uninstall(&pool, &prefix).await?;
            println!("removed the rcjobs trigger set (prefix {prefix})");
        }
    }
    Ok(())
}
