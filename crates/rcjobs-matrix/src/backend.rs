//! [`ChatBackend`] for Matrix: idempotent, username-based, one power-level write per batch.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use rcjobs_chat::{
    AddMembersOutcome, Capability, ChatBackend, ChatError, ChatResult, ChatUser, NewChatUser,
    NewRoom, Room, RoomMember, INVALID_USERNAME,
};
use serde_json::{json, Map, Value};

use crate::client::{MatrixClient, MxResult};
use crate::config::Membership;
use crate::error::MatrixError;
use crate::ids;

/// Power level of a moderator, as Moodle core sets it (its older version used 51).
pub const MODERATOR_LEVEL: i64 = 50;
/// Power level of the bot and of room owners: never lowered by the backend.
pub const OWNER_LEVEL: i64 = 100;
/// Key inside `m.room.power_levels` holding the levels an archive replaced (decision 0012):
/// in the same document, so archiving is one atomic write and only level-100 users (who may
/// edit power levels anyway) can touch it.
pub const ARCHIVE_KEY: &str = "org.rcjobs.archived";
/// Levels an archive raises to 100, and their spec defaults when the room does not set them.
const ARCHIVED_FIELDS: [(&str, i64); 6] = [
    ("events_default", 0),
    ("state_default", 50),
    ("invite", 0),
    ("kick", 50),
    ("ban", 50),
    ("redact", 50),
];
/// Events read after a history purge to find what it left before the purge point.
const PURGE_BOUNDARY_PAGE: u32 = 20;
/// How often a room delete's status is polled.
const DELETE_POLL: Duration = Duration::from_millis(200);

/// The Matrix (Synapse) implementation of [`ChatBackend`].
#[derive(Debug)]
pub struct MatrixBackend {
    client: MatrixClient,
    bot_user_id: String,
    bot_localpart: String,
    server_name: String,
    /// A room's creators never change: read once per room.
    creators: Mutex<HashMap<String, Arc<Vec<String>>>>,
    /// The power-levels PUT has no compare-and-swap: this replica's writes to one room are
    /// serialised here (the worker's room lock covers other replicas).
    room_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl MatrixBackend {
    /// Asks the homeserver who the bot is (`whoami`), which also proves the credentials and
    /// gives the `server_name` user ids are built with.
    pub async fn connect(client: MatrixClient) -> MxResult<Self> {
        let bot_user_id = client.whoami().await?;
        let server_name = ids::server_name_of(&bot_user_id)
            .ok_or_else(|| {
                MatrixError::Config(format!("whoami answered {bot_user_id}, not a user id"))
            })?
            .to_owned();
        let bot_localpart = ids::username_of(&bot_user_id, &server_name);
        Ok(MatrixBackend {
            client,
            bot_user_id,
            bot_localpart,
            server_name,
            creators: Mutex::new(HashMap::new()),
            room_locks: Mutex::new(HashMap::new()),
        })
    }

    /// The underlying client, for raw calls.
    pub fn client(&self) -> &MatrixClient {
        &self.client
    }

    /// The homeserver's `server_name` (from the bot's id).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The bot's full user id.
    pub fn bot_user_id(&self) -> &str {
        &self.bot_user_id
    }

    /// `@localpart:server_name` of a username.
    pub fn user_id_of(&self, username: &str) -> ChatResult<String> {
        ids::user_id(username, &self.server_name).map_err(|e| invalid(username, &e))
    }

    /// The room alias a room name is kept under (names are not unique in Matrix).
    pub fn alias_of(&self, room_name: &str) -> String {
        format!("#{}:{}", ids::alias_localpart(room_name), self.server_name)
    }

    fn room_lock(&self, room_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.room_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(room_id.to_owned())
            .or_default()
            .clone()
    }

    async fn room_creators(&self, room_id: &str) -> ChatResult<Arc<Vec<String>>> {
        if let Some(c) = self
            .creators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(room_id)
        {
            return Ok(c.clone());
        }
        let details = self
            .client
            .room_details(room_id)
            .await?
            .ok_or_else(|| room_not_found("admin.rooms.get", room_id))?;
        let creators = Arc::new(details.creator.into_iter().collect::<Vec<_>>());
        self.creators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(room_id.to_owned(), creators.clone());
        Ok(creators)
    }

    /// The room's power levels; a room the bot is not in reads as not found.
    async fn levels(&self, room_id: &str) -> ChatResult<Map<String, Value>> {
        match self.client.power_levels(room_id).await {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ChatError::Transient {
                endpoint: "state.power_levels".into(),
                message: "power levels are not an object".into(),
            }),
            Err(e) => Err(room_error(e, room_id)),
        }
    }

