//! What a chat error means for a job, decided in one place ([`classify`]), and the outcome
//! codes a sync records in `rcjobs_sync.outcome` ([`Code`]).
//!
//! Every handler turns a [`ChatError`] into a [`ChatFailure`] here and acts on the class:
//! a rate limit snoozes the job, a transient fault is retried (in the handler, then with the
//! durable backoff), rejected credentials are retried with the durable backoff (an operator
//! fixes the token without touching jobs), a vanished room or a missing permission is recorded
//! on the room and ends the job, a conflict or another refusal is recorded for the one change
//! it concerns. docs/handlers.md §5 is this module's table.

use crate::engine::HandlerError;
use chrono::{DateTime, Utc};
use rcjobs_chat::ChatError;
use rcjobs_metrics::MembershipFailure;

/// The class of a chat error, which decides what happens to the change and to the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFailure {
    /// The server asked to slow down: the job snoozes until `until` without using an attempt.
    RateLimited {
        /// The route that was limited.
        endpoint: String,
        /// When a retry may succeed.
        until: DateTime<Utc>,
    },
    /// A fault that may pass (5xx, timeout, connection): retried in the handler, then left
    /// for the job's durable retry while the other changes go on.
    Transient,
    /// Credentials rejected: every call would fail the same way, so the pass stops, and the
    /// job is retried with the durable backoff (fixable by an operator, not by the job).
    Credentials,
    /// The room does not exist (or the bot cannot see it): recorded `room_not_found`, the
    /// mapping marked gone, the job fails permanently.
    RoomGone,
    /// The bot lacks a permission: recorded (`forbidden`, or `permission_missing` where a
    /// feature names the permission), not retried until an admin grants it.
    Forbidden,
    /// A name or e-mail is taken.
    Conflict,
    /// Any other refusal: retrying the same call will not help.
    Refused,
}

/// Classifies `e`. The one mapping from a backend's error to what the worker does.
pub fn classify(e: &ChatError) -> ChatFailure {
    match e {
        ChatError::RateLimited { endpoint, retry_at } => ChatFailure::RateLimited {
            endpoint: endpoint.clone(),
            until: *retry_at,
        },
        ChatError::Transient { .. } => ChatFailure::Transient,
        ChatError::Unauthorized { .. } => ChatFailure::Credentials,
        ChatError::RoomNotFound { .. } => ChatFailure::RoomGone,
        ChatError::Forbidden { .. } => ChatFailure::Forbidden,
        ChatError::Conflict { .. } => ChatFailure::Conflict,
        ChatError::Permanent { .. } => ChatFailure::Refused,
    }
}

impl ChatFailure {
    /// Whether the error ends a room's pass at once rather than being recorded for one user:
    /// every later call of the pass would meet it too (rate limit, credentials, room gone).
    pub fn stops_pass(&self) -> bool {
        matches!(
            self,
            ChatFailure::RateLimited { .. } | ChatFailure::Credentials | ChatFailure::RoomGone
        )
    }

    /// The room outcome and metric reason recorded when this failure ends a room's job
    /// (`None`: nothing to record on the room, the job's result says it all).
    pub fn room_record(&self) -> Option<(Code, MembershipFailure)> {
        match self {
            ChatFailure::RoomGone => Some((Code::RoomNotFound, MembershipFailure::RoomMissing)),
            ChatFailure::Forbidden => Some((Code::Forbidden, MembershipFailure::Forbidden)),
            _ => None,
        }
    }

    /// The outcome code and metric reason of a refused per-user change.
    pub fn refusal(&self) -> (Code, MembershipFailure) {
        match self {
            ChatFailure::Forbidden => (Code::Forbidden, MembershipFailure::Forbidden),
            ChatFailure::Conflict => (Code::ChangeRefused, MembershipFailure::Conflict),
            _ => (Code::ChangeRefused, MembershipFailure::Other),
        }
    }
}

/// The job's result for chat error `e`.
pub fn job_error(e: ChatError) -> HandlerError {
    match classify(&e) {
        ChatFailure::RateLimited { endpoint, until } => HandlerError::Snooze {
            until,
            reason: format!("rate limited on {endpoint}"),
        },
        ChatFailure::Transient | ChatFailure::Credentials => HandlerError::Retryable(e.to_string()),
        ChatFailure::RoomGone
        | ChatFailure::Forbidden
        | ChatFailure::Conflict
        | ChatFailure::Refused => HandlerError::Permanent(e.to_string()),
    }
}

