//! The in-memory server state: users, rooms and subscriptions, with the indexes that keep
//! every request O(1) or O(log n) (by id, by lowercase username, by room name, sorted members).

use crate::ids::{random_id, random_secret};
use crate::perms::Grants;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};

/// ISO-8601 with milliseconds and `Z`, as the REST API prints dates.
pub(crate) fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A user account.
pub(crate) struct User {
    pub id: String,
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub password: Option<String>,
    pub tokens: HashSet<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Rooms the user is subscribed to (Rocket.Chat's `__rooms`).
    pub rooms: HashSet<String>,
    pub kind: &'static str,
    pub require_password_change: bool,
    pub nickname: Option<String>,
    pub bio: Option<String>,
}

impl User {
    /// `{address, verified}` list.
    pub fn emails_json(&self) -> Value {
        match &self.email {
            Some(e) => json!([{ "address": e, "verified": false }]),
            None => json!([]),
        }
    }

    /// The `u` object rooms and subscriptions embed.
    pub fn brief(&self) -> Value {
        json!({ "_id": self.id, "username": self.username, "name": self.name })
    }
}

/// Room retention settings (`room.retention`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Retention {
    /// `retention.enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `retention.maxAge` in days.
    #[serde(rename = "maxAge", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<f64>,
    /// `retention.excludePinned`.
    #[serde(rename = "excludePinned", skip_serializing_if = "Option::is_none")]
    pub exclude_pinned: Option<bool>,
    /// `retention.filesOnly`.
    #[serde(rename = "filesOnly", skip_serializing_if = "Option::is_none")]
    pub files_only: Option<bool>,
    /// `retention.ignoreThreads`.
    #[serde(rename = "ignoreThreads", skip_serializing_if = "Option::is_none")]
    pub ignore_threads: Option<bool>,
    /// `retention.overrideGlobal`.
    #[serde(rename = "overrideGlobal", skip_serializing_if = "Option::is_none")]
    pub override_global: Option<bool>,
}

/// A subscription (membership) of one user in one room.
pub(crate) struct Sub {
    pub id: String,
    pub ts: DateTime<Utc>,
    pub roles: Vec<String>,
}

/// A room (the simulator only creates private groups, `t: "p"`).
pub(crate) struct Room {
    pub id: String,
    pub name: String,
    pub fname: String,
    pub t: String,
    pub ro: bool,
    /// `None` until first archived (the field is absent on never-archived rooms).
    pub archived: Option<bool>,
    pub broadcast: bool,
    pub encrypted: bool,
    pub custom_fields: Value,
    pub creator: Value,
    pub ts: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub msgs: u64,
    pub retention: Option<Retention>,
    pub sys_mes: bool,
    pub react_when_ro: bool,
    pub topic: Option<String>,
    pub description: Option<String>,
    pub announcement: Option<String>,
    pub default: bool,
    pub featured: bool,
    pub subs: HashMap<String, Sub>,
    /// `(username, user id)` of every subscriber, in `groups.members` order.
    pub sorted: BTreeSet<(String, String)>,
    /// The same for active users only: `groups.members` pages straight from it.
    pub active_sorted: BTreeSet<(String, String)>,
    pub owners: BTreeSet<String>,
    pub moderators: BTreeSet<String>,
    /// Timestamps (ms) of the messages in the room: system messages the simulator posts.
    pub messages: Vec<i64>,
}

impl Room {
    /// Whether the room is archived now.
    pub fn is_archived(&self) -> bool {
        self.archived == Some(true)
    }

