//! Errors of the Rocket.Chat client and their classification.
//!
//! Rocket.Chat reports most business errors as HTTP 400 with an `errorType`; a few as plain
//! text without one. Callers branch on [`RocketChatError::class`] (what to do next) and, for
//! idempotent mutations, on [`RocketChatError::is_already_in_state`] (the server refused
//! because the room/user is already as we want it). No variant ever carries a credential: the
//! messages come from the server's JSON `error` field or from the transport error kind.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use rcjobs_chat::ChatError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A fault that may pass (5xx, timeout, connection): retry with backoff.
    Retryable,
    /// The server's rate limiter refused the call: retry after the reset.
    RateLimited,
    /// Credentials rejected.
    Unauthorized,
    /// The account lacks a permission.
    Forbidden,
    /// The room (or user) does not exist or is invisible to the caller.
    NotFound,
    /// A name or e-mail is already taken.
    Conflict,
    /// Anything else: retrying the same call will not help.
    Permanent,
}

/// A failed Rocket.Chat call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RocketChatError {
    /// No HTTP answer: connect failure, timeout, reset, TLS failure.
    #[error("{endpoint}: {kind} error: {message}")]
    Transport {
        /// Endpoint called.
        endpoint: &'static str,
        /// Broad kind of failure.
        kind: TransportKind,
        /// Transport error text (URL-free, credential-free).
        message: String,
    },
    /// The server (or a proxy in front of it) answered 5xx.
    #[error("{endpoint}: server error HTTP {status}: {message}")]
    Server {
        /// Endpoint called.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Body's `error` text, or a short excerpt of a non-JSON body.
        message: String,
    },
    /// HTTP 429 from the REST rate limiter (or a route known to be exhausted until `retry_at`).
    #[error("{endpoint}: rate limited until {retry_at}")]
    RateLimited {
        /// Endpoint called.
        endpoint: &'static str,
        /// When the limiter's window resets.
        retry_at: DateTime<Utc>,
    },
    /// HTTP 401: not logged in or bad token (after one re-login attempt with a password).
    #[error("{endpoint}: unauthorized: {message}")]
    Unauthorized {
        /// Endpoint called.
        endpoint: &'static str,
        /// Server text.
        message: String,
    },
    /// HTTP 403, or the 7.x quirk of a 401 whose body is only `error: "unauthorized"`.
    #[error("{endpoint}: forbidden (HTTP {status}): {message}")]
    Forbidden {
        /// Endpoint called.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Server text.
        message: String,
    },
    /// Any other non-2xx answer (mostly 400 with the `{success:false, error, errorType}` envelope).
    #[error("{endpoint}: HTTP {status}: {}{message}", error_type.as_deref().map(|t| format!("{t}: ")).unwrap_or_default())]
    Api {
        /// Endpoint called.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// `errorType` when the server sent one.
        error_type: Option<String>,
        /// `error` text.
        message: String,
    },
    /// A 2xx answer that could not be decoded as the expected shape.
    #[error("{endpoint}: unexpected response: {message}")]
    Decode {
        /// Endpoint called.
        endpoint: &'static str,
        /// Decoder message.
        message: String,
    },
    /// The client could not be built (bad URL, bad CA certificate).
    #[error("client configuration: {0}")]
    Config(String),
}

/// Broad kind of a transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Connect or request timeout.
    Timeout,
    /// TCP connect or TLS handshake failed (includes certificate rejection).
    Connect,
    /// The connection broke while sending or receiving.
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Timeout => "timeout",
            TransportKind::Connect => "connect",
            TransportKind::Other => "transport",
        })
    }
}

/// `errorType`s that mean "the room is missing or not visible to the bot".
const NOT_FOUND_TYPES: &[&str] = &["error-room-not-found", "error-invalid-room"];
/// `errorType`s that mean "that name or e-mail is taken".
const CONFLICT_TYPES: &[&str] = &[
    "error-duplicate-channel-name",
    "error-archived-duplicate-name",
    "error-duplicate-handle",
    "error-field-unavailable",
];
/// `errorType`s that mean "the bot lacks a permission".
const FORBIDDEN_TYPES: &[&str] = &[
    "error-not-allowed",
    "error-action-not-allowed",
    "error-not-authorized",
    "error-unauthorized",
    "error-forbidden",
];

