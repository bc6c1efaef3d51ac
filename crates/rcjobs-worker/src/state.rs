//! The worker's own state in schema `rcjobs_sync` (migrations in `../migrations`): which chat
//! room belongs to which course module, converged membership, per-room/per-user outcomes.

use sqlx::{PgPool, Row};

/// Life-cycle state of a room mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    /// The worker decided a name and is creating the room (write-ahead, so a retry adopts the
    /// room a crashed attempt created instead of creating another).
    Creating,
    /// Live.
    Active,
    /// In the Moodle recycle bin: archived.
    Trashed,
    /// Purged from the bin: deleted.
    Purged,
    /// The room vanished from the chat server.
    Gone,
}

impl RoomState {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomState::Creating => "creating",
            RoomState::Active => "active",
            RoomState::Trashed => "trashed",
            RoomState::Purged => "purged",
            RoomState::Gone => "gone",
        }
    }

    fn parse(s: &str) -> RoomState {
        match s {
            "creating" => RoomState::Creating,
            "trashed" => RoomState::Trashed,
            "purged" => RoomState::Purged,
            "gone" => RoomState::Gone,
            _ => RoomState::Active,
        }
    }
}

/// One row of `rcjobs_sync.room`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    /// Course module id.
    pub cmid: i64,
    /// Course id.
    pub courseid: Option<i64>,
    /// Chat room id (`None` while creating).
    pub room_id: Option<String>,
    /// Chat room name.
    pub room_name: Option<String>,
    /// The worker created this room (only such rooms are ever deleted).
    pub created_by_worker: bool,
    /// Life-cycle state.
    pub state: RoomState,
    /// Recycle-bin item id, while trashed.
    pub binid: Option<i64>,
}

/// One converged member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Chat username (stored lower case).
    pub username: String,
    /// Moodle user id, when Moodle wanted this member.
    pub userid: Option<i64>,
    /// Moderator in the room.
    pub moderator: bool,
}

/// One recorded outcome: a change that could not be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `''` for the room itself, else a chat username.
    pub subject: String,
    /// Moodle user id, when known.
    pub userid: Option<i64>,
    /// Machine-readable reason (`user_missing`, `invalid_username`, `account_conflict`,
    /// `room_not_found`, `forbidden`, `change_refused`, `owner_kept`, `room_archived`, …).
    pub code: String,
    /// Human-readable detail (never secrets).
    pub detail: String,
}

/// Access to `rcjobs_sync`, for one chat backend: room mappings are read and written as that
/// backend's (`rcjobs_sync.room.backend`), so a room id is only ever compared with ids of the
/// same server.
#[derive(Debug, Clone)]
pub struct SyncState {
    pool: PgPool,
    backend: &'static str,
}

fn room_from_row(r: &sqlx::postgres::PgRow) -> Result<RoomRecord, sqlx::Error> {
    Ok(RoomRecord {
        cmid: r.try_get("cmid")?,
        courseid: r.try_get("courseid")?,
        room_id: r.try_get("room_id")?,
        room_name: r.try_get("room_name")?,
        created_by_worker: r.try_get("created_by_worker")?,
        state: RoomState::parse(r.try_get::<&str, _>("state")?),
        binid: r.try_get("binid")?,
    })
}

const ROOM_COLS: &str = "cmid, courseid, room_id, room_name, created_by_worker, state, binid";

impl SyncState {
    /// State on the queue database, for Rocket.Chat (the backend of rows made before
    /// backends were recorded).
    pub fn new(pool: PgPool) -> SyncState {
        SyncState::for_backend(pool, "rocketchat")
    }

    /// State on the queue database for the backend named `backend`
    /// ([`rcjobs_chat::ChatBackend::backend_name`]).
    pub fn for_backend(pool: PgPool, backend: &'static str) -> SyncState {
        SyncState { pool, backend }
    }

