//! Room convergence: resolve (or create) the chat room of a course module, then make its
//! membership equal Moodle's desired membership in as few calls as the backend allows.

use crate::engine::{chat_error, Engine, HandlerError, JobInfo};
use crate::naming::{candidate, room_name, NameParts};
use crate::password::random_password;
use crate::planner::{plan_room, DesiredMember, KeepReason};
use crate::state::{MemberRow, Outcome, RoomRecord, RoomState};
use rcjobs_chat::{ChatError, NewChatUser, NewRoom, Room};
use rcjobs_metrics::{MembershipAction, MembershipFailure};
use rcjobs_moodle::Room as MoodleRoom;
use std::collections::{BTreeMap, HashMap};

/// Where the room of a course module stands.
enum Resolved {
    /// The room exists.
    Room(Room, RoomRecord),
    /// The module has no room of its own (new, duplicated, or its id is another module's).
    NeedsRoom,
    /// The module's room vanished from the chat server.
    Gone(String),
}

/// Tracks the room's membership as changes are applied.
struct Live {
    members: BTreeMap<String, MemberRow>,
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn outcome(subject: &str, userid: Option<i64>, code: &str, detail: impl Into<String>) -> Outcome {
    Outcome {
        subject: subject.to_owned(),
        userid,
        code: code.to_owned(),
        detail: detail.into(),
    }
}

/// Whether a per-user chat error stops the whole job (retry/snooze) rather than being
/// recorded for that user.
fn stops_job(e: &ChatError) -> bool {
    matches!(
        e,
        ChatError::RateLimited { .. }
            | ChatError::Transient { .. }
            | ChatError::Unauthorized { .. }
            | ChatError::RoomNotFound { .. }
    )
}

impl Engine {
    /// Records that the room of `cmid` cannot be worked on and returns the job's failure.
    async fn room_failure(&self, cmid: i64, job: &JobInfo, e: ChatError) -> HandlerError {
        let (code, why) = match &e {
            ChatError::RoomNotFound { .. } => ("room_not_found", MembershipFailure::RoomMissing),
            ChatError::Forbidden { .. } => ("forbidden", MembershipFailure::Forbidden),
            _ => return chat_error(e),
        };
        self.failed(MembershipAction::Invite, why, 1);
        if code == "room_not_found" {
            if let Ok(Some(mut rec)) = self.state.room(cmid).await {
                rec.state = RoomState::Gone;
                let _ = self.state.put_room(&rec).await;
            }
        }
        if let Err(db) = self
            .state
            .put_room_outcome(cmid, Some(job.id), code, &e.to_string())
            .await
        {
            return HandlerError::from(db);
        }
        HandlerError::Permanent(format!("room of course module {cmid}: {e}"))
    }

    /// Finds the chat room of `r`, recording the mapping.
    ///
    /// Ownership rule: a chat room belongs to one course module. Moodle's `rocketchatid` is
    /// trusted unless another live module already holds that room (a duplicated or restored
    /// activity carries its original's id): then the lowest cmid — or the one the worker
    /// already mapped — keeps it and the other gets a room of its own.
    async fn resolve_room(&self, r: &MoodleRoom) -> Result<Resolved, HandlerError> {
        let rec = self.state.room(r.cmid).await?;
        let mut candidate: Option<(String, bool)> = None;
        if let Some(rec) = &rec {
            match (rec.state, &rec.room_id) {
                (RoomState::Active | RoomState::Trashed, Some(id)) => {
                    candidate = Some((id.clone(), rec.created_by_worker))
                }
                (RoomState::Creating, _) => return Ok(Resolved::NeedsRoom),
                _ => {}
            }
        }
        if candidate.is_none() && !r.rocketchatid.is_empty() {
            let id = &r.rocketchatid;
            let holder = self.state.room_by_room_id(id).await?;
            let usable = match &holder {
                Some(h) if h.cmid != r.cmid => {
                    // Held by another module: usable only if that module no longer uses it.
                    !matches!(self.moodle.room_by_cmid(h.cmid).await?, Some(live) if live.rocketchatid == *id)
                }
                Some(_) => true,
                None => {
                    let siblings = self.moodle.rooms_by_rocketchatid(id).await?;
                    siblings.first().is_none_or(|s| s.cmid == r.cmid)
                }
            };
            if !usable {
                return Ok(Resolved::NeedsRoom);
            }
            let created = match holder {
                Some(h) => h.created_by_worker,
                None => self
                    .state
                    .any_room_by_room_id(id)
                    .await?
                    .is_some_and(|h| h.created_by_worker),
            };
            candidate = Some((id.clone(), created));
        }
        let Some((id, created)) = candidate else {
            return Ok(Resolved::NeedsRoom);
        };
        match self.chat.room_by_id(&id).await {
            Ok(Some(room)) => {
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
                Ok(Resolved::Room(room, rec))
            }
            Ok(None) => Ok(Resolved::Gone(id)),
            Err(e) => Err(chat_error(e)),
        }
    }

