//! `clean_history`: a course reset with the plugin's `reset_rocketchat` option deletes the
//! messages of each chat activity's room up to the reset (the plugin's `rooms.cleanHistory`
//! from 1970 to "now", made at the reset's own time so messages posted since are kept).

use super::holds_room_lock;
use crate::engine::{Engine, HandlerError, JobInfo};
use crate::outcome::{classify, job_error, ChatFailure, Code};
use crate::state::RoomState;
use chrono::{DateTime, Utc};
use rcjobs_producer::{CleanHistory, EnqueueOptions, Job};

impl Engine {
    /// Cleans one room (under its room lock), or fans a course-wide or room-id-wide job out
    /// to one job per course module.
    pub(crate) async fn clean_history(
        &self,
        p: &CleanHistory,
        job: &JobInfo,
    ) -> Result<String, HandlerError> {
        let cmids: Vec<i64> = match (p.cmid, &p.rocketchatid, p.courseid) {
            (Some(cmid), _, _) if holds_room_lock(job, cmid) => {
                return self.clean_room(cmid, p, job).await
            }
            (Some(cmid), _, _) => vec![cmid],
            (None, Some(id), _) => self.cmids_of_room_id(id).await?.into_iter().collect(),
            (None, None, Some(course)) => self
                .moodle
                .rooms_of_course(course)
                .await?
                .iter()
                .map(|r| r.cmid)
                .collect(),
            (None, None, None) => {
                return Err(HandlerError::Permanent(
                    "clean_history needs cmid, rocketchatid or courseid".into(),
                ))
            }
        };
        // Keys come from Job::keys(): per-room dedup and the room lock.
        let opts = EnqueueOptions {
            priority: -20,
            ..self.follow_up()
        };
        let jobs: Vec<(Job, EnqueueOptions)> = cmids
            .iter()
            .map(|&c| {
                let job = Job::CleanHistory(CleanHistory {
                    cmid: Some(c),
                    rocketchatid: None,
                    ..p.clone()
                });
                (job, opts.clone())
            })
            .collect();
        rcjobs_producer::enqueue_many(&self.pool, &jobs).await?;
        Ok(format!(
            "{} room history clean(s) enqueued under room locks",
            jobs.len()
        ))
    }

    async fn clean_room(
        &self,
        cmid: i64,
        p: &CleanHistory,
        job: &JobInfo,
    ) -> Result<String, HandlerError> {
        let mapped = self.state.room(cmid).await?.and_then(|r| match r.state {
            RoomState::Active | RoomState::Trashed => r.room_id,
            _ => None,
        });
        let room_id = match mapped {
            Some(id) => Some(id),
            None => self
                .moodle
                .room_by_cmid_any(cmid)
                .await?
                .map(|r| self.trusted(r).rocketchatid)
                .filter(|s| !s.is_empty()),
        };
        let Some(room_id) = room_id else {
            return Ok(format!(
                "course module {cmid} has no room yet: no history to clean"
            ));
        };
        let latest = p
            .latest
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
            .unwrap_or_else(Utc::now);
        let e = match self.chat.clean_history(&room_id, latest).await {
            Ok(()) => return Ok(format!("room {room_id}: history up to {latest} deleted")),
            Err(e) => e,
        };
        match classify(&e) {
            ChatFailure::Forbidden => {
                // Recorded, not retried: nothing changes until an admin grants the permission.
                self.state
                    .put_room_outcome(
                        cmid,
                        Some(job.id),
                        Code::PermissionMissing.as_str(),
                        &format!("the bot lacks `clean-channel-history` (docs/handlers.md): the course reset's history cleaning was not done: {e}"),
                    )
                    .await?;
                Ok(format!(
                    "room {room_id}: history not cleaned (clean-channel-history missing)"
                ))
            }
            ChatFailure::RoomGone => {
                self.state
                    .put_room_outcome(
                        cmid,
                        Some(job.id),
                        Code::RoomNotFound.as_str(),
                        &e.to_string(),
                    )
                    .await?;
                Ok(format!("room {room_id} not found: no history to clean"))
            }
            _ => Err(job_error(e)),
        }
    }
}
