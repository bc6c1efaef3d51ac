//! Room convergence: resolve (or create) the chat room of a course module, then make its
//! membership equal Moodle's desired membership in as few calls as the backend allows.

use super::pass::{lower, outcome, Change, Pass};
use crate::engine::{Engine, HandlerError, JobInfo};
use crate::naming::{candidate, room_name, NameParts, NamingConfig};
use crate::outcome::{classify, job_error, ChatFailure, Code};
use crate::password::random_password;
use crate::planner::{plan_room, DesiredMember, KeepReason, RoomPlan};
use crate::state::{MemberRow, Outcome, RoomRecord, RoomState};
use futures::future::BoxFuture;
use rcjobs_chat::{ChatError, ChatResult, NewChatUser, NewRoom, RetentionPolicy, Room, RoomMember};
use rcjobs_metrics::{MembershipAction, MembershipFailure};
use rcjobs_moodle::{DesiredMember as MoodleMember, Room as MoodleRoom};
use std::collections::{HashMap, HashSet};

/// Where the room of a course module stands (decided in `identity.rs`).
pub(super) enum Resolved {
    /// The room exists.
    Room(Room, RoomRecord),
    /// The module has no room of its own and the worker makes one (no plugin id, or a copy
    /// that waited for Moodle's own id in vain).
    NeedsRoom,
    /// The module carries another live module's room id: Moodle has not stored the copy's
    /// own room yet. The job waits (snoozes) rather than create a competing room.
    WaitForMoodle(String),
    /// The module's room vanished from the chat server.
    Gone(String),
}

/// The detail of [`Code::PermissionMissing`] when a visible activity's room is archived.
pub(super) const UNARCHIVE_MISSING: &str = "the bot lacks `unarchive-room` (admin only by default; docs/handlers.md): the room stays archived until it is granted or an admin unarchives the room";

/// The detail of [`Code::PermissionMissing`] when the room's retention cannot be set.
pub(super) const RETENTION_MISSING: &str = "the bot lacks `edit-room-retention-policy` (admin only by default; docs/handlers.md): the room keeps its retention until it is granted; membership is converged regardless";

/// How long a room job waits before looking again for the id Moodle is about to store.
const MOODLE_ID_RECHECK: chrono::Duration = chrono::Duration::seconds(10);

/// Whether a step lets the pass go on, or ends the job early with a summary.
enum Flow {
    /// Go on with the next step.
    Go,
    /// The job is done for now: this is its summary.
    Stop(String),
}

impl Engine {
    /// Records that the room of `cmid` cannot be worked on and returns the job's failure.
    async fn room_failure(&self, cmid: i64, job: &JobInfo, e: ChatError) -> HandlerError {
        let Some((code, why)) = classify(&e).room_record() else {
            return job_error(e);
        };
        self.failed(MembershipAction::Invite, why, 1);
        if code == Code::RoomNotFound {
            if let Ok(Some(mut rec)) = self.state.room(cmid).await {
                rec.state = RoomState::Gone;
                let _ = self.state.put_room(&rec).await;
            }
        }
        if let Err(db) = self
            .state
            .put_room_outcome(cmid, Some(job.id), code.as_str(), &e.to_string())
            .await
        {
            return HandlerError::from(db);
        }
        HandlerError::Permanent(format!("room of course module {cmid}: {e}"))
    }