impl RocketChatError {
    /// The endpoint the error came from (`None` for configuration errors).
    pub fn endpoint(&self) -> Option<&'static str> {
        match self {
            RocketChatError::Transport { endpoint, .. }
            | RocketChatError::Server { endpoint, .. }
            | RocketChatError::RateLimited { endpoint, .. }
            | RocketChatError::Unauthorized { endpoint, .. }
            | RocketChatError::Forbidden { endpoint, .. }
            | RocketChatError::Api { endpoint, .. }
            | RocketChatError::Decode { endpoint, .. } => Some(endpoint),
            RocketChatError::Config(_) => None,
        }
    }

    /// The server's `errorType`, if any.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            RocketChatError::Api { error_type, .. } => error_type.as_deref(),
            _ => None,
        }
    }

    /// The server's `error` text (or the transport message).
    pub fn message(&self) -> String {
        match self {
            RocketChatError::Transport { message, .. }
            | RocketChatError::Server { message, .. }
            | RocketChatError::Unauthorized { message, .. }
            | RocketChatError::Forbidden { message, .. }
            | RocketChatError::Api { message, .. }
            | RocketChatError::Decode { message, .. } => message.clone(),
            RocketChatError::RateLimited { retry_at, .. } => format!("retry at {retry_at}"),
            RocketChatError::Config(m) => m.clone(),
        }
    }

    /// HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            RocketChatError::Server { status, .. }
            | RocketChatError::Forbidden { status, .. }
            | RocketChatError::Api { status, .. } => Some(*status),
            RocketChatError::RateLimited { .. } => Some(429),
            RocketChatError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// When a rate-limited call may be retried.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            RocketChatError::RateLimited { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }

    /// What the caller should do next.
    pub fn class(&self) -> ErrorClass {
        match self {
            RocketChatError::Transport { .. } | RocketChatError::Server { .. } => {
                ErrorClass::Retryable
            }
            RocketChatError::RateLimited { .. } => ErrorClass::RateLimited,
            RocketChatError::Unauthorized { .. } => ErrorClass::Unauthorized,
            RocketChatError::Forbidden { .. } => ErrorClass::Forbidden,
            RocketChatError::Decode { .. } | RocketChatError::Config(_) => ErrorClass::Permanent,
            RocketChatError::Api {
                status, error_type, ..
            } => match error_type.as_deref() {
                Some(t) if NOT_FOUND_TYPES.contains(&t) => ErrorClass::NotFound,
                Some(t) if CONFLICT_TYPES.contains(&t) => ErrorClass::Conflict,
                Some(t) if FORBIDDEN_TYPES.contains(&t) => ErrorClass::Forbidden,
                _ if *status == 408 => ErrorClass::Retryable,
                _ => ErrorClass::Permanent,
            },
        }
    }

    /// True when a converging caller can treat this refusal as success: the server said no
    /// because the room or user is already in the state the call asked for (Rocket.Chat's
    /// mutations are not idempotent; see the API notes §7).
    pub fn is_already_in_state(&self) -> bool {
        let RocketChatError::Api {
            endpoint,
            error_type,
            message,
            ..
        } = self
        else {
            return false;
        };
        let t = error_type.as_deref().unwrap_or("");
        match *endpoint {
            // Target not a member, or not a user at all: either way it is not in the room.
            "groups.kick" => matches!(t, "error-user-not-in-room" | "error-invalid-user"),
            "groups.addModerator" => t == "error-user-already-moderator",
            // `error-invalid-room` here means the target has no subscription.
            "groups.removeModerator" => matches!(
                t,
                "error-user-not-moderator" | "error-invalid-room" | "error-invalid-user"
            ),
            "groups.addOwner" => t == "error-user-already-owner",
            "groups.removeOwner" => matches!(t, "error-user-not-owner" | "error-invalid-room"),
            "groups.archive" => t == "error-room-archived",
            // Groups unarchive leniently; channels (and perhaps old builds) say "is not archived".
            "groups.unarchive" => message.contains("is not archived"),
            "groups.setReadOnly" => message.contains("same as what it would be changed to"),
            "groups.delete" => t == "error-room-not-found",
            _ => false,
        }
    }
}