    /// Creates the room of `r` under a free name. Idempotent across crashes: the chosen name
    /// is written ahead (state `creating`), and a retry adopts a room of that name.
    async fn create_room_for(
        &self,
        r: &MoodleRoom,
        job: &JobInfo,
    ) -> Result<(Room, RoomRecord), HandlerError> {
        let parts = NameParts {
            site_shortname: self.cfg.naming.site_shortname.clone(),
            site_fullname: self.cfg.naming.site_fullname.clone(),
            site_id: self.cfg.naming.site_id.clone(),
            cmid: r.cmid,
            courseid: r.course_id,
            course_shortname: r.course_shortname.clone(),
            course_fullname: r.course_fullname.clone(),
        };
        let base = room_name(&self.cfg.naming.template, &parts);
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
                if let Some(room) = self.chat.room_by_name(name).await.map_err(chat_error)? {
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
                .map_err(chat_error)?
                .is_some()
            {
                continue; // taken by a room that is not ours
            }
            rec.room_name = Some(name.clone());
            rec.state = RoomState::Creating;
            self.state.put_room(&rec).await?;
            let new = NewRoom {
                name: name.clone(),
                read_only: false,
                retention_days: r
                    .retention
                    .enabled
                    .then(|| u32::try_from(r.retention.max_age_days).unwrap_or(0)),
            };
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
                "room_name_unavailable",
                &format!("no free name after {base}_50"),
            )
            .await?;
        Err(HandlerError::Permanent(format!(
            "course module {}: no free room name based on {base}",
            r.cmid
        )))
    }

    /// With account creation on, an invitee may have been created by a concurrent sync of
    /// another room between the invite (which skipped the then-unknown name) and the
    /// backend's existence check, so it is reported neither added nor unknown. One listing
    /// finds such names; they are invited again (their account exists now). Names still not
    /// listed after that are deactivated accounts (chat servers do not list them).
    #[allow(clippy::too_many_arguments)]
    async fn verify_invites(
        &self,
        room_id: &str,
        invited: &[String],
        missing: &mut Vec<String>,
        live: &mut Live,
        outcomes: &mut Vec<Outcome>,
        cmid: i64,
        job: &JobInfo,
    ) -> Result<(), HandlerError> {
        let listed = match self.chat.list_members(room_id).await {
            Ok(l) => l,
            Err(e) => return Err(self.room_failure(cmid, job, e).await),
        };
        let present: std::collections::HashSet<String> =
            listed.iter().map(|m| lower(&m.username)).collect();
        let absent: Vec<String> = invited
            .iter()
            .filter(|u| !missing.contains(&lower(u)) && !present.contains(&lower(u)))
            .cloned()
            .collect();
        if absent.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.chat.add_members(room_id, &absent).await {
            return Err(self.room_failure(cmid, job, e).await);
        }
        let listed = match self.chat.list_members(room_id).await {
            Ok(l) => l,
            Err(e) => return Err(self.room_failure(cmid, job, e).await),
        };
        let present: std::collections::HashSet<String> =
            listed.iter().map(|m| lower(&m.username)).collect();
        for u in absent {
            let k = lower(&u);
            if !present.contains(&k) {
                let userid = live.members.remove(&k).and_then(|m| m.userid);
                outcomes.push(outcome(
                    &u,
                    userid,
                    "user_inactive",
                    "account exists but is deactivated: not listed as a member",
                ));
                missing.push(k);
            }
        }
        Ok(())
    }

