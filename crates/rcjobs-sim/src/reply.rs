//! Rocket.Chat's response envelope: the success body and every failure shape the REST layer sends.

use crate::version::Version;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// A failed API call, rendered as Rocket.Chat would for the imitated version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApiError {
    /// A `Meteor.Error` thrown in an endpoint or method: 400 `{error:"<reason> [<type>]", errorType, details?}`.
    Meteor {
        error_type: &'static str,
        reason: String,
        details: Option<Value>,
    },
    /// `API.v1.failure('text')`: 400 `{success:false, error:"text"}` without `errorType`.
    Plain(String),
    /// ajv parameter validation: 400 `invalid-params`.
    InvalidParams(String),
    /// An `authRequired` route called without a valid token pair (401, body by version).
    NotLoggedIn,
    /// `POST login` with bad credentials (401).
    LoginFailed,
    /// `API.v1.forbidden()` / ≤6.x `unauthorized()`: 403 `unauthorized` (`forbidden` from 8.0).
    Forbidden,
    /// `API.v1.unauthorized()` on a 7.x+ build: 401 `{success:false, error:"unauthorized"}`
    /// (403 on ≤6.x, where `unauthorized()` meant 403).
    Unauthorized,
    /// `API.v1.notFound()`.
    NotFound,
    /// `API.v1.internalError()`.
    Internal,
}

impl ApiError {
    /// A Meteor error without details.
    pub fn meteor(error_type: &'static str, reason: impl Into<String>) -> Self {
        ApiError::Meteor {
            error_type,
            reason: reason.into(),
            details: None,
        }
    }

    /// A Meteor error with a `details` object.
    pub fn meteor_with(
        error_type: &'static str,
        reason: impl Into<String>,
        details: Value,
    ) -> Self {
        ApiError::Meteor {
            error_type,
            reason: reason.into(),
            details: Some(details),
        }
    }

    /// `errorType` for logging and request records.
    pub fn kind(&self) -> String {
        match self {
            ApiError::Meteor { error_type, .. } => (*error_type).to_string(),
            ApiError::Plain(_) => "plain".into(),
            ApiError::InvalidParams(_) => "invalid-params".into(),
            ApiError::NotLoggedIn => "not-logged-in".into(),
            ApiError::LoginFailed => "login-failed".into(),
            ApiError::Forbidden => "forbidden".into(),
            ApiError::Unauthorized => "unauthorized".into(),
            ApiError::NotFound => "not-found".into(),
            ApiError::Internal => "internal".into(),
        }
    }

    /// Status and body for the imitated server version.
    pub fn render(&self, v: &Version) -> (StatusCode, Value) {
        match self {
            ApiError::Meteor {
                error_type,
                reason,
                details,
            } => {
                let error = if reason.is_empty() {
                    format!("[{error_type}]")
                } else {
                    format!("{reason} [{error_type}]")
                };
                let mut body = json!({ "success": false, "error": error, "errorType": error_type });
                if let Some(d) = details {
                    body["details"] = d.clone();
                }
                (StatusCode::BAD_REQUEST, body)
            }
            ApiError::Plain(text) => (
                StatusCode::BAD_REQUEST,
                json!({ "success": false, "error": text }),
            ),
            ApiError::InvalidParams(msg) => (
                StatusCode::BAD_REQUEST,
                json!({ "success": false, "error": format!("{msg} [invalid-params]"), "errorType": "invalid-params" }),
            ),
            ApiError::NotLoggedIn => {
                const TEXT: &str = "You must be logged in to do this.";
                let body = if v.breaking8() {
                    json!({ "success": false, "error": TEXT })
                } else if v.modern() {
                    json!({ "success": false, "error": TEXT, "status": "error", "message": TEXT })
                } else {
                    json!({ "status": "error", "message": TEXT })
                };
                (StatusCode::UNAUTHORIZED, body)
            }
            ApiError::LoginFailed => {
                let mut body = json!({ "status": "error", "error": "Unauthorized", "message": "Unauthorized" });
                if v.modern() {
                    body["success"] = Value::Bool(false);
                }
                (StatusCode::UNAUTHORIZED, body)
            }
            ApiError::Forbidden => {
                let text = if v.breaking8() {
                    "forbidden"
                } else {
                    "unauthorized"
                };
                (
                    StatusCode::FORBIDDEN,
                    json!({ "success": false, "error": text }),
                )
            }
            ApiError::Unauthorized => {
                let status = if v.modern() {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                };
                (status, json!({ "success": false, "error": "unauthorized" }))
            }
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                json!({ "success": false, "error": "Resource not found" }),
            ),
            ApiError::Internal => internal_error(),
        }
    }
}

/// The 500 body of `API.v1.internalError()`.
pub(crate) fn internal_error() -> (StatusCode, Value) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({ "success": false, "error": "Internal server error" }),
    )
}

/// The exact 429 body of the REST rate limiter (no `errorType`).
pub(crate) fn too_many_requests(wait_secs: u64) -> Value {
    json!({
        "success": false,
        "error": format!(
            "Error, too many requests. Please slow down. You must wait {wait_secs} seconds before trying this endpoint again. [error-too-many-requests]"
        ),
    })
}

/// `API.v1.success(payload)`: the payload with `success: true` added.
pub(crate) fn ok(payload: Value) -> Value {
    let mut map = match payload {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    map.insert("success".into(), Value::Bool(true));
    Value::Object(map)
}

/// Result type of every endpoint: the full 200 body or a failure.
pub(crate) type ApiResult = Result<Value, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    #[test]
    fn meteor_errors_carry_type_in_text() {
        let (s, b) = ApiError::meteor_with(
            "error-not-allowed",
            "Not allowed",
            json!({"method": "addUsersToRoom"}),
        )
        .render(&v("7.4.0"));
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            b,
            json!({"success":false,"error":"Not allowed [error-not-allowed]","errorType":"error-not-allowed","details":{"method":"addUsersToRoom"}})
        );
    }

    #[test]
    fn not_logged_in_body_follows_version() {
        assert_eq!(
            ApiError::NotLoggedIn
                .render(&v("6.6.0"))
                .1
                .as_object()
                .map(|o| o.len()),
            Some(2)
        );
        assert_eq!(
            ApiError::NotLoggedIn
                .render(&v("7.4.0"))
                .1
                .as_object()
                .map(|o| o.len()),
            Some(4)
        );
        assert_eq!(
            ApiError::NotLoggedIn.render(&v("8.1.0")).1,
            json!({"success":false,"error":"You must be logged in to do this."})
        );
        assert_eq!(
            ApiError::Forbidden.render(&v("8.1.0")).1["error"],
            "forbidden"
        );
        assert_eq!(
            ApiError::Unauthorized.render(&v("6.1.0")).0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ApiError::Unauthorized.render(&v("7.1.0")).0,
            StatusCode::UNAUTHORIZED
        );
    }
}