    /// The `group` object: the room document minus `joinCode`, `members`, `importIds`, `e2e`.
    pub fn json(&self) -> Value {
        let mut g = json!({
            "_id": self.id,
            "name": self.name,
            "fname": self.fname,
            "t": self.t,
            "msgs": self.msgs,
            "usersCount": self.subs.len(),
            "u": self.creator,
            "customFields": self.custom_fields,
            "broadcast": self.broadcast,
            "encrypted": self.encrypted,
            "ts": iso(&self.ts),
            "ro": self.ro,
            "default": self.default,
            "sysMes": self.sys_mes,
            "_updatedAt": iso(&self.updated_at),
        });
        if let Some(a) = self.archived {
            g["archived"] = Value::Bool(a);
        }
        if let Some(r) = &self.retention {
            g["retention"] = serde_json::to_value(r).unwrap_or(Value::Null);
        }
        if self.react_when_ro {
            g["reactWhenReadOnly"] = Value::Bool(true);
        }
        if self.featured {
            g["featured"] = Value::Bool(true);
        }
        for (key, val) in [
            ("topic", &self.topic),
            ("description", &self.description),
            ("announcement", &self.announcement),
        ] {
            if let Some(v) = val {
                g[key] = Value::String(v.clone());
            }
        }
        g
    }

    /// Posts one system message (membership, rename, role, archive changes).
    pub fn post_system_message(&mut self, now: DateTime<Utc>) {
        self.msgs += 1;
        self.messages.push(now.timestamp_millis());
        self.updated_at = now;
    }
}

/// Per-endpoint request counters and the recent-request log.
#[derive(Default)]
pub(crate) struct Counters {
    pub by_endpoint: HashMap<String, u64>,
    pub by_status: HashMap<u16, u64>,
    pub rate_limited: u64,
    pub total: u64,
    /// Calls the fault dice turned into a failure (dropped, 500 before or after, slow).
    pub faults: u64,
    pub log: std::collections::VecDeque<Value>,
}

/// How many requests the log keeps.
pub(crate) const REQUEST_LOG_LEN: usize = 1000;

/// Everything behind the state mutex.
pub(crate) struct State {
    pub users: HashMap<String, User>,
    pub by_username: HashMap<String, String>,
    pub by_email: HashMap<String, String>,
    /// `(username, id)` of every user, in `users.list` order.
    pub users_sorted: BTreeSet<(String, String)>,
    pub rooms: HashMap<String, Room>,
    pub room_names: HashMap<String, String>,
    pub rng: StdRng,
    pub grants: Grants,
    pub counters: Counters,
}

/// What `insert_user` needs.
pub(crate) struct NewUser {
    pub id: Option<String>,
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

impl State {
    /// An empty server.
    pub fn new(rng: StdRng) -> Self {
        State {
            users: HashMap::new(),
            by_username: HashMap::new(),
            by_email: HashMap::new(),
            users_sorted: BTreeSet::new(),
            rooms: HashMap::new(),
            room_names: HashMap::new(),
            rng,
            grants: Grants::default(),
            counters: Counters::default(),
        }
    }

    /// A fresh 17-character id.
    pub fn new_id(&mut self) -> String {
        random_id(&mut self.rng)
    }

    /// A fresh 43-character token.
    pub fn new_secret(&mut self) -> String {
        random_secret(&mut self.rng)
    }

    /// User id by username, case-insensitively.
    pub fn user_id_by_username(&self, username: &str) -> Option<&String> {
        self.by_username.get(&username.to_lowercase())
    }

    /// Whether the e-mail address is taken (case-insensitive).
    pub fn email_taken(&self, email: &str) -> bool {
        self.by_email.contains_key(&email.to_lowercase())
    }