    /// Synapse's purge keeps the last event before the purge point (observed on 1.163.2
    /// under load: one message posted before the reset survived), so the messages it left
    /// at the start of the timeline up to `latest` are redacted (their content removed).
    async fn redact_purge_boundary(&self, room_id: &str, latest: DateTime<Utc>) -> ChatResult<()> {
        let until = latest.timestamp_millis();
        let events = self
            .client
            .oldest_events(room_id, PURGE_BOUNDARY_PAGE)
            .await
            .map_err(|e| room_error(e, room_id))?;
        for e in events {
            let ts = e
                .get("origin_server_ts")
                .and_then(Value::as_i64)
                .unwrap_or(i64::MAX);
            if ts > until {
                break;
            }
            let is_message = e.get("state_key").is_none()
                && e.get("type").and_then(Value::as_str) != Some("m.room.redaction")
                && e.get("content")
                    .and_then(Value::as_object)
                    .is_some_and(|c| !c.is_empty());
            let Some(event_id) = e.get("event_id").and_then(Value::as_str) else {
                continue;
            };
            if is_message {
                let txn = format!("rcjobs-reset-{ts}-{}", event_id.trim_start_matches('$'));
                self.client
                    .redact(room_id, event_id, &txn)
                    .await
                    .map_err(|e| room_error(e, room_id))?;
            }
        }
        Ok(())
    }

    /// Reads, changes and (only if changed) writes the whole power-levels document.
    async fn modify_levels(
        &self,
        room_id: &str,
        change: impl FnOnce(&mut Map<String, Value>, &[String]),
    ) -> ChatResult<()> {
        let lock = self.room_lock(room_id);
        let _guard = lock.lock().await;
        let creators = self.room_creators(room_id).await?;
        let before = self.levels(room_id).await?;
        let mut after = before.clone();
        change(&mut after, &creators);
        if after == before {
            return Ok(());
        }
        self.client
            .put_power_levels(room_id, &Value::Object(after))
            .await
            .map_err(|e| room_error(e, room_id))
    }

    async fn join_one(&self, room_id: &str, user_id: &str) -> ChatResult<bool> {
        match self.client.admin_join(room_id, user_id).await {
            Ok(()) => Ok(true),
            Err(e) if is_already_member(&e) => Ok(true),
            Err(e) if e.errcode() == Some("M_NOT_FOUND") => Ok(false),
            Err(e) => Err(room_error(e, room_id)),
        }
    }

    /// An invite only for accounts that exist (Synapse answers 200 for unknown ones) and
    /// are active; `Ok(false)` for an unknown account. Two calls.
    async fn invite_one(&self, room_id: &str, user_id: &str) -> ChatResult<bool> {
        match self.client.user(user_id).await? {
            None => return Ok(false),
            Some(u) if u.deactivated => return Ok(true),
            Some(_) => {}
        }
        match self.client.invite(room_id, user_id).await {
            Ok(()) => Ok(true),
            Err(e) if is_already_member(&e) => Ok(true),
            Err(e) => Err(room_error(e, room_id)),
        }
    }
}

fn invalid(username: &str, why: &ids::InvalidUsername) -> ChatError {
    ChatError::Permanent {
        endpoint: "username".into(),
        code: INVALID_USERNAME.into(),
        message: format!("{username:?}: {why}"),
    }
}

fn room_not_found(endpoint: &str, room_id: &str) -> ChatError {
    ChatError::RoomNotFound {
        endpoint: endpoint.into(),
        message: format!("no room {room_id}"),
    }
}

/// Synapse's refusals that mean "no such room for us": unknown room, or the bot not in it.
fn room_error(e: MatrixError, room_id: &str) -> ChatError {
    let msg = e.message();
    let missing = match (e.status(), e.errcode()) {
        (Some(404), _) => true,
        (Some(403), Some("M_FORBIDDEN")) => msg.contains("not in room"),
        (Some(400), Some("M_UNKNOWN")) => msg.contains("legal room ID"),
        _ => false,
    };
    if missing {
        return ChatError::RoomNotFound {
            endpoint: e.route().into(),
            message: format!("{room_id}: {msg}"),
        };
    }
    e.into()
}

