//! Standalone mode: chat rooms declared for courses, activities or whole categories, on sites
//! without mod_rocketchat (or beside it).
//!
//! Declarations live in two tables rcjobs creates in the Moodle database
//! (`sql/standalone_tables.sql`): `{prefix}rcjobs_room` (one row per room) and
//! `{prefix}rcjobs_room_rule` ("every course in category C"). A declared room is a room like
//! a plugin activity's for the rest of rcjobs ([`crate::MoodleDb`] lists both): same desired
//! membership (active enrolment + a mapped role in the room's context or above), same
//! workers, same life cycle through the change-capture triggers (`sql/standalone.sql`).
//!
//! The functions here call the SQL API those triggers install
//! (`{prefix}rcjobs_declare_room`, `{prefix}rcjobs_declare_category_rooms`), so a declaration
//! made from the CLI and one made by an admin in SQL are the same code.

use crate::{MoodleError, Prefix, Result};
use sqlx::{PgPool, Row};

/// How a room is declared: course or activity, and optional overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declaration {
    /// The course.
    pub course_id: i64,
    /// An activity of the course (`None`: the course's own room).
    pub cmid: Option<i64>,
    /// The room's display name (`None`: the activity's or the course's full name).
    pub name: Option<String>,
    /// Moderator role ids as a comma list (`None`: the plugin's default or the
    /// `editingteacher` archetype).
    pub moderator_roles: Option<String>,
    /// Member role ids as a comma list (`None`: the plugin's default or the `student`
    /// archetype).
    pub user_roles: Option<String>,
}

/// One declared room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredRoom {
    /// The room key: the cmid, or minus the course id for a course room.
    pub room_key: i64,
    /// The course.
    pub course_id: i64,
    /// The activity, for an activity room.
    pub cmid: Option<i64>,
    /// Display name.
    pub name: String,
    /// Moderator role ids (comma list).
    pub moderator_roles: String,
    /// Member role ids (comma list).
    pub user_roles: String,
    /// The category rule that declared it, if any.
    pub category_rule: Option<i64>,
}

/// One category rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRule {
    /// The category.
    pub category_id: i64,
    /// Whether courses of its subcategories are covered too.
    pub subcategories: bool,
}

/// The error for a site where the declaration functions are missing.
fn not_installed() -> MoodleError {
    MoodleError::Missing(
        "declared rooms need the change-capture trigger set, which carries their life cycle \
         and membership changes: run `rcjobs moodle install-triggers --mode change-capture` first"
            .into(),
    )
}

/// Maps the SQL API's refusals (22023, with a message for people) and a missing function.
fn api_error(e: sqlx::Error) -> MoodleError {
    if let Some(db) = e.as_database_error() {
        match db.code().as_deref() {
            Some("22023") => return MoodleError::Invalid(db.message().to_string()),
            Some("42883") | Some("42P01") => return not_installed(),
            _ => {}
        }
    }
    MoodleError::from(e)
}

fn sql(prefix: &Prefix, s: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(prefix.apply(s))
}

/// Declares one room (idempotent: an existing declaration is kept) and returns its key. The
/// SQL API also queues the room's creation when the queue lives in the Moodle database; the
/// caller enqueues it too when it does not (the dedup key makes the two one job).
pub async fn declare(pool: &PgPool, prefix: &Prefix, d: &Declaration) -> Result<i64> {
    sqlx::query_scalar(sql(
        prefix,
        "SELECT {prefix}rcjobs_declare_room($1, $2, $3, $4, $5, NULL)",
    ))
    .bind(d.course_id)
    .bind(d.cmid)
    .bind(d.name.as_deref())
    .bind(d.moderator_roles.as_deref())
    .bind(d.user_roles.as_deref())
    .fetch_one(pool)
    .await
    .map_err(api_error)
}

