//! `rooms.saveRoomSettings`, `rooms.cleanHistory`, `rooms.nameExists`.

use super::groups::apply_rename;
use super::Ctx;
use crate::model::Retention;
use crate::reply::{ok, ApiError, ApiResult};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Keys `RoomsSaveRoomSettingsSchema` accepts (`additionalProperties: false`).
const SETTINGS_KEYS: &[&str] = &[
    "rid",
    "roomAvatar",
    "featured",
    "roomName",
    "roomTopic",
    "roomAnnouncement",
    "roomCustomFields",
    "roomDescription",
    "roomType",
    "readOnly",
    "reactWhenReadOnly",
    "default",
    "encrypted",
    "favorite",
    "joinCode",
    "streamingOptions",
    "systemMessages",
    "retentionEnabled",
    "retentionMaxAge",
    "retentionExcludePinned",
    "retentionFilesOnly",
    "retentionIgnoreThreads",
    "retentionOverrideGlobal",
];

const RETENTION_BOOLS: &[&str] = &[
    "retentionEnabled",
    "retentionExcludePinned",
    "retentionFilesOnly",
    "retentionIgnoreThreads",
    "retentionOverrideGlobal",
];

fn settings_error(error_type: &'static str, reason: &str) -> ApiError {
    ApiError::meteor_with(
        error_type,
        reason,
        json!({ "method": "saveRoomSettings", "action": "Editing_room" }),
    )
}

/// `POST rooms.saveRoomSettings`, including the version-dependent `retentionOverrideGlobal`
/// quirk: ≤6.x drops the other retention values whenever `retentionOverrideGlobal` is in the
/// payload; 7.x+ only when it is `false`.
pub(crate) fn save_room_settings(ctx: &mut Ctx<'_>) -> ApiResult {
    let mut settings = ctx.p.0.clone();
    let modern = ctx.v.modern();
    if let Some(unknown) = settings
        .keys()
        .find(|k| !SETTINGS_KEYS.contains(&k.as_str()))
    {
        return Err(if modern {
            ApiError::InvalidParams("must NOT have additional properties".into())
        } else {
            ApiError::meteor_with(
                "error-invalid-settings",
                "Invalid settings provided",
                json!({ "method": "saveRoomSettings", "setting": unknown }),
            )
        });
    }
    let rid = match settings.remove("rid") {
        Some(Value::String(s)) => s,
        _ if modern => {
            return Err(ApiError::InvalidParams(
                "must have required property 'rid'".into(),
            ))
        }
        _ => {
            return Err(ApiError::meteor_with(
                "error-invalid-room",
                "Invalid room",
                json!({ "method": "saveRoomSettings" }),
            ))
        }
    };
    for key in RETENTION_BOOLS.iter().chain(&[
        "readOnly",
        "reactWhenReadOnly",
        "default",
        "featured",
        "encrypted",
    ]) {
        if settings.get(*key).is_some_and(|v| !v.is_boolean()) {
            return Err(ApiError::InvalidParams(format!("/{key} must be boolean")));
        }
    }
    if settings
        .get("retentionMaxAge")
        .is_some_and(|v| !v.is_number())
    {
        return Err(ApiError::InvalidParams(
            "/retentionMaxAge must be number".into(),
        ));
    }
    if !ctx.st.rooms.contains_key(&rid) {
        return Err(ApiError::meteor_with(
            "error-invalid-room",
            "Invalid room",
            json!({ "method": "saveRoomSettings" }),
        ));
    }
    let me = ctx.me();
    if !ctx.st.has_permission(&me, "edit-room", Some(&rid)) {
        return Err(settings_error(
            "error-action-not-allowed",
            "Editing room is not allowed",
        ));
    }
    if settings.keys().any(|k| k.starts_with("retention"))
        && !ctx
            .st
            .has_permission(&me, "edit-room-retention-policy", Some(&rid))
    {
        return Err(settings_error(
            "error-action-not-allowed",
            "Editing room retention policy is not allowed",
        ));
    }
    if (settings.contains_key("default") || settings.contains_key("featured"))
        && !ctx.st.has_permission(&me, "view-room-administration", None)
    {
        return Err(settings_error(
            "error-action-not-allowed",
            "Viewing room administration is not allowed",
        ));
    }
    let override_global = settings.get("retentionOverrideGlobal").cloned();
    let drop_retention_values = match &override_global {
        Some(v) if !modern => !v.is_null(),
        Some(Value::Bool(false)) => true,
        _ => false,
    };
    if drop_retention_values {
        for key in [
            "retentionMaxAge",
            "retentionExcludePinned",
            "retentionFilesOnly",
            "retentionIgnoreThreads",
        ] {
            settings.remove(key);
        }
    }
    let broadcast = ctx.st.rooms.get(&rid).is_some_and(|r| r.broadcast);
    if broadcast
        && (settings.contains_key("readOnly") || settings.contains_key("reactWhenReadOnly"))
    {
        return Err(settings_error(
            "error-action-not-allowed",
            "Editing readOnly/reactWhenReadOnly are not allowed for broadcast rooms",
        ));
    }
    if let Some(Value::String(name)) = settings.get("roomName") {
        apply_rename(ctx, &rid, name.trim())?;
    }
    let room = ctx.st.rooms.get_mut(&rid).ok_or(ApiError::Internal)?;
    let b = |k: &str| settings.get(k).and_then(Value::as_bool);
    let s = |k: &str| settings.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(v) = b("readOnly") {
        room.ro = v;
    }
    if let Some(v) = b("reactWhenReadOnly") {
        room.react_when_ro = v;
    }
    if let Some(v) = b("encrypted") {
        room.encrypted = v;
    }
    if let Some(v) = b("default") {
        room.default = v;
    }
    if let Some(v) = b("featured") {
        room.featured = v;
    }
    if let Some(v) = s("roomTopic") {
        room.topic = Some(v);
    }
    if let Some(v) = s("roomDescription") {
        room.description = Some(v);
    }
    if let Some(v) = s("roomAnnouncement") {
        room.announcement = Some(v);
    }
    if let Some(v) = settings.get("roomCustomFields").filter(|v| v.is_object()) {
        room.custom_fields = v.clone();
    }
    if let Some(t @ ("c" | "p")) = settings.get("roomType").and_then(Value::as_str) {
        room.t = t.to_string();
    }
    if settings.keys().any(|k| k.starts_with("retention")) {
        let r = room.retention.get_or_insert_with(Retention::default);
        if let Some(v) = b("retentionEnabled") {
            r.enabled = Some(v);
        }
        if let Some(v) = settings.get("retentionMaxAge").and_then(Value::as_f64) {
            r.max_age = Some(v);
        }
        if let Some(v) = b("retentionExcludePinned") {
            r.exclude_pinned = Some(v);
        }
        if let Some(v) = b("retentionFilesOnly") {
            r.files_only = Some(v);
        }
        if let Some(v) = b("retentionIgnoreThreads") {
            r.ignore_threads = Some(v);
        }
        if let Some(v) = b("retentionOverrideGlobal") {
            r.override_global = Some(v);
        }
    }
    room.updated_at = Utc::now();
    Ok(ok(json!({ "rid": rid })))
}

fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// `POST rooms.cleanHistory`: removes the room's messages between `oldest` and `latest`
/// (needs `clean-channel-history`, admin by default). Returns `{_id, count}`.
pub(crate) fn clean_history(ctx: &mut Ctx<'_>) -> ApiResult {
    let p = ctx.p;
    let sel = match (p.nonblank("roomId"), p.nonblank("roomName")) {
        (Some(id), _) => super::RoomSel::Id(id.to_string()),
        (None, Some(n)) => super::RoomSel::Name(n.to_string()),
        _ => {
            return Err(ApiError::meteor(
                "error-roomid-param-not-provided",
                "The parameter \"roomId\" or \"roomName\" is required",
            ))
        }
    };
    let rid = super::lookup(ctx.st, &sel)
        .map(|r| r.id.clone())
        .ok_or_else(|| {
            ApiError::meteor(
                "error-room-not-found",
                "The required \"roomId\" or \"roomName\" param provided does not match any channel",
            )
        })?;
    let me = ctx.me();
    if !ctx.st.is_member(&rid, &me) {
        return Err(ApiError::meteor("error-not-allowed", "Not allowed"));
    }
    let Some(latest) = p.nonblank("latest") else {
        return Err(ApiError::Plain(
            "Body parameter \"latest\" is required.".into(),
        ));
    };
    let Some(oldest) = p.nonblank("oldest") else {
        return Err(ApiError::Plain(
            "Body parameter \"oldest\" is required.".into(),
        ));
    };
    let (Some(latest), Some(oldest)) = (parse_date(latest), parse_date(oldest)) else {
        return Err(ApiError::Plain("Invalid date".into()));
    };
    if !ctx
        .st
        .has_permission(&me, "clean-channel-history", Some(&rid))
    {
        return Err(ApiError::meteor_with(
            "error-not-allowed",
            "Not allowed",
            json!({ "method": "cleanRoomHistory" }),
        ));
    }
    let inclusive = p.bool("inclusive").unwrap_or(false);
    let limit = p
        .int("limit")
        .filter(|l| *l > 0)
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(usize::MAX);
    let (lo, hi) = (oldest.timestamp_millis(), latest.timestamp_millis());
    let room = ctx.st.rooms.get_mut(&rid).ok_or(ApiError::Internal)?;
    let mut removed = 0usize;
    room.messages.retain(|&ts| {
        let hit = if inclusive {
            ts >= lo && ts <= hi
        } else {
            ts > lo && ts < hi
        };
        if hit && removed < limit {
            removed += 1;
            false
        } else {
            true
        }
    });
    room.msgs = room.msgs.saturating_sub(removed as u64);
    Ok(ok(json!({ "_id": rid, "count": removed })))
}

/// `GET rooms.nameExists`.
pub(crate) fn name_exists(ctx: &mut Ctx<'_>) -> ApiResult {
    let Some(name) = ctx.p.nonblank("roomName") else {
        return Err(ApiError::InvalidParams(
            "must have required property 'roomName'".into(),
        ));
    };
    Ok(ok(
        json!({ "exists": ctx.st.room_names.contains_key(name) }),
    ))
}
