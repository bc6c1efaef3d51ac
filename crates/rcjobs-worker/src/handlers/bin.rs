//! Recycle bin: trash → archive, restore → unarchive + full sync, purge → delete (only a
//! room the worker created). Level-triggered: every action first checks whether a live
//! course module still uses the room (a bin restore is followed by a "deleted" event for
//! the same item; a purge must not delete a room that was restored meanwhile).

use super::room::{PERMISSION_MISSING, UNARCHIVE_MISSING};
use crate::engine::{chat_error, Engine, HandlerError, JobInfo};
use crate::state::{RoomRecord, RoomState};
use rcjobs_chat::ChatError;
use rcjobs_metrics::MembershipAction;
use rcjobs_producer::{BinAction, Recyclebin};

impl Engine {
    pub(crate) async fn recyclebin(
        &self,
        p: &Recyclebin,
        job: &JobInfo,
    ) -> Result<String, HandlerError> {
        if let (None, None, None, Some(course)) = (p.cmid, &p.rocketchatid, p.binid, p.courseid) {
            return self.trash_course(p, course).await;
        }
        // Which room: our mapping (by cmid, room id or bin id), else the payload's or Moodle's id.
        let mut rec: Option<RoomRecord> = None;
        if let Some(c) = p.cmid {
            rec = self.state.room(c).await?;
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
                    .map(|r| r.rocketchatid)
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
                let binned = p.binid.and(p.cmid);
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
                    Err(ChatError::RoomNotFound { .. }) => {
                        self.note(cmid, job, "room_not_found", "trash: room already gone")
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
                            ..base
                        })
                        .await?;
                }
                Ok(format!("room {room_id} archived"))
            }
            BinAction::Restore => {
                // Without `unarchive-room` the room is still handed to the restored activity
                // (its identity is right; its syncs record the missing permission and converge
                // once it is granted) rather than the job going dead.
                let mut unarchived = true;
                match self.chat.unarchive_room(&room_id).await {
                    Ok(()) => self.applied(MembershipAction::Unarchive, 1),
                    Err(e @ ChatError::Forbidden { .. }) => {
                        self.note(
                            cmid,
                            job,
                            PERMISSION_MISSING,
                            &format!("{UNARCHIVE_MISSING}: {e}"),
                        )
                        .await?;
                        unarchived = false;
                    }
                    Err(e) => return Err(self.bin_failure(cmid, job, e).await),
                }
                // The restored activity (a new cmid) takes the room over; then converge it.
                let mut targets = live.clone();
                if let Some(c) = p.cmid.filter(|c| !targets.contains(c)) {
                    if self.moodle.room_by_cmid(c).await?.is_some() {
                        targets.push(c);
                    }
                }
                if let Some(&new_cmid) = targets.first() {
                    self.state
                        .put_room(&RoomRecord {
                            cmid: new_cmid,
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
                        "room_kept",
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
        let jobs: Vec<(rcjobs_producer::Job, rcjobs_producer::EnqueueOptions)> = rooms
            .iter()
            .map(|r| {
                let job = rcjobs_producer::Job::Recyclebin(Recyclebin {
                    cmid: Some(r.cmid),
                    rocketchatid: r.room_id.clone(),
                    binid: None,
                    courseid: Some(course),
                    ..p.clone()
                });
                (job, self.follow_up())
            })
            .collect();
        rcjobs_producer::enqueue_many(&self.pool, &jobs).await?;
        Ok(format!(
            "course {course} in the category bin: {} room(s) to archive",
            jobs.len()
        ))
    }

    async fn note(
        &self,
        cmid: Option<i64>,
        job: &JobInfo,
        code: &str,
        detail: &str,
    ) -> Result<(), HandlerError> {
        if let Some(c) = cmid {
            self.state
                .put_room_outcome(c, Some(job.id), code, detail)
                .await?;
        }
        Ok(())
    }

    async fn bin_failure(&self, cmid: Option<i64>, job: &JobInfo, e: ChatError) -> HandlerError {
        match &e {
            ChatError::RoomNotFound { .. } | ChatError::Forbidden { .. } => {
                let code = if matches!(e, ChatError::Forbidden { .. }) {
                    "forbidden"
                } else {
                    "room_not_found"
                };
                if let Err(db) = self.note(cmid, job, code, &e.to_string()).await {
                    return db;
                }
                HandlerError::Permanent(e.to_string())
            }
            _ => chat_error(e),
        }
    }
}