impl From<RocketChatError> for ChatError {
    fn from(err: RocketChatError) -> Self {
        let endpoint = err.endpoint().unwrap_or("client").to_owned();
        let code = err
            .error_type()
            .map(str::to_owned)
            .or_else(|| err.status().map(|s| format!("http-{s}")))
            .unwrap_or_else(|| "client".to_owned());
        let message = err.message();
        match err.class() {
            ErrorClass::Retryable => ChatError::Transient {
                endpoint,
                message: err.to_string(),
            },
            ErrorClass::RateLimited => ChatError::RateLimited {
                endpoint,
                retry_at: err.retry_at().unwrap_or_else(Utc::now),
            },
            ErrorClass::Unauthorized => ChatError::Unauthorized { endpoint },
            ErrorClass::Forbidden => ChatError::Forbidden {
                endpoint,
                code,
                message,
            },
            ErrorClass::NotFound => ChatError::RoomNotFound { endpoint, message },
            ErrorClass::Conflict => ChatError::Conflict {
                endpoint,
                code,
                message,
            },
            ErrorClass::Permanent => ChatError::Permanent {
                endpoint,
                code,
                message,
            },
        }
    }
}

/// The parsed `{success:false, error, errorType, message}` envelope (any field may be absent).
#[derive(Debug, Default)]
pub(crate) struct ErrorBody {
    pub error: Option<String>,
    pub error_type: Option<String>,
    pub message: Option<String>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &str) -> Self {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body)
        else {
            return ErrorBody::default();
        };
        let text = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        ErrorBody {
            error: text("error"),
            error_type: text("errorType"),
            message: text("message"),
        }
    }

    /// The best human text: `error`, else `message`, else an excerpt of the raw body.
    pub(crate) fn text(&self, raw: &str) -> String {
        self.error
            .clone()
            .or_else(|| self.message.clone())
            .unwrap_or_else(|| excerpt(raw))
    }
}

/// At most 200 characters of a body, for messages about non-JSON answers.
pub(crate) fn excerpt(raw: &str) -> String {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return "(empty body)".to_owned();
    }
    trimmed.chars().take(200).collect()
}

/// Builds the error for a non-2xx HTTP answer. `now` is injected for tests.
pub(crate) fn classify_response(
    endpoint: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: SystemTime,
) -> RocketChatError {
    let parsed = ErrorBody::parse(body);
    let code = status.as_u16();
    if code == 429 {
        return RocketChatError::RateLimited {
            endpoint,
            retry_at: rate_limit_reset(headers, &parsed.text(body), now),
        };
    }
    if status.is_server_error() {
        return RocketChatError::Server {
            endpoint,
            status: code,
            message: parsed.text(body),
        };
    }
    if code == 401 {
        // 7.x: some permission checks call `unauthorized()` → 401 with only
        // `error: "unauthorized"`; a real "not logged in" says so in `message`/`error`.
        let logged_out = parsed
            .message
            .as_deref()
            .or(parsed.error.as_deref())
            .is_some_and(|m| m.contains("logged in") || m == "Unauthorized");
        if parsed.error.as_deref() == Some("unauthorized") && !logged_out {
            return RocketChatError::Forbidden {
                endpoint,
                status: code,
                message: parsed.text(body),
            };
        }
        return RocketChatError::Unauthorized {
            endpoint,
            message: parsed.text(body),
        };
    }
    if code == 403 {
        return RocketChatError::Forbidden {
            endpoint,
            status: code,
            message: parsed.text(body),
        };
    }
    let message = parsed.text(body);
    let error_type = parsed
        .error_type
        .clone()
        .or_else(|| bracketed_code(&message));
    RocketChatError::Api {
        endpoint,
        status: code,
        error_type,
        message,
    }
}