    /// Creates the room of `r` under a free name. Idempotent across crashes: the chosen name
    /// is written ahead (state `creating`), and a retry adopts a room of that name.
    async fn create_room_for(
        &self,
        r: &MoodleRoom,
        job: &JobInfo,
        naming: &NamingConfig,
    ) -> Result<(Room, RoomRecord), HandlerError> {
        let parts = NameParts {
            site_shortname: naming.site_shortname.clone(),
            site_fullname: naming.site_fullname.clone(),
            site_id: naming.moodle_id(),
            cmid: r.cmid,
            courseid: r.course_id,
            course_shortname: r.course_shortname.clone(),
            course_fullname: r.course_fullname.clone(),
        };
        let base = room_name(&naming.template, &parts);
        let mut rec = RoomRecord {
            cmid: r.cmid,
            courseid: Some(r.course_id),
            room_id: None,
            room_name: None,
            created_by_worker: true,
            state: RoomState::Creating,
            binid: None,
        };
        // A previous attempt may have created the room and crashed before recording it.
        if let Some(prev) = self
            .state
            .room(r.cmid)
            .await?
            .filter(|p| p.state == RoomState::Creating)
        {
            if let Some(name) = &prev.room_name {
                if let Some(room) = self.chat.room_by_name(name).await.map_err(job_error)? {
                    if self
                        .state
                        .room_by_room_id(&room.id)
                        .await?
                        .is_none_or(|h| h.cmid == r.cmid)
                    {
                        rec.room_id = Some(room.id.clone());
                        rec.room_name = Some(room.name.clone());
                        rec.state = RoomState::Active;
                        self.state.put_room(&rec).await?;
                        return Ok((room, rec));
                    }
                }
            }
        }
        for n in 1..=50 {
            let name = candidate(&base, n);
            if self
                .chat
                .room_by_name(&name)
                .await
                .map_err(job_error)?
                .is_some()
            {
                continue; // taken by a room that is not ours
            }
            rec.room_name = Some(name.clone());
            rec.state = RoomState::Creating;
            self.state.put_room(&rec).await?;
            // Retention is converged by the sync right after, like on every later sync, and
            // only when retention handling is on (the plugin's `retentionfeature`).
            let new = NewRoom {
                name: name.clone(),
                read_only: false,
                retention_days: None,
            };
            // Not retried in the handler: a lost answer would make the retry see its own room
            // as a name conflict and move on to the next name; the durable retry adopts it.
            match self.chat.create_room(&new).await {
                Ok(room) => {
                    rec.room_id = Some(room.id.clone());
                    rec.state = RoomState::Active;
                    self.state.put_room(&rec).await?;
                    self.applied(MembershipAction::CreateRoom, 1);
                    tracing::info!(cmid = r.cmid, room = %room.name, "created room");
                    return Ok((room, rec));
                }
                Err(ChatError::Conflict { .. }) => continue,
                Err(e) => return Err(self.room_failure(r.cmid, job, e).await),
            }
        }
        self.state
            .put_room_outcome(
                r.cmid,
                Some(job.id),
                Code::RoomNameUnavailable.as_str(),
                &format!("no free name after {base}_50"),
            )
            .await?;
        Err(HandlerError::Permanent(format!(
            "course module {}: no free room name based on {base}",
            r.cmid
        )))
    }

