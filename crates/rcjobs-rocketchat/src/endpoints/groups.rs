//! `groups.*`: private groups, their members and room-scoped roles.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::client::{Call, RcResult, RocketChatClient};
use crate::error::RocketChatError;
use crate::types::{Group, Invitees, Member, MembersPage, RoomRole, RoomSel, UserRef, UserSel};

/// Page size when the server will not list everything at once (its cap is 100).
const PAGE: u64 = 100;

fn room_body(room_id: &str) -> Value {
    json!({ "roomId": room_id })
}

fn room_user_body(room_id: &str, user: UserSel<'_>) -> Value {
    match user {
        UserSel::Id(id) => json!({ "roomId": room_id, "userId": id }),
        UserSel::Username(name) => json!({ "roomId": room_id, "username": name }),
    }
}

fn room_query(room: RoomSel<'_>) -> (&'static str, String) {
    match room {
        RoomSel::Id(id) => ("roomId", id.to_owned()),
        RoomSel::Name(name) => ("roomName", name.to_owned()),
    }
}

/// True when a batch `groups.invite` was refused because the server only knows the
/// single-user form (≤3.6: `getUserFromParams` finds no `userId`/`username`; some builds
/// crash on the array with a JavaScript TypeError).
pub(crate) fn is_batch_unsupported(err: &RocketChatError) -> bool {
    match err {
        RocketChatError::Api {
            status: 400,
            error_type,
            message,
            ..
        } => {
            error_type.as_deref() == Some("error-user-param-not-provided")
                || message.contains("is not a function")
        }
        _ => false,
    }
}

impl RocketChatClient {
    /// `POST groups.create` with the bot as owner. `members` are usernames (unknown ones are
    /// skipped by the server). A taken name gives `error-duplicate-channel-name`.
    pub async fn groups_create(
        &self,
        name: &str,
        read_only: bool,
        members: &[String],
    ) -> RcResult<Group> {
        let body = json!({ "name": name, "readOnly": read_only, "members": members });
        self.call_field(Call::post("groups.create", body), "group")
            .await
    }

    /// `GET groups.info` by id or name. The bot must be a member, else `error-room-not-found`.
    pub async fn groups_info(&self, room: RoomSel<'_>) -> RcResult<Group> {
        self.call_field(Call::get("groups.info", vec![room_query(room)]), "group")
            .await
    }

    /// `GET groups.members` for one page (`count = 0` asks for everything).
    pub async fn groups_members_page(
        &self,
        room_id: &str,
        offset: u64,
        count: u64,
    ) -> RcResult<MembersPage> {
        self.call(Call::get(
            "groups.members",
            vec![
                ("roomId", room_id.to_owned()),
                ("offset", offset.to_string()),
                ("count", count.to_string()),
            ],
        ))
        .await
    }

    /// Every active member: one `count=0` call when the server allows unlimited counts,
    /// otherwise pages of 100 until `total`, de-duplicated by id (the server's sort starts
    /// with connection status, so entries can move between pages while we read). The
    /// server's answer about `count=0` is remembered.
    pub async fn groups_members_all(&self, room_id: &str) -> RcResult<Vec<Member>> {
        self.members_all_counted(room_id).await.map(|(m, _)| m)
    }

    /// [`Self::groups_members_all`] plus the number of calls it took.
    pub(crate) async fn members_all_counted(&self, room_id: &str) -> RcResult<(Vec<Member>, u32)> {
        let mut calls = 0u32;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut push = |members: Vec<Member>, out: &mut Vec<Member>| {
            for m in members {
                if seen.insert(m.id.clone()) {
                    out.push(m);
                }
            }
        };
        let mut offset = 0u64;
        let mut total;
        if self.inner.infinite_count.get() != Some(false) {
            calls += 1;
            let page = self.groups_members_page(room_id, 0, 0).await?;
            let got = page.members.len() as u64;
            total = page.total.unwrap_or(got);
            push(page.members, &mut out);
            if got >= total {
                self.inner.infinite_count.set(true);
                return Ok((out, calls));
            }
            tracing::debug!(
                room_id,
                got,
                total,
                "count=0 was capped; paging groups.members"
            );
            self.inner.infinite_count.set(false);
            offset = got;
        } else {
            calls += 1;
            let page = self.groups_members_page(room_id, 0, PAGE).await?;
            total = page.total.unwrap_or(0);
            offset += page.members.len() as u64;
            let empty = page.members.is_empty();
            push(page.members, &mut out);
            if empty {
                return Ok((out, calls));
            }
        }
        // Bounded: a few pages beyond what `total` implies, in case it grows while we read.
        let max_pages = total / PAGE + 5;
        for _ in 0..max_pages {
            if offset >= total {
                break;
            }
            calls += 1;
            let page = self.groups_members_page(room_id, offset, PAGE).await?;
            if page.members.is_empty() {
                break;
            }
            offset += page.members.len() as u64;
            if let Some(t) = page.total {
                total = t;
            }
            push(page.members, &mut out);
        }
        Ok((out, calls))
    }

