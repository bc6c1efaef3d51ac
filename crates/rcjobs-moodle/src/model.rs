//! Queries over a Moodle database: rooms, role mappings, desired membership. Read-only but
//! for [`MoodleDb::store_room_id`], which an operator turns on explicitly.
//!
//! A *room* is one `rocketchat` activity: a `course_modules` row of module `rocketchat`, its
//! `rocketchat` instance row (which holds the Rocket.Chat group id and the role mappings) and
//! its module context. Rooms whose module is being deleted (`deletioninprogress = 1`) are left
//! out of every listing; [`MoodleDb::room_by_cmid_any`] still finds them (the recycle-bin
//! handler needs the group id of a room on its way to the bin).
//!
//! **Desired membership** of a room (architecture brief §3, moodle.md §3.1): users not deleted
//! and not suspended, with at least one active enrolment in the course (`ue.status = 0`,
//! `e.status = 0`, `ue.timestart <= now`, `ue.timeend = 0 OR ue.timeend > now`), holding a
//! mapped role (`moderatorroles` ∪ `userroles`) in the module context or any parent context
//! (course, categories, system). Holding any moderator role makes the member a moderator.
//!
//! Every query here is shaped to use only indexes Moodle itself creates (see
//! `docs/moodle-queries.md` for the plans on a 100,000-user site).

use crate::{contextlevel, Prefix, Result};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Retention settings of a room (`rocketchat.retentionenabled`, `maxage`, `filesonly`,
/// `excludepinned`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// `retentionenabled` (drives both `retentionEnabled` and `retentionOverrideGlobal`).
    pub enabled: bool,
    /// `maxage` in days.
    pub max_age_days: i64,
    /// `filesonly`.
    pub files_only: bool,
    /// `excludepinned`.
    pub exclude_pinned: bool,
}

/// One chat activity and what the sync needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Course module id (`course_modules.id`): the stable name of the room on the Moodle side.
    pub cmid: i64,
    /// `rocketchat.id` (= `course_modules.instance`).
    pub instance_id: i64,
    /// `course.id`.
    pub course_id: i64,
    /// `course.shortname` (group-name templates use it).
    pub course_shortname: String,
    /// `course.fullname`.
    pub course_fullname: String,
    /// `rocketchat.name`: the activity name.
    pub name: String,
    /// `rocketchat.rocketchatid`: the Rocket.Chat group `_id` Moodle stores (may be empty).
    pub rocketchatid: String,
    /// The module context id.
    pub context_id: i64,
    /// The module context path, e.g. `/1/3/45/678`.
    pub context_path: String,
    /// The course context id (`None` if the course has no context row, which Moodle never does).
    pub course_context_id: Option<i64>,
    /// `course_modules.visible = 1 AND visibleoncoursepage = 1` (the plugin archives the group
    /// of a hidden or stealth activity).
    pub visible: bool,
    /// `course_modules.deletioninprogress = 1` (only ever true from [`MoodleDb::room_by_cmid_any`]).
    pub deletion_in_progress: bool,
    /// Role ids whose holders are moderators (`rocketchat.moderatorroles`, comma list).
    pub moderator_roles: Vec<i64>,
    /// Role ids whose holders are plain members (`rocketchat.userroles`, comma list).
    pub user_roles: Vec<i64>,
    /// `rocketchat.embbeded` (sic).
    pub embedded: bool,
    /// Retention settings.
    pub retention: Retention,
}

impl Room {
    /// The context ids from the system context down to the module context (parsed from the path).
    pub fn context_ids(&self) -> Vec<i64> {
        path_ids(&self.context_path)
    }

