//! Read-only model of a Moodle site on PostgreSQL, as far as Rocket.Chat sync needs it.
//!
//! * [`MoodleDb`] (module [`model`]): chat rooms (`rocketchat` activities), their role
//!   mappings, the **desired membership** of a room and the rooms a user belongs in. Read only;
//!   every query uses Moodle's own indexes (see `docs/moodle-queries.md`).
//! * [`schema`]: Moodle's tables, DDL generated from Moodle's XMLDB ([`xmldb`]) and committed.
//! * [`fixture`]: a deterministic synthetic site (tests, demo, benchmarks) and a bulk
//!   "mass enrolment" the way cohort / flat-file sync does it. Writes to Moodle tables: only
//!   for tests and the demo.
//! * [`triggers`]: the SQL trigger set that turns Moodle changes (or mod_rocketchat adhoc
//!   tasks) into rcjobs jobs through `rcjobs.enqueue(...)`.
//!
//! The crate knows nothing of Rocket.Chat beyond the group id string Moodle stores.

pub mod fixture;
pub mod model;
pub mod outbox;
pub mod schema;
pub mod settings;
pub mod standalone;
pub mod triggers;
pub mod xmldb;

pub use model::{ContextInfo, DesiredMember, MoodleDb, MoodleUser, Retention, Room, UserRoom};
pub use settings::PluginSettings;

/// Longest accepted table prefix (keeps generated object names under 63 bytes).
pub const MAX_PREFIX_LEN: usize = 20;

/// Moodle context levels the model cares about.
pub mod contextlevel {
    /// The whole site.
    pub const SYSTEM: i64 = 10;
    /// A user's own context.
    pub const USER: i64 = 30;
    /// A course category.
    pub const COURSECAT: i64 = 40;
    /// A course.
    pub const COURSE: i64 = 50;
    /// A course module (activity).
    pub const MODULE: i64 = 70;
}

/// Errors of this crate. Never carries secrets (Moodle rows with password hashes are never read).
#[derive(Debug, thiserror::Error)]
pub enum MoodleError {
    /// The table prefix does not match `^[a-z][a-z0-9_]*$` (or is too long).
    #[error("invalid Moodle table prefix {0:?}: must match ^[a-z][a-z0-9_]*$ and be at most 20 characters")]
    InvalidPrefix(String),
    /// A database error.
    #[error("moodle database: {0}")]
    Db(sqlx::Error),
    /// The XMLDB files could not be turned into DDL.
    #[error(transparent)]
    Xmldb(#[from] xmldb::XmldbError),
    /// Something the operation needs is missing (a course, a role, the rocketchat module…).
    #[error("moodle: {0}")]
    Missing(String),
    /// The caller asked for something inconsistent.
    #[error("moodle: {0}")]
    Invalid(String),
}

/// Result alias.
pub type Result<T, E = MoodleError> = std::result::Result<T, E>;

/// A validated Moodle table prefix, safe to splice into SQL as part of an identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// Validates `p` against `^[a-z][a-z0-9_]*$` (max [`MAX_PREFIX_LEN`] chars).
    pub fn new(p: &str) -> Result<Prefix> {
        let mut chars = p.chars();
        let ok = p.len() <= MAX_PREFIX_LEN
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Prefix(p.to_string()))
        } else {
            Err(MoodleError::InvalidPrefix(p.to_string()))
        }
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Replaces every `{prefix}` placeholder in `sql` by this prefix.
    pub fn apply(&self, sql: &str) -> String {
        sql.replace(xmldb::PREFIX_PLACEHOLDER, &self.0)
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Current unix time in seconds (Moodle stores times as epoch seconds).
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

// The cause is in the message and deliberately not a `source`: error reports that walk the
// chain (`{:#}`) printed it twice.
impl From<sqlx::Error> for MoodleError {
    fn from(e: sqlx::Error) -> Self {
        MoodleError::Db(e)
    }
}
