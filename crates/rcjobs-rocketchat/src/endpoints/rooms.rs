//! `rooms.*`: retention settings and history cleaning.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::client::{Call, RcResult, RocketChatClient};
use crate::types::RetentionSettings;

impl RocketChatClient {
    /// `POST rooms.saveRoomSettings` with `rid` plus the given settings, unchanged.
    pub async fn rooms_save_room_settings(
        &self,
        room_id: &str,
        settings: Map<String, Value>,
    ) -> RcResult<()> {
        let mut body = settings;
        body.insert("rid".to_owned(), json!(room_id));
        self.execute(&Call::post("rooms.saveRoomSettings", Value::Object(body)))
            .await
            .map(drop)
    }

    /// Applies a retention policy. Servers up to 6.x drop `retentionMaxAge` and the other
    /// retention fields when `retentionOverrideGlobal` is in the same payload, and 7.x+ do
    /// when it is `false`, so unless the server is known to be 7.x+ and the policy overrides
    /// the global one this sends two calls (as the plugin does): `{retentionEnabled,
    /// retentionOverrideGlobal}` first, then the values. Returns the number of calls made.
    pub async fn rooms_save_retention(
        &self,
        room_id: &str,
        retention: &RetentionSettings,
    ) -> RcResult<u32> {
        let mut values = Map::new();
        values.insert("retentionMaxAge".into(), json!(retention.max_age_days));
        values.insert(
            "retentionExcludePinned".into(),
            json!(retention.exclude_pinned),
        );
        values.insert("retentionFilesOnly".into(), json!(retention.files_only));
        values.insert(
            "retentionIgnoreThreads".into(),
            json!(retention.ignore_threads),
        );
        let mut flags = Map::new();
        flags.insert("retentionEnabled".into(), json!(retention.enabled));
        flags.insert(
            "retentionOverrideGlobal".into(),
            json!(retention.override_global),
        );
        let one_call = self
            .server_version()
            .await
            .is_some_and(|v| v.retention_in_one_call())
            && retention.override_global;
        if one_call {
            values.extend(flags);
            self.rooms_save_room_settings(room_id, values).await?;
            Ok(1)
        } else {
            self.rooms_save_room_settings(room_id, flags).await?;
            self.rooms_save_room_settings(room_id, values).await?;
            Ok(2)
        }
    }

    /// `POST rooms.cleanHistory`: deletes messages between `oldest` and `latest`.
    pub async fn rooms_clean_history(
        &self,
        room_id: &str,
        oldest: DateTime<Utc>,
        latest: DateTime<Utc>,
    ) -> RcResult<()> {
        let body = json!({
            "roomId": room_id,
            "oldest": oldest.to_rfc3339_opts(SecondsFormat::Millis, true),
            "latest": latest.to_rfc3339_opts(SecondsFormat::Millis, true),
            "inclusive": true,
        });
        self.execute(&Call::post("rooms.cleanHistory", body))
            .await
            .map(drop)
    }
}
