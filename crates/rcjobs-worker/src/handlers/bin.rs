//! Recycle bin: trash → archive, restore → unarchive + full sync, purge → delete (only a
//! room the worker created). Level-triggered: every action first checks whether a live
//! course module still uses the room (a bin restore is followed by a "deleted" event for
//! the same item; a purge must not delete a room that was restored meanwhile).
//!
//! A restore gives the restored module (a new cmid) its *original* room, found by the bin
//! item it was trashed with, whoever created it. A room the worker made for the new module
//! in the meantime (its `restore` job may run before the bin item is deleted, and a module
//! with no room id in Moodle gets a room of its own) is deleted: it is seconds old, the
//! worker created it, and leaving it would orphan one of the two rooms.
//!
//! The category bin (a whole course): its bin item's insert trashes each room of the course
//! and records the item and the activity's name; a restore (a new course, new modules) maps
//! the old rooms onto the new modules ([`Engine::restore_category_bin`]), a purge deletes
//! the old rooms the worker created.

use super::room::UNARCHIVE_MISSING;
use crate::engine::{Engine, HandlerError, JobInfo};
use crate::outcome::{classify, job_error, ChatFailure, Code};
use crate::state::{RoomRecord, RoomState};
use rcjobs_chat::ChatError;
use rcjobs_metrics::MembershipAction;
use rcjobs_producer::{BinAction, EnqueueOptions, Job, Recyclebin};
use std::collections::BTreeSet;

/// Priority of the room life-cycle jobs the worker fans out (as the triggers' life-cycle
/// work: ahead of room syncs at -10 and of user fan-out at 0).
const ROOM_LIFECYCLE_PRIORITY: i16 = -20;

/// How long before a bin restore is signalled the restored module's own room may have been
/// created and still count as the interim room of that restore (Moodle restores the module,
/// then deletes the bin item, in one request; the worker may make the room before or after).
const INTERIM_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// How soon a purge waiting for the restore of the same bin item looks again.
const RESTORE_RECHECK: chrono::Duration = chrono::Duration::seconds(2);

