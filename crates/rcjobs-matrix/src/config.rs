//! Backend configuration. Credentials are wrapped in [`Secret`] so that no `Debug`, `Display`
//! or log line can print them.

use std::fmt;
use std::time::Duration;

use url::Url;

/// A credential (access token or password). Formats as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// How the bot authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    /// An access token (recommended): sent as `Authorization: Bearer`.
    Token(Secret),
    /// Localpart (or full user id) and password: the client logs in once and keeps the
    /// token, since Synapse allows only 5 logins and then about one per 5 minutes.
    Password {
        /// Localpart or `@user:server`.
        user: String,
        /// Password.
        password: Secret,
    },
}

/// How users are put into rooms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Membership {
    /// Synapse's admin force-join (`POST /_synapse/admin/v1/join`), as Moodle core does: the
    /// user is a member at once, without accepting anything. One call per user.
    #[default]
    Join,
    /// An invite from the bot, which the user accepts in their client. Synapse answers 200
    /// for an invite of an account that does not exist, so each invitee is looked up first
    /// (two calls per user), and invited users count as members only once they joined.
    Invite,
}

/// Everything needed to build a [`crate::MatrixClient`] and [`crate::MatrixBackend`].
#[derive(Clone, Debug)]
pub struct MatrixConfig {
    /// Client-Server API root, e.g. `https://matrix.example.edu/` (a path prefix is allowed).
    pub homeserver_url: Url,
    /// Credentials of the bot, which must be a Synapse server admin.
    pub auth: Auth,
    /// How members are added.
    pub membership: Membership,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// An `M_LIMIT_EXCEEDED` whose `retry_after_ms` is at most this is waited out inside the
    /// call; a longer one is returned as [`rcjobs_chat::ChatError::RateLimited`] so the job
    /// snoozes instead of holding a worker slot.
    pub rate_limit_max_wait: Duration,
    /// Extra retries of idempotent GETs after a transient failure.
    pub get_retries: u32,
    /// Concurrent joins/kicks into one room. Synapse serialises a room's events, so more
    /// gains little (measured: 7.9/s at 1, 9.3/s at 4).
    pub room_concurrency: usize,
    /// How long [`rcjobs_chat::ChatBackend::delete_room`] waits for Synapse's asynchronous
    /// purge before answering `Transient` (the retry then waits for the same task).
    pub delete_timeout: Duration,
    /// Additional trusted CA certificates (PEM). Verification is never switched off.
    pub extra_root_certs_pem: Vec<Vec<u8>>,
}

impl MatrixConfig {
    /// The documented defaults: force-join, 5 s connect, 30 s request, rate-limit waits of
    /// up to 10 s in the call, 2 GET retries, 4 calls at once per room, 120 s for a delete.
    pub fn new(homeserver_url: Url, auth: Auth) -> Self {
        MatrixConfig {
            homeserver_url,
            auth,
            membership: Membership::Join,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            rate_limit_max_wait: Duration::from_secs(10),
            get_retries: 2,
            room_concurrency: 4,
            delete_timeout: Duration::from_secs(120),
            extra_root_certs_pem: Vec::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_credentials() {
        let cfg = MatrixConfig::new(
            Url::parse("https://matrix.example.edu").unwrap(),
            Auth::Token("syt_c2VjcmV0_token".into()),
        );
        let pw = Auth::Password {
            user: "rcbot".into(),
            password: "hunter2-pw".into(),
        };
        let text = format!("{cfg:?} {pw:?} {}", Secret::new("x-secret"));
        assert!(!text.contains("syt_c2VjcmV0_token"), "{text}");
        assert!(!text.contains("hunter2-pw"), "{text}");
        assert!(!text.contains("x-secret"), "{text}");
        assert!(text.contains("rcbot"));
    }
}
