//! Rocket.Chat's default permissions (the ones that matter for the worker) and extra grants.

use crate::model::State;
use std::collections::{HashMap, HashSet};

/// Roles that hold `permission` on a fresh server.
pub(crate) fn default_roles(permission: &str) -> &'static [&'static str] {
    match permission {
        "create-p" => &["admin", "user", "bot", "app"],
        "add-user-to-joined-room" => &["admin", "owner", "moderator"],
        "remove-user" => &["admin", "owner", "moderator"],
        "set-moderator" | "set-owner" => &["admin", "owner"],
        "edit-room" => &["admin", "owner", "moderator"],
        "archive-room" => &["admin", "owner"],
        "delete-p" => &["admin", "owner"],
        "view-broadcast-member-list" => &["admin", "owner", "moderator"],
        "view-d-room" => &["admin", "user", "bot", "app", "guest"],
        "api-bypass-rate-limit" => &["admin", "bot", "app"],
        "create-personal-access-tokens" => &["admin", "user"],
        "edit-room-retention-policy"
        | "unarchive-room"
        | "create-user"
        | "edit-other-user-info"
        | "edit-other-user-active-status"
        | "view-full-other-user-info"
        | "assign-admin-role"
        | "clean-channel-history"
        | "view-room-administration"
        | "view-other-user-channels" => &["admin"],
        // add-user-to-any-p-room, kick-user-from-any-p-room and anything unknown: nobody.
        _ => &[],
    }
}

/// Every permission [`default_roles`] knows, as `permissions.listAll` lists them.
pub(crate) const KNOWN_PERMISSIONS: &[&str] = &[
    "create-p",
    "add-user-to-joined-room",
    "remove-user",
    "set-moderator",
    "set-owner",
    "edit-room",
    "archive-room",
    "delete-p",
    "view-broadcast-member-list",
    "view-d-room",
    "api-bypass-rate-limit",
    "create-personal-access-tokens",
    "edit-room-retention-policy",
    "unarchive-room",
    "create-user",
    "edit-other-user-info",
    "edit-other-user-active-status",
    "view-full-other-user-info",
    "assign-admin-role",
    "clean-channel-history",
    "view-room-administration",
    "view-other-user-channels",
    "add-user-to-any-p-room",
    "kick-user-from-any-p-room",
];

/// Roles a permission can be given to: the server roles plus the room roles.
const ALL_ROLES: &[&str] = &[
    "admin",
    "user",
    "bot",
    "app",
    "guest",
    "anonymous",
    "livechat-agent",
    "owner",
    "moderator",
    "leader",
];

/// Roles a server accepts in `users.create` (`roles` are role ids).
pub(crate) const KNOWN_ROLES: &[&str] = &[
    "admin",
    "user",
    "bot",
    "app",
    "guest",
    "anonymous",
    "livechat-agent",
];

/// Changes to the default permission table (an admin editing roles in the UI).
#[derive(Default)]
pub(crate) struct Grants {
    granted: HashMap<String, HashSet<String>>,
    revoked: HashMap<String, HashSet<String>>,
}

impl Grants {
    /// Gives `role` the `permission`.
    pub fn grant(&mut self, role: &str, permission: &str) {
        if let Some(r) = self.revoked.get_mut(permission) {
            r.remove(role);
        }
        self.granted
            .entry(permission.to_string())
            .or_default()
            .insert(role.to_string());
    }

    /// Takes `permission` away from `role`.
    pub fn revoke(&mut self, role: &str, permission: &str) {
        if let Some(g) = self.granted.get_mut(permission) {
            g.remove(role);
        }
        self.revoked
            .entry(permission.to_string())
            .or_default()
            .insert(role.to_string());
    }

    /// The roles holding `permission` now (defaults with the grants and revocations applied).
    pub fn roles_of(&self, permission: &str) -> Vec<String> {
        ALL_ROLES
            .iter()
            .filter(|r| self.role_has(r, permission))
            .map(|r| r.to_string())
            .collect()
    }

    fn role_has(&self, role: &str, permission: &str) -> bool {
        if self
            .revoked
            .get(permission)
            .is_some_and(|r| r.contains(role))
        {
            return false;
        }
        default_roles(permission).contains(&role)
            || self
                .granted
                .get(permission)
                .is_some_and(|g| g.contains(role))
    }
}

impl State {
    /// `hasPermission(uid, permission, rid?)`: server roles plus, with a room, the
    /// subscription's room roles (owner, moderator, leader).
    pub fn has_permission(&self, uid: &str, permission: &str, rid: Option<&str>) -> bool {
        let Some(user) = self.users.get(uid) else {
            return false;
        };
        if user
            .roles
            .iter()
            .any(|r| self.grants.role_has(r, permission))
        {
            return true;
        }
        match rid {
            Some(rid) => self
                .room_roles(rid, uid)
                .iter()
                .any(|r| self.grants.role_has(r, permission)),
            None => false,
        }
    }
}