impl Engine {
    /// Whether a restore of bin item `binid` other than `job` is queued or running.
    async fn restore_pending(&self, binid: i64, job: &JobInfo) -> Result<bool, HandlerError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rcjobs.job
                             WHERE kind = 'recyclebin' AND id <> $2
                               AND state IN ('ready', 'running', 'blocked')
                               AND payload->>'action' = 'restore'
                               AND payload->>'binid' = ($1::bigint)::text)",
        )
        .bind(binid)
        .bind(job.id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub(crate) async fn recyclebin(
        &self,
        p: &Recyclebin,
        job: &JobInfo,
    ) -> Result<String, HandlerError> {
        if let (None, None, None) = (p.cmid, &p.rocketchatid, p.binid) {
            match (p.action, p.categorybinid, p.courseid) {
                (BinAction::Trash, _, Some(course)) => return self.trash_course(p, course).await,
                (BinAction::Restore, Some(b), Some(course)) => {
                    return self.restore_category_bin(p, b, course).await
                }
                (BinAction::Purge, Some(b), _) => return self.purge_category_bin(p, b).await,
                _ => {}
            }
        }
        // Which room: our mapping (by cmid, room id or bin id), else the payload's or Moodle's
        // id. A restore names the *new* module, which may already hold a room of its own
        // making: the bin item (then the payload's room id) says which room was trashed.
        let mut rec: Option<RoomRecord> = None;
        if p.action == BinAction::Restore {
            if let Some(b) = p.binid {
                rec = self
                    .state
                    .room_by_binid(b)
                    .await?
                    .filter(|r| r.state == RoomState::Trashed);
            }
            if rec.is_none() {
                if let Some(id) = &p.rocketchatid {
                    rec = self.state.any_room_by_room_id(id).await?;
                }
            }
        }
        if rec.is_none() {
            if let Some(c) = p.cmid {
                rec = self.state.room(c).await?;
            }
        }
        if rec.is_none() {
            if let Some(id) = &p.rocketchatid {
                rec = self.state.any_room_by_room_id(id).await?;
            }
        }
        if rec.is_none() {
            if let Some(b) = p.binid {
                rec = self.state.room_by_binid(b).await?;
            }
        }
        let mut room_id = rec
            .as_ref()
            .and_then(|r| r.room_id.clone())
            .or_else(|| p.rocketchatid.clone());
        if room_id.is_none() {
            if let Some(c) = p.cmid {
                room_id = self
                    .moodle
                    .room_by_cmid_any(c)
                    .await?
                    .map(|r| self.trusted(r).rocketchatid)
                    .filter(|s| !s.is_empty());
            }
        }
        let Some(room_id) = room_id else {
            return Ok(format!(
                "recyclebin {}: no room known for this item; nothing to do",
                p.action.as_str()
            ));
        };
        let cmid = rec.as_ref().map(|r| r.cmid).or(p.cmid);
        let live = self.cmids_of_room_id(&room_id).await?;
        let live: Vec<i64> = {
            let mut v = Vec::new();
            for c in live {
                if self.moodle.room_by_cmid(c).await?.is_some() {
                    v.push(c);
                }
            }
            v
        };
        let base = rec.clone().unwrap_or(RoomRecord {
            cmid: cmid.unwrap_or(0),
            courseid: p.courseid,
            room_id: Some(room_id.clone()),
            room_name: None,
            created_by_worker: false,
            state: RoomState::Active,
            binid: None,
        });

        match p.action {
            BinAction::Trash => {
                // A bin item is only written by Moodle's pre-delete hook, so the binned module
                // is on its way out even if its row still looks live (deletion without the
                // asynchronous flag, or the bin row committed first).
                let binned = p.binid.or(p.categorybinid).and(p.cmid);
                let others: Vec<i64> = live
                    .iter()
                    .copied()
                    .filter(|&l| Some(l) != binned)
                    .collect();
                if !others.is_empty() {
                    return Ok(format!(
                        "room {room_id} still used by live course module(s) {others:?}: not archived"
                    ));
                }
                match self.chat.archive_room(&room_id).await {
                    Ok(()) => self.applied(MembershipAction::Archive, 1),
                    Err(e) if classify(&e) == ChatFailure::RoomGone => {
                        self.note(cmid, job, Code::RoomNotFound, "trash: room already gone")
                            .await?;
                        return Ok(format!("room {room_id} already gone"));
                    }
                    Err(e) => return Err(self.bin_failure(cmid, job, e).await),
                }
                if base.cmid > 0 {
                    self.state
                        .put_room(&RoomRecord {
                            state: RoomState::Trashed,
                            binid: p.binid.or(base.binid),
                            ..base.clone()
                        })
                        .await?;
                    if let Some(b) = p.categorybinid {
                        self.state
                            .mark_category_bin(base.cmid, b, p.name.as_deref())
                            .await?;
                    }
                }
                Ok(format!("room {room_id} archived"))
            }
            BinAction::Restore => {
                // The restored activity (a new cmid) takes the room over; then converge it.
                // Unless Moodle gave it a room id of its own (the plugin made a new group on
                // restore: the worker follows Moodle's ids), or it has had a room of its own
                // for longer than a restore takes (an activity of the same name created
                // while the original sat in the bin, which the trigger cannot tell apart).
                let mut targets = live.clone();
                let mut course = base.courseid;
                let mut refused = None;
                if let Some(c) = p.cmid.filter(|c| !targets.contains(c)) {
                    if let Some(m) = self.moodle.room_by_cmid(c).await?.map(|r| self.trusted(r)) {
                        if !m.rocketchatid.is_empty() && m.rocketchatid != room_id {
                            refused = Some(format!(
                                "course module {c} has room {} in Moodle",
                                m.rocketchatid
                            ));
                        } else if let Some(own) = self.established_room(c, &room_id, job).await? {
                            refused = Some(format!("course module {c} has had room {own} of its own since before this restore"));
                        } else {
                            targets.insert(0, c);
                            course = Some(m.course_id);
                        }
                    }
                }
                if let (true, Some(why)) = (targets.is_empty(), &refused) {
                    return Ok(format!(
                        "room {room_id} left archived: {why}, so this is not its restore"
                    ));
                }
                // Without `unarchive-room` the room is still handed to the restored activity
                // (its identity is right; its syncs record the missing permission and converge
                // once it is granted) rather than the job going dead.
                let mut unarchived = true;
                match self.chat.unarchive_room(&room_id).await {
                    Ok(()) => self.applied(MembershipAction::Unarchive, 1),
                    Err(e) if classify(&e) == ChatFailure::Forbidden => {
                        self.note(
                            cmid,
                            job,
                            Code::PermissionMissing,
                            &format!("{UNARCHIVE_MISSING}: {e}"),
                        )
                        .await?;
                        unarchived = false;
                    }
                    Err(e) => return Err(self.bin_failure(cmid, job, e).await),
                }
                if let Some(&new_cmid) = targets.first() {
                    if new_cmid != base.cmid {
                        self.drop_interim_room(new_cmid, &room_id, job).await?;
                    }
                    self.state
                        .put_room(&RoomRecord {
                            cmid: new_cmid,
                            courseid: course,
                            state: RoomState::Active,
                            binid: None,
                            ..base.clone()
                        })
                        .await?;
                } else if base.cmid > 0 {
                    self.state
                        .put_room(&RoomRecord {
                            state: RoomState::Active,
                            binid: None,
                            ..base.clone()
                        })
                        .await?;
                }
                let n = self.enqueue_syncs(targets.iter().copied()).await?;
                Ok(if unarchived {
                    format!("room {room_id} unarchived; {n} room syncs enqueued")
                } else {
                    format!("room {room_id} restored but left archived (unarchive-room missing); {n} room syncs enqueued")
                })
            }
            BinAction::Purge => {
                if !live.is_empty() {
                    return Ok(format!(
                        "room {room_id} used by live course module(s) {live:?} (restored): kept"
                    ));
                }
                // Moodle deletes a bin item right after restoring it, so this purge may run
                // beside the restore that hands the room to the new module. Where Moodle holds
                // no room id (Matrix) only that restore links the two: wait for it.
                if let Some(b) = p.binid {
                    if self.restore_pending(b, job).await? {
                        return Err(HandlerError::Snooze {
                            until: chrono::Utc::now() + RESTORE_RECHECK,
                            reason: format!("bin item {b}: its restore is still queued"),
                        });
                    }
                }
                let created = match &rec {
                    Some(r) => r.created_by_worker,
                    None => self
                        .state
                        .any_room_by_room_id(&room_id)
                        .await?
                        .is_some_and(|r| r.created_by_worker),
                };
                if !created {
                    self.note(
                        cmid,
                        job,
                        Code::RoomKept,
                        "purge: the worker did not create this room, so it never deletes it",
                    )
                    .await?;
                    return Ok(format!("room {room_id} not created by the worker: kept"));
                }
                match self.chat.delete_room(&room_id).await {
                    Ok(()) => self.applied(MembershipAction::Delete, 1),
                    Err(e) => return Err(self.bin_failure(cmid, job, e).await),
                }
                if base.cmid > 0 {
                    self.state
                        .put_room(&RoomRecord {
                            state: RoomState::Purged,
                            ..base.clone()
                        })
                        .await?;
                    self.state.clear_members(base.cmid).await?;
                }
                Ok(format!("room {room_id} deleted"))
            }
        }
    }

    /// A whole course went to the category bin: one trash per room the worker knows for the
    /// course, each under its room lock (the per-room trash archives it once no live module
    /// uses it; the course's activities are gone by the time it runs).
    async fn trash_course(&self, p: &Recyclebin, course: i64) -> Result<String, HandlerError> {
        let rooms = self.state.rooms_of_course(course).await?;
        let jobs: Vec<(Job, EnqueueOptions)> = rooms
            .iter()
            .map(|r| {
                let job = Job::Recyclebin(Recyclebin {
                    cmid: Some(r.cmid),
                    rocketchatid: r.room_id.clone(),
                    binid: None,
                    courseid: Some(course),
                    ..p.clone()
                });
                (job, self.lifecycle())
            })
            .collect();
        rcjobs_producer::enqueue_many(&self.pool, &jobs).await?;
        Ok(format!(
            "course {course} in the category bin: {} room(s) to archive",
            jobs.len()
        ))
    }

    fn lifecycle(&self) -> EnqueueOptions {
        EnqueueOptions {
            priority: ROOM_LIFECYCLE_PRIORITY,
            ..self.follow_up()
        }
    }

    /// The room `cmid` holds other than `original` when it is not the interim room of a
    /// restore: one the worker did not create, or created more than [`INTERIM_WINDOW`]
    /// before the restore was signalled. `None`: no other room, or an interim one.
    async fn established_room(
        &self,
        cmid: i64,
        original: &str,
        job: &JobInfo,
    ) -> Result<Option<String>, HandlerError> {
        let Some(cur) = self.state.room(cmid).await? else {
            return Ok(None);
        };
        let Some(own) = cur.room_id.clone().filter(|id| id != original) else {
            return Ok(None);
        };
        if !matches!(cur.state, RoomState::Active | RoomState::Creating) {
            return Ok(None);
        }
        let fresh = match self.state.room_created_at(cmid).await? {
            Some(at) => cur.created_by_worker && at >= job.enqueued_at - INTERIM_WINDOW,
            None => false,
        };
        Ok((!fresh).then_some(own))
    }

    /// Before the restored module `cmid` takes its original room `original` back: deletes the
    /// interim room the worker created for it meanwhile, if no other live module uses it.
    async fn drop_interim_room(
        &self,
        cmid: i64,
        original: &str,
        job: &JobInfo,
    ) -> Result<(), HandlerError> {
        let Some(cur) = self.state.room(cmid).await? else {
            return Ok(());
        };
        let Some(interim) = cur.room_id.clone().filter(|id| id != original) else {
            return Ok(());
        };
        if !cur.created_by_worker
            || !matches!(cur.state, RoomState::Active | RoomState::Creating)
            || self.established_room(cmid, original, job).await?.is_some()
        {
            return Ok(());
        }
        if self
            .cmids_of_room_id(&interim)
            .await?
            .iter()
            .any(|&c| c != cmid)
        {
            return Ok(());
        }
        match self.chat.delete_room(&interim).await {
            Ok(()) => self.applied(MembershipAction::Delete, 1),
            Err(ChatError::RoomNotFound { .. }) => {}
            Err(e) => return Err(self.bin_failure(Some(cmid), job, e).await),
        }
        self.state.clear_members(cmid).await?;
        tracing::info!(cmid, interim = %interim, original, "bin restore: the restored module takes its original room back; the room made for it meanwhile is deleted");
        Ok(())
    }

    /// A course came back from the category bin as course `course` (new course and module
    /// ids). Each room trashed with bin item `binid` goes to one new module, by this rule:
    /// first the module whose Moodle room id is the room's (rooms the plugin made), then,
    /// oldest room first, the lowest-cmid module of the same activity name not yet matched.
    /// One per-room restore each, under the new module's room lock. Rooms left unmatched
    /// stay archived (a purge of the item never comes: the item is gone).
    async fn restore_category_bin(
        &self,
        p: &Recyclebin,
        binid: i64,
        course: i64,
    ) -> Result<String, HandlerError> {
        let old = self.state.rooms_of_category_bin(binid).await?;
        let modules: Vec<_> = self
            .moodle
            .rooms_of_course(course)
            .await?
            .into_iter()
            .map(|r| self.trusted(r))
            .collect();
        if modules.is_empty() {
            return Ok(format!(
                "category bin item {binid}: course {course} has no chat activity (not restored?): nothing to do"
            ));
        }
        let mut taken: BTreeSet<i64> = BTreeSet::new();
        let mut pairs: Vec<(i64, String)> = Vec::new();
        let mut left: Vec<&(RoomRecord, Option<String>)> = Vec::new();
        for entry in &old {
            let Some(id) = entry.0.room_id.as_deref() else {
                continue;
            };
            match modules
                .iter()
                .find(|m| m.rocketchatid == id && !taken.contains(&m.cmid))
            {
                Some(m) => {
                    taken.insert(m.cmid);
                    pairs.push((m.cmid, id.to_string()));
                }
                None => left.push(entry),
            }
        }
        let mut unmatched = 0usize;
        for (rec, name) in left {
            let (Some(id), Some(name)) = (rec.room_id.as_deref(), name.as_deref()) else {
                unmatched += 1;
                continue;
            };
            // Modules that carry a room id of their own keep it (the worker follows Moodle).
            match modules
                .iter()
                .find(|m| m.name == name && m.rocketchatid.is_empty() && !taken.contains(&m.cmid))
            {
                Some(m) => {
                    taken.insert(m.cmid);
                    pairs.push((m.cmid, id.to_string()));
                }
                None => unmatched += 1,
            }
        }
        let jobs: Vec<(Job, EnqueueOptions)> = pairs
            .iter()
            .map(|(cmid, room)| {
                let job = Job::Recyclebin(Recyclebin {
                    action: BinAction::Restore,
                    cmid: Some(*cmid),
                    rocketchatid: Some(room.clone()),
                    binid: None,
                    courseid: Some(course),
                    categorybinid: Some(binid),
                    name: None,
                    ..p.clone()
                });
                (job, self.lifecycle())
            })
            .collect();
        rcjobs_producer::enqueue_many(&self.pool, &jobs).await?;
        Ok(format!(
            "category bin item {binid} restored as course {course}: {} room(s) handed to the new modules, {unmatched} unmatched (left archived)",
            jobs.len()
        ))
    }

    /// Category-bin item `binid` was emptied: one per-room purge for each room still trashed
    /// with it, under the old module's room lock (each re-checks that no live module uses
    /// the room and deletes it only if the worker created it).
    async fn purge_category_bin(&self, p: &Recyclebin, binid: i64) -> Result<String, HandlerError> {
        let old = self.state.rooms_of_category_bin(binid).await?;
        let jobs: Vec<(Job, EnqueueOptions)> = old
            .iter()
            .map(|(r, _)| {
                let job = Job::Recyclebin(Recyclebin {
                    action: BinAction::Purge,
                    cmid: Some(r.cmid),
                    rocketchatid: r.room_id.clone(),
                    binid: None,
                    courseid: r.courseid,
                    categorybinid: Some(binid),
                    name: None,
                    ..p.clone()
                });
                (job, self.lifecycle())
            })
            .collect();
        rcjobs_producer::enqueue_many(&self.pool, &jobs).await?;
        Ok(format!(
            "category bin item {binid} purged: {} room(s) to delete",
            jobs.len()
        ))
    }

    async fn note(
        &self,
        cmid: Option<i64>,
        job: &JobInfo,
        code: Code,
        detail: &str,
    ) -> Result<(), HandlerError> {
        if let Some(c) = cmid {
            self.state
                .put_room_outcome(c, Some(job.id), code.as_str(), detail)
                .await?;
        }
        Ok(())
    }

    async fn bin_failure(&self, cmid: Option<i64>, job: &JobInfo, e: ChatError) -> HandlerError {
        if let Some((code, _)) = classify(&e).room_record() {
            if let Err(db) = self.note(cmid, job, code, &e.to_string()).await {
                return db;
            }
        }
        job_error(e)
    }
}