    /// Moderator roles ∪ user roles, sorted and deduplicated.
    pub fn mapped_roles(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .moderator_roles
            .iter()
            .chain(&self.user_roles)
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Parses a Moodle context path (`/1/3/45`) into ids.
pub fn path_ids(path: &str) -> Vec<i64> {
    path.split('/')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Parses a role list as mod_rocketchat stores it (`"3,4"`; blanks and junk ignored).
pub fn parse_role_list(s: Option<&str>) -> Vec<i64> {
    let mut v: Vec<i64> = s
        .unwrap_or("")
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One user who should be in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredMember {
    /// `user.id`.
    pub user_id: i64,
    /// `user.username` (map it to a Rocket.Chat username before use).
    pub username: String,
    /// `user.firstname`.
    pub firstname: String,
    /// `user.lastname`.
    pub lastname: String,
    /// `user.email`.
    pub email: String,
    /// Holds at least one of the room's moderator roles.
    pub moderator: bool,
}

/// A room a user should be in, and with which standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRoom {
    /// The room.
    pub room: Room,
    /// Whether the user should be a moderator there.
    pub moderator: bool,
}

/// The columns of `user` the sync may need (never `password`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoodleUser {
    /// `user.id`.
    pub id: i64,
    /// `user.username`.
    pub username: String,
    /// `user.firstname`.
    pub firstname: String,
    /// `user.lastname`.
    pub lastname: String,
    /// `user.email`.
    pub email: String,
    /// `user.auth` (`nologin` users cannot log in).
    pub auth: String,
    /// `user.idnumber`.
    pub idnumber: String,
    /// `user.deleted = 1`.
    pub deleted: bool,
    /// `user.suspended = 1`.
    pub suspended: bool,
}

impl MoodleUser {
    /// Neither deleted nor suspended.
    pub fn is_active(&self) -> bool {
        !self.deleted && !self.suspended
    }
}

/// One `context` row, with the course it belongs to when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextInfo {
    /// `context.id`.
    pub id: i64,
    /// `context.contextlevel` (see [`crate::contextlevel`]).
    pub level: i64,
    /// `context.instanceid` (course id for 50, cmid for 70, category id for 40).
    pub instance_id: i64,
    /// `context.path`.
    pub path: String,
    /// The course of a course context, or of a module context's course module.
    pub course_id: Option<i64>,
}

/// Read-only handle on a Moodle database with a table prefix.
#[derive(Debug, Clone)]
pub struct MoodleDb {
    pool: PgPool,
    prefix: Prefix,
    sources: Arc<Mutex<Option<(Instant, RoomSources)>>>,
}

/// Which kinds of rooms the database holds: the plugin's activities (`{prefix}rocketchat`
/// exists) and rooms declared in standalone mode (`{prefix}rcjobs_room` exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RoomSources {
    plugin: bool,
    declared: bool,
}

/// How long a detection of [`RoomSources`] is trusted while one source is missing (the plugin
/// installed or the first room declared while workers run); once both exist it never changes.
const SOURCES_TTL: Duration = Duration::from_secs(30);

/// The plugin's rooms: one per `rocketchat` activity. `{prefix}` is the prefix.
const PLUGIN_ROOMS: &str = "
SELECT cm.id AS cmid, r.id AS instance_id, c.id AS course_id, c.shortname, c.fullname, r.name::text AS name,
       r.rocketchatid::text AS rocketchatid, ctx.id AS context_id, ctx.path AS context_path,
       (SELECT cc.id FROM {prefix}context cc WHERE cc.contextlevel = 50 AND cc.instanceid = c.id) AS course_context_id,
       (cm.visible = 1 AND cm.visibleoncoursepage = 1) AS visible,
       (cm.deletioninprogress <> 0) AS deletion_in_progress,
       r.moderatorroles::text AS moderatorroles, r.userroles::text AS userroles, (r.embbeded <> 0) AS embedded,
       (r.retentionenabled <> 0) AS retentionenabled, r.maxage, (r.filesonly <> 0) AS filesonly,
       (r.excludepinned <> 0) AS excludepinned
  FROM {prefix}course_modules cm
  JOIN {prefix}modules m ON m.id = cm.module AND m.name = 'rocketchat'
  JOIN {prefix}rocketchat r ON r.id = cm.instance
  JOIN {prefix}course c ON c.id = cm.course
  JOIN {prefix}context ctx ON ctx.contextlevel = 70 AND ctx.instanceid = cm.id";