    /// The backend whose mappings this reads and writes.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The mapping of `cmid` on this backend, in any state (one on another backend is none:
    /// this backend's room is still to be made).
    pub async fn room(&self, cmid: i64) -> Result<Option<RoomRecord>, sqlx::Error> {
        let sql =
            format!("SELECT {ROOM_COLS} FROM rcjobs_sync.room WHERE cmid = $1 AND backend = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cmid)
            .bind(self.backend)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(room_from_row).transpose()
    }

    /// The live mapping (creating, active or trashed) that holds chat room `room_id`.
    pub async fn room_by_room_id(&self, room_id: &str) -> Result<Option<RoomRecord>, sqlx::Error> {
        let sql = format!(
            "SELECT {ROOM_COLS} FROM rcjobs_sync.room
              WHERE room_id = $1 AND backend = $2 AND state IN ('creating', 'active', 'trashed')"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(self.backend)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(room_from_row).transpose()
    }

    /// Any mapping ever made for chat room `room_id` (latest first), e.g. to learn whether the
    /// worker created it.
    pub async fn any_room_by_room_id(
        &self,
        room_id: &str,
    ) -> Result<Option<RoomRecord>, sqlx::Error> {
        let sql = format!(
            "SELECT {ROOM_COLS} FROM rcjobs_sync.room WHERE room_id = $1 AND backend = $2
              ORDER BY updated_at DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(self.backend)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(room_from_row).transpose()
    }

    /// The live mappings (active or trashed, with a room) of course `courseid`.
    pub async fn rooms_of_course(&self, courseid: i64) -> Result<Vec<RoomRecord>, sqlx::Error> {
        let sql = format!(
            "SELECT {ROOM_COLS} FROM rcjobs_sync.room
              WHERE courseid = $1 AND backend = $2 AND room_id IS NOT NULL
                AND state IN ('active', 'trashed') ORDER BY cmid"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(courseid)
            .bind(self.backend)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(room_from_row).collect()
    }

    /// The mapping trashed under recycle-bin item `binid`.
    pub async fn room_by_binid(&self, binid: i64) -> Result<Option<RoomRecord>, sqlx::Error> {
        let sql = format!("SELECT {ROOM_COLS} FROM rcjobs_sync.room WHERE binid = $1 AND backend = $2 ORDER BY updated_at DESC LIMIT 1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(binid)
            .bind(self.backend)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(room_from_row).transpose()
    }

    /// Records that the room of `cmid` went to the category bin with item `binid`, under the
    /// activity name `name` (kept across the mapping's later updates: `put_room` leaves these
    /// columns alone).
    pub async fn mark_category_bin(
        &self,
        cmid: i64,
        binid: i64,
        name: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE rcjobs_sync.room SET category_binid = $2, activity_name = coalesce($3, activity_name),
                    updated_at = now() WHERE cmid = $1",
        )
        .bind(cmid)
        .bind(binid)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The rooms still trashed with category-bin item `binid`, oldest module first, each with
    /// its activity name.
    pub async fn rooms_of_category_bin(
        &self,
        binid: i64,
    ) -> Result<Vec<(RoomRecord, Option<String>)>, sqlx::Error> {
        let sql = format!(
            "SELECT {ROOM_COLS}, activity_name FROM rcjobs_sync.room
              WHERE category_binid = $1 AND backend = $2 AND state = 'trashed' AND room_id IS NOT NULL
              ORDER BY cmid"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(binid)
            .bind(self.backend)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((room_from_row(r)?, r.try_get("activity_name")?)))
            .collect()
    }

    /// When the mapping of `cmid` was first written (its room's creation began then, for a
    /// room the worker made).
    pub async fn room_created_at(
        &self,
        cmid: i64,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
        sqlx::query_scalar("SELECT created_at FROM rcjobs_sync.room WHERE cmid = $1")
            .bind(cmid)
            .fetch_optional(&self.pool)
            .await
    }

    /// Inserts or replaces the mapping of `rec.cmid`, as this backend's. A room id held by
    /// another live mapping of this backend moves to this one (a restored activity takes over
    /// its old room). A mapping of `rec.cmid` on another backend is replaced, its room id
    /// kept as `previous_room_id` (the site moved to this backend).
    pub async fn put_room(&self, rec: &RoomRecord) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if let Some(id) = &rec.room_id {
            sqlx::query(
                "UPDATE rcjobs_sync.room SET state = 'gone', updated_at = now()
                  WHERE room_id = $1 AND backend = $3 AND cmid <> $2
                    AND state IN ('creating', 'active', 'trashed')",
            )
            .bind(id)
            .bind(rec.cmid)
            .bind(self.backend)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO rcjobs_sync.room (cmid, courseid, room_id, room_name, created_by_worker, state, binid, backend)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (cmid) DO UPDATE SET courseid = EXCLUDED.courseid, room_id = EXCLUDED.room_id,
                 room_name = EXCLUDED.room_name, created_by_worker = EXCLUDED.created_by_worker,
                 state = EXCLUDED.state, binid = EXCLUDED.binid, backend = EXCLUDED.backend,
                 previous_room_id = CASE WHEN rcjobs_sync.room.backend <> EXCLUDED.backend
                     THEN rcjobs_sync.room.room_id ELSE rcjobs_sync.room.previous_room_id END,
                 room_changed_at = CASE WHEN rcjobs_sync.room.backend <> EXCLUDED.backend
                     THEN now() ELSE rcjobs_sync.room.room_changed_at END,
                 updated_at = now()",
        )
        .bind(rec.cmid)
        .bind(rec.courseid)
        .bind(&rec.room_id)
        .bind(&rec.room_name)
        .bind(rec.created_by_worker)
        .bind(rec.state.as_str())
        .bind(rec.binid)
        .bind(self.backend)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Replaces the converged membership of `cmid` and stamps the room's last sync.
    pub async fn put_members(
        &self,
        cmid: i64,
        members: &[MemberRow],
        result: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM rcjobs_sync.member WHERE cmid = $1")
            .bind(cmid)
            .execute(&mut *tx)
            .await?;
        let names: Vec<String> = members.iter().map(|m| m.username.to_lowercase()).collect();
        let ids: Vec<Option<i64>> = members.iter().map(|m| m.userid).collect();
        let mods: Vec<bool> = members.iter().map(|m| m.moderator).collect();
        sqlx::query(
            "INSERT INTO rcjobs_sync.member (cmid, username, userid, moderator)
             SELECT $1, u, i, m FROM unnest($2::text[], $3::bigint[], $4::bool[]) AS t(u, i, m)
             ON CONFLICT (cmid, username) DO UPDATE SET userid = coalesce(EXCLUDED.userid, rcjobs_sync.member.userid),
                 moderator = EXCLUDED.moderator OR rcjobs_sync.member.moderator",
        )
        .bind(cmid)
        .bind(&names)
        .bind(&ids)
        .bind(&mods)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE rcjobs_sync.room SET last_sync_at = now(), last_result = $2, member_count = $3, updated_at = now()
              WHERE cmid = $1",
        )
        .bind(cmid)
        .bind(result)
        .bind(i32::try_from(members.len()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Forgets the converged membership of `cmid` (its room was deleted).
    pub async fn clear_members(&self, cmid: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM rcjobs_sync.member WHERE cmid = $1")
            .bind(cmid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The converged membership of `cmid`.
    pub async fn members(&self, cmid: i64) -> Result<Vec<MemberRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT username, userid, moderator FROM rcjobs_sync.member WHERE cmid = $1 ORDER BY username",
        )
        .bind(cmid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MemberRow {
                    username: r.try_get("username")?,
                    userid: r.try_get("userid")?,
                    moderator: r.try_get("moderator")?,
                })
            })
            .collect()
    }

    /// Course modules whose room the last sync left `userid` (or chat `username`) in.
    pub async fn cmids_of_member(
        &self,
        userid: i64,
        username: Option<&str>,
    ) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT DISTINCT cmid FROM rcjobs_sync.member
              WHERE userid = $1 OR ($2::text IS NOT NULL AND username = lower($2)) ORDER BY cmid",
        )
        .bind(userid)
        .bind(username)
        .fetch_all(&self.pool)
        .await
    }

    /// Replaces the recorded outcomes of `cmid` with `outcomes` (empty = all resolved).
    pub async fn put_outcomes(
        &self,
        cmid: i64,
        job_id: Option<i64>,
        outcomes: &[Outcome],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM rcjobs_sync.outcome WHERE cmid = $1")
            .bind(cmid)
            .execute(&mut *tx)
            .await?;
        if !outcomes.is_empty() {
            let subj: Vec<&str> = outcomes.iter().map(|o| o.subject.as_str()).collect();
            let uid: Vec<Option<i64>> = outcomes.iter().map(|o| o.userid).collect();
            let code: Vec<&str> = outcomes.iter().map(|o| o.code.as_str()).collect();
            let detail: Vec<&str> = outcomes.iter().map(|o| o.detail.as_str()).collect();
            sqlx::query(
                "INSERT INTO rcjobs_sync.outcome (cmid, subject, userid, code, detail, job_id)
                 SELECT $1, s, u, c, d, $6 FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[]) AS t(s, u, c, d)
                 ON CONFLICT (cmid, subject) DO UPDATE SET code = EXCLUDED.code, detail = EXCLUDED.detail,
                     userid = EXCLUDED.userid, job_id = EXCLUDED.job_id, at = now()",
            )
            .bind(cmid)
            .bind(&subj)
            .bind(&uid)
            .bind(&code)
            .bind(&detail)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Records that `cmid` left chat room `previous` for the room Moodle points at now.
    pub async fn note_previous_room(&self, cmid: i64, previous: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE rcjobs_sync.room SET previous_room_id = $2, room_changed_at = now() WHERE cmid = $1",
        )
        .bind(cmid)
        .bind(previous)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records (or replaces) one room-level outcome of `cmid`, keeping user-level ones.
    pub async fn put_room_outcome(
        &self,
        cmid: i64,
        job_id: Option<i64>,
        code: &str,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO rcjobs_sync.outcome (cmid, subject, code, detail, job_id) VALUES ($1, '', $2, $3, $4)
             ON CONFLICT (cmid, subject) DO UPDATE SET code = EXCLUDED.code, detail = EXCLUDED.detail,
                 job_id = EXCLUDED.job_id, at = now()",
        )
        .bind(cmid)
        .bind(code)
        .bind(detail)
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE rcjobs_sync.room SET last_result = $2, updated_at = now() WHERE cmid = $1",
        )
        .bind(cmid)
        .bind(code)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The recorded outcomes of `cmid`.
    pub async fn outcomes(&self, cmid: i64) -> Result<Vec<Outcome>, sqlx::Error> {
        let rows = sqlx::query("SELECT subject, userid, code, detail FROM rcjobs_sync.outcome WHERE cmid = $1 ORDER BY subject")
            .bind(cmid)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Outcome {
                    subject: r.try_get("subject")?,
                    userid: r.try_get("userid")?,
                    code: r.try_get("code")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