    /// Adds a user; the caller has checked the name rules and uniqueness.
    pub fn insert_user(&mut self, n: NewUser) -> String {
        let id = n.id.unwrap_or_else(|| self.new_id());
        let now = Utc::now();
        let kind = if n.roles.iter().any(|r| r == "bot") {
            "bot"
        } else {
            "user"
        };
        let mut tokens = HashSet::new();
        if let Some(t) = n.token {
            tokens.insert(t);
        }
        self.by_username
            .insert(n.username.to_lowercase(), id.clone());
        self.users_sorted.insert((n.username.clone(), id.clone()));
        if let Some(e) = &n.email {
            self.by_email.insert(e.to_lowercase(), id.clone());
        }
        self.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                username: n.username,
                name: n.name,
                email: n.email,
                active: n.active,
                roles: n.roles,
                password: n.password,
                tokens,
                created_at: now,
                updated_at: now,
                rooms: HashSet::new(),
                kind,
                require_password_change: false,
                nickname: None,
                bio: None,
            },
        );
        id
    }

    /// Activates or deactivates a user; deactivating drops every login token.
    pub fn set_active(&mut self, uid: &str, active: bool) {
        let Some(u) = self.users.get_mut(uid) else {
            return;
        };
        if !active {
            u.tokens.clear();
        }
        if u.active == active {
            return;
        }
        u.active = active;
        u.updated_at = Utc::now();
        let key = (u.username.clone(), uid.to_string());
        for rid in &u.rooms {
            if let Some(room) = self.rooms.get_mut(rid) {
                if active {
                    room.active_sorted.insert(key.clone());
                } else {
                    room.active_sorted.remove(&key);
                }
            }
        }
    }

    /// Subscribes a user to a room (no-op if already subscribed). Returns whether it changed.
    pub fn subscribe(&mut self, rid: &str, uid: &str, roles: Vec<String>) -> bool {
        let sub_id = self.new_id();
        let Some(user) = self.users.get_mut(uid) else {
            return false;
        };
        let Some(room) = self.rooms.get_mut(rid) else {
            return false;
        };
        if room.subs.contains_key(uid) {
            return false;
        }
        if roles.iter().any(|r| r == "owner") {
            room.owners.insert(uid.to_string());
        }
        if roles.iter().any(|r| r == "moderator") {
            room.moderators.insert(uid.to_string());
        }
        room.subs.insert(
            uid.to_string(),
            Sub {
                id: sub_id,
                ts: Utc::now(),
                roles,
            },
        );
        room.sorted.insert((user.username.clone(), uid.to_string()));
        if user.active {
            room.active_sorted
                .insert((user.username.clone(), uid.to_string()));
        }
        user.rooms.insert(rid.to_string());
        true
    }

    /// Removes a subscription (and its room roles). Returns whether it changed.
    pub fn unsubscribe(&mut self, rid: &str, uid: &str) -> bool {
        let Some(room) = self.rooms.get_mut(rid) else {
            return false;
        };
        if room.subs.remove(uid).is_none() {
            return false;
        }
        room.owners.remove(uid);
        room.moderators.remove(uid);
        if let Some(user) = self.users.get_mut(uid) {
            let key = (user.username.clone(), uid.to_string());
            room.active_sorted.remove(&key);
            room.sorted.remove(&key);
            user.rooms.remove(rid);
        }
        true
    }

    /// Adds or removes a room role on an existing subscription.
    pub fn set_room_role(&mut self, rid: &str, uid: &str, role: &str, on: bool) {
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        let Some(sub) = room.subs.get_mut(uid) else {
            return;
        };
        if on {
            if !sub.roles.iter().any(|r| r == role) {
                sub.roles.push(role.to_string());
            }
        } else {
            sub.roles.retain(|r| r != role);
        }
        let index = match role {
            "owner" => &mut room.owners,
            "moderator" => &mut room.moderators,
            _ => return,
        };
        if on {
            index.insert(uid.to_string());
        } else {
            index.remove(uid);
        }
    }

    /// Deletes a room with its subscriptions.
    pub fn delete_room(&mut self, rid: &str) {
        if let Some(room) = self.rooms.remove(rid) {
            self.room_names.remove(&room.name);
            for uid in room.subs.keys() {
                if let Some(u) = self.users.get_mut(uid) {
                    u.rooms.remove(rid);
                }
            }
        }
    }

    /// The room roles of `uid` in `rid` (empty if not subscribed).
    pub fn room_roles(&self, rid: &str, uid: &str) -> &[String] {
        self.rooms
            .get(rid)
            .and_then(|r| r.subs.get(uid))
            .map(|s| s.roles.as_slice())
            .unwrap_or(&[])
    }

    /// Whether `uid` is subscribed to `rid`.
    pub fn is_member(&self, rid: &str, uid: &str) -> bool {
        self.rooms
            .get(rid)
            .is_some_and(|r| r.subs.contains_key(uid))
    }
}
