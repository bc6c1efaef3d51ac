use chrono::{DateTime, Utc};

/// Result alias for chat calls.
pub type ChatResult<T> = Result<T, ChatError>;

/// A chat call that failed, classified by what the caller should do next.
///
/// Messages never contain credentials: backends build them from endpoint names and the
/// server's error codes only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    /// The server asked us to slow down; retry after `retry_at` (the job snoozes, it does not
    /// burn an attempt).
    #[error("rate limited on {endpoint} until {retry_at}")]
    RateLimited {
        /// Endpoint or route that was limited.
        endpoint: String,
        /// Earliest time a retry may succeed.
        retry_at: DateTime<Utc>,
    },
    /// A fault that may pass: 5xx, timeout, connection reset, DNS.
    #[error("transient failure on {endpoint}: {message}")]
    Transient {
        /// Endpoint that failed.
        endpoint: String,
        /// What happened.
        message: String,
    },
    /// The name or e-mail is already taken (create calls).
    #[error("conflict on {endpoint}: {code}: {message}")]
    Conflict {
        /// Endpoint that failed.
        endpoint: String,
        /// Server error code (`error-duplicate-channel-name`, `error-field-unavailable`).
        code: String,
        /// Server message.
        message: String,
    },
    /// The room does not exist or the bot cannot see it.
    #[error("room not found on {endpoint}: {message}")]
    RoomNotFound {
        /// Endpoint that failed.
        endpoint: String,
        /// Server message.
        message: String,
    },
    /// The bot lacks a permission; retrying will not help until an admin acts.
    #[error("not allowed on {endpoint}: {code}: {message}")]
    Forbidden {
        /// Endpoint that failed.
        endpoint: String,
        /// Server error code.
        code: String,
        /// Server message.
        message: String,
    },
    /// Credentials rejected (401). Every call fails until an operator fixes the token, which
    /// needs no change to any job: the worker retries such jobs with its durable backoff
    /// (`rcjobs_worker::outcome`).
    #[error("authentication failed on {endpoint}")]
    Unauthorized {
        /// Endpoint that failed.
        endpoint: String,
    },
    /// Any other error the server reported; retrying the same call will not help.
    #[error("permanent failure on {endpoint}: {code}: {message}")]
    Permanent {
        /// Endpoint that failed.
        endpoint: String,
        /// Server error code or HTTP status.
        code: String,
        /// Server message.
        message: String,
    },
}

impl ChatError {
    /// True for faults worth retrying with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, ChatError::Transient { .. })
    }
}
