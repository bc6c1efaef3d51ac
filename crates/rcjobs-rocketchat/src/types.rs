//! Typed shapes of the Rocket.Chat answers the client reads. Unknown fields are ignored and
//! optional ones defaulted, because they vary across server versions 3.x–8.x.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A server version as `info` reports it (`6.5.0`, `7.10.1-rc.0`, `3.18.3`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
    /// Pre-release / build suffix, if any.
    pub suffix: Option<String>,
}

impl ServerVersion {
    /// Parses `MAJOR[.MINOR[.PATCH]][-suffix|+suffix]`, tolerating a leading `v`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_start_matches(['v', 'V']);
        let (core, suffix) = match text.find(['-', '+']) {
            Some(i) => (&text[..i], Some(text[i + 1..].to_owned())),
            None => (text, None),
        };
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        let patch = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        Some(ServerVersion {
            major,
            minor,
            patch,
            suffix: suffix.filter(|s| !s.is_empty()),
        })
    }

    /// Whether `groups.invite` takes `userIds`/`usernames` lists: yes from 4.0, no up to
    /// 3.6 (issue #18880), unknown in between (the exact release is not documented).
    pub fn batch_invite(&self) -> Option<bool> {
        match (self.major, self.minor) {
            (m, _) if m >= 4 => Some(true),
            (3, n) if n >= 13 => Some(true),
            (3, n) if n <= 6 => Some(false),
            (m, _) if m < 3 => Some(false),
            _ => None,
        }
    }

    /// Whether `rooms.saveRoomSettings` keeps the other retention fields when
    /// `retentionOverrideGlobal` is in the same payload (7.x and later).
    pub fn retention_in_one_call(&self) -> bool {
        self.major >= 7
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(s) = &self.suffix {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

/// A user record (`users.info`, `users.create`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// `_id`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Login name (absent for some system/app users).
    #[serde(default)]
    pub username: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Deactivated accounts have `false`.
    #[serde(default = "default_true", deserialize_with = "null_as_true")]
    pub active: bool,
    /// Global roles.
    #[serde(default)]
    pub roles: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn null_as_true<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// Some server versions send `null` for unset flags.
fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// The creator/owner stub inside a room (`u`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    /// `_id`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Login name.
    #[serde(default)]
    pub username: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Retention settings stored on a room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRetention {
    /// Retention on for this room.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Days (a JSON number; servers store it as sent, possibly fractional).
    #[serde(default)]
    pub max_age: Option<f64>,
    /// Keep pinned messages.
    #[serde(default)]
    pub exclude_pinned: Option<bool>,
    /// Prune files only.
    #[serde(default)]
    pub files_only: Option<bool>,
    /// Leave threads alone.
    #[serde(default)]
    pub ignore_threads: Option<bool>,
    /// Override the global policy.
    #[serde(default)]
    pub override_global: Option<bool>,
}

/// A private group (`groups.info`, `groups.create`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// `_id`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Unique name.
    #[serde(default)]
    pub name: Option<String>,
    /// Display name.
    #[serde(default)]
    pub fname: Option<String>,
    /// Room type (`p` for groups).
    #[serde(default)]
    pub t: Option<String>,
    /// Read-only flag (`ro`).
    #[serde(default, deserialize_with = "null_as_false")]
    pub ro: bool,
    /// Archived flag.
    #[serde(default, deserialize_with = "null_as_false")]
    pub archived: bool,
    /// Member count.
    #[serde(default, rename = "usersCount")]
    pub users_count: Option<u64>,
    /// Creator.
    #[serde(default)]
    pub u: Option<UserRef>,
    /// Retention settings, when set.
    #[serde(default)]
    pub retention: Option<RoomRetention>,
}

/// One entry of `groups.members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `_id`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Login name.
    #[serde(default)]
    pub username: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// One page of `groups.members`.
#[derive(Debug, Clone, Deserialize)]
pub struct MembersPage {
    /// Members on this page.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Entries on this page.
    #[serde(default)]
    pub count: Option<u64>,
    /// Offset requested.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Total members (active only).
    #[serde(default)]
    pub total: Option<u64>,
}

/// One entry of `groups.roles`: a member holding room-scoped roles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoomRole {
    /// The user.
    pub u: UserRef,
    /// `owner`, `moderator`, `leader`.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Room retention policy, as sent to `rooms.saveRoomSettings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Turn retention on (`true`) or off.
    pub enabled: bool,
    /// Override the global policy with this room's values.
    pub override_global: bool,
    /// Maximum message age in days.
    pub max_age_days: u32,
    /// Keep pinned messages.
    pub exclude_pinned: bool,
    /// Prune files only, keep messages.
    pub files_only: bool,
    /// Leave threads alone.
    pub ignore_threads: bool,
}

