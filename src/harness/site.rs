//! The synthetic Moodle site and the bulk enrolments the scenarios apply to it.

use anyhow::Context;
use rcjobs_moodle::fixture::{FixtureSpec, FixtureSummary};
use rcjobs_moodle::{MoodleDb, Prefix, Room};
use sqlx::PgPool;

/// The Moodle side of a run.
pub struct Site {
    /// Validated table prefix.
    pub prefix: Prefix,
    /// Read-only model (its own pool).
    pub moodle: MoodleDb,
    /// What the fixture generated.
    pub fixture: FixtureSummary,
}

fn sql(prefix: &Prefix, s: &str) -> sqlx::AssertSqlSafe<String> {
    // The prefix is validated by `Prefix::new`; values are always bound.
    sqlx::AssertSqlSafe(prefix.apply(s))
}

/// Creates Moodle's tables and a synthetic site in the database of `pool`, with every chat
/// activity's group id blank: the worker creates each activity's room (as the plugin does when
/// an activity is added) on the first sync. `moodle_pool` is the model's own pool.
pub async fn create(
    pool: &PgPool,
    moodle_pool: PgPool,
    prefix: &str,
    spec: &FixtureSpec,
) -> anyhow::Result<Site> {
    let prefix = Prefix::new(prefix)?;
    rcjobs_moodle::schema::create(pool, &prefix)
        .await
        .context("creating the Moodle schema")?;
    let fixture = rcjobs_moodle::fixture::generate(pool, &prefix, spec)
        .await
        .context("generating the synthetic site")?;
    sqlx::query(sql(
        &prefix,
        "UPDATE {prefix}rocketchat SET rocketchatid = ''",
    ))
    .execute(pool)
    .await?;
    let moodle = MoodleDb::new(moodle_pool, prefix.as_str())?;
    Ok(Site {
        prefix,
        moodle,
        fixture,
    })
}

impl Site {
    /// Usernames of every account that is not deleted (the accounts an SSO-provisioned chat
    /// server would hold).
    pub async fn live_usernames(&self) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql(
            &self.prefix,
            "SELECT username FROM {prefix}user WHERE deleted = 0 ORDER BY id",
        ))
        .fetch_all(self.moodle.pool())
        .await?)
    }

    /// Up to `n` generated users that are neither deleted nor suspended, lowest ids first.
    pub async fn active_user_ids(&self, n: usize) -> anyhow::Result<Vec<i64>> {
        Ok(sqlx::query_scalar(sql(
            &self.prefix,
            "SELECT id FROM {prefix}user WHERE deleted = 0 AND suspended = 0 AND id BETWEEN $1 AND $2 ORDER BY id LIMIT $3",
        ))
        .bind(self.fixture.first_user_id)
        .bind(self.fixture.last_user_id)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(self.moodle.pool())
        .await?)
    }

    /// Empty courses (no enrolments yet) whose chat activities are all visible, with their rooms.
    pub async fn empty_courses_with_visible_rooms(&self) -> anyhow::Result<Vec<(i64, Vec<Room>)>> {
        let mut out = Vec::new();
        for &c in &self.fixture.empty_course_ids {
            let rooms = self.moodle.rooms_of_course(c).await?;
            if !rooms.is_empty() && rooms.iter().all(|r| r.visible) {
                out.push((c, rooms));
            }
        }
        Ok(out)
    }

    /// Every live chat activity.
    pub async fn all_rooms(&self) -> anyhow::Result<Vec<Room>> {
        let mut rooms = Vec::new();
        let mut after = None;
        loop {
            let page = self.moodle.rooms_page(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.cmid);
            rooms.extend(page);
        }
        Ok(rooms)
    }

    /// Enrols `(course, user, role)` rows in **one transaction** (one commit), the way a
    /// flat-file or cohort sync run writes a batch: a `user_enrolments` row on each course's
    /// enabled `manual` instance and a `role_assignments` row at the course context. Existing
    /// enrolments and role assignments are kept. Returns (enrolments, role assignments) added.
    pub async fn enrol_many(
        &self,
        pool: &PgPool,
        rows: &[(i64, i64, i64)],
    ) -> anyhow::Result<(i64, i64)> {
        let now = rcjobs_moodle::unix_now();
        let (courses, users, roles): (Vec<i64>, Vec<i64>, Vec<i64>) = {
            let mut c = Vec::with_capacity(rows.len());
            let mut u = Vec::with_capacity(rows.len());
            let mut r = Vec::with_capacity(rows.len());
            for &(course, user, role) in rows {
                c.push(course);
                u.push(user);
                r.push(role);
            }
            (c, u, r)
        };
        let mut tx = pool.begin().await?;
        let (ue, ra): (i64, i64) = sqlx::query_as(sql(
            &self.prefix,
            "WITH input AS (
                 SELECT DISTINCT ON (course, userid, roleid) course, userid, roleid
                   FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS t(course, userid, roleid)
             ), inst AS (
                 SELECT DISTINCT ON (e.courseid) e.courseid, e.id FROM {prefix}enrol e
                  WHERE e.enrol = 'manual' AND e.status = 0 AND e.courseid IN (SELECT course FROM input)
                  ORDER BY e.courseid, e.id
             ), ctx AS (
                 SELECT c.instanceid AS course, c.id FROM {prefix}context c
                  WHERE c.contextlevel = 50 AND c.instanceid IN (SELECT course FROM input)
             ), ue AS (
                 INSERT INTO {prefix}user_enrolments (status, enrolid, userid, timestart, timeend, modifierid, timecreated, timemodified)
                 SELECT DISTINCT 0, inst.id, i.userid, $4::bigint, 0, 2, $4::bigint, $4::bigint
                   FROM input i JOIN inst ON inst.courseid = i.course
                 ON CONFLICT (enrolid, userid) DO NOTHING
                 RETURNING 1
             ), ra AS (
                 INSERT INTO {prefix}role_assignments (roleid, contextid, userid, timemodified, modifierid, component, itemid, sortorder)
                 SELECT i.roleid, ctx.id, i.userid, $4, 2, '', 0, 0
                   FROM input i JOIN ctx ON ctx.course = i.course
                  WHERE NOT EXISTS (SELECT 1 FROM {prefix}role_assignments x
                                     WHERE x.userid = i.userid AND x.contextid = ctx.id AND x.roleid = i.roleid)
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM ue), (SELECT count(*) FROM ra)",
        ))
        .bind(&courses)
        .bind(&users)
        .bind(&roles)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .context("bulk enrolment")?;
        tx.commit().await?;
        Ok((ue, ra))
    }
}