/// Rooms declared in standalone mode (`{prefix}rcjobs_room`, see `sql/standalone_tables.sql`):
/// keyed by the activity's cmid, or minus the course id for a course's room, whose context is
/// the course context and which is visible while the course is.
const DECLARED_ROOMS: &str = "
SELECT d.roomkey AS cmid, 0::bigint AS instance_id, c.id AS course_id, c.shortname, c.fullname, d.name,
       d.roomid AS rocketchatid, ctx.id AS context_id, ctx.path AS context_path,
       (SELECT cc.id FROM {prefix}context cc WHERE cc.contextlevel = 50 AND cc.instanceid = c.id) AS course_context_id,
       CASE WHEN d.cmid IS NULL THEN c.visible = 1 ELSE (cm.visible = 1 AND cm.visibleoncoursepage = 1) END AS visible,
       coalesce(cm.deletioninprogress <> 0, false) AS deletion_in_progress,
       d.moderatorroles, d.userroles, false AS embedded,
       (d.retentionenabled <> 0) AS retentionenabled, d.maxage, (d.filesonly <> 0) AS filesonly,
       (d.excludepinned <> 0) AS excludepinned
  FROM {prefix}rcjobs_room d
  JOIN {prefix}course c ON c.id = d.courseid
  LEFT JOIN {prefix}course_modules cm ON cm.id = d.cmid
  JOIN {prefix}context ctx ON ctx.contextlevel = (CASE WHEN d.cmid IS NULL THEN 50 ELSE 70 END)
                          AND ctx.instanceid = coalesce(d.cmid, d.courseid)
 WHERE d.cmid IS NULL OR cm.id IS NOT NULL";

/// No room at all (neither the plugin nor a declaration), with the columns of the others.
const NO_ROOMS: &str = "
SELECT 0::bigint AS cmid, 0::bigint AS instance_id, 0::bigint AS course_id, ''::text AS shortname,
       ''::text AS fullname, ''::text AS name, ''::text AS rocketchatid, 0::bigint AS context_id,
       ''::text AS context_path, NULL::bigint AS course_context_id, false AS visible,
       false AS deletion_in_progress, ''::text AS moderatorroles, ''::text AS userroles,
       false AS embedded, false AS retentionenabled, 0::bigint AS maxage, false AS filesonly,
       false AS excludepinned
 WHERE false";

/// Active-enrolment predicate on `ue`/`e` with `now` as `$NOW`.
const ACTIVE_UE: &str = "ue.status = 0 AND e.status = 0 AND ue.timestart <= $NOW AND (ue.timeend = 0 OR ue.timeend > $NOW)";

fn room_from_row(row: &PgRow) -> Result<Room> {
    let moderatorroles: Option<String> = row.try_get("moderatorroles")?;
    let userroles: Option<String> = row.try_get("userroles")?;
    Ok(Room {
        cmid: row.try_get("cmid")?,
        instance_id: row.try_get("instance_id")?,
        course_id: row.try_get("course_id")?,
        course_shortname: row.try_get("shortname")?,
        course_fullname: row.try_get("fullname")?,
        name: row.try_get("name")?,
        rocketchatid: row.try_get::<String, _>("rocketchatid")?.trim().to_string(),
        context_id: row.try_get("context_id")?,
        context_path: row.try_get("context_path")?,
        course_context_id: row.try_get("course_context_id")?,
        visible: row.try_get("visible")?,
        deletion_in_progress: row.try_get("deletion_in_progress")?,
        moderator_roles: parse_role_list(moderatorroles.as_deref()),
        user_roles: parse_role_list(userroles.as_deref()),
        embedded: row.try_get("embedded")?,
        retention: Retention {
            enabled: row.try_get("retentionenabled")?,
            max_age_days: row.try_get("maxage")?,
            files_only: row.try_get("filesonly")?,
            exclude_pinned: row.try_get("excludepinned")?,
        },
    })
}

fn member_from_row(row: &PgRow) -> Result<DesiredMember> {
    Ok(DesiredMember {
        user_id: row.try_get("id")?,
        username: row.try_get("username")?,
        firstname: row.try_get("firstname")?,
        lastname: row.try_get("lastname")?,
        email: row.try_get("email")?,
        moderator: row.try_get("moderator")?,
    })
}

fn user_from_row(row: &PgRow) -> Result<MoodleUser> {
    Ok(MoodleUser {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        firstname: row.try_get("firstname")?,
        lastname: row.try_get("lastname")?,
        email: row.try_get("email")?,
        auth: row.try_get("auth")?,
        idnumber: row.try_get("idnumber")?,
        deleted: row.try_get::<i16, _>("deleted")? != 0,
        suspended: row.try_get::<i16, _>("suspended")? != 0,
    })
}

