//! Errors of the Matrix client, and their default mapping onto [`ChatError`].
//!
//! Synapse reuses `M_FORBIDDEN` and `M_UNKNOWN` for unrelated cases, so the backend decides
//! per call first (already joined, not a member, bot not in the room) and only then falls
//! back to [`From<MatrixError> for ChatError`]. No variant carries a credential: messages
//! come from the server's `error` field or the transport error kind.

use chrono::{DateTime, Utc};
use rcjobs_chat::ChatError;

/// A failed Matrix call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MatrixError {
    /// No HTTP answer: connect failure, timeout, reset, TLS failure.
    #[error("{route}: transport error: {message}")]
    Transport {
        /// Route called.
        route: &'static str,
        /// What happened (URL- and credential-free).
        message: String,
    },
    /// A 4xx/5xx answer other than 429.
    #[error("{route}: HTTP {status} {errcode}: {message}")]
    Api {
        /// Route called.
        route: &'static str,
        /// HTTP status.
        status: u16,
        /// The body's `errcode` (`M_FORBIDDEN`, …), or `HTTP <status>` without one.
        errcode: String,
        /// The body's `error`, or an excerpt of a non-JSON body.
        message: String,
    },
    /// `M_LIMIT_EXCEEDED`: retry at `retry_at` (from `retry_after_ms`, else `Retry-After`).
    #[error("{route}: rate limited until {retry_at}")]
    RateLimited {
        /// Route called.
        route: &'static str,
        /// Earliest time a retry may succeed.
        retry_at: DateTime<Utc>,
    },
    /// A 2xx answer that is not the JSON expected.
    #[error("{route}: unexpected answer: {message}")]
    Decode {
        /// Route called.
        route: &'static str,
        /// What did not decode.
        message: String,
    },
    /// The configuration cannot work (bad URL, bad CA certificate, no server name).
    #[error("configuration: {0}")]
    Config(String),
}

impl MatrixError {
    /// HTTP status of an API answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            MatrixError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Matrix `errcode` of an API answer.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            MatrixError::Api { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// The server's message of an API answer.
    pub fn message(&self) -> &str {
        match self {
            MatrixError::Api { message, .. } | MatrixError::Decode { message, .. } => message,
            MatrixError::Transport { message, .. } => message,
            MatrixError::RateLimited { .. } | MatrixError::Config(_) => "",
        }
    }

    /// Whether retrying the same call later may succeed (5xx, transport).
    pub fn is_transient(&self) -> bool {
        matches!(self, MatrixError::Transport { .. })
            || matches!(self, MatrixError::Api { status, .. } if *status >= 500)
    }

    pub(crate) fn route(&self) -> &'static str {
        match self {
            MatrixError::Transport { route, .. }
            | MatrixError::Api { route, .. }
            | MatrixError::RateLimited { route, .. }
            | MatrixError::Decode { route, .. } => route,
            MatrixError::Config(_) => "config",
        }
    }
}

impl From<MatrixError> for ChatError {
    fn from(e: MatrixError) -> Self {
        let endpoint = e.route().to_owned();
        match e {
            MatrixError::RateLimited { retry_at, .. } => {
                ChatError::RateLimited { endpoint, retry_at }
            }
            MatrixError::Transport { message, .. } => ChatError::Transient { endpoint, message },
            MatrixError::Api {
                status, message, ..
            } if status >= 500 => ChatError::Transient {
                endpoint,
                message: format!("HTTP {status}: {message}"),
            },
            MatrixError::Api { status: 401, .. } => ChatError::Unauthorized { endpoint },
            MatrixError::Api {
                errcode, message, ..
            } if errcode == "M_ROOM_IN_USE" || errcode == "M_USER_IN_USE" => ChatError::Conflict {
                endpoint,
                code: errcode,
                message,
            },
            MatrixError::Api {
                status: 403,
                errcode,
                message,
                ..
            } => ChatError::Forbidden {
                endpoint,
                code: errcode,
                message,
            },
            MatrixError::Api {
                errcode, message, ..
            } => ChatError::Permanent {
                endpoint,
                code: errcode,
                message,
            },
            // A proxy's HTML page or a cut-off body: worth a retry, like a 5xx.
            MatrixError::Decode { message, .. } => ChatError::Transient { endpoint, message },
            MatrixError::Config(message) => ChatError::Permanent {
                endpoint,
                code: "config".into(),
                message,
            },
        }
    }
}

/// The first 200 characters of a non-JSON body, for error messages.
pub(crate) fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, errcode: &str) -> MatrixError {
        MatrixError::Api {
            route: "r",
            status,
            errcode: errcode.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn default_mapping() {
        assert!(matches!(
            ChatError::from(api(401, "M_UNKNOWN_TOKEN")),
            ChatError::Unauthorized { .. }
        ));
        assert!(matches!(
            ChatError::from(api(403, "M_FORBIDDEN")),
            ChatError::Forbidden { .. }
        ));
        assert!(matches!(
            ChatError::from(api(400, "M_ROOM_IN_USE")),
            ChatError::Conflict { .. }
        ));
        assert!(matches!(
            ChatError::from(api(400, "M_BAD_JSON")),
            ChatError::Permanent { .. }
        ));
        assert!(matches!(
            ChatError::from(api(502, "HTTP 502")),
            ChatError::Transient { .. }
        ));
        assert!(api(503, "x").is_transient());
        assert!(!api(404, "M_NOT_FOUND").is_transient());
    }
}
