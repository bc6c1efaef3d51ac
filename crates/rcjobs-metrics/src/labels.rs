//! Label values with bounded cardinality.
//!
//! A Prometheus series exists per distinct label set, so one stray job id or room name in a
//! label multiplies storage in every Prometheus that scrapes us. Every label value therefore
//! passes through one of three schemes before it reaches a metric:
//!
//! * **closed enums** ([`JobOutcome`], [`MembershipAction`], [`MembershipFailure`]): the type
//!   system bounds them;
//! * **allowlists** (chat endpoints, as the configured backend lists them; HTTP status
//!   codes): anything not on the list becomes
//!   [`OTHER`] (status codes fold into their class, `2xx`/`4xx`/`5xx`);
//! * **capped open sets** ([`LabelGuard`], for job kinds, queue names, job states and pool
//!   names, which the application defines but this crate cannot enumerate): a value must look
//!   like an identifier, and only the first `cap` distinct values are admitted; later ones,
//!   and malformed ones, become [`OTHER`].

use std::collections::HashSet;
use std::sync::RwLock;

/// The value every out-of-scheme label is folded into.
pub const OTHER: &str = "other";

/// How a job attempt ended, as seen by the worker that ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    /// The handler succeeded; the job left the queue.
    Completed,
    /// The handler failed with a retryable error; the job was rescheduled with backoff.
    Retried,
    /// The handler asked to run again later without using an attempt (e.g. rate limited).
    Snoozed,
    /// The job failed permanently or ran out of attempts.
    Dead,
    /// The job was cancelled while it ran.
    Cancelled,
    /// The worker lost the lease (another worker owns the job now); its result was discarded.
    LeaseLost,
    /// A newer pending job with the same dedup key covers this one.
    Superseded,
}

impl JobOutcome {
    /// Every outcome, so each can be pre-created at zero per kind.
    pub const ALL: [JobOutcome; 7] = [
        JobOutcome::Completed,
        JobOutcome::Retried,
        JobOutcome::Snoozed,
        JobOutcome::Dead,
        JobOutcome::Cancelled,
        JobOutcome::LeaseLost,
        JobOutcome::Superseded,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::Retried => "retried",
            JobOutcome::Snoozed => "snoozed",
            JobOutcome::Dead => "dead",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::LeaseLost => "lease_lost",
            JobOutcome::Superseded => "superseded",
        }
    }
}

/// A change the worker applied to the chat server to make it match Moodle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MembershipAction {
    /// A user was added to a room.
    Invite,
    /// A user was removed from a room.
    Kick,
    /// A member was given the room's moderator role.
    Promote,
    /// A member lost the room's moderator role.
    Demote,
    /// A chat account was created for a Moodle user.
    CreateUser,
    /// A room was archived (course module hidden or deleted to the recycle bin).
    Archive,
    /// A room was unarchived.
    Unarchive,
    /// A room was deleted.
    Delete,
    /// A room was created for a course module.
    CreateRoom,
}

impl MembershipAction {
    /// Every action, so each can be pre-created at zero.
    pub const ALL: [MembershipAction; 9] = [
        MembershipAction::Invite,
        MembershipAction::Kick,
        MembershipAction::Promote,
        MembershipAction::Demote,
        MembershipAction::CreateUser,
        MembershipAction::Archive,
        MembershipAction::Unarchive,
        MembershipAction::Delete,
        MembershipAction::CreateRoom,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipAction::Invite => "invite",
            MembershipAction::Kick => "kick",
            MembershipAction::Promote => "promote",
            MembershipAction::Demote => "demote",
            MembershipAction::CreateUser => "create_user",
            MembershipAction::Archive => "archive",
            MembershipAction::Unarchive => "unarchive",
            MembershipAction::Delete => "delete",
            MembershipAction::CreateRoom => "create_room",
        }
    }
}

/// Why a wanted membership change could not be applied (recorded, the job still completes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MembershipFailure {
    /// The user has no chat account and account creation is off.
    UserMissing,
    /// The room no longer exists on the chat server.
    RoomMissing,
    /// The bot lacks the permission for this change.
    Forbidden,
    /// The chat server refused the change as conflicting (name taken, last owner, …).
    Conflict,
    /// Anything else the handler recorded as not applicable.
    Other,
}

impl MembershipFailure {
    /// Every reason, so each can be pre-created at zero.
    pub const ALL: [MembershipFailure; 5] = [
        MembershipFailure::UserMissing,
        MembershipFailure::RoomMissing,
        MembershipFailure::Forbidden,
        MembershipFailure::Conflict,
        MembershipFailure::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipFailure::UserMissing => "user_missing",
            MembershipFailure::RoomMissing => "room_missing",
            MembershipFailure::Forbidden => "forbidden",
            MembershipFailure::Conflict => "conflict",
            MembershipFailure::Other => OTHER,
        }
    }
}

/// Rocket.Chat REST routes the worker calls (docs/rocketchat-api.md §1–§2): the default of
/// `MetricsConfig::chat_endpoints`, which a process talking to another backend replaces with
/// that backend's routes (the worker takes them from its chat connection). A route not in
/// the configured list is labelled [`OTHER`].
pub const ROCKETCHAT_ENDPOINTS: &[&str] = &[
    "login",
    "me",
    "info",
    "groups.create",
    "groups.invite",
    "groups.kick",
    "groups.addModerator",
    "groups.removeModerator",
    "groups.addOwner",
    "groups.removeOwner",
    "groups.setReadOnly",
    "groups.archive",
    "groups.unarchive",
    "groups.delete",
    "groups.info",
    "groups.members",
    "groups.rename",
    "groups.list",
    "groups.listAll",
    "rooms.info",
    "rooms.saveRoomSettings",
    "users.create",
    "users.info",
    "users.list",
    "users.update",
    "users.setActiveStatus",
];