/// The `[error-code]` suffix Rocket.Chat appends to `error` texts, for bodies that lack an
/// explicit `errorType` (e.g. `[user-last-owner]`).
fn bracketed_code(message: &str) -> Option<String> {
    let trimmed = message.trim_end();
    let inner = trimmed.strip_suffix(']')?;
    let start = inner.rfind('[')?;
    let code = &inner[start + 1..];
    (!code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then(|| code.to_owned())
}

/// When the limiter lets this route through again.
///
/// Primary source: `X-RateLimit-Reset`, an absolute Unix time in **milliseconds**. Fallback:
/// "You must wait N seconds" in the 429 text. The header is distrusted if it is in the past or
/// much later than the text says (clock skew between server and worker). Last resort: the
/// server default window, 60 s.
pub(crate) fn rate_limit_reset(headers: &HeaderMap, text: &str, now: SystemTime) -> DateTime<Utc> {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let from_text = wait_seconds_in_text(text).map(|s| now_ms + (s as i64) * 1000);
    let from_header = header_reset_ms(headers);
    let chosen = match (from_header, from_text) {
        (Some(h), Some(t)) if h <= now_ms || h > t + 5_000 => t,
        (Some(h), _) if h > now_ms => h,
        (_, Some(t)) => t,
        (Some(_), None) => now_ms + 1_000,
        (None, None) => now_ms + 60_000,
    };
    DateTime::from_timestamp_millis(chosen).unwrap_or_else(Utc::now)
}

/// `X-RateLimit-Reset` as epoch milliseconds.
pub(crate) fn header_reset_ms(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .map(|v| v as i64)
}

/// `X-RateLimit-Remaining`.
pub(crate) fn header_remaining(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-ratelimit-remaining")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The N of "You must wait N seconds".
fn wait_seconds_in_text(text: &str) -> Option<u64> {
    let idx = text.find("must wait ")?;
    let rest = &text[idx + "must wait ".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// How long from now until `at` (zero if past).
pub(crate) fn until(at: DateTime<Utc>) -> Duration {
    (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

/// Maps a reqwest error to a transport error without leaking the URL's query.
pub(crate) fn transport(endpoint: &'static str, err: &reqwest::Error) -> RocketChatError {
    let kind = if err.is_timeout() {
        TransportKind::Timeout
    } else if err.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    };
    // reqwest's Display includes the URL; rebuild the chain without it.
    let without_url = err.without_url_ref();
    let mut message = without_url.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    RocketChatError::Transport {
        endpoint,
        kind,
        message,
    }
}

/// `reqwest::Error::without_url` consumes; this helper formats a borrowed error URL-free.
trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(url) => text
                .replace(&format!(" ({url})"), "")
                .replace(url.as_str(), "<url>"),
            None => text,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    fn api(endpoint: &'static str, status: u16, body: &str) -> RocketChatError {
        classify_response(
            endpoint,
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
            SystemTime::now(),
        )
    }

    #[test]
    fn classifies_by_status_and_error_type() {
        let e = api(
            "groups.info",
            400,
            r#"{"success":false,"error":"The required \"roomId\" or \"roomName\" param provided does not match any group [error-room-not-found]","errorType":"error-room-not-found"}"#,
        );
        assert_eq!(e.class(), ErrorClass::NotFound);
        assert_eq!(e.error_type(), Some("error-room-not-found"));

        let e = api(
            "groups.create",
            400,
            r#"{"success":false,"error":"A channel with name 'x' exists [error-duplicate-channel-name]","errorType":"error-duplicate-channel-name"}"#,
        );
        assert_eq!(e.class(), ErrorClass::Conflict);
        assert!(
            matches!(ChatError::from(e), ChatError::Conflict { code, .. } if code == "error-duplicate-channel-name")
        );

        let e = api(
            "groups.kick",
            400,
            r#"{"success":false,"error":"Not allowed [error-not-allowed]","errorType":"error-not-allowed"}"#,
        );
        assert_eq!(e.class(), ErrorClass::Forbidden);

        let e = api(
            "groups.create",
            403,
            r#"{"success":false,"error":"unauthorized"}"#,
        );
        assert_eq!(e.class(), ErrorClass::Forbidden);

        for body in [
            r#"{"status":"error","message":"You must be logged in to do this."}"#,
            r#"{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}"#,
            r#"{"success":false,"error":"You must be logged in to do this."}"#,
            r#"{"status":"error","error":"Unauthorized","message":"Unauthorized","success":false}"#,
        ] {
            let e = api("users.info", 401, body);
            assert_eq!(e.class(), ErrorClass::Unauthorized, "{body}");
            assert!(matches!(ChatError::from(e), ChatError::Unauthorized { .. }));
        }
        // 7.x permission quirk: 401 with only error:"unauthorized".
        let e = api(
            "users.setActiveStatus",
            401,
            r#"{"success":false,"error":"unauthorized"}"#,
        );
        assert_eq!(e.class(), ErrorClass::Forbidden);

        for status in [500, 502, 503, 504] {
            let e = api(
                "groups.members",
                status,
                "<html><title>502 Bad Gateway</title></html>",
            );
            assert_eq!(e.class(), ErrorClass::Retryable);
            assert!(ChatError::from(e).is_transient());
        }

        let e = api(
            "users.info",
            400,
            r#"{"success":false,"error":"User not found."}"#,
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(e.error_type(), None);

        // errorType missing but the code is in brackets.
        let e = api(
            "users.setActiveStatus",
            400,
            r#"{"success":false,"error":"[user-last-owner]"}"#,
        );
        assert_eq!(e.error_type(), Some("user-last-owner"));
    }

    #[test]
    fn already_in_state_depends_on_endpoint() {
        let body = |t: &str| format!(r#"{{"success":false,"error":"x [{t}]","errorType":"{t}"}}"#);
        assert!(api("groups.kick", 400, &body("error-user-not-in-room")).is_already_in_state());
        assert!(api(
            "groups.addModerator",
            400,
            &body("error-user-already-moderator")
        )
        .is_already_in_state());
        assert!(api(
            "groups.removeModerator",
            400,
            &body("error-user-not-moderator")
        )
        .is_already_in_state());
        assert!(
            api("groups.removeModerator", 400, &body("error-invalid-room")).is_already_in_state()
        );
        assert!(
            api("groups.addOwner", 400, &body("error-user-already-owner")).is_already_in_state()
        );
        assert!(api("groups.archive", 400, &body("error-room-archived")).is_already_in_state());
        assert!(api("groups.delete", 400, &body("error-room-not-found")).is_already_in_state());
        assert!(api(
            "groups.setReadOnly",
            400,
            r#"{"success":false,"error":"The private group read only setting is the same as what it would be changed to."}"#
        )
        .is_already_in_state());
        // The same codes elsewhere are real errors.
        assert!(!api("groups.members", 400, &body("error-room-archived")).is_already_in_state());
        assert!(!api("groups.rename", 400, &body("error-room-archived")).is_already_in_state());
        assert!(!api("groups.info", 400, &body("error-room-not-found")).is_already_in_state());
        assert!(
            !api("groups.addModerator", 400, &body("error-user-not-in-room")).is_already_in_state()
        );
        assert!(!api("groups.kick", 500, "oops").is_already_in_state());
    }

    #[test]
    fn rate_limit_reset_from_header_as_epoch_ms() {
        let now = 1_700_000_000_000;
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_static("1700000012345"),
        );
        let text = "Error, too many requests. Please slow down. You must wait 13 seconds before trying this endpoint again. [error-too-many-requests]";
        let e = classify_response(
            "groups.invite",
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            &format!(r#"{{"success":false,"error":"{text}"}}"#),
            at(now),
        );
        assert_eq!(e.class(), ErrorClass::RateLimited);
        assert_eq!(e.retry_at().unwrap().timestamp_millis(), 1_700_000_012_345);
        let chat: ChatError = e.into();
        assert_eq!(
            rcjobs_chat::retry_after(&chat).unwrap().timestamp_millis(),
            1_700_000_012_345
        );
    }

    #[test]
    fn rate_limit_reset_falls_back_to_text_and_default() {
        let now = 1_700_000_000_000;
        let text = "Error, too many requests. Please slow down. You must wait 7 seconds before trying this endpoint again. [error-too-many-requests]";
        // No header.
        let r = rate_limit_reset(&HeaderMap::new(), text, at(now));
        assert_eq!(r.timestamp_millis(), now + 7_000);
        // Header in the past (skew): use the text.
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_static("1699999990000"),
        );
        assert_eq!(
            rate_limit_reset(&h, text, at(now)).timestamp_millis(),
            now + 7_000
        );
        // Header far beyond the text (skew the other way): use the text.
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_static("1700000600000"),
        );
        assert_eq!(
            rate_limit_reset(&h, text, at(now)).timestamp_millis(),
            now + 7_000
        );
        // Header seconds instead of ms would be in the past: text wins as well.
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1700000007"));
        assert_eq!(
            rate_limit_reset(&h, text, at(now)).timestamp_millis(),
            now + 7_000
        );
        // Nothing at all: the server default window.
        assert_eq!(
            rate_limit_reset(&HeaderMap::new(), "slow down", at(now)).timestamp_millis(),
            now + 60_000
        );
    }

    #[test]
    fn display_of_errors_is_informative() {
        let e = api(
            "groups.create",
            400,
            r#"{"success":false,"error":"Invalid name [error-invalid-name]","errorType":"error-invalid-name"}"#,
        );
        assert_eq!(
            e.to_string(),
            "groups.create: HTTP 400: error-invalid-name: Invalid name [error-invalid-name]"
        );
        let chat = ChatError::from(e);
        assert!(
            matches!(chat, ChatError::Permanent { ref code, .. } if code == "error-invalid-name")
        );
    }
}