    /// With `write_room_ids`, stores the id of a room the worker created where Moodle reads
    /// it, on every sync while Moodle has none, so the first sync after the grant fills it. A
    /// refusal (no grant) is this pass's room outcome and a log line, not a failure: the room
    /// works either way. (Recorded at creation instead, the pass's outcomes replaced it.)
    async fn tell_moodle(
        &self,
        r: &MoodleRoom,
        room_id: &str,
        rec: &RoomRecord,
    ) -> Option<Outcome> {
        // Only Rocket.Chat's ids go there: the plugin links the activity to that group.
        if !self.cfg.write_room_ids
            || !self.moodle_ids_trusted()
            || !r.rocketchatid.is_empty()
            || !rec.created_by_worker
        {
            return None;
        }
        match self.moodle.store_room_id(r.instance_id, room_id).await {
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(cmid = r.cmid, error = %e, "could not store the room id in Moodle");
                Some(outcome(
                    "",
                    None,
                    Code::PermissionMissing,
                    format!("cannot store the room id in Moodle's rocketchat.rocketchatid (GRANT UPDATE (rocketchatid) to the worker's role): {e}"),
                ))
            }
        }
    }

    /// With account creation on, an invitee may have been created by a concurrent sync of
    /// another room between the invite (which skipped the then-unknown name) and the
    /// backend's existence check, so it is reported neither added nor unknown. One listing
    /// finds such names; they are invited again (their account exists now). Names still not
    /// listed after that are deactivated accounts (chat servers do not list them).
    async fn verify_invites(&self, invited: &[String], pass: &mut Pass) -> ChatResult<()> {
        let present = self.listed_usernames(&pass.room_id).await?;
        let absent: Vec<String> = invited
            .iter()
            .filter(|u| {
                let k = lower(u);
                !pass.missing.contains(&k) && !pass.not_added.contains(&k) && !present.contains(&k)
            })
            .cloned()
            .collect();
        if absent.is_empty() {
            return Ok(());
        }
        self.retrying(|| self.chat.add_members(&pass.room_id, &absent))
            .await?;
        let present = self.listed_usernames(&pass.room_id).await?;
        for u in absent {
            let k = lower(&u);
            if !present.contains(&k) {
                pass.live.remove(&k);
                pass.note(
                    &u,
                    Code::UserInactive,
                    "account exists but is deactivated: not listed as a member",
                );
                pass.missing.insert(k);
            }
        }
        Ok(())
    }

    /// The lower-case usernames listed as members of `room_id`.
    async fn listed_usernames(&self, room_id: &str) -> ChatResult<HashSet<String>> {
        let listed = self.chat.list_members(room_id).await?;
        Ok(listed.iter().map(|m| lower(&m.username)).collect())
    }

    /// Converges the room of course module `cmid` (the caller holds `room:<cmid>`).
    /// `create_if_gone`: recreate a room that vanished (restore) instead of failing (sync).
    ///
    /// The steps, each its own function: resolve the room (creating it if the module has
    /// none), make its archive state follow visibility, converge retention, read Moodle's
    /// desired membership, list the room, plan, apply removals, additions and grants, archive
    /// a hidden activity's room once it is right, and record what the pass achieved.
    pub(crate) async fn sync_room(
        &self,
        cmid: i64,
        job: &JobInfo,
        create_if_gone: bool,
    ) -> Result<String, HandlerError> {
        let Some(r) = self
            .moodle
            .room_by_cmid(cmid)
            .await?
            .map(|r| self.trusted(r))
        else {
            return Ok(format!(
                "course module {cmid} is not a live chat activity: nothing to converge"
            ));
        };
        let settings = self.effective_settings().await?;
        let (mut room, rec) = self
            .step_resolve(&r, job, create_if_gone, &settings.naming)
            .await?;
        // A bin item can land while its module still looks live (deleted without the
        // asynchronous flag, or the bin row committed first): a sync then (the periodic one)
        // must not undo the trash; the restore or purge of the item decides.
        if rec.state == RoomState::Trashed && room.archived {
            return Ok(format!(
                "course module {cmid}'s room is in the recycle bin: left archived"
            ));
        }
        if let Flow::Stop(summary) = self.step_visibility(&r, job, &mut room).await? {
            return Ok(summary);
        }
        let mut outcomes: Vec<Outcome> = Vec::new();
        let retention_left = settings.retention_feature
            && self.step_retention(&r, job, &room, &mut outcomes).await?;
        let moodle_members = self
            .moodle
            .desired_members(&r, rcjobs_moodle::unix_now())
            .await?;
        let (desired, profile) = self.step_read_desired(&moodle_members, &mut outcomes);
        let current = self.step_list(cmid, job, &room).await?;
        // One room-level outcome per room (the table's key): an earlier one stays first.
        if let Some(o) = self.tell_moodle(&r, &room.id, &rec).await {
            if !outcomes.iter().any(|o| o.subject.is_empty()) {
                outcomes.push(o);
            }
        }
        let plan = plan_room(&desired, &current, self.chat.bot_username());
        let mut pass = Pass::new(room.id.clone(), &plan, &current, outcomes);
        let mut stopped = self
            .apply_plan(&plan, &profile, settings.create_accounts, &mut pass)
            .await
            .err();
        for (u, why) in &plan.kept {
            if *why == KeepReason::Owner {
                pass.note(
                    u,
                    Code::OwnerKept,
                    "room owner not in Moodle's membership: kept (the worker never removes owners)",
                );
            }
        }
        if stopped.is_none() && !r.visible && pass.pending.total() == 0 {
            stopped = self.step_archive_hidden(&room).await.err();
        }
        let summary = self
            .step_record(cmid, job, &room, &plan, pass, stopped)
            .await?;
        if retention_left {
            return Err(HandlerError::Retryable(format!(
                "room {} (cm {cmid}): retention left after transient chat errors; membership converged, the retry sets it",
                room.name
            )));
        }
        Ok(summary)
    }

    /// Step 1: the module's room, created when it has none (or, with `create_if_gone`, when
    /// it vanished). A copy waiting for Moodle's own id snoozes; a vanished room fails.
    async fn step_resolve(
        &self,
        r: &MoodleRoom,
        job: &JobInfo,
        create_if_gone: bool,
        naming: &NamingConfig,
    ) -> Result<(Room, RoomRecord), HandlerError> {
        match self.resolve_room(r, job).await? {
            Resolved::Room(room, rec) => Ok((room, rec)),
            Resolved::NeedsRoom => self.create_room_for(r, job, naming).await,
            Resolved::WaitForMoodle(reason) => {
                let wait_ends = job.enqueued_at
                    + chrono::Duration::seconds(
                        i64::try_from(self.cfg.duplicate_wait_secs).unwrap_or(i64::MAX / 2_000),
                    );
                Err(HandlerError::Snooze {
                    until: (chrono::Utc::now() + MOODLE_ID_RECHECK).min(wait_ends),
                    reason,
                })
            }
            Resolved::Gone(_) if create_if_gone => self.create_room_for(r, job, naming).await,
            Resolved::Gone(id) => Err(self
                .room_failure(
                    r.cmid,
                    job,
                    ChatError::RoomNotFound {
                        endpoint: "room_by_id".into(),
                        message: format!("room {id} does not exist"),
                    },
                )
                .await),
        }
    }

    /// Step 2: archive state follows visibility (the plugin archives hidden and stealth
    /// activities). A hidden activity's archived room is left as is (the pass stops); a
    /// visible activity's archived room is unarchived, or, without the permission, recorded.
    async fn step_visibility(
        &self,
        r: &MoodleRoom,
        job: &JobInfo,
        room: &mut Room,
    ) -> Result<Flow, HandlerError> {
        let cmid = r.cmid;
        if !room.archived {
            return Ok(Flow::Go);
        }
        if !r.visible {
            self.state
                .put_room_outcome(
                    cmid,
                    Some(job.id),
                    Code::RoomArchived.as_str(),
                    "hidden activity: room archived, membership left as is",
                )
                .await?;
            return Ok(Flow::Stop(format!(
                "course module {cmid} hidden and its room archived: membership left as is"
            )));
        }
        match self.retrying(|| self.chat.unarchive_room(&room.id)).await {
            Ok(()) => {}
            // Not a reason to go dead: every later sync of the room would go dead too and
            // the room would stay archived for good. Record it; the sync after an admin
            // grants the permission (or unarchives the room) converges it.
            Err(e) if classify(&e) == ChatFailure::Forbidden => {
                self.state
                    .put_room_outcome(
                        cmid,
                        Some(job.id),
                        Code::PermissionMissing.as_str(),
                        &format!("{UNARCHIVE_MISSING}: {e}"),
                    )
                    .await?;
                self.failed(MembershipAction::Unarchive, MembershipFailure::Forbidden, 1);
                return Ok(Flow::Stop(format!(
                    "course module {cmid} visible but its room is archived and the bot may not unarchive it: recorded"
                )));
            }
            Err(e) => return Err(self.room_failure(cmid, job, e).await),
        }
        self.applied(MembershipAction::Unarchive, 1);
        room.archived = false;
        Ok(Flow::Go)
    }

    /// Step 3 (retention handling on): the room's retention follows the activity's. A refusal
    /// or a fault is recorded on the room and membership is converged all the same: retention
    /// is not membership. Returns whether a transient fault left it for the job's retry.
    async fn step_retention(
        &self,
        r: &MoodleRoom,
        job: &JobInfo,
        room: &Room,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<bool, HandlerError> {
        let Err(e) = self.converge_retention(r, room).await else {
            return Ok(false);
        };
        let class = classify(&e);
        if class.stops_pass() {
            return Err(self.room_failure(r.cmid, job, e).await);
        }
        let (code, detail) = match class {
            ChatFailure::Forbidden => {
                (Code::PermissionMissing, format!("{RETENTION_MISSING}: {e}"))
            }
            ChatFailure::Transient => (
                Code::ChangePending,
                format!("retention not applied after transient chat errors: {e}"),
            ),
            _ => (Code::ChangeRefused, format!("retention: {e}")),
        };
        outcomes.push(outcome("", None, code, detail));
        Ok(class == ChatFailure::Transient)
    }

    /// Step 4: Moodle's desired membership in chat usernames, and each desired member's
    /// Moodle profile by lower-case username (for account creation). Usernames the mapping
    /// rejects, or the backend's grammar (Matrix localparts), are recorded.
    fn step_read_desired<'m>(
        &self,
        moodle_members: &'m [MoodleMember],
        outcomes: &mut Vec<Outcome>,
    ) -> (Vec<DesiredMember>, HashMap<String, &'m MoodleMember>) {
        let mut desired: Vec<DesiredMember> = Vec::with_capacity(moodle_members.len());
        let mut profile: HashMap<String, &MoodleMember> = HashMap::new();
        for m in moodle_members {
            let mapped = self.mapping.map(&m.username).map_err(|e| e.to_string());
            let mapped = mapped.and_then(|u| match self.chat.validate_username(&u) {
                Ok(()) => Ok(u),
                Err(e) => Err(e.to_string()),
            });
            match mapped {
                Ok(u) => {
                    profile.insert(lower(&u), m);
                    desired.push(DesiredMember {
                        userid: m.user_id,
                        username: u,
                        moderator: m.moderator,
                    });
                }
                Err(e) => outcomes.push(outcome(
                    &m.username,
                    Some(m.user_id),
                    Code::InvalidUsername,
                    e,
                )),
            }
        }
        (desired, profile)
    }

    /// Step 5: the room's members as the chat server lists them (one listing, all pages).
    async fn step_list(
        &self,
        cmid: i64,
        job: &JobInfo,
        room: &Room,
    ) -> Result<Vec<RoomMember>, HandlerError> {
        match self.chat.list_members(&room.id).await {
            Ok(c) => Ok(c),
            Err(e) => Err(self.room_failure(cmid, job, e).await),
        }
    }

    /// After the changes: a hidden activity's room is archived once its membership is right,
    /// and only then (an archived room of a hidden activity is left as is, so archiving with
    /// changes left would strand them).
    async fn step_archive_hidden(&self, room: &Room) -> ChatResult<()> {
        self.retrying(|| self.chat.archive_room(&room.id)).await?;
        self.applied(MembershipAction::Archive, 1);
        Ok(())
    }

    /// Makes the room's retention policy the activity's four fields, in one change, and only
    /// when the chat server holds a different one (syncs of a converged room read, never
    /// write). A backend without retention has nothing to converge.
    async fn converge_retention(&self, r: &MoodleRoom, room: &Room) -> ChatResult<()> {
        let want = RetentionPolicy {
            enabled: r.retention.enabled,
            // Moodle's form keeps it within 0..=maxage_limit; anything else is clamped.
            max_age_days: u32::try_from(r.retention.max_age_days.max(0)).unwrap_or(u32::MAX),
            files_only: r.retention.files_only,
            exclude_pinned: r.retention.exclude_pinned,
        };
        let Some(have) = self.retrying(|| self.chat.room_retention(&room.id)).await? else {
            return Ok(());
        };
        if have == want {
            return Ok(());
        }
        self.retrying(|| self.chat.set_room_retention(&room.id, &want))
            .await?;
        tracing::info!(cmid = r.cmid, room = %room.name, ?want, "retention applied");
        Ok(())
    }

    /// Steps 6-8: applies `plan` to the room, each change on its own (see
    /// [`Engine::apply_user_changes`]): removals, then additions, then grants. Returns the
    /// error that stopped the pass early, if any; changes left by transient failures are in
    /// `pass.pending`.
    async fn apply_plan(
        &self,
        plan: &RoomPlan,
        profile: &HashMap<String, &MoodleMember>,
        create_accounts: bool,
        pass: &mut Pass,
    ) -> ChatResult<()> {
        // Removals first, then additions. A user Moodle no longer wants keeps reading the
        // room until kicked, while a late grant only delays a privilege; and removals are
        // few where grants can be many, so with additions first a room whose grants kept
        // failing (or that hit a rate limit on them) never got to its removals.
        self.apply_removals(plan, pass).await?;
        self.apply_invites(plan, profile, create_accounts, pass)
            .await?;
        self.apply_grants(plan, pass).await
    }

    /// Step 6: kicks and moderator revokes.
    async fn apply_removals(&self, plan: &RoomPlan, pass: &mut Pass) -> ChatResult<()> {
        self.apply_user_changes(Change::Kick, &plan.kick, pass)
            .await?;
        self.apply_user_changes(Change::Revoke, &plan.revoke_moderator, pass)
            .await
    }

    /// Step 8: moderator grants of members who have an account and are in the room.
    async fn apply_grants(&self, plan: &RoomPlan, pass: &mut Pass) -> ChatResult<()> {
        let mut grants = Vec::with_capacity(plan.grant_moderator.len());
        for u in &plan.grant_moderator {
            let k = lower(u);
            if pass.missing.contains(&k) {
                continue; // no account: recorded with the invite
            }
            if pass.not_added.contains(&k) {
                pass.pending.grants += 1; // not a member yet: waits with its invite
                continue;
            }
            grants.push(u.clone());
        }
        self.apply_user_changes(Change::Grant, &grants, pass).await
    }

    /// Applies `change` to each of `users` independently: a change still failing
    /// transiently after its in-handler retries is left for the job's retry while the others
    /// go on; a refusal is recorded for that user; an error that stops the job (rate limit,
    /// credentials, room gone) ends the pass.
    async fn apply_user_changes(
        &self,
        change: Change,
        users: &[String],
        pass: &mut Pass,
    ) -> ChatResult<()> {
        if self.moderators_in_one_write(change, users, pass).await? {
            return Ok(());
        }
        for u in users {
            pass.attempted += 1;
            let room_id = pass.room_id.as_str();
            let r = self.retrying(|| self.user_change(room_id, change, u)).await;
            let action = change.action();
            match r {
                Ok(()) => {
                    self.applied(action, 1);
                    pass.done(change, u);
                }
                Err(e) => match classify(&e) {
                    ChatFailure::Transient => {
                        self.failed(action, MembershipFailure::Other, 1);
                        pass.left(change, u, &e);
                    }
                    class if class.stops_pass() => return Err(e),
                    class => {
                        let why = pass.refused(change, u, &class, &e);
                        self.failed(action, why, 1);
                    }
                },
            }
        }
        Ok(())
    }

    /// On a backend that writes a room's moderator changes in one request (Matrix power
    /// levels), sends them together. `Ok(true)`: all applied. `Ok(false)`: not batched, or
    /// the write failed without stopping the pass; the caller then applies them one at a
    /// time, which records each user's own outcome.
    async fn moderators_in_one_write(
        &self,
        change: Change,
        users: &[String],
        pass: &mut Pass,
    ) -> ChatResult<bool> {
        let moderator = match change {
            Change::Grant => true,
            Change::Revoke => false,
            Change::Kick => return Ok(false),
        };
        if users.len() < 2 || !self.chat.moderators_in_one_write() {
            return Ok(false);
        }
        let changes: Vec<(String, bool)> = users.iter().map(|u| (u.clone(), moderator)).collect();
        let room_id = pass.room_id.clone();
        match self
            .retrying(|| self.chat.set_moderators(&room_id, &changes))
            .await
        {
            Ok(()) => {
                for u in users {
                    pass.attempted += 1;
                    pass.done(change, u);
                }
                self.applied(change.action(), users.len());
                Ok(true)
            }
            Err(e) if classify(&e).stops_pass() => Err(e),
            Err(_) => Ok(false),
        }
    }

    fn user_change<'a>(
        &'a self,
        room_id: &'a str,
        change: Change,
        username: &'a str,
    ) -> BoxFuture<'a, ChatResult<()>> {
        match change {
            Change::Kick => self.chat.remove_member(room_id, username),
            Change::Revoke => self.chat.set_moderator(room_id, username, false),
            Change::Grant => self.chat.set_moderator(room_id, username, true),
        }
    }

    /// Step 7: adds the plan's invitees in batches; with account creation on, creates the unknown
    /// ones and adds them too. Invitees a transient failure kept out (after the in-handler
    /// retries) are left for the job's retry.
    async fn apply_invites(
        &self,
        plan: &RoomPlan,
        profile: &HashMap<String, &MoodleMember>,
        create_accounts: bool,
        pass: &mut Pass,
    ) -> ChatResult<()> {
        if plan.invite.is_empty() {
            return Ok(());
        }
        pass.attempted += plan.invite.len();
        let out = match self
            .retrying(|| self.chat.add_members(&pass.room_id, &plan.invite))
            .await
        {
            Ok(o) => o,
            Err(e) if classify(&e) == ChatFailure::Transient => {
                self.failed(
                    MembershipAction::Invite,
                    MembershipFailure::Other,
                    plan.invite.len(),
                );
                pass.not_added_all(&plan.invite, "add_members", &e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut unknown = out.unknown;
        if !unknown.is_empty() && create_accounts {
            unknown = self.create_and_add(unknown, profile, pass).await?;
        }
        for u in &unknown {
            pass.note(
                u,
                Code::UserMissing,
                "no chat account (account creation is off)",
            );
        }
        self.failed(
            MembershipAction::Invite,
            MembershipFailure::UserMissing,
            unknown.len(),
        );
        pass.missing = unknown.iter().map(|u| lower(u)).collect();
        let mut added = 0;
        for u in &plan.invite {
            let k = lower(u);
            if !pass.missing.contains(&k) && !pass.not_added.contains(&k) {
                let userid = pass.userid_of.get(&k).copied();
                pass.live.insert(
                    k.clone(),
                    MemberRow {
                        username: k,
                        userid,
                        moderator: false,
                    },
                );
                added += 1;
            }
        }
        pass.applied += added;
        self.applied(MembershipAction::Invite, added);
        if create_accounts {
            match self.verify_invites(&plan.invite, pass).await {
                Ok(()) => {}
                Err(e) if classify(&e) == ChatFailure::Transient => pass.pending.invite_checks += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates accounts for the `unknown` invitees and adds them to the room. Returns the
    /// invitees left without an account (their reasons recorded); transient failures leave
    /// the invitee for the job's retry instead.
    async fn create_and_add(
        &self,
        unknown: Vec<String>,
        profile: &HashMap<String, &MoodleMember>,
        pass: &mut Pass,
    ) -> ChatResult<Vec<String>> {
        let mut created = Vec::new();
        let mut not_created = Vec::new();
        for u in unknown {
            let Some(p) = profile.get(&lower(&u)) else {
                not_created.push(u);
                continue;
            };
            match self.create_account(&u, p).await {
                Ok(()) => created.push(u),
                Err(e) => match classify(&e) {
                    ChatFailure::Transient => {
                        self.failed(MembershipAction::CreateUser, MembershipFailure::Other, 1);
                        pass.not_added_all(std::slice::from_ref(&u), "create_user", &e);
                    }
                    class if class.stops_pass() => return Err(e),
                    class => {
                        let (code, why) = match class {
                            ChatFailure::Forbidden => {
                                (Code::Forbidden, MembershipFailure::Forbidden)
                            }
                            ChatFailure::Conflict => {
                                (Code::AccountConflict, MembershipFailure::Conflict)
                            }
                            _ => (Code::AccountNotCreated, MembershipFailure::Other),
                        };
                        self.failed(MembershipAction::CreateUser, why, 1);
                        pass.note(&u, code, format!("create_user: {e}"));
                        not_created.push(u);
                    }
                },
            }
        }
        if !created.is_empty() {
            match self
                .retrying(|| self.chat.add_members(&pass.room_id, &created))
                .await
            {
                Ok(o) => not_created.extend(o.unknown),
                Err(e) if classify(&e) == ChatFailure::Transient => {
                    pass.not_added_all(&created, "add_members", &e)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(not_created)
    }

    /// Creates the chat account of `username`. An account that a concurrent sync of another
    /// room (or a lost answer to a retried call) made meanwhile counts as created.
    async fn create_account(&self, username: &str, p: &MoodleMember) -> ChatResult<()> {
        let new = NewChatUser {
            username: username.to_owned(),
            name: format!("{} {}", p.firstname, p.lastname).trim().to_owned(),
            email: p.email.clone(),
            password: random_password(),
        };
        match self.retrying(|| self.chat.create_user(&new)).await {
            Ok(_) => {
                self.applied(MembershipAction::CreateUser, 1);
                Ok(())
            }
            Err(e @ ChatError::Conflict { .. }) => match self.chat.find_user(username).await? {
                Some(_) => Ok(()),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Last step: records what the pass achieved and turns it into the job's result. The membership
    /// and outcomes are recorded also when the pass stopped early or left changes: "unenrol
    /// everywhere" reads them, and the next attempt plans again from the room's listing, so
    /// it does only what is left.
    async fn step_record(
        &self,
        cmid: i64,
        job: &JobInfo,
        room: &Room,
        plan: &RoomPlan,
        pass: Pass,
        mut stopped: Option<ChatError>,
    ) -> Result<String, HandlerError> {
        if let Some(e) = stopped.take_if(|e| classify(e) == ChatFailure::RoomGone) {
            return Err(self.room_failure(cmid, job, e).await); // no members to record
        }
        let bot = lower(self.chat.bot_username());
        let rows: Vec<MemberRow> = pass
            .live
            .into_values()
            .filter(|m| m.username != bot)
            .collect();
        let problems = pass
            .outcomes
            .iter()
            .filter(|o| o.code != Code::OwnerKept.as_str())
            .count();
        let result = if problems == 0 {
            "converged"
        } else {
            "partial"
        };
        self.state.put_members(cmid, &rows, result).await?;
        self.state
            .put_outcomes(cmid, Some(job.id), &pass.outcomes)
            .await?;

        if let Some(e) = stopped {
            return Err(self.room_failure(cmid, job, e).await);
        }
        let left = pass.pending.total();
        if left > 0 {
            return Err(HandlerError::Retryable(format!(
                "room {} (cm {cmid}): {left} change{} left after transient chat errors ({}); progress recorded, the retry does only what is left",
                room.name,
                if left == 1 { "" } else { "s" },
                pass.pending.describe()
            )));
        }
        if pass.attempted > 0 && pass.applied == 0 && pass.forbidden > 0 {
            return Err(HandlerError::Permanent(format!(
                "room of course module {cmid}: every change refused for lack of permission ({} recorded in rcjobs_sync.outcome)",
                pass.forbidden
            )));
        }
        Ok(format!(
            "room {} (cm {cmid}): {} members; +{} -{} mod+{} mod-{}; {} recorded problems",
            room.name,
            rows.len(),
            plan.invite.len().saturating_sub(pass.missing.len()),
            plan.kick.len(),
            plan.grant_moderator.len(),
            plan.revoke_moderator.len(),
            problems
        ))
    }
}