impl MoodleDb {
    /// Wraps a pool on the Moodle database; `prefix` is validated (`^[a-z][a-z0-9_]*$`).
    pub fn new(pool: PgPool, prefix: &str) -> Result<MoodleDb> {
        Ok(MoodleDb {
            pool,
            prefix: Prefix::new(prefix)?,
            sources: Arc::new(Mutex::new(None)),
        })
    }

    /// The pool (for callers that want to share it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The validated table prefix.
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    fn sql(&self, s: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(self.prefix.apply(s))
    }

    /// Which room tables exist, detected once (again after [`SOURCES_TTL`] while one is missing).
    async fn sources(&self) -> Result<RoomSources> {
        let cached = self.sources.lock().ok().and_then(|g| *g);
        if let Some((at, src)) = cached {
            if (src.plugin && src.declared) || at.elapsed() < SOURCES_TTL {
                return Ok(src);
            }
        }
        let (plugin, declared): (bool, bool) = sqlx::query_as(self.sql(
            "SELECT to_regclass('{prefix}rocketchat') IS NOT NULL, to_regclass('{prefix}rcjobs_room') IS NOT NULL",
        ))
        .fetch_one(&self.pool)
        .await?;
        let src = RoomSources { plugin, declared };
        if let Ok(mut g) = self.sources.lock() {
            *g = Some((Instant::now(), src));
        }
        Ok(src)
    }

    /// Every room this site has, as a subquery named `rooms` with the columns of
    /// [`ROOM_COLS`]: the plugin's activities and the declared rooms, whichever exist.
    /// Conditions on `rooms.*` reach each branch's indexes (the planner pushes them into the
    /// `UNION ALL`).
    async fn rooms_from(&self) -> Result<String> {
        let src = self.sources().await?;
        let branches: Vec<&str> = [(src.plugin, PLUGIN_ROOMS), (src.declared, DECLARED_ROOMS)]
            .into_iter()
            .filter_map(|(on, sql)| on.then_some(sql))
            .collect();
        let body = if branches.is_empty() {
            NO_ROOMS.to_string()
        } else {
            branches.join("\n UNION ALL\n")
        };
        Ok(format!("({body}\n) rooms"))
    }

