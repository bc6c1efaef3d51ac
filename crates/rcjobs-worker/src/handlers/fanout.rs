//! User-scoped jobs fan in to room syncs; `reconcile_all` spreads room syncs over a period.

use crate::engine::{Engine, HandlerError};
use crate::handlers::sync_job;
use rcjobs_producer::{
    contextlevel, EnqueueOptions, EnrolRole, EnrolUserToGroup, Job, ReconcileAll, Restore,
};
use std::collections::BTreeSet;

/// The start (unix seconds) of the next reconcile period strictly after `now`.
pub fn next_period_start(now: i64, interval: i64) -> i64 {
    let interval = interval.max(1);
    (now.div_euclid(interval) + 1) * interval
}

impl Engine {
    /// Live course modules whose room is chat room `room_id` (Moodle's `rocketchatid`, or
    /// the worker's own mapping).
    pub(crate) async fn cmids_of_room_id(
        &self,
        room_id: &str,
    ) -> Result<BTreeSet<i64>, HandlerError> {
        let mut cmids: BTreeSet<i64> = if self.moodle_ids_trusted() {
            self.moodle
                .rooms_by_rocketchatid(room_id)
                .await?
                .iter()
                .map(|r| r.cmid)
                .collect()
        } else {
            BTreeSet::new()
        };
        if let Some(rec) = self.state.room_by_room_id(room_id).await? {
            cmids.insert(rec.cmid);
        }
        Ok(cmids)
    }

    pub(crate) async fn enqueue_restores(
        &self,
        cmids: impl IntoIterator<Item = i64>,
    ) -> Result<usize, HandlerError> {
        let jobs: Vec<(Job, EnqueueOptions)> = cmids
            .into_iter()
            .map(|cmid| {
                (
                    Job::Restore(Restore {
                        v: 1,
                        cmid: Some(cmid),
                        courseid: None,
                        rocketchatid: None,
                    }),
                    self.follow_up(),
                )
            })
            .collect();
        rcjobs_producer::enqueue_many(&self.pool, &jobs).await?;
        Ok(jobs.len())
    }

    /// A role changed in a context: the module's room, the course's rooms, or every room
    /// below a category/system context.
    pub(crate) async fn fan_out_role(&self, p: &EnrolRole) -> Result<String, HandlerError> {
        let cmids: BTreeSet<i64> = match p.context.contextlevel {
            contextlevel::MODULE => [p.context.instanceid].into(),
            contextlevel::COURSE => self
                .moodle
                .rooms_of_course(p.context.instanceid)
                .await?
                .iter()
                .map(|r| r.cmid)
                .collect(),
            _ => match p.context.id {
                Some(ctx) => self
                    .moodle
                    .rooms_for_context(ctx)
                    .await?
                    .iter()
                    .map(|r| r.cmid)
                    .collect(),
                None => return self.fan_out_user(p.userid, None).await,
            },
        };
        let n = self.enqueue_syncs(cmids).await?;
        Ok(format!("user {}: {n} room syncs enqueued", p.userid))
    }

    /// An enrolment in a course changed (one user, or everyone through an enrol instance).
    pub(crate) async fn fan_out_course(&self, courseid: i64) -> Result<String, HandlerError> {
        let cmids: Vec<i64> = self
            .moodle
            .rooms_of_course(courseid)
            .await?
            .iter()
            .map(|r| r.cmid)
            .collect();
        let n = self.enqueue_syncs(cmids).await?;
        Ok(format!("course {courseid}: {n} room syncs enqueued"))
    }

    /// One user × one room.
    pub(crate) async fn fan_out_user_room(
        &self,
        p: &EnrolUserToGroup,
    ) -> Result<String, HandlerError> {
        let mut cmids = BTreeSet::new();
        if let Some(c) = p.cmid {
            cmids.insert(c);
        }
        if let Some(id) = &p.rocketchatid {
            cmids.extend(self.cmids_of_room_id(id).await?);
        }
        let n = self.enqueue_syncs(cmids).await?;
        Ok(format!("user {}: {n} room syncs enqueued", p.userid))
    }

    /// One user everywhere: rooms Moodle relates the user to (any enrolment row, module
    /// roles) plus rooms the last syncs left the user in (found in `rcjobs_sync.member` even
    /// after Moodle deleted the user's enrolments and rewrote the username).
    /// `old_username`: the Moodle username before a deletion rewrote it, if the producer
    /// knew it.
    pub(crate) async fn fan_out_user(
        &self,
        userid: i64,
        old_username: Option<&str>,
    ) -> Result<String, HandlerError> {
        let mut cmids: BTreeSet<i64> = self
            .moodle
            .rooms_touching_user(userid)
            .await?
            .iter()
            .map(|r| r.cmid)
            .collect();
        let current = match self.moodle.user_by_id(userid).await? {
            Some(u) if !u.deleted => self.mapping.map(&u.username).ok(),
            _ => None,
        };
        let old = old_username.and_then(|u| self.mapping.map(u).ok());
        for name in [current, old] {
            cmids.extend(self.state.cmids_of_member(userid, name.as_deref()).await?);
        }
        let n = self.enqueue_syncs(cmids).await?;
        Ok(format!("user {userid}: {n} room syncs enqueued"))
    }

    /// Enqueues a periodic sync of every live room, spread evenly over the period.
    pub(crate) async fn reconcile_all(&self, p: &ReconcileAll) -> Result<String, HandlerError> {
        let start = p
            .period_start
            .unwrap_or_else(rcjobs_moodle::unix_now)
            .max(rcjobs_moodle::unix_now());
        let period = p
            .period_secs
            .unwrap_or(i64::try_from(self.cfg.reconcile_interval_secs).unwrap_or(3600));
        let total = self.moodle.count_rooms().await?.max(1);
        let mut after = None;
        let mut i = 0i64;
        loop {
            let page = self.moodle.rooms_page(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.cmid);
            let jobs: Vec<(Job, EnqueueOptions)> = page
                .iter()
                .map(|r| {
                    let offset_ms =
                        (i128::from(period) * 1000 * i128::from(i) / i128::from(total)) as i64;
                    i += 1;
                    let run_at = chrono::DateTime::from_timestamp(start, 0)
                        .unwrap_or_else(chrono::Utc::now)
                        + chrono::Duration::milliseconds(offset_ms);
                    (
                        sync_job(r.cmid, true),
                        EnqueueOptions {
                            run_at: Some(run_at),
                            priority: self.cfg.periodic_priority,
                            ..self.follow_up()
                        },
                    )
                })
                .collect();
            rcjobs_producer::enqueue_many(&self.pool, &jobs).await?;
        }
        Ok(format!("{i} periodic room syncs spread over {period} s"))
    }
}

#[cfg(test)]
mod tests {
    use super::next_period_start;

    #[test]
    fn next_period_is_strictly_after_now() {
        assert_eq!(next_period_start(0, 3600), 3600);
        assert_eq!(next_period_start(3599, 3600), 3600);
        assert_eq!(next_period_start(3600, 3600), 7200);
    }
}
