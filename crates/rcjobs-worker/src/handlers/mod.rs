//! The job handlers, level-triggered: every handler re-reads Moodle and chat state for its
//! scope when it runs.
//!
//! * Room-scoped work (`synchronize_group`, `restore`) converges one room under the room
//!   lock `room:<cmid>` ([`room`]).
//! * User-scoped work (`enrol_role_assign`/`unassign`, `enrolment`,
//!   `enrol_user_to_rocketchat_group`, `*_user_everywhere`) fans in: it finds the rooms the
//!   change may affect and enqueues one `synchronize_group` per room, deduplicated per room
//!   among pending jobs ([`fanout`]).
//! * `recyclebin` archives, unarchives or deletes ([`bin`]); `reconcile_all` spreads a sync
//!   of every room over its period ([`fanout`]).
//! * `clean_history` deletes a room's messages after a course reset ([`clean`]).

mod bin;
mod clean;
mod fanout;
mod identity;
mod pass;
mod room;

use crate::engine::{Engine, HandlerError, JobInfo};
use rcjobs_producer::{room_lock_key, Job, SynchronizeGroup};

pub use fanout::next_period_start;

/// A `synchronize_group` job for `cmid`.
pub(crate) fn sync_job(cmid: i64, periodic: bool) -> Job {
    Job::SynchronizeGroup(SynchronizeGroup {
        v: 1,
        cmid: Some(cmid),
        rocketchatid: None,
        coursecontextid: None,
        courseid: None,
        periodic,
    })
}

/// Whether the running job holds the room lock of `cmid` (jobs enqueued through SQL or by
/// hand may lack it; they are re-enqueued with it instead of converging unlocked).
fn holds_room_lock(job: &JobInfo, cmid: i64) -> bool {
    job.exclusion_key.as_deref() == Some(room_lock_key(cmid).as_str())
}

pub(crate) async fn dispatch(
    engine: &Engine,
    job: &JobInfo,
    parsed: Job,
) -> Result<String, HandlerError> {
    match parsed {
        Job::SynchronizeGroup(p) => match p.cmid {
            Some(cmid) if holds_room_lock(job, cmid) => engine.sync_room(cmid, job, false).await,
            Some(cmid) => {
                engine.enqueue_syncs([cmid]).await?;
                Ok(format!("re-enqueued under room lock room:{cmid}"))
            }
            None => {
                let id = p.rocketchatid.unwrap_or_default();
                let cmids = engine.cmids_of_room_id(&id).await?;
                let n = engine.enqueue_syncs(cmids).await?;
                Ok(format!("room {id}: {n} room syncs enqueued"))
            }
        },
        Job::Restore(p) => match (p.cmid, p.courseid) {
            (Some(cmid), _) if holds_room_lock(job, cmid) => {
                engine.sync_room(cmid, job, true).await
            }
            (Some(cmid), _) => {
                engine.enqueue_restores([cmid]).await?;
                Ok(format!("re-enqueued under room lock room:{cmid}"))
            }
            (None, Some(course)) => {
                let cmids: Vec<i64> = engine
                    .moodle
                    .rooms_of_course(course)
                    .await?
                    .iter()
                    .map(|r| r.cmid)
                    .collect();
                let n = engine.enqueue_restores(cmids).await?;
                Ok(format!("course {course}: {n} restores enqueued"))
            }
            (None, None) => Err(HandlerError::Permanent(
                "restore needs cmid or courseid".into(),
            )),
        },
        Job::Recyclebin(p) => engine.recyclebin(&p, job).await,
        Job::ReconcileAll(p) => engine.reconcile_all(&p).await,
        Job::CleanHistory(p) => engine.clean_history(&p, job).await,
        Job::EnrolRoleAssign(p) | Job::EnrolRoleUnassign(p) => engine.fan_out_role(&p).await,
        Job::Enrolment(p) => engine.fan_out_course(p.courseid).await,
        Job::EnrolUserToRocketchatGroup(p) => engine.fan_out_user_room(&p).await,
        Job::SynchronizeUserEverywhere(p) | Job::UnenrolUserEverywhere(p) => {
            engine.fan_out_user(p.userid, p.username.as_deref()).await
        }
    }
}
