//! Client configuration. Credentials are wrapped in [`Secret`] so that no `Debug`, `Display`
//! or log line can print them by accident.

use std::fmt;
use std::time::Duration;

use url::Url;

/// A credential (token or password). Formats as `<redacted>`; the value is only reachable
/// through [`Secret::expose`], which the client calls when it builds a header or login body.
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

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// How the client authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    /// A personal access token (recommended: created with "ignore two-factor", never expires)
    /// or any login token, sent as `X-User-Id` / `X-Auth-Token`.
    Token {
        /// The Rocket.Chat user `_id` that owns the token (not the username).
        user_id: String,
        /// The token.
        token: Secret,
    },
    /// Username (or e-mail) and password: the client calls `login` once, reuses the token,
    /// and logs in again when the server answers 401.
    Password {
        /// Username or e-mail address.
        user: String,
        /// Password.
        password: Secret,
    },
}

/// Everything needed to build a [`crate::RocketChatClient`].
#[derive(Clone, Debug)]
pub struct RocketChatConfig {
    /// Server root, e.g. `https://chat.example.org/` (a path prefix is allowed); the client
    /// appends `api/v1/`.
    pub base_url: Url,
    /// Credentials.
    pub auth: Auth,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, wait, read body).
    pub request_timeout: Duration,
    /// Largest `usernames` list sent in one `groups.invite` call.
    pub max_batch_invite: usize,
    /// A 429 (or a route known to be exhausted) whose reset is at most this far away is waited
    /// out inside the call; a longer one is returned as [`crate::RocketChatError::RateLimited`]
    /// so the job can snooze instead of holding a worker slot.
    pub rate_limit_max_wait: Duration,
    /// Extra retries of idempotent GETs after a transient failure (5xx, timeout, connection).
    /// POSTs are never retried here: the job layer retries them durably.
    pub get_retries: u32,
    /// Force batch invite on or off; `None` decides from the server version and, failing
    /// that, from the server's answer to the first batch call.
    pub batch_invite: Option<bool>,
    /// Whether `groups.members?count=0` returns every member; `None` tries it and falls back
    /// to pages of 100 when the server caps it (`API_Allow_Infinite_Count` off). `Some(false)`
    /// forces paging, e.g. to keep single answers small on huge rooms.
    pub members_count_zero: Option<bool>,
    /// Additional trusted CA certificates (PEM), e.g. a site's private CA. The system roots
    /// stay trusted; verification is never switched off.
    pub extra_root_certs_pem: Vec<Vec<u8>>,
    /// Connections kept open per host between calls.
    pub pool_max_idle_per_host: usize,
    /// The bot's username, if known; otherwise the backend asks the server.
    pub bot_username: Option<String>,
}

impl RocketChatConfig {
    /// A configuration with the documented defaults: 5 s connect, 30 s request, 500 users
    /// per invite batch, waits of up to 10 s for a rate-limit reset, 2 GET retries.
    pub fn new(base_url: Url, auth: Auth) -> Self {
        RocketChatConfig {
            base_url,
            auth,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_batch_invite: 500,
            rate_limit_max_wait: Duration::from_secs(10),
            get_retries: 2,
            batch_invite: None,
            members_count_zero: None,
            extra_root_certs_pem: Vec::new(),
            pool_max_idle_per_host: 32,
            bot_username: None,
        }
    }

    /// The `…/api/v1/` URL every endpoint is joined onto.
    pub fn api_base(&self) -> Result<Url, url::ParseError> {
        let mut base = self.base_url.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        base.set_fragment(None);
        base.join("api/v1/")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn api_base_handles_prefixes_and_slashes() {
        let cases = [
            (
                "https://chat.example.org",
                "https://chat.example.org/api/v1/",
            ),
            (
                "https://chat.example.org/",
                "https://chat.example.org/api/v1/",
            ),
            (
                "https://example.org/chat",
                "https://example.org/chat/api/v1/",
            ),
            (
                "https://example.org/chat/",
                "https://example.org/chat/api/v1/",
            ),
            (
                "http://127.0.0.1:3000/?x=1#f",
                "http://127.0.0.1:3000/api/v1/",
            ),
        ];
        for (input, expected) in cases {
            let cfg = RocketChatConfig::new(
                Url::parse(input).unwrap(),
                Auth::Token {
                    user_id: "u".into(),
                    token: "t".into(),
                },
            );
            assert_eq!(cfg.api_base().unwrap().as_str(), expected, "{input}");
        }
    }

    #[test]
    fn debug_redacts_credentials() {
        let cfg = RocketChatConfig::new(
            Url::parse("https://chat.example.org").unwrap(),
            Auth::Token {
                user_id: "botid".into(),
                token: "sEcReT-ToKeN-123".into(),
            },
        );
        let text = format!("{cfg:?} {:?} {}", cfg.auth, Secret::new("sEcReT-ToKeN-123"));
        assert!(!text.contains("sEcReT-ToKeN-123"), "{text}");
        assert!(text.contains("botid"));
        let pw = Auth::Password {
            user: "bot".into(),
            password: "hunter2-pw".into(),
        };
        assert!(!format!("{pw:?}").contains("hunter2-pw"));
    }
}
