//! `rcjobs moodle …`: Moodle schema, synthetic site, mass enrolment and the trigger set.

use super::config::Settings;
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use rcjobs_moodle::fixture::{self, FixtureSpec, UserSet};
use rcjobs_moodle::triggers::{self, TriggerMode};
use rcjobs_moodle::{schema, Prefix};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

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
}

async fn pool(s: &Settings) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(4)
        .connect(s.moodle_url())
        .await
        .context("connect to the Moodle database")
}

/// Runs `rcjobs moodle …`.
pub async fn run(s: &Settings, c: MoodleCommand) -> anyhow::Result<()> {
    let prefix = Prefix::new(&s.moodle_prefix)?;
    let pool = pool(s).await?;
    match c {
        MoodleCommand::Schema => {
            schema::create(&pool, &prefix).await?;
            println!(
                "Moodle schema ready ({} tables, prefix {prefix})",
                schema::TABLES.len()
            );
        }
        MoodleCommand::Fixture(a) => {
            if a.create_schema {
                schema::create(&pool, &prefix).await?;
            }
            anyhow::ensure!(
                schema::exists(&pool, &prefix).await?,
                "no Moodle schema with prefix {prefix}: run `rcjobs moodle schema` (or pass --create-schema)"
            );
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
            triggers::install(&pool, &prefix, mode).await?;
            println!("installed the {mode} trigger set (prefix {prefix})");
        }
        MoodleCommand::UninstallTriggers => {
            triggers::uninstall(&pool, &prefix).await?;
            println!("removed the rcjobs trigger set (prefix {prefix})");
        }
    }
    Ok(())
}