/// Records the rule "every course in `category` (and below with `subcategories`)" and declares
/// a room for each course already there. Returns the keys of the category's declared rooms.
pub async fn declare_category(
    pool: &PgPool,
    prefix: &Prefix,
    category: i64,
    subcategories: bool,
    moderator_roles: Option<&str>,
    user_roles: Option<&str>,
) -> Result<Vec<i64>> {
    let mut tx = pool.begin().await?;
    sqlx::query(sql(
        prefix,
        "SELECT {prefix}rcjobs_declare_category_rooms($1, $2, $3, $4)",
    ))
    .bind(category)
    .bind(subcategories)
    .bind(moderator_roles)
    .bind(user_roles)
    .execute(&mut *tx)
    .await
    .map_err(api_error)?;
    let keys = sqlx::query_scalar(sql(
        prefix,
        "SELECT roomkey FROM {prefix}rcjobs_room WHERE categoryrule = $1 ORDER BY roomkey",
    ))
    .bind(category)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(keys)
}

/// The course of course module `cmid`, for declarations given only the activity.
pub async fn course_of_module(pool: &PgPool, prefix: &Prefix, cmid: i64) -> Result<i64> {
    sqlx::query_scalar(sql(
        prefix,
        "SELECT course FROM {prefix}course_modules WHERE id = $1",
    ))
    .bind(cmid)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| MoodleError::Invalid(format!("no course module {cmid}")))
}

/// Stops managing the room `room_key` (its chat room is left as it is). Returns whether a
/// declaration was removed.
pub async fn undeclare(pool: &PgPool, prefix: &Prefix, room_key: i64) -> Result<bool> {
    let done = sqlx::query(sql(
        prefix,
        "DELETE FROM {prefix}rcjobs_room WHERE roomkey = $1",
    ))
    .bind(room_key)
    .execute(pool)
    .await
    .map_err(api_error)?;
    Ok(done.rows_affected() == 1)
}

/// Removes a category rule; the rooms it declared stay declared. Returns whether it existed.
pub async fn remove_rule(pool: &PgPool, prefix: &Prefix, category: i64) -> Result<bool> {
    let done = sqlx::query(sql(
        prefix,
        "DELETE FROM {prefix}rcjobs_room_rule WHERE categoryid = $1",
    ))
    .bind(category)
    .execute(pool)
    .await
    .map_err(api_error)?;
    Ok(done.rows_affected() == 1)
}

/// Every declared room, by key (course rooms first: their keys are negative).
pub async fn declared_rooms(pool: &PgPool, prefix: &Prefix) -> Result<Vec<DeclaredRoom>> {
    let rows = sqlx::query(sql(
        prefix,
        "SELECT roomkey, courseid, cmid, name, moderatorroles, userroles, categoryrule
           FROM {prefix}rcjobs_room ORDER BY roomkey",
    ))
    .fetch_all(pool)
    .await
    .map_err(api_error)?;
    rows.iter()
        .map(|r| {
            Ok(DeclaredRoom {
                room_key: r.try_get("roomkey")?,
                course_id: r.try_get("courseid")?,
                cmid: r.try_get("cmid")?,
                name: r.try_get("name")?,
                moderator_roles: r.try_get("moderatorroles")?,
                user_roles: r.try_get("userroles")?,
                category_rule: r.try_get("categoryrule")?,
            })
        })
        .collect()
}

/// Every category rule.
pub async fn category_rules(pool: &PgPool, prefix: &Prefix) -> Result<Vec<CategoryRule>> {
    let rows = sqlx::query(sql(
        prefix,
        "SELECT categoryid, subcategories FROM {prefix}rcjobs_room_rule ORDER BY categoryid",
    ))
    .fetch_all(pool)
    .await
    .map_err(api_error)?;
    rows.iter()
        .map(|r| {
            Ok(CategoryRule {
                category_id: r.try_get("categoryid")?,
                subcategories: r.try_get("subcategories")?,
            })
        })
        .collect()
}