impl RetentionSettings {
    /// Retention on, overriding the global policy, pruning messages older than `days`.
    pub fn days(days: u32) -> Self {
        RetentionSettings {
            enabled: true,
            override_global: true,
            max_age_days: days,
            exclude_pinned: false,
            files_only: false,
            ignore_threads: false,
        }
    }
}

/// Who to invite in one `groups.invite` call.
#[derive(Debug, Clone, Copy)]
pub enum Invitees<'a> {
    /// One user by id (`userId`): works on every server version.
    UserId(&'a str),
    /// One user by username (`username`): works on every server version.
    Username(&'a str),
    /// Several users by id (`userIds`): 4.x and later.
    UserIds(&'a [String]),
    /// Several users by username, matched case-insensitively (`usernames`): 4.x and later.
    Usernames(&'a [String]),
}

/// Who a single-user room call targets.
#[derive(Debug, Clone, Copy)]
pub enum UserSel<'a> {
    /// By `_id`.
    Id(&'a str),
    /// By username (case-insensitive on the server).
    Username(&'a str),
}

/// Which room a call targets.
#[derive(Debug, Clone, Copy)]
pub enum RoomSel<'a> {
    /// By `_id` (`roomId`).
    Id(&'a str),
    /// By name (`roomName`).
    Name(&'a str),
}

/// A user to create with `users.create`.
#[derive(Clone)]
pub struct CreateUser<'a> {
    /// Login name.
    pub username: &'a str,
    /// Display name.
    pub name: &'a str,
    /// E-mail address.
    pub email: &'a str,
    /// Initial password (never logged).
    pub password: &'a str,
}

impl fmt::Debug for CreateUser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateUser")
            .field("username", &self.username)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let v = ServerVersion::parse("6.5.0").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (6, 5, 0));
        let v = ServerVersion::parse("v7.10.1-rc.0").unwrap();
        assert_eq!(v.suffix.as_deref(), Some("rc.0"));
        assert_eq!(v.to_string(), "7.10.1-rc.0");
        assert_eq!(ServerVersion::parse("3.18").unwrap().patch, 0);
        assert!(ServerVersion::parse("").is_none());
        assert!(ServerVersion::parse("abc").is_none());
        assert!(ServerVersion::parse("6.x").is_none());
        assert!(ServerVersion::parse("6.5.0").unwrap() < ServerVersion::parse("6.10.0").unwrap());
    }

    #[test]
    fn batch_invite_by_version() {
        let b = |s: &str| ServerVersion::parse(s).unwrap().batch_invite();
        assert_eq!(b("8.5.0"), Some(true));
        assert_eq!(b("4.0.0"), Some(true));
        assert_eq!(b("3.13.0"), Some(true));
        assert_eq!(b("3.9.1"), None);
        assert_eq!(b("3.6.3"), Some(false));
        assert_eq!(b("2.4.0"), Some(false));
        assert!(!ServerVersion::parse("6.12.0")
            .unwrap()
            .retention_in_one_call());
        assert!(ServerVersion::parse("7.0.0")
            .unwrap()
            .retention_in_one_call());
    }

    #[test]
    fn decodes_group_with_missing_fields() {
        let g: Group =
            serde_json::from_str(r#"{"_id":"abc","name":"x","t":"p","extra":1}"#).unwrap();
        assert!(!g.ro && !g.archived);
        let g: Group = serde_json::from_str(
            r#"{"_id":"abc","ro":null,"archived":true,"retention":{"enabled":true,"maxAge":30.0}}"#,
        )
        .unwrap();
        assert!(!g.ro && g.archived);
        assert_eq!(g.retention.unwrap().max_age, Some(30.0));
        let u: User = serde_json::from_str(r#"{"_id":"u1","username":"a"}"#).unwrap();
        assert!(u.active);
    }
}