fn is_already_member(e: &MatrixError) -> bool {
    e.status() == Some(403) && e.message().contains("already in the room")
}

fn int(levels: &Map<String, Value>, key: &str, default: i64) -> i64 {
    levels.get(key).and_then(Value::as_i64).unwrap_or(default)
}

fn user_level(levels: &Map<String, Value>, user_id: &str) -> i64 {
    levels
        .get("users")
        .and_then(|u| u.get(user_id))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| int(levels, "users_default", 0))
}

/// Whether posting needs a moderator: `events_default ≥ 50`, for an archived room as it will
/// be once unarchived.
fn read_only_of(levels: &Map<String, Value>) -> bool {
    match levels.get(ARCHIVE_KEY).and_then(Value::as_object) {
        Some(saved) => int(saved, "events_default", 0) >= MODERATOR_LEVEL,
        None => int(levels, "events_default", 0) >= MODERATOR_LEVEL,
    }
}

/// Applies moderator grants/revocations to a power-levels document. Creators (v12: above
/// every level, and rejected in `users`), the bot and users at 100 or more are never touched;
/// a grant keeps a higher level (Moodle's older 51 included).
fn apply_moderators(
    levels: &mut Map<String, Value>,
    changes: &[(String, bool)],
    bot: &str,
    creators: &[String],
) {
    let users_default = int(levels, "users_default", 0);
    let users = levels
        .entry("users")
        .or_insert_with(|| Value::Object(Map::new()));
    if !users.is_object() {
        *users = Value::Object(Map::new());
    }
    let Some(users) = users.as_object_mut() else {
        return;
    };
    for (user_id, moderator) in changes {
        if user_id == bot || creators.contains(user_id) {
            continue;
        }
        let level = users
            .get(user_id)
            .and_then(Value::as_i64)
            .unwrap_or(users_default);
        if level >= OWNER_LEVEL {
            continue;
        }
        if *moderator && level < MODERATOR_LEVEL {
            users.insert(user_id.clone(), json!(MODERATOR_LEVEL));
        } else if !*moderator && level >= MODERATOR_LEVEL {
            if users_default < MODERATOR_LEVEL {
                users.remove(user_id);
            } else {
                users.insert(user_id.clone(), json!(0));
            }
        }
    }
}