/// HTTP status codes that keep their own label value; others fold into their class.
const KEPT_STATUS: &[u16] = &[
    200, 201, 204, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504,
];

/// The `status` label of a chat request: the code for common ones, else its class (`3xx`);
/// `error` when no HTTP answer arrived (connect failure, timeout, reset).
pub fn status_label(status: Option<u16>) -> String {
    match status {
        None => "error".to_string(),
        Some(code) if KEPT_STATUS.contains(&code) => code.to_string(),
        Some(code @ 100..=599) => format!("{}xx", code / 100),
        Some(_) => OTHER.to_string(),
    }
}

/// Reduces a route as a client may spell it (`/api/v1/groups.invite?x=1`) to its name.
pub fn route_name(raw: &str) -> &str {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_matches('/');
    path.strip_prefix("api/v1/").unwrap_or(path)
}

/// Admits identifier-like label values up to a fixed number of distinct values.
///
/// Job kinds, queue names, job states and pool names are defined by the application, not by
/// users, so in practice they are few; the cap is the safety net for a bug that would put an
/// id there. Admission is first come, first served and never revoked (a series, once
/// exported, keeps its label). A closed guard admits only the values it was built with.
#[derive(Debug)]
pub struct LabelGuard {
    cap: usize,
    allowed: Option<HashSet<String>>,
    seen: RwLock<HashSet<String>>,
}

impl LabelGuard {
    /// A guard admitting at most `cap` distinct values (plus [`OTHER`]).
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            allowed: None,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// A guard admitting exactly the well-formed `values`, nothing else.
    pub fn closed<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let allowed: HashSet<String> = values
            .into_iter()
            .filter(|v| well_formed(v))
            .map(str::to_string)
            .collect();
        Self {
            cap: usize::MAX,
            allowed: Some(allowed),
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// The label value to use for `value`, and whether this call is the first to use that
    /// label value, so the caller can pre-create the value's sibling series at zero.
    pub fn admit(&self, value: &str) -> (String, bool) {
        let admissible = well_formed(value)
            && self
                .allowed
                .as_ref()
                .is_none_or(|allowed| allowed.contains(value));
        let wanted = if admissible { value } else { OTHER };
        if let Ok(seen) = self.seen.read() {
            if seen.contains(wanted) {
                return (wanted.to_string(), false);
            }
        }
        let Ok(mut seen) = self.seen.write() else {
            // A poisoned lock means a panic elsewhere mid-insert; fold rather than grow.
            return (OTHER.to_string(), false);
        };
        if seen.contains(wanted) {
            return (wanted.to_string(), false);
        }
        let admitted = seen.len() - usize::from(seen.contains(OTHER));
        let label = if wanted == OTHER || admitted < self.cap {
            wanted
        } else if seen.contains(OTHER) {
            return (OTHER.to_string(), false);
        } else {
            OTHER
        };
        seen.insert(label.to_string());
        (label.to_string(), true)
    }

    /// Like [`LabelGuard::admit`], for callers that do not care about first sight.
    pub fn label(&self, value: &str) -> String {
        self.admit(value).0
    }
}

/// Identifier-like: 1–64 characters of `[A-Za-z0-9_.:-]`, starting with a letter. Ids are
/// mostly digits or hex, so requiring a leading letter rejects the common accident; the
/// cap catches the rest.
fn well_formed(value: &str) -> bool {
    let mut chars = value.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && value.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_fold_into_classes() {
        assert_eq!(status_label(Some(200)), "200");
        assert_eq!(status_label(Some(429)), "429");
        assert_eq!(status_label(Some(418)), "4xx");
        assert_eq!(status_label(Some(302)), "3xx");
        assert_eq!(status_label(Some(999)), "other");
        assert_eq!(status_label(None), "error");
    }

    #[test]
    fn routes_lose_prefix_and_query() {
        assert_eq!(route_name("/api/v1/groups.invite?x=1"), "groups.invite");
        assert_eq!(route_name("groups.members"), "groups.members");
        assert_eq!(route_name("/api/v1/login"), "login");
    }

    #[test]
    fn guard_caps_distinct_values_and_rejects_ids() {
        let g = LabelGuard::new(2);
        assert_eq!(g.admit("course_sync"), ("course_sync".to_string(), true));
        assert_eq!(g.admit("course_sync"), ("course_sync".to_string(), false));
        assert_eq!(g.label("room_sync"), "room_sync");
        assert_eq!(g.admit("third_kind"), (OTHER.to_string(), true));
        assert_eq!(g.admit("fourth_kind"), (OTHER.to_string(), false));
        assert_eq!(g.label("12345"), OTHER);
        assert_eq!(g.label(&"a".repeat(65)), OTHER);
        assert_eq!(g.label("has space"), OTHER);
        assert_eq!(g.label("room_sync"), "room_sync");
    }

    #[test]
    fn closed_guard_admits_only_its_list() {
        let g = LabelGuard::closed(["ready", "running"]);
        assert_eq!(g.label("ready"), "ready");
        assert_eq!(g.label("dead"), OTHER);
    }
}
