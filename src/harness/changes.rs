//! A mixed change to one course's membership in one Moodle transaction (one commit), so a
//! benchmark can time commit → chat equals Moodle for a change to an existing room rather
//! than for filling an empty one.

use super::site::Site;
use anyhow::Context;
use sqlx::PgPool;

/// What to change in one course, by Moodle user id.
#[derive(Debug, Clone, Default)]
pub struct CourseChange {
    /// The course.
    pub course: i64,
    /// Enrolled users to unenrol: their role assignments at the course, then their manual
    /// enrolment (the order Moodle's `unenrol_user()` deletes in).
    pub unenrol: Vec<i64>,
    /// Users to enrol on the course's manual instance as students.
    pub enrol: Vec<i64>,
    /// Enrolled users given the editing-teacher role at the course (a moderator grant each).
    pub promote: Vec<i64>,
}

/// Rows [`apply`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangeCounts {
    /// `user_enrolments` rows deleted.
    pub unenrolled: i64,
    /// `user_enrolments` rows inserted.
    pub enrolled: i64,
    /// `role_assignments` rows inserted (students of `enrol`, teachers of `promote`).
    pub roles_assigned: i64,
    /// `role_assignments` rows deleted (those of the unenrolled users).
    pub roles_removed: i64,
}

/// Applies `change` in one transaction through ordinary writes to Moodle's tables, so the
/// change-capture triggers see it as they would see Moodle's own writes.
pub async fn apply(
    site: &Site,
    pool: &PgPool,
    change: &CourseChange,
) -> anyhow::Result<ChangeCounts> {
    let prefix = &site.prefix;
    let sql = |s: &str| sqlx::AssertSqlSafe(prefix.apply(s));
    let roles = site.fixture.roles;
    let now = rcjobs_moodle::unix_now();
    let mut tx = pool.begin().await?;
    let (roles_removed, unenrolled): (i64, i64) = sqlx::query_as(sql(
        "WITH ctx AS (
             SELECT id FROM {prefix}context WHERE contextlevel = 50 AND instanceid = $1
         ), ra AS (
             DELETE FROM {prefix}role_assignments ra USING ctx
              WHERE ra.contextid = ctx.id AND ra.userid = ANY($2)
             RETURNING 1
         ), ue AS (
             DELETE FROM {prefix}user_enrolments ue USING {prefix}enrol e
              WHERE e.id = ue.enrolid AND e.courseid = $1 AND e.enrol = 'manual' AND ue.userid = ANY($2)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM ra), (SELECT count(*) FROM ue)",
    ))
    .bind(change.course)
    .bind(&change.unenrol)
    .fetch_one(&mut *tx)
    .await
    .context("unenrolments")?;
    let (enrolled, students): (i64, i64) = sqlx::query_as(sql(
        "WITH inst AS (
             SELECT id FROM {prefix}enrol WHERE courseid = $1 AND enrol = 'manual' AND status = 0
              ORDER BY id LIMIT 1
         ), ctx AS (
             SELECT id FROM {prefix}context WHERE contextlevel = 50 AND instanceid = $1
         ), ue AS (
             INSERT INTO {prefix}user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
             SELECT 0, inst.id, u, $3, 0, 2, $3, $3 FROM inst, UNNEST($2::bigint[]) AS u
             ON CONFLICT (enrolid, userid) DO NOTHING
             RETURNING 1
         ), ra AS (
             INSERT INTO {prefix}role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
             SELECT $4, ctx.id, u, $3, 2, '', 0, 0 FROM ctx, UNNEST($2::bigint[]) AS u
              WHERE NOT EXISTS (SELECT 1 FROM {prefix}role_assignments x
                                 WHERE x.userid = u AND x.contextid = ctx.id AND x.roleid = $4)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM ue), (SELECT count(*) FROM ra)",
    ))
    .bind(change.course)
    .bind(&change.enrol)
    .bind(now)
    .bind(roles.student)
    .fetch_one(&mut *tx)
    .await
    .context("enrolments")?;
    let teachers = sqlx::query(sql(
        "INSERT INTO {prefix}role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
         SELECT $3, ctx.id, u, $4, 2, '', 0, 0
           FROM {prefix}context ctx, UNNEST($2::bigint[]) AS u
          WHERE ctx.contextlevel = 50 AND ctx.instanceid = $1
            AND NOT EXISTS (SELECT 1 FROM {prefix}role_assignments x
                             WHERE x.userid = u AND x.contextid = ctx.id AND x.roleid = $3)",
    ))
    .bind(change.course)
    .bind(&change.promote)
    .bind(roles.editingteacher)
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("role changes")?
    .rows_affected();
    tx.commit().await?;
    Ok(ChangeCounts {
        unenrolled,
        enrolled,
        roles_assigned: students + i64::try_from(teachers)?,
        roles_removed,
    })
}