#[async_trait]
impl ChatBackend for MatrixBackend {
    fn backend_name(&self) -> &'static str {
        "matrix"
    }

    fn bot_username(&self) -> &str {
        &self.bot_localpart
    }

    /// Everything this backend does goes through Synapse's admin API or needs the rights it
    /// gives (force-join, account creation, room details and purge): one requirement.
    async fn missing_capabilities(
        &self,
        needed: &[Capability],
    ) -> ChatResult<Vec<(Capability, String)>> {
        let admin = match self.client.user(&self.bot_user_id).await {
            Ok(u) => u.is_some_and(|u| u.admin),
            Err(e) if e.status() == Some(403) => false,
            Err(e) => return Err(e.into()),
        };
        if admin {
            return Ok(Vec::new());
        }
        Ok(needed
            .iter()
            .map(|c| {
                (
                    *c,
                    format!(
                        "Synapse server admin ({} with admin: true)",
                        self.bot_user_id
                    ),
                )
            })
            .collect())
    }

    fn validate_username(&self, username: &str) -> ChatResult<()> {
        self.user_id_of(username).map(drop)
    }

    async fn find_user(&self, username: &str) -> ChatResult<Option<ChatUser>> {
        let Ok(user_id) = self.user_id_of(username) else {
            return Ok(None);
        };
        Ok(self.client.user(&user_id).await?.map(|u| ChatUser {
            username: ids::username_of(&u.name, &self.server_name),
            id: u.name,
            active: !u.deactivated,
        }))
    }

    /// An account without a password (users sign in through the site's SSO, whose
    /// `allow_existing_users` links it by localpart): the PUT is an upsert, so an existing
    /// account is refused first, and a PUT that found one after all lost a race.
    async fn create_user(&self, user: &NewChatUser) -> ChatResult<ChatUser> {
        let user_id = self.user_id_of(&user.username)?;
        let conflict = || ChatError::Conflict {
            endpoint: "admin.users.put".into(),
            code: "M_USER_IN_USE".into(),
            message: format!("{user_id} exists"),
        };
        if self.client.user(&user_id).await?.is_some() {
            return Err(conflict());
        }
        if !self
            .client
            .put_user(&user_id, &user.name, &user.email)
            .await?
        {
            return Err(conflict());
        }
        Ok(ChatUser {
            username: ids::username_of(&user_id, &self.server_name),
            id: user_id,
            active: true,
        })
    }

    async fn room_by_id(&self, room_id: &str) -> ChatResult<Option<Room>> {
        let Some(details) = self.client.room_details(room_id).await? else {
            return Ok(None);
        };
        let levels = match self.levels(&details.room_id).await {
            Ok(l) => l,
            Err(ChatError::RoomNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let name = details
            .name
            .or_else(|| details.canonical_alias.clone())
            .unwrap_or_default();
        Ok(Some(Room {
            id: details.room_id,
            name,
            archived: levels.contains_key(ARCHIVE_KEY),
            read_only: read_only_of(&levels),
        }))
    }

    async fn room_by_name(&self, name: &str) -> ChatResult<Option<Room>> {
        match self.client.resolve_alias(&self.alias_of(name)).await? {
            Some(room_id) => self.room_by_id(&room_id).await,
            None => Ok(None),
        }
    }

    async fn create_room(&self, room: &NewRoom) -> ChatResult<Room> {
        let mut initial_state = vec![
            // Members read the whole history, also from before they joined.
            json!({"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}}),
            json!({"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}}),
        ];
        if let Some(days) = room.retention_days {
            initial_state.push(json!({"type": "m.room.retention", "state_key": "",
                "content": {"max_lifetime": u64::from(days) * 86_400_000}}));
        }
        let body = json!({
            "name": room.name,
            "room_alias_name": ids::alias_localpart(&room.name),
            "preset": "private_chat",
            "visibility": "private",
            "initial_state": initial_state,
            // Only moderators invite (private_chat lets everyone); read-only from the start.
            "power_level_content_override": {
                "invite": MODERATOR_LEVEL,
                "events_default": if room.read_only { MODERATOR_LEVEL } else { 0 },
            },
        });
        let room_id = self.client.create_room(body).await?;
        self.creators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(room_id.clone(), Arc::new(vec![self.bot_user_id.clone()]));
        Ok(Room {
            id: room_id,
            name: room.name.clone(),
            archived: false,
            read_only: room.read_only,
        })
    }

    /// `joined_members` (one answer for any size) plus the power levels and the creator.
    async fn list_members(&self, room_id: &str) -> ChatResult<Vec<RoomMember>> {
        let joined = self
            .client
            .joined_members(room_id)
            .await
            .map_err(|e| room_error(e, room_id))?;
        let levels = self.levels(room_id).await?;
        let creators = self.room_creators(room_id).await?;
        Ok(joined
            .into_iter()
            .map(|user_id| {
                let creator = creators.contains(&user_id);
                let level = user_level(&levels, &user_id);
                RoomMember {
                    username: ids::username_of(&user_id, &self.server_name),
                    moderator: !creator && level >= MODERATOR_LEVEL,
                    owner: creator || level >= OWNER_LEVEL,
                    user_id,
                }
            })
            .collect())
    }

    /// Force-joins (or invites) each user, a few at a time: Synapse has no batch call and
    /// serialises a room's events anyway. Names the grammar rejects and accounts that do
    /// not exist are reported as unknown.
    async fn add_members(
        &self,
        room_id: &str,
        usernames: &[String],
    ) -> ChatResult<AddMembersOutcome> {
        let mut unknown = Vec::new();
        let mut seen = HashSet::new();
        let mut todo = Vec::new();
        for name in usernames {
            if name.trim().is_empty() {
                continue;
            }
            match self.user_id_of(name) {
                Ok(id) if seen.insert(id.clone()) => todo.push((name.clone(), id)),
                Ok(_) => {}
                Err(_) => unknown.push(name.clone()),
            }
        }
        let mode = self.client.config().membership;
        let per_user = match mode {
            Membership::Join => 1,
            Membership::Invite => 2,
        };
        let calls = (todo.len() * per_user) as u32;
        let results: Vec<(String, ChatResult<bool>)> = stream::iter(todo)
            .map(|(name, id)| async move {
                let r = match mode {
                    Membership::Join => self.join_one(room_id, &id).await,
                    Membership::Invite => self.invite_one(room_id, &id).await,
                };
                (name, r)
            })
            .buffer_unordered(self.client.config().room_concurrency.max(1))
            .collect()
            .await;
        for (name, r) in results {
            if !r? {
                unknown.push(name);
            }
        }
        Ok(AddMembersOutcome { calls, unknown })
    }

    async fn remove_member(&self, room_id: &str, username: &str) -> ChatResult<()> {
        let Ok(user_id) = self.user_id_of(username) else {
            return Ok(()); // no account can have that name
        };
        if user_id == self.bot_user_id {
            tracing::warn!(room_id, "refusing to remove the bot from a room it manages");
            return Ok(());
        }
        match self.client.kick(room_id, &user_id).await {
            Ok(()) => Ok(()),
            // M_FORBIDDEN also means "no power" and "bot not in the room", and messages are
            // not API: the member's state decides.
            Err(e) if e.status() == Some(403) => {
                match self.client.membership(room_id, &user_id).await {
                    Ok(Some(m)) if m == "join" || m == "invite" => Err(room_error(e, room_id)),
                    Ok(_) => Ok(()),
                    Err(e2) => Err(room_error(e2, room_id)),
                }
            }
            Err(e) => Err(room_error(e, room_id)),
        }
    }

    async fn set_moderator(
        &self,
        room_id: &str,
        username: &str,
        moderator: bool,
    ) -> ChatResult<()> {
        self.set_moderators(room_id, &[(username.to_owned(), moderator)])
            .await
    }

    fn moderators_in_one_write(&self) -> bool {
        true
    }

    /// One read-modify-write of `m.room.power_levels` for the whole batch (its PUT replaces
    /// the whole content), skipped when nothing changes.
    async fn set_moderators(&self, room_id: &str, changes: &[(String, bool)]) -> ChatResult<()> {
        let mut by_id = Vec::with_capacity(changes.len());
        for (name, m) in changes {
            by_id.push((self.user_id_of(name)?, *m));
        }
        if by_id.is_empty() {
            return Ok(());
        }
        let bot = self.bot_user_id.clone();
        self.modify_levels(room_id, |levels, creators| {
            apply_moderators(levels, &by_id, &bot, creators)
        })
        .await
    }

    /// Archived (decision 0012): posting, state changes, invites, kicks, bans and redactions
    /// need level 100, the replaced levels are kept under [`ARCHIVE_KEY`] in the same write.
    async fn archive_room(&self, room_id: &str) -> ChatResult<()> {
        self.modify_levels(room_id, |levels, _| {
            if levels.contains_key(ARCHIVE_KEY) {
                return;
            }
            let mut saved = Map::new();
            for (field, _) in ARCHIVED_FIELDS {
                if let Some(v) = levels.get(field) {
                    saved.insert(field.to_owned(), v.clone());
                }
                levels.insert(field.to_owned(), json!(OWNER_LEVEL));
            }
            levels.insert(ARCHIVE_KEY.to_owned(), Value::Object(saved));
        })
        .await
    }

    async fn unarchive_room(&self, room_id: &str) -> ChatResult<()> {
        self.modify_levels(room_id, |levels, _| {
            let Some(saved) = levels.remove(ARCHIVE_KEY) else {
                return;
            };
            for (field, default) in ARCHIVED_FIELDS {
                let v = saved.get(field).cloned().unwrap_or(json!(default));
                levels.insert(field.to_owned(), v);
            }
        })
        .await
    }

    /// `events_default` 50 or 0; in an archived room the saved level, which the unarchive
    /// restores.
    async fn set_read_only(&self, room_id: &str, read_only: bool) -> ChatResult<()> {
        let level = if read_only { MODERATOR_LEVEL } else { 0 };
        self.modify_levels(room_id, |levels, _| {
            match levels.get_mut(ARCHIVE_KEY).and_then(Value::as_object_mut) {
                Some(saved) => {
                    saved.insert("events_default".into(), json!(level));
                }
                None => {
                    levels.insert("events_default".into(), json!(level));
                }
            }
        })
        .await
    }

    /// Synapse's history purge up to `latest` (a course reset), local users' messages
    /// included, waited for like a delete. Synapse keeps the room's state and its newest
    /// event whatever the time.
    async fn clean_history(&self, room_id: &str, latest: DateTime<Utc>) -> ChatResult<()> {
        let purge_id = self
            .client
            .purge_history(room_id, latest)
            .await
            .map_err(|e| room_error(e, room_id))?;
        let started = Instant::now();
        let timeout = self.client.config().delete_timeout;
        loop {
            match self.client.purge_history_status(&purge_id).await?.as_str() {
                "complete" => return self.redact_purge_boundary(room_id, latest).await,
                "failed" => {
                    return Err(ChatError::Transient {
                        endpoint: "admin.purge_history_status".into(),
                        message: format!("Synapse's history purge of {room_id} failed"),
                    })
                }
                _ if started.elapsed() >= timeout => {
                    return Err(ChatError::Transient {
                        endpoint: "admin.purge_history_status".into(),
                        message: format!(
                            "the history purge of {room_id} is still running after {timeout:?}"
                        ),
                    })
                }
                _ => tokio::time::sleep(DELETE_POLL).await,
            }
        }
    }

    /// Synapse's room delete with purge (it kicks every member first), waited for: the
    /// task is asynchronous. A repeat while it runs waits for the running task.
    async fn delete_room(&self, room_id: &str) -> ChatResult<()> {
        let started = Instant::now();
        let timeout = self.client.config().delete_timeout;
        let pending = || ChatError::Transient {
            endpoint: "admin.rooms.delete_status".into(),
            message: format!("the purge of {room_id} is still running after {timeout:?}"),
        };
        match self.client.delete_room(room_id).await {
            Ok(delete_id) => loop {
                match self.client.delete_status(&delete_id).await?.as_str() {
                    "complete" => break,
                    "failed" => {
                        return Err(ChatError::Transient {
                            endpoint: "admin.rooms.delete_status".into(),
                            message: format!("Synapse's purge of {room_id} failed"),
                        })
                    }
                    _ if started.elapsed() >= timeout => return Err(pending()),
                    _ => tokio::time::sleep(DELETE_POLL).await,
                }
            },
            Err(e) if e.status() == Some(400) && e.message().contains("already in progress") => {
                loop {
                    let statuses = self.client.room_delete_statuses(room_id).await?;
                    if !statuses.iter().any(|s| s == "active" || s == "scheduled") {
                        break;
                    }
                    if started.elapsed() >= timeout {
                        return Err(pending());
                    }
                    tokio::time::sleep(DELETE_POLL).await;
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.creators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(room_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn moderator_changes_never_touch_creators_the_bot_or_owners() {
        let mut levels = obj(json!({
            "users": {"@old:s": 51, "@admin:s": 100, "@bot:s": 100},
            "users_default": 0, "events_default": 0
        }));
        let changes = vec![
            ("@a:s".to_owned(), true),
            ("@old:s".to_owned(), true),
            ("@admin:s".to_owned(), false),
            ("@bot:s".to_owned(), false),
            ("@creator:s".to_owned(), true),
            ("@b:s".to_owned(), false),
        ];
        apply_moderators(&mut levels, &changes, "@bot:s", &["@creator:s".to_owned()]);
        assert_eq!(
            levels["users"],
            json!({"@a:s": 50, "@old:s": 51, "@admin:s": 100, "@bot:s": 100})
        );
        apply_moderators(&mut levels, &[("@old:s".to_owned(), false)], "@bot:s", &[]);
        assert!(levels["users"].get("@old:s").is_none());
        // The rest of the document is kept: the PUT replaces it whole.
        assert_eq!(levels["events_default"], json!(0));
    }

    #[test]
    fn read_only_of_an_archived_room_is_the_saved_level() {
        assert!(read_only_of(&obj(json!({"events_default": 50}))));
        assert!(!read_only_of(&obj(json!({}))));
        assert!(!read_only_of(&obj(
            json!({"events_default": 100, ARCHIVE_KEY: {"events_default": 0}})
        )));
        assert!(read_only_of(&obj(
            json!({"events_default": 100, ARCHIVE_KEY: {"events_default": 50}})
        )));
    }
}