    async fn rooms_where(&self, cond: &str, bind: Vec<i64>) -> Result<Vec<Room>> {
        let from = self.rooms_from().await?;
        let sql = format!("SELECT * FROM {from}\n WHERE {cond}\n ORDER BY rooms.cmid");
        let mut q = sqlx::query(self.sql(&sql));
        for b in bind {
            q = q.bind(b);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(room_from_row)
            .collect()
    }

    /// `modules.id` of `rocketchat`, if the plugin is installed.
    pub async fn rocketchat_module_id(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar(
                self.sql("SELECT id FROM {prefix}modules WHERE name = 'rocketchat'"),
            )
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    /// The live room of course module `cmid` (`None` if not a chat, gone, or being deleted).
    pub async fn room_by_cmid(&self, cmid: i64) -> Result<Option<Room>> {
        Ok(self
            .rooms_where(
                "rooms.cmid = $1 AND NOT rooms.deletion_in_progress",
                vec![cmid],
            )
            .await?
            .pop())
    }

    /// The one write this crate makes, and only when the operator turned it on
    /// (`write_room_ids`): stores `room_id` as the `rocketchatid` of instance `instance_id`
    /// when Moodle has none, so that Moodle's activity links to the room the worker created.
    /// Never overwrites an id (the plugin's, or an admin's). Returns whether a row changed.
    pub async fn store_room_id(&self, instance_id: i64, room_id: &str) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE {prefix}rocketchat SET rocketchatid = $2 WHERE id = $1 AND coalesce(rocketchatid, '') = ''",
        ))
        .bind(instance_id)
        .bind(room_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The room of `cmid` even while its deletion is in progress (recycle-bin handling).
    pub async fn room_by_cmid_any(&self, cmid: i64) -> Result<Option<Room>> {
        Ok(self.rooms_where("rooms.cmid = $1", vec![cmid]).await?.pop())
    }

    /// The live room of a `rocketchat` instance id (payloads that only know the instance).
    pub async fn room_by_instance(&self, instance_id: i64) -> Result<Option<Room>> {
        Ok(self
            .rooms_where(
                "rooms.instance_id = $1 AND rooms.instance_id <> 0 AND NOT rooms.deletion_in_progress",
                vec![instance_id],
            )
            .await?
            .pop())
    }

    /// Live rooms whose `rocketchatid` is `group_id` (plugin payloads name rooms by group id;
    /// a restore may make two activities share one group). `rocketchat` has no index on
    /// `rocketchatid`: this scans the (small: one row per activity) `rocketchat` table.
    pub async fn rooms_by_rocketchatid(&self, group_id: &str) -> Result<Vec<Room>> {
        let from = self.rooms_from().await?;
        let sql = format!("SELECT * FROM {from}\n WHERE rooms.rocketchatid = $1 AND NOT rooms.deletion_in_progress\n ORDER BY rooms.cmid");
        let rows = sqlx::query(self.sql(&sql))
            .bind(group_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(room_from_row).collect()
    }

    /// Live rooms of a course.
    pub async fn rooms_of_course(&self, course_id: i64) -> Result<Vec<Room>> {
        self.rooms_where(
            "rooms.course_id = $1 AND NOT rooms.deletion_in_progress",
            vec![course_id],
        )
        .await
    }

    /// Live rooms affected by a change in `context_id`: the room itself for a module context,
    /// the course's rooms for a course context, every room below for a category or the system
    /// context; none for other levels.
    pub async fn rooms_for_context(&self, context_id: i64) -> Result<Vec<Room>> {
        let Some(ctx) = self.context(context_id).await? else {
            return Ok(Vec::new());
        };
        match ctx.level {
            contextlevel::MODULE => Ok(self
                .room_by_cmid(ctx.instance_id)
                .await?
                .into_iter()
                .collect()),
            contextlevel::COURSE => self.rooms_of_course(ctx.instance_id).await,
            contextlevel::COURSECAT | contextlevel::SYSTEM => {
                let from = self.rooms_from().await?;
                let sql = format!(
                    "SELECT * FROM {from}\n WHERE rooms.context_path LIKE $1 AND NOT rooms.deletion_in_progress\n ORDER BY rooms.cmid"
                );
                let rows = sqlx::query(self.sql(&sql))
                    .bind(format!("{}/%", ctx.path))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(room_from_row).collect()
            }
            _ => Ok(Vec::new()),
        }
    }

    /// One page of live rooms ordered by room key (`cmid`), after the key `after` (keyset
    /// paging; `None` for the first page: declared course rooms have negative keys).
    pub async fn rooms_page(&self, after: Option<i64>, limit: i64) -> Result<Vec<Room>> {
        let from = self.rooms_from().await?;
        let sql = format!(
            "SELECT * FROM {from}\n WHERE rooms.cmid > $1 AND NOT rooms.deletion_in_progress\n ORDER BY rooms.cmid\n LIMIT $2"
        );
        let rows = sqlx::query(self.sql(&sql))
            .bind(after.unwrap_or(i64::MIN))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(room_from_row).collect()
    }

    /// Number of live rooms.
    pub async fn count_rooms(&self) -> Result<i64> {
        let from = self.rooms_from().await?;
        let sql = format!("SELECT count(*) FROM {from} WHERE NOT rooms.deletion_in_progress");
        Ok(sqlx::query_scalar(self.sql(&sql))
            .fetch_one(&self.pool)
            .await?)
    }

    /// The desired membership of `room` at unix time `now`, ordered by user id.
    ///
    /// Driven from `role_assignments` over the room's context path with the `(roleid,
    /// contextid)` index, then the user by primary key and the enrolment through the course's
    /// `enrol` rows and the `(enrolid, userid)` unique index.
    pub async fn desired_members(&self, room: &Room, now: i64) -> Result<Vec<DesiredMember>> {
        let roles = room.mapped_roles();
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let sql = "
WITH ra AS (
  SELECT ra.userid, bool_or(ra.roleid = ANY($2)) AS moderator
    FROM {prefix}role_assignments ra
   WHERE ra.roleid = ANY($1) AND ra.contextid = ANY($3)
   GROUP BY ra.userid
)
SELECT u.id, u.username, u.firstname, u.lastname, u.email, ra.moderator
  FROM ra
  JOIN {prefix}user u ON u.id = ra.userid
 WHERE u.deleted = 0 AND u.suspended = 0
   AND EXISTS (SELECT 1 FROM {prefix}enrol e
                 JOIN {prefix}user_enrolments ue ON ue.enrolid = e.id AND ue.userid = u.id
                WHERE e.courseid = $4 AND ACTIVE)
 ORDER BY u.id"
            .replace("ACTIVE", &ACTIVE_UE.replace("$NOW", "$5"));
        let rows = sqlx::query(self.sql(&sql))
            .bind(&roles)
            .bind(&room.moderator_roles)
            .bind(room.context_ids())
            .bind(room.course_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(member_from_row).collect()
    }

    /// Whether one user should be in `room` at `now`, and as what (`None` = should not be in it).
    /// The cheap form of [`Self::desired_members`] for user × room jobs.
    pub async fn desired_member(
        &self,
        room: &Room,
        user_id: i64,
        now: i64,
    ) -> Result<Option<DesiredMember>> {
        let roles = room.mapped_roles();
        if roles.is_empty() {
            return Ok(None);
        }
        let sql = "
SELECT u.id, u.username, u.firstname, u.lastname, u.email,
       bool_or(ra.roleid = ANY($2)) AS moderator
  FROM {prefix}user u
  JOIN {prefix}role_assignments ra ON ra.userid = u.id AND ra.roleid = ANY($1) AND ra.contextid = ANY($3)
 WHERE u.id = $6 AND u.deleted = 0 AND u.suspended = 0
   AND EXISTS (SELECT 1 FROM {prefix}enrol e
                 JOIN {prefix}user_enrolments ue ON ue.enrolid = e.id AND ue.userid = u.id
                WHERE e.courseid = $4 AND ACTIVE)
 GROUP BY u.id, u.username, u.firstname, u.lastname, u.email"
            .replace("ACTIVE", &ACTIVE_UE.replace("$NOW", "$5"));
        let row = sqlx::query(self.sql(&sql))
            .bind(&roles)
            .bind(&room.moderator_roles)
            .bind(room.context_ids())
            .bind(room.course_id)
            .bind(now)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(member_from_row).transpose()
    }

    /// The live rooms `user_id` should be in at `now`, with the moderator flag, ordered by cmid.
    /// Empty for a deleted or suspended user.
    pub async fn rooms_for_user(&self, user_id: i64, now: i64) -> Result<Vec<UserRoom>> {
        let from = self.rooms_from().await?;
        let sql = format!(
            "
WITH courses AS (
  SELECT DISTINCT e.courseid
    FROM {{prefix}}user_enrolments ue
    JOIN {{prefix}}enrol e ON e.id = ue.enrolid
   WHERE ue.userid = $1 AND {active}
), ras AS (
  SELECT ra.contextid, ra.roleid FROM {{prefix}}role_assignments ra WHERE ra.userid = $1
), rooms AS (
  SELECT * FROM {from}
   WHERE rooms.course_id IN (SELECT courseid FROM courses) AND NOT rooms.deletion_in_progress
)
SELECT rooms.*,
       bool_or(ras.roleid = ANY(rc.mods)) AS moderator
  FROM rooms
  CROSS JOIN LATERAL (SELECT {roles_mod} AS mods, {roles_usr} AS usrs) rc
  JOIN ras ON ras.contextid = ANY(string_to_array(btrim(rooms.context_path, '/'), '/')::bigint[])
          AND (ras.roleid = ANY(rc.mods) OR ras.roleid = ANY(rc.usrs))
 WHERE EXISTS (SELECT 1 FROM {{prefix}}user u WHERE u.id = $1 AND u.deleted = 0 AND u.suspended = 0)
 GROUP BY {group_cols}
 ORDER BY rooms.cmid",
            active = ACTIVE_UE.replace("$NOW", "$2"),
            roles_mod = role_array_sql("rooms.moderatorroles"),
            roles_usr = role_array_sql("rooms.userroles"),
            group_cols = ROOM_COLS
                .iter()
                .map(|c| format!("rooms.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let rows = sqlx::query(self.sql(&sql))
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UserRoom {
                    room: room_from_row(r)?,
                    moderator: r.try_get("moderator")?,
                })
            })
            .collect()
    }

    /// Live rooms the user might currently be in: rooms of every course where the user has any
    /// enrolment row (active or not) plus rooms where the user holds a module-level role.
    /// A superset of [`Self::rooms_for_user`] (what a "converge this user everywhere" job walks).
    pub async fn rooms_touching_user(&self, user_id: i64) -> Result<Vec<Room>> {
        let from = self.rooms_from().await?;
        let sql = format!(
            "SELECT * FROM {from}
 WHERE NOT rooms.deletion_in_progress
   AND (rooms.course_id IN (SELECT e.courseid FROM {{prefix}}user_enrolments ue
                              JOIN {{prefix}}enrol e ON e.id = ue.enrolid
                             WHERE ue.userid = $1)
        OR rooms.cmid IN (SELECT ctx2.instanceid FROM {{prefix}}role_assignments ra
                            JOIN {{prefix}}context ctx2 ON ctx2.id = ra.contextid AND ctx2.contextlevel = 70
                           WHERE ra.userid = $1))
 ORDER BY rooms.cmid"
        );
        let rows = sqlx::query(self.sql(&sql))
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(room_from_row).collect()
    }

    /// A user by id (any state), without the password column.
    pub async fn user_by_id(&self, user_id: i64) -> Result<Option<MoodleUser>> {
        let row = sqlx::query(self.sql(
            "SELECT id, username, firstname, lastname, email, auth, idnumber, deleted, suspended
               FROM {prefix}user WHERE id = $1",
        ))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A local (`mnethostid` = the site's) user by username; with several hosts, the lowest
    /// `mnethostid` wins.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<MoodleUser>> {
        let row = sqlx::query(self.sql(
            "SELECT id, username, firstname, lastname, email, auth, idnumber, deleted, suspended
               FROM {prefix}user WHERE username = $1 ORDER BY mnethostid LIMIT 1",
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A context row and its course (for course and module contexts).
    pub async fn context(&self, context_id: i64) -> Result<Option<ContextInfo>> {
        let row = sqlx::query(self.sql(
            "SELECT ctx.id, ctx.contextlevel, ctx.instanceid, ctx.path,
                    CASE ctx.contextlevel WHEN 50 THEN ctx.instanceid
                         WHEN 70 THEN (SELECT cm.course FROM {prefix}course_modules cm WHERE cm.id = ctx.instanceid)
                    END AS course_id
               FROM {prefix}context ctx WHERE ctx.id = $1",
        ))
        .bind(context_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(ContextInfo {
                id: r.try_get("id")?,
                level: r.try_get("contextlevel")?,
                instance_id: r.try_get("instanceid")?,
                path: r.try_get::<Option<String>, _>("path")?.unwrap_or_default(),
                course_id: r.try_get("course_id")?,
            })),
        }
    }

    /// The course of a course or module context.
    pub async fn course_of_context(&self, context_id: i64) -> Result<Option<i64>> {
        Ok(self.context(context_id).await?.and_then(|c| c.course_id))
    }

    /// The context id of a course.
    pub async fn course_context_id(&self, course_id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            self.sql("SELECT id FROM {prefix}context WHERE contextlevel = 50 AND instanceid = $1"),
        )
        .bind(course_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Role id of a role short name (`student`, `editingteacher`…).
    pub async fn role_id(&self, shortname: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar(self.sql("SELECT id FROM {prefix}role WHERE shortname = $1"))
                .bind(shortname)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

/// Column names every room subquery ([`PLUGIN_ROOMS`], [`DECLARED_ROOMS`]) produces (for GROUP BY over it).
const ROOM_COLS: &[&str] = &[
    "cmid",
    "instance_id",
    "course_id",
    "shortname",
    "fullname",
    "name",
    "rocketchatid",
    "context_id",
    "context_path",
    "course_context_id",
    "visible",
    "deletion_in_progress",
    "moderatorroles",
    "userroles",
    "embedded",
    "retentionenabled",
    "maxage",
    "filesonly",
    "excludepinned",
];

/// SQL turning a comma-list column into `bigint[]`, ignoring blanks and junk.
fn role_array_sql(col: &str) -> String {
    format!(
        "array_remove(string_to_array(regexp_replace(coalesce({col}, ''), '[^0-9,]', '', 'g'), ','), '')::bigint[]"
    )
}
