//! [`rcjobs_chat::ChatBackend`] for Rocket.Chat: idempotent, batched, username-based.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use futures::{stream, StreamExt};
use rcjobs_chat::{
    AddMembersOutcome, Capability, ChatBackend, ChatResult, ChatUser, NewChatUser, NewRoom,
    RetentionPolicy, Room, RoomMember,
};

use crate::client::{RcResult, RocketChatClient};
use crate::endpoints::{is_batch_unsupported, is_user_not_found};
use crate::error::{ErrorClass, RocketChatError};
use crate::types::{
    CreateUser, Group, Invitees, RetentionSettings, RoomRetention, RoomSel, UserSel,
};

/// Concurrent single-user calls (fallback invites, `users.info` confirmations).
const SINGLE_CALL_CONCURRENCY: usize = 4;

/// The Rocket.Chat implementation of [`ChatBackend`].
#[derive(Debug, Clone)]
pub struct RocketChatBackend {
    client: RocketChatClient,
    bot_username: String,
}

impl RocketChatBackend {
    /// Wraps a client whose bot username is already known.
    pub fn new(client: RocketChatClient, bot_username: impl Into<String>) -> Self {
        RocketChatBackend {
            client,
            bot_username: bot_username.into(),
        }
    }

    /// Wraps a client, taking the bot username from the configuration or, if absent, from
    /// the server (`users.info` on the authenticated user id; logs in first with password
    /// auth). Also proves the credentials work.
    pub async fn connect(client: RocketChatClient) -> RcResult<Self> {
        if let Some(name) = client.config().bot_username.clone() {
            return Ok(Self::new(client, name));
        }
        if client.user_id().is_none() {
            client.login().await?;
        }
        let user_id = client
            .user_id()
            .ok_or_else(|| RocketChatError::Unauthorized {
                endpoint: "login",
                message: "no user id after login".to_owned(),
            })?;
        let me = client.users_info_by_id(&user_id).await?;
        let username = me.username.ok_or_else(|| RocketChatError::Decode {
            endpoint: "users.info",
            message: "the bot account has no username".to_owned(),
        })?;
        Ok(Self::new(client, username))
    }

    /// The underlying client, for raw endpoint calls.
    pub fn client(&self) -> &RocketChatClient {
        &self.client
    }

    /// Whether to send `usernames` lists: remembered answer, else the version, else try.
    async fn batch_invite_allowed(&self) -> bool {
        if let Some(known) = self.client.inner.batch_invite.get() {
            return known;
        }
        match self
            .client
            .server_version()
            .await
            .and_then(|v| v.batch_invite())
        {
            Some(false) => {
                self.client.inner.batch_invite.set(false);
                false
            }
            _ => true,
        }
    }