    /// Converges the room of course module `cmid` (the caller holds `room:<cmid>`).
    /// `create_if_gone`: recreate a room that vanished (restore) instead of failing (sync).
    pub(crate) async fn sync_room(
        &self,
        cmid: i64,
        job: &JobInfo,
        create_if_gone: bool,
    ) -> Result<String, HandlerError> {
        let Some(r) = self.moodle.room_by_cmid(cmid).await? else {
            return Ok(format!(
                "course module {cmid} is not a live chat activity: nothing to converge"
            ));
        };
        let (mut room, _rec) = match self.resolve_room(&r).await? {
            Resolved::Room(room, rec) => (room, rec),
            Resolved::NeedsRoom => self.create_room_for(&r, job).await?,
            Resolved::Gone(_) if create_if_gone => self.create_room_for(&r, job).await?,
            Resolved::Gone(id) => {
                return Err(self
                    .room_failure(
                        cmid,
                        job,
                        ChatError::RoomNotFound {
                            endpoint: "room_by_id".into(),
                            message: format!("room {id} does not exist"),
                        },
                    )
                    .await)
            }
        };

        // Archive state follows visibility (the plugin archives hidden/stealth activities).
        if room.archived {
            if !r.visible {
                self.state
                    .put_room_outcome(
                        cmid,
                        Some(job.id),
                        "room_archived",
                        "hidden activity: room archived, membership left as is",
                    )
                    .await?;
                return Ok(format!(
                    "course module {cmid} hidden and its room archived: membership left as is"
                ));
            }
            if let Err(e) = self.chat.unarchive_room(&room.id).await {
                return Err(self.room_failure(cmid, job, e).await);
            }
            self.applied(MembershipAction::Unarchive, 1);
            room.archived = false;
        }

        let now = rcjobs_moodle::unix_now();
        let moodle_members = self.moodle.desired_members(&r, now).await?;
        let mut outcomes: Vec<Outcome> = Vec::new();
        let mut desired: Vec<DesiredMember> = Vec::with_capacity(moodle_members.len());
        let mut profile: HashMap<String, &rcjobs_moodle::DesiredMember> = HashMap::new();
        for m in &moodle_members {
            match self.mapping.map(&m.username) {
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
                    "invalid_username",
                    e.to_string(),
                )),
            }
        }
        let current = match self.chat.list_members(&room.id).await {
            Ok(c) => c,
            Err(e) => return Err(self.room_failure(cmid, job, e).await),
        };
        let plan = plan_room(&desired, &current, self.chat.bot_username());
        let userid_of: HashMap<String, i64> = plan
            .desired
            .iter()
            .map(|d| (lower(&d.username), d.userid))
            .collect();
        let mut live = Live {
            members: current
                .iter()
                .map(|m| {
                    let k = lower(&m.username);
                    (
                        k.clone(),
                        MemberRow {
                            username: k.clone(),
                            userid: userid_of.get(&k).copied(),
                            moderator: m.moderator,
                        },
                    )
                })
                .collect(),
        };
        let (mut attempted, mut applied, mut forbidden) = (0usize, 0usize, 0usize);

        // 1. Invites, batched by the backend; unknown accounts created when configured.
        let mut missing: Vec<String> = Vec::new();
        if !plan.invite.is_empty() {
            attempted += plan.invite.len();
            let out = match self.chat.add_members(&room.id, &plan.invite).await {
                Ok(o) => o,
                Err(e) => return Err(self.room_failure(cmid, job, e).await),
            };
            let mut unknown = out.unknown;
            if !unknown.is_empty() && self.cfg.create_accounts {
                let mut created = Vec::new();
                let mut not_created = Vec::new();
                for u in unknown {
                    let Some(p) = profile.get(&lower(&u)) else {
                        not_created.push(u);
                        continue;
                    };
                    let new = NewChatUser {
                        username: u.clone(),
                        name: format!("{} {}", p.firstname, p.lastname).trim().to_owned(),
                        email: p.email.clone(),
                        password: random_password(),
                    };
                    match self.chat.create_user(&new).await {
                        Ok(_) => {
                            self.applied(MembershipAction::CreateUser, 1);
                            created.push(u);
                        }
                        Err(e) if stops_job(&e) => return Err(chat_error(e)),
                        // Created meanwhile by a concurrent sync of another room: use it.
                        Err(ChatError::Conflict { .. })
                            if self.chat.find_user(&u).await.map_err(chat_error)?.is_some() =>
                        {
                            created.push(u);
                        }
                        Err(e) => {
                            let (code, why) = match &e {
                                ChatError::Forbidden { .. } => {
                                    ("forbidden", MembershipFailure::Forbidden)
                                }
                                ChatError::Conflict { .. } => {
                                    ("account_conflict", MembershipFailure::Conflict)
                                }
                                _ => ("account_not_created", MembershipFailure::Other),
                            };
                            self.failed(MembershipAction::CreateUser, why, 1);
                            outcomes.push(outcome(
                                &u,
                                Some(p.user_id),
                                code,
                                format!("users.create: {e}"),
                            ));
                            not_created.push(u);
                        }
                    }
                }
                if !created.is_empty() {
                    match self.chat.add_members(&room.id, &created).await {
                        Ok(o) => not_created.extend(o.unknown),
                        Err(e) => return Err(self.room_failure(cmid, job, e).await),
                    }
                }
                unknown = not_created;
            }
            for u in &unknown {
                let k = lower(u);
                if !outcomes.iter().any(|o| lower(&o.subject) == k) {
                    outcomes.push(outcome(
                        u,
                        userid_of.get(&k).copied(),
                        "user_missing",
                        "no chat account (account creation is off)",
                    ));
                }
            }
            self.failed(
                MembershipAction::Invite,
                MembershipFailure::UserMissing,
                unknown.len(),
            );
            let unknown_keys: Vec<String> = unknown.iter().map(|u| lower(u)).collect();
            for u in &plan.invite {
                let k = lower(u);
                if !unknown_keys.contains(&k) {
                    live.members.insert(
                        k.clone(),
                        MemberRow {
                            username: k.clone(),
                            userid: userid_of.get(&k).copied(),
                            moderator: false,
                        },
                    );
                    applied += 1;
                }
            }
            self.applied(MembershipAction::Invite, plan.invite.len() - unknown.len());
            missing = unknown_keys;
            if self.cfg.create_accounts {
                self.verify_invites(
                    &room.id,
                    &plan.invite,
                    &mut missing,
                    &mut live,
                    &mut outcomes,
                    cmid,
                    job,
                )
                .await?;
            }
        }

