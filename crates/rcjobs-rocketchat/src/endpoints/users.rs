//! `users.*`.

use serde_json::json;

use crate::client::{Call, RcResult, RocketChatClient};
use crate::error::RocketChatError;
use crate::types::{CreateUser, User};

/// True for the ways servers say "no such user" on `users.info`: the plain
/// `User not found.` (no `errorType`), or `error-invalid-user` / `error-user-not-found`.
pub(crate) fn is_user_not_found(err: &RocketChatError) -> bool {
    match err {
        RocketChatError::Api {
            status: 400 | 404,
            error_type,
            message,
            ..
        } => {
            matches!(
                error_type.as_deref(),
                Some("error-invalid-user" | "error-user-not-found")
            ) || message.starts_with("User not found")
        }
        _ => false,
    }
}

impl RocketChatClient {
    /// `GET users.info?username=`.
    pub async fn users_info_by_username(&self, username: &str) -> RcResult<User> {
        self.call_field(
            Call::get("users.info", vec![("username", username.to_owned())]),
            "user",
        )
        .await
    }

    /// `GET users.info?userId=`.
    pub async fn users_info_by_id(&self, user_id: &str) -> RcResult<User> {
        self.call_field(
            Call::get("users.info", vec![("userId", user_id.to_owned())]),
            "user",
        )
        .await
    }

    /// `users.info` by username with "no such user" as `Ok(None)`.
    pub async fn find_user_by_username(&self, username: &str) -> RcResult<Option<User>> {
        match self.users_info_by_username(username).await {
            Ok(u) => Ok(Some(u)),
            Err(e) if is_user_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST users.create`: a verified account that joins no default channel and gets no
    /// welcome mail (people log in through SSO). Fails with `error-field-unavailable` if the
    /// username or e-mail is taken.
    pub async fn users_create(&self, user: &CreateUser<'_>) -> RcResult<User> {
        let body = json!({
            "username": user.username,
            "name": user.name,
            "email": user.email,
            "password": user.password,
            "verified": true,
            "joinDefaultChannels": false,
            "sendWelcomeEmail": false,
            "requirePasswordChange": false,
        });
        self.call_field(Call::post("users.create", body), "user")
            .await
    }

    /// `POST users.setActiveStatus` (idempotent on the server). `confirm_relinquish` lets the
    /// server hand the user's last-owner rooms to the oldest member.
    pub async fn users_set_active_status(
        &self,
        user_id: &str,
        active: bool,
        confirm_relinquish: bool,
    ) -> RcResult<()> {
        let mut body = json!({ "userId": user_id, "activeStatus": active });
        if confirm_relinquish {
            body["confirmRelinquish"] = json!(true);
        }
        self.execute(&Call::post("users.setActiveStatus", body))
            .await
            .map(drop)
    }
}