    /// Batch path: `usernames` chunks, then one listing to find who did not get in.
    async fn add_batched(
        &self,
        room_id: &str,
        wanted: &[String],
    ) -> RcResult<Option<AddMembersOutcome>> {
        let mut calls = 0u32;
        let mut unknown: Vec<String> = Vec::new();
        let chunk_size = self.client.config().max_batch_invite.max(1);
        for chunk in wanted.chunks(chunk_size) {
            calls += 1;
            match self
                .client
                .groups_invite(room_id, Invitees::Usernames(chunk))
                .await
            {
                Ok(()) => self.client.inner.batch_invite.set(true),
                Err(e) if e.error_type() == Some("error-empty-invite-list") => {
                    unknown.extend(chunk.iter().cloned());
                }
                Err(e) if is_batch_unsupported(&e) => {
                    tracing::info!(
                        room_id,
                        "server refused a batch invite; falling back to one call per user"
                    );
                    self.client.inner.batch_invite.set(false);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        let known_unknown: HashSet<String> = unknown.iter().map(|u| u.to_lowercase()).collect();
        let to_check: Vec<&String> = wanted
            .iter()
            .filter(|u| !known_unknown.contains(&u.to_lowercase()))
            .collect();
        if !to_check.is_empty() {
            let (members, listing_calls) = self.client.members_all_counted(room_id).await?;
            calls += listing_calls;
            let present: HashSet<String> = members
                .iter()
                .filter_map(|m| m.username.as_deref())
                .map(str::to_lowercase)
                .collect();
            let missing: Vec<&String> = to_check
                .into_iter()
                .filter(|u| !present.contains(&u.to_lowercase()))
                .collect();
            // Not listed after the invite: unknown, an existing but deactivated account
            // (which `groups.members` hides), or an account created by someone else after the
            // batch was sent (the server dropped it as unknown then). Ask the server which, and
            // invite the active ones again so no existing account is silently left out.
            calls += missing.len() as u32;
            let missing: Vec<String> = missing.into_iter().cloned().collect();
            let results: Vec<(String, RcResult<Option<bool>>)> = stream::iter(missing)
                .map(|name: String| {
                    let client = self.client.clone();
                    async move {
                        let active = client
                            .find_user_by_username(&name)
                            .await
                            .map(|u| u.map(|u| u.active));
                        (name, active)
                    }
                })
                .buffer_unordered(SINGLE_CALL_CONCURRENCY)
                .collect()
                .await;
            for (name, active) in results {
                match active? {
                    None => unknown.push(name),
                    Some(false) => {}
                    Some(true) => {
                        calls += 1;
                        match self
                            .client
                            .groups_invite(room_id, Invitees::Username(&name))
                            .await
                        {
                            Ok(()) => {}
                            Err(e) if e.error_type() == Some("error-empty-invite-list") => {
                                unknown.push(name)
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        Ok(Some(AddMembersOutcome { calls, unknown }))
    }

    /// Fallback path for servers without batch invite: skip current members, then one
    /// `groups.invite {username}` per remaining user.
    async fn add_one_by_one(
        &self,
        room_id: &str,
        wanted: &[String],
    ) -> RcResult<AddMembersOutcome> {
        let (members, mut calls) = self.client.members_all_counted(room_id).await?;
        let present: HashSet<String> = members
            .iter()
            .filter_map(|m| m.username.as_deref())
            .map(str::to_lowercase)
            .collect();
        let todo: Vec<String> = wanted
            .iter()
            .filter(|u| !present.contains(&u.to_lowercase()))
            .cloned()
            .collect();
        calls += todo.len() as u32;
        let results: Vec<(String, RcResult<()>)> = stream::iter(todo)
            .map(|name: String| {
                let client = self.client.clone();
                let room_id = room_id.to_owned();
                async move {
                    let r = client
                        .groups_invite(&room_id, Invitees::Username(&name))
                        .await;
                    (name, r)
                }
            })
            .buffer_unordered(SINGLE_CALL_CONCURRENCY)
            .collect()
            .await;
        let mut unknown = Vec::new();
        for (name, result) in results {
            match result {
                Ok(()) => {}
                Err(e)
                    if is_user_not_found(&e)
                        || e.error_type() == Some("error-empty-invite-list") =>
                {
                    unknown.push(name)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(AddMembersOutcome { calls, unknown })
    }
}

fn to_room(group: Group) -> Room {
    Room {
        name: group.name.unwrap_or_default(),
        id: group.id,
        archived: group.archived,
        read_only: group.ro,
    }
}

/// `Ok(())` for "already in the desired state" refusals.
fn converge(result: RcResult<()>) -> ChatResult<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.is_already_in_state() => {
            tracing::debug!(error = %e, "already in the desired state");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `Ok(None)` for "no such room / not visible".
fn optional_room(result: RcResult<Group>) -> ChatResult<Option<Room>> {
    match result {
        Ok(g) => Ok(Some(to_room(g))),
        Err(e) if e.class() == ErrorClass::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Case-insensitive de-duplication keeping the first spelling (Rocket.Chat usernames are
/// unique case-insensitively).
fn dedupe_usernames(usernames: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    usernames
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty() && seen.insert(u.to_lowercase()))
        .map(str::to_owned)
        .collect()
}

/// Rocket.Chat's permission for a capability.
fn permission_name(c: Capability) -> &'static str {
    match c {
        Capability::CreateRooms => "create-p",
        Capability::CreateUsers => "create-user",
        Capability::UnarchiveRooms => "unarchive-room",
        Capability::EditRetention => "edit-room-retention-policy",
        Capability::CleanHistory => "clean-channel-history",
    }
}

/// The policy a room's stored `retention` amounts to. Absent fields read as Rocket.Chat
/// treats them (off); a room's policy counts as enabled only when it also overrides the
/// global one, since the plugin always sets both together.
fn to_policy(r: Option<&RoomRetention>) -> RetentionPolicy {
    let Some(r) = r else {
        return RetentionPolicy::default();
    };
    let (enabled, overrides) = (
        r.enabled.unwrap_or(false),
        r.override_global.unwrap_or(false),
    );
    RetentionPolicy {
        enabled: enabled && overrides,
        // Stored as sent; a fractional or negative age, or a half-set pair of flags, reads as
        // an age no Moodle row has, so the worker sends its whole policy again.
        max_age_days: r
            .max_age
            .filter(|d| d.fract() == 0.0 && *d >= 0.0 && *d < f64::from(u32::MAX))
            .filter(|_| enabled == overrides)
            .map_or(u32::MAX, |d| d as u32),
        files_only: r.files_only.unwrap_or(false),
        exclude_pinned: r.exclude_pinned.unwrap_or(false),
    }
}

#[async_trait]
impl ChatBackend for RocketChatBackend {
    fn backend_name(&self) -> &'static str {
        "rocketchat"
    }

    fn bot_username(&self) -> &str {
        &self.bot_username
    }

    async fn missing_capabilities(
        &self,
        needed: &[Capability],
    ) -> ChatResult<Vec<(Capability, String)>> {
        let bot = self
            .client
            .find_user_by_username(&self.bot_username)
            .await?
            .map(|u| u.roles)
            .unwrap_or_default();
        let table = self.client.permissions_list_all().await?;
        Ok(needed
            .iter()
            .map(|c| (*c, permission_name(*c)))
            .filter(|(_, p)| {
                !table
                    .iter()
                    .any(|e| e.id == *p && e.roles.iter().any(|r| bot.contains(r)))
            })
            .map(|(c, p)| (c, p.to_owned()))
            .collect())
    }

    async fn find_user(&self, username: &str) -> ChatResult<Option<ChatUser>> {
        let user = self.client.find_user_by_username(username).await?;
        Ok(user.map(|u| ChatUser {
            username: u.username.unwrap_or_else(|| username.to_owned()),
            id: u.id,
            active: u.active,
        }))
    }

    async fn create_user(&self, user: &NewChatUser) -> ChatResult<ChatUser> {
        let created = self
            .client
            .users_create(&CreateUser {
                username: &user.username,
                name: &user.name,
                email: &user.email,
                password: &user.password,
            })
            .await?;
        Ok(ChatUser {
            username: created.username.unwrap_or_else(|| user.username.clone()),
            id: created.id,
            active: created.active,
        })
    }

    async fn room_by_id(&self, room_id: &str) -> ChatResult<Option<Room>> {
        optional_room(self.client.groups_info(RoomSel::Id(room_id)).await)
    }

    async fn room_by_name(&self, name: &str) -> ChatResult<Option<Room>> {
        optional_room(self.client.groups_info(RoomSel::Name(name)).await)
    }

    async fn create_room(&self, room: &NewRoom) -> ChatResult<Room> {
        let group = self
            .client
            .groups_create(&room.name, room.read_only, &[])
            .await?;
        if let Some(days) = room.retention_days {
            // The room exists now; a retention the bot may not set (needs
            // `edit-room-retention-policy`, admin-only by default) must not make the
            // creation look failed, or the caller would retry into a name conflict.
            match self
                .client
                .rooms_save_retention(&group.id, &RetentionSettings::days(days))
                .await
            {
                Ok(_) => {}
                Err(e) if e.class() == ErrorClass::Forbidden => {
                    tracing::warn!(room = %room.name, error = %e, "retention not applied");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(to_room(group))
    }

    async fn list_members(&self, room_id: &str) -> ChatResult<Vec<RoomMember>> {
        let members = self.client.groups_members_all(room_id).await?;
        // user id → (moderator, owner)
        let mut roles: HashMap<String, (bool, bool)> = HashMap::new();
        let mut have_roles = false;
        if self.client.inner.roles_endpoint.get() != Some(false) {
            match self.client.groups_roles(room_id).await {
                Ok(list) => {
                    self.client.inner.roles_endpoint.set(true);
                    have_roles = true;
                    for r in list {
                        let entry = roles.entry(r.u.id).or_default();
                        entry.0 |= r.roles.iter().any(|x| x == "moderator");
                        entry.1 |= r.roles.iter().any(|x| x == "owner");
                    }
                }
                Err(e) if e.status() == Some(404) => {
                    tracing::info!("groups.roles unavailable; using groups.moderators");
                    self.client.inner.roles_endpoint.set(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !have_roles {
            for m in self.client.groups_moderators(room_id).await? {
                roles.entry(m.id).or_default().0 = true;
            }
        }
        Ok(members
            .into_iter()
            .filter_map(|m| {
                let username = m.username?;
                let (moderator, owner) = roles.get(&m.id).copied().unwrap_or_default();
                Some(RoomMember {
                    user_id: m.id,
                    username,
                    moderator,
                    owner,
                })
            })
            .collect())
    }

    async fn add_members(
        &self,
        room_id: &str,
        usernames: &[String],
    ) -> ChatResult<AddMembersOutcome> {
        let wanted = dedupe_usernames(usernames);
        if wanted.is_empty() {
            return Ok(AddMembersOutcome::default());
        }
        let mut calls = 0;
        if self.batch_invite_allowed().await {
            // A batch refused as unsupported made one call before falling back.
            match self.add_batched(room_id, &wanted).await? {
                Some(outcome) => return Ok(outcome),
                None => calls += 1,
            }
        }
        let mut outcome = self.add_one_by_one(room_id, &wanted).await?;
        outcome.calls += calls;
        Ok(outcome)
    }

    async fn remove_member(&self, room_id: &str, username: &str) -> ChatResult<()> {
        if username.eq_ignore_ascii_case(&self.bot_username) {
            tracing::warn!(room_id, "refusing to remove the bot from a room it manages");
            return Ok(());
        }
        converge(
            self.client
                .groups_kick(room_id, UserSel::Username(username))
                .await,
        )
    }

    async fn set_moderator(
        &self,
        room_id: &str,
        username: &str,
        moderator: bool,
    ) -> ChatResult<()> {
        let user = UserSel::Username(username);
        converge(if moderator {
            self.client.groups_add_moderator(room_id, user).await
        } else {
            self.client.groups_remove_moderator(room_id, user).await
        })
    }

    async fn archive_room(&self, room_id: &str) -> ChatResult<()> {
        converge(self.client.groups_archive(room_id).await)
    }

    async fn unarchive_room(&self, room_id: &str) -> ChatResult<()> {
        converge(self.client.groups_unarchive(room_id).await)
    }

    async fn room_retention(&self, room_id: &str) -> ChatResult<Option<RetentionPolicy>> {
        let group = self.client.groups_info(RoomSel::Id(room_id)).await?;
        Ok(Some(to_policy(group.retention.as_ref())))
    }

    async fn set_room_retention(&self, room_id: &str, policy: &RetentionPolicy) -> ChatResult<()> {
        let settings = RetentionSettings {
            enabled: policy.enabled,
            override_global: policy.enabled,
            max_age_days: policy.max_age_days,
            exclude_pinned: policy.exclude_pinned,
            files_only: policy.files_only,
            ignore_threads: false,
        };
        self.client
            .rooms_save_retention(room_id, &settings)
            .await
            .map(drop)
            .map_err(Into::into)
    }

    async fn set_read_only(&self, room_id: &str, read_only: bool) -> ChatResult<()> {
        converge(self.client.groups_set_read_only(room_id, read_only).await)
    }

    async fn delete_room(&self, room_id: &str) -> ChatResult<()> {
        converge(self.client.groups_delete(room_id).await)
    }

    /// `rooms.cleanHistory` from 1970 to `latest`, as the plugin's reset does.
    async fn clean_history(
        &self,
        room_id: &str,
        latest: chrono::DateTime<chrono::Utc>,
    ) -> ChatResult<()> {
        Ok(self
            .client
            .rooms_clean_history(room_id, chrono::DateTime::UNIX_EPOCH, latest)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_retention_reads_as_the_plugins_four_fields() {
        assert_eq!(to_policy(None), RetentionPolicy::default());
        let r = RoomRetention {
            enabled: Some(true),
            max_age: Some(30.0),
            exclude_pinned: Some(true),
            files_only: None,
            ignore_threads: None,
            override_global: Some(true),
        };
        assert_eq!(
            to_policy(Some(&r)),
            RetentionPolicy {
                enabled: true,
                max_age_days: 30,
                files_only: false,
                exclude_pinned: true
            }
        );
        let not_overriding = RoomRetention {
            override_global: None,
            max_age: Some(2.5),
            ..r
        };
        let p = to_policy(Some(&not_overriding));
        assert!(!p.enabled);
        assert_eq!(p.max_age_days, u32::MAX);
    }

    #[test]
    fn dedupes_usernames_case_insensitively() {
        let input: Vec<String> = ["Alice", "bob", "alice", " ", "BOB", "carol"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(dedupe_usernames(&input), vec!["Alice", "bob", "carol"]);
    }
}
