//! Which chat room is a course module's: Moodle's `rocketchatid` when Moodle has one of its
//! own, the worker's recorded mapping when Moodle has none.
//!
//! The plugin writes ids in orders the worker must not race: `add_instance` creates the
//! group and stores its id; a duplicate's (or backup/restore's) restore step first commits
//! the new row with the *source's* id and only then creates the new group and stores that;
//! "recreate" and admin fixes change the id of a live module. So: an id that is the module's
//! alone is followed, even when the worker mapped another room before (that room is left as
//! it is, and recorded); an id still shared with the live module that holds it means the
//! plugin has not finished, and the module waits for its own id (`duplicate_wait_secs`)
//! before the worker gives it a room; a blank id is the worker's to fill (sites without the
//! plugin, or rooms the worker created).
//!
//! All of this holds on Rocket.Chat only, whose group ids the plugin stores. On any other
//! backend Moodle's id is read as blank ([`Engine::trusted`]): the worker's recorded mapping
//! (per backend, `rcjobs_sync.room.backend`) is the room's identity.

use super::room::Resolved;
use crate::engine::{Engine, HandlerError, JobInfo};
use crate::outcome::job_error;
use crate::state::{RoomRecord, RoomState};
use rcjobs_moodle::Room as MoodleRoom;

/// Who a `rocketchatid` belongs to among Moodle's live modules.
enum Owner {
    /// This module: no other live module uses it (any more).
    This,
    /// Another live module (`cmid`) uses it and holds it: this one is its copy.
    Other(i64),
}

impl Engine {
    /// Finds the chat room of `r` (see the module docs), recording the mapping.
    pub(super) async fn resolve_room(
        &self,
        r: &MoodleRoom,
        job: &JobInfo,
    ) -> Result<Resolved, HandlerError> {
        let rec = self.state.room(r.cmid).await?;
        let recorded = rec.as_ref().and_then(|rec| match rec.state {
            RoomState::Active | RoomState::Trashed => rec.room_id.clone(),
            _ => None,
        });
        let creating = rec
            .as_ref()
            .is_some_and(|rec| rec.state == RoomState::Creating);
        if r.rocketchatid.is_empty() {
            return match recorded {
                Some(id) if !creating => self.adopt(r, &id, None).await,
                _ => Ok(Resolved::NeedsRoom),
            };
        }
        let id = r.rocketchatid.as_str();
        match self.owner_of(r, id).await? {
            Owner::This => {
                let previous = recorded.filter(|p| p != id);
                self.adopt(r, id, previous).await
            }
            Owner::Other(holder) => {
                // A room the worker gave this copy after the wait stays its room.
                if let Some(own) = recorded.filter(|p| p != id) {
                    return self.adopt(r, &own, None).await;
                }
                if creating {
                    return Ok(Resolved::NeedsRoom);
                }
                let waited = chrono::Utc::now() - job.enqueued_at;
                let wait = i64::try_from(self.cfg.duplicate_wait_secs).unwrap_or(i64::MAX);
                if waited.num_seconds() < wait {
                    return Ok(Resolved::WaitForMoodle(format!(
                        "course module {} carries room {id} of live module {holder}: waiting for Moodle to store its own room id (a duplicate or restore in progress)",
                        r.cmid
                    )));
                }
                tracing::warn!(
                    cmid = r.cmid,
                    holder,
                    room = id,
                    "Moodle never stored a room id of its own for this copy: creating one"
                );
                Ok(Resolved::NeedsRoom)
            }
        }
    }

    /// The live module `rocketchatid` `id` belongs to, from `r`'s point of view. The module
    /// the worker already mapped to the room keeps it while Moodle still points it there;
    /// without a mapping, the lowest cmid (the original of a copy) does.
    async fn owner_of(&self, r: &MoodleRoom, id: &str) -> Result<Owner, HandlerError> {
        if let Some(h) = self.state.room_by_room_id(id).await? {
            if h.cmid == r.cmid {
                return Ok(Owner::This);
            }
            let still_there = matches!(self.moodle.room_by_cmid(h.cmid).await?.map(|r| self.trusted(r)),
                Some(live) if live.rocketchatid == id);
            return Ok(if still_there {
                Owner::Other(h.cmid)
            } else {
                Owner::This
            });
        }
        let sharing = self.moodle.rooms_by_rocketchatid(id).await?;
        Ok(match sharing.first() {
            Some(first) if first.cmid != r.cmid => Owner::Other(first.cmid),
            _ => Owner::This,
        })
    }

    /// Looks up room `id` on the chat server and records it as `r`'s; `previous` is the room
    /// the worker had mapped before Moodle pointed elsewhere (left as it is, recorded in
    /// `rcjobs_sync.room.previous_room_id`).
    async fn adopt(
        &self,
        r: &MoodleRoom,
        id: &str,
        previous: Option<String>,
    ) -> Result<Resolved, HandlerError> {
        let created = self
            .state
            .any_room_by_room_id(id)
            .await?
            .is_some_and(|h| h.created_by_worker);
        let room = match self.chat.room_by_id(id).await {
            Ok(Some(room)) => room,
            Ok(None) => return Ok(Resolved::Gone(id.to_string())),
            Err(e) => return Err(job_error(e)),
        };
        let rec = RoomRecord {
            cmid: r.cmid,
            courseid: Some(r.course_id),
            room_id: Some(room.id.clone()),
            room_name: Some(room.name.clone()),
            created_by_worker: created,
            state: RoomState::Active,
            binid: None,
        };
        self.state.put_room(&rec).await?;
        if let Some(prev) = previous {
            tracing::info!(cmid = r.cmid, from = %prev, to = %room.id, "Moodle points at another room: following it");
            self.state.note_previous_room(r.cmid, &prev).await?;
        }
        Ok(Resolved::Room(room, rec))
    }
}