        // 2. Per-user changes: moderator grants and revokes, then kicks.
        let steps: Vec<(MembershipAction, &String)> = plan
            .grant_moderator
            .iter()
            .filter(|u| !missing.contains(&lower(u)))
            .map(|u| (MembershipAction::Promote, u))
            .chain(
                plan.revoke_moderator
                    .iter()
                    .map(|u| (MembershipAction::Demote, u)),
            )
            .chain(plan.kick.iter().map(|u| (MembershipAction::Kick, u)))
            .collect();
        for (action, u) in steps {
            attempted += 1;
            let r = match action {
                MembershipAction::Promote => self.chat.set_moderator(&room.id, u, true).await,
                MembershipAction::Demote => self.chat.set_moderator(&room.id, u, false).await,
                _ => self.chat.remove_member(&room.id, u).await,
            };
            let k = lower(u);
            match r {
                Ok(()) => {
                    applied += 1;
                    self.applied(action, 1);
                    match action {
                        MembershipAction::Kick => {
                            live.members.remove(&k);
                        }
                        _ => {
                            if let Some(m) = live.members.get_mut(&k) {
                                m.moderator = action == MembershipAction::Promote;
                            }
                        }
                    }
                }
                Err(e @ ChatError::RoomNotFound { .. }) => {
                    return Err(self.room_failure(cmid, job, e).await)
                }
                Err(e) if stops_job(&e) => return Err(chat_error(e)),
                Err(e) => {
                    let (code, why) = match &e {
                        ChatError::Forbidden { .. } => {
                            forbidden += 1;
                            ("forbidden", MembershipFailure::Forbidden)
                        }
                        ChatError::Conflict { .. } => {
                            ("change_refused", MembershipFailure::Conflict)
                        }
                        _ => ("change_refused", MembershipFailure::Other),
                    };
                    self.failed(action, why, 1);
                    outcomes.push(outcome(
                        u,
                        userid_of.get(&k).copied(),
                        code,
                        format!("{}: {e}", action.as_str()),
                    ));
                }
            }
        }
        for (u, why) in &plan.kept {
            if *why == KeepReason::Owner {
                outcomes.push(outcome(
                    u,
                    None,
                    "owner_kept",
                    "room owner not in Moodle's membership: kept (the worker never removes owners)",
                ));
            }
        }

        // 3. Hidden activity: archive once membership is right.
        if !r.visible {
            match self.chat.archive_room(&room.id).await {
                Ok(()) => self.applied(MembershipAction::Archive, 1),
                Err(e) => return Err(self.room_failure(cmid, job, e).await),
            }
        }

        // 4. Remember the converged state and the outcomes.
        let bot = lower(self.chat.bot_username());
        let rows: Vec<MemberRow> = live
            .members
            .into_values()
            .filter(|m| m.username != bot)
            .collect();
        let problems = outcomes.iter().filter(|o| o.code != "owner_kept").count();
        let result = if problems == 0 {
            "converged"
        } else {
            "partial"
        };
        self.state.put_members(cmid, &rows, result).await?;
        self.state
            .put_outcomes(cmid, Some(job.id), &outcomes)
            .await?;

        if attempted > 0 && applied == 0 && forbidden > 0 {
            return Err(HandlerError::Permanent(format!(
                "room of course module {cmid}: every change refused for lack of permission ({forbidden} recorded in rcjobs_sync.outcome)"
            )));
        }
        let summary = format!(
            "room {} (cm {cmid}): {} members; +{} -{} mod+{} mod-{}; {} recorded problems",
            room.name,
            rows.len(),
            plan.invite.len() - missing.len(),
            plan.kick.len(),
            plan.grant_moderator.len(),
            plan.revoke_moderator.len(),
            problems
        );
        Ok(summary)
    }
}
