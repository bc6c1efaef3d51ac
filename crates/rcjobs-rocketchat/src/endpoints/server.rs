//! `info`: the server version, which decides version-dependent behaviour.

use reqwest::Method;
use serde_json::Value;

use crate::client::{Call, RcResult, RocketChatClient};
use crate::error::RocketChatError;
use crate::types::ServerVersion;

impl RocketChatClient {
    /// `GET /api/info` (falling back to the pre-5.x `GET /api/v1/info` on 404): the server
    /// version. Accepts both `{version}` and `{info:{version}}` answers.
    pub async fn server_info(&self) -> RcResult<ServerVersion> {
        let root = Call {
            endpoint: "api/info",
            method: Method::GET,
            query: Vec::new(),
            body: None,
            auth: true,
            from_root: true,
        };
        let value = match self.execute(&root).await {
            Ok(v) => v,
            Err(e) if e.status() == Some(404) => {
                self.execute(&Call::get("info", Vec::new())).await?
            }
            Err(e) => return Err(e),
        };
        let text = value
            .get("version")
            .or_else(|| value.get("info").and_then(|i| i.get("version")))
            .and_then(Value::as_str)
            .ok_or_else(|| RocketChatError::Decode {
                endpoint: "info",
                message: "no version in the answer".to_owned(),
            })?;
        let version = ServerVersion::parse(text).ok_or_else(|| RocketChatError::Decode {
            endpoint: "info",
            message: format!("unparsable version {text:?}"),
        })?;
        *self.inner.version.lock().unwrap_or_else(|p| p.into_inner()) = Some(version.clone());
        Ok(version)
    }

    /// The server version, asked once and cached; `None` if the server would not say (the
    /// caller then assumes a modern server and detects old behaviour from answers).
    pub async fn server_version(&self) -> Option<ServerVersion> {
        if let Some(v) = self
            .inner
            .version
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(v);
        }
        match self.server_info().await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the Rocket.Chat server version");
                None
            }
        }
    }
}

/// One entry of `permissions.listAll`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PermissionEntry {
    /// The permission's name (`unarchive-room`).
    #[serde(rename = "_id")]
    pub id: String,
    /// Roles holding it (server roles and room roles such as `owner`).
    #[serde(default)]
    pub roles: Vec<String>,
}

impl RocketChatClient {
    /// `GET permissions.listAll`: every permission with the roles that hold it.
    pub async fn permissions_list_all(&self) -> RcResult<Vec<PermissionEntry>> {
        self.call_field(Call::get("permissions.listAll", Vec::new()), "update")
            .await
    }
}