    /// `GET groups.moderators`.
    pub async fn groups_moderators(&self, room_id: &str) -> RcResult<Vec<UserRef>> {
        self.call_field(
            Call::get("groups.moderators", vec![("roomId", room_id.to_owned())]),
            "moderators",
        )
        .await
    }

    /// `GET groups.roles`: every member holding a room role (owner, moderator, leader).
    pub async fn groups_roles(&self, room_id: &str) -> RcResult<Vec<RoomRole>> {
        self.call_field(
            Call::get("groups.roles", vec![("roomId", room_id.to_owned())]),
            "roles",
        )
        .await
    }

    /// `POST groups.invite`. Already-members are fine (200); unknown users in a list are
    /// skipped; a list with no known user gives `error-empty-invite-list`. The list forms
    /// need a 4.x+ server (see [`crate::types::ServerVersion::batch_invite`]).
    pub async fn groups_invite(&self, room_id: &str, who: Invitees<'_>) -> RcResult<()> {
        let body = match who {
            Invitees::UserId(id) => json!({ "roomId": room_id, "userId": id }),
            Invitees::Username(name) => json!({ "roomId": room_id, "username": name }),
            Invitees::UserIds(ids) => json!({ "roomId": room_id, "userIds": ids }),
            Invitees::Usernames(names) => json!({ "roomId": room_id, "usernames": names }),
        };
        self.execute(&Call::post("groups.invite", body))
            .await
            .map(drop)
    }

    /// `POST groups.kick`. A non-member gives `error-user-not-in-room`.
    pub async fn groups_kick(&self, room_id: &str, user: UserSel<'_>) -> RcResult<()> {
        self.execute(&Call::post("groups.kick", room_user_body(room_id, user)))
            .await
            .map(drop)
    }

    /// `POST groups.addModerator`. Twice gives `error-user-already-moderator`.
    pub async fn groups_add_moderator(&self, room_id: &str, user: UserSel<'_>) -> RcResult<()> {
        self.execute(&Call::post(
            "groups.addModerator",
            room_user_body(room_id, user),
        ))
        .await
        .map(drop)
    }

    /// `POST groups.removeModerator`. A non-moderator gives `error-user-not-moderator`.
    pub async fn groups_remove_moderator(&self, room_id: &str, user: UserSel<'_>) -> RcResult<()> {
        self.execute(&Call::post(
            "groups.removeModerator",
            room_user_body(room_id, user),
        ))
        .await
        .map(drop)
    }

    /// `POST groups.addOwner`. Twice gives `error-user-already-owner`.
    pub async fn groups_add_owner(&self, room_id: &str, user: UserSel<'_>) -> RcResult<()> {
        self.execute(&Call::post(
            "groups.addOwner",
            room_user_body(room_id, user),
        ))
        .await
        .map(drop)
    }

    /// `POST groups.archive`. Twice gives `error-room-archived`.
    pub async fn groups_archive(&self, room_id: &str) -> RcResult<()> {
        self.execute(&Call::post("groups.archive", room_body(room_id)))
            .await
            .map(drop)
    }

    /// `POST groups.unarchive` (lenient on active rooms; needs admin by default).
    pub async fn groups_unarchive(&self, room_id: &str) -> RcResult<()> {
        self.execute(&Call::post("groups.unarchive", room_body(room_id)))
            .await
            .map(drop)
    }

    /// `POST groups.setReadOnly`. The current value gives a plain "same as" error.
    pub async fn groups_set_read_only(&self, room_id: &str, read_only: bool) -> RcResult<()> {
        let body = json!({ "roomId": room_id, "readOnly": read_only });
        self.execute(&Call::post("groups.setReadOnly", body))
            .await
            .map(drop)
    }

    /// `POST groups.delete`. Twice gives `error-room-not-found`.
    pub async fn groups_delete(&self, room_id: &str) -> RcResult<()> {
        self.execute(&Call::post("groups.delete", room_body(room_id)))
            .await
            .map(drop)
    }

    /// `POST groups.rename` (same name: no-op 200).
    pub async fn groups_rename(&self, room_id: &str, new_name: &str) -> RcResult<Group> {
        let body = json!({ "roomId": room_id, "name": new_name });
        self.call_field(Call::post("groups.rename", body), "group")
            .await
    }
}