/// A recorded outcome's code (`rcjobs_sync.outcome.code`, `rcjobs_sync.room.last_result`).
/// The database keeps the text of [`Code::as_str`]; docs/handlers.md §4 lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// No chat account and account creation off.
    UserMissing,
    /// The account exists but is deactivated (not listed as a member).
    UserInactive,
    /// The username mapping rejected the Moodle username.
    InvalidUsername,
    /// Account creation found the name or e-mail taken.
    AccountConflict,
    /// Account creation refused for another reason.
    AccountNotCreated,
    /// The bot lacks a permission for this change or room.
    Forbidden,
    /// The server refused the change (conflict or other refusal).
    ChangeRefused,
    /// A transient failure outlasted the in-handler retries; the job's retry does it.
    ChangePending,
    /// A room owner Moodle does not list: kept (owners are never removed).
    OwnerKept,
    /// The room vanished from the chat server.
    RoomNotFound,
    /// A hidden activity's archived room: membership left as is.
    RoomArchived,
    /// A room the worker did not create: never deleted.
    RoomKept,
    /// No free room name after 50 candidates.
    RoomNameUnavailable,
    /// A feature's permission is missing (the detail names it); the job completes.
    PermissionMissing,
}

impl Code {
    /// Every code.
    pub const ALL: [Code; 14] = [
        Code::UserMissing,
        Code::UserInactive,
        Code::InvalidUsername,
        Code::AccountConflict,
        Code::AccountNotCreated,
        Code::Forbidden,
        Code::ChangeRefused,
        Code::ChangePending,
        Code::OwnerKept,
        Code::RoomNotFound,
        Code::RoomArchived,
        Code::RoomKept,
        Code::RoomNameUnavailable,
        Code::PermissionMissing,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::UserMissing => "user_missing",
            Code::UserInactive => "user_inactive",
            Code::InvalidUsername => "invalid_username",
            Code::AccountConflict => "account_conflict",
            Code::AccountNotCreated => "account_not_created",
            Code::Forbidden => "forbidden",
            Code::ChangeRefused => "change_refused",
            Code::ChangePending => "change_pending",
            Code::OwnerKept => "owner_kept",
            Code::RoomNotFound => "room_not_found",
            Code::RoomArchived => "room_archived",
            Code::RoomKept => "room_kept",
            Code::RoomNameUnavailable => "room_name_unavailable",
            Code::PermissionMissing => "permission_missing",
        }
    }

    /// The code of stored text `s` (`None` for text no code has).
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<ChatError> {
        let ep = || "groups.invite".to_string();
        vec![
            ChatError::RateLimited {
                endpoint: ep(),
                retry_at: Utc::now(),
            },
            ChatError::Transient {
                endpoint: ep(),
                message: "502".into(),
            },
            ChatError::Unauthorized { endpoint: ep() },
            ChatError::RoomNotFound {
                endpoint: ep(),
                message: "gone".into(),
            },
            ChatError::Forbidden {
                endpoint: ep(),
                code: "error-not-allowed".into(),
                message: "no".into(),
            },
            ChatError::Conflict {
                endpoint: ep(),
                code: "taken".into(),
                message: "taken".into(),
            },
            ChatError::Permanent {
                endpoint: ep(),
                code: "400".into(),
                message: "bad".into(),
            },
        ]
    }

    #[test]
    fn rejected_credentials_are_retried_and_stop_the_pass() {
        let e = ChatError::Unauthorized {
            endpoint: "me".into(),
        };
        assert_eq!(classify(&e), ChatFailure::Credentials);
        assert!(classify(&e).stops_pass());
        assert!(matches!(job_error(e), HandlerError::Retryable(_)));
    }

    #[test]
    fn each_class_has_one_job_result() {
        for e in every_error() {
            let class = classify(&e);
            let result = job_error(e.clone());
            match class {
                ChatFailure::RateLimited { .. } => {
                    assert!(matches!(result, HandlerError::Snooze { .. }), "{e}")
                }
                ChatFailure::Transient | ChatFailure::Credentials => {
                    assert!(matches!(result, HandlerError::Retryable(_)), "{e}")
                }
                _ => assert!(matches!(result, HandlerError::Permanent(_)), "{e}"),
            }
            // What stops a pass is never something recorded per user, and vice versa.
            let per_user = matches!(
                classify(&e),
                ChatFailure::Forbidden | ChatFailure::Conflict | ChatFailure::Refused
            );
            assert_ne!(
                classify(&e).stops_pass(),
                per_user || classify(&e) == ChatFailure::Transient,
                "{e}"
            );
        }
    }

    #[test]
    fn codes_round_trip_through_their_text() {
        for c in Code::ALL {
            assert_eq!(Code::parse(c.as_str()), Some(c));
        }
        assert_eq!(Code::parse("converged"), None);
        let mut texts: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), Code::ALL.len());
    }
}
