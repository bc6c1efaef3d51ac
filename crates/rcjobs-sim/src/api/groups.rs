//! `groups.*`: private groups, their members and room roles.

use super::{
    find_private_group, lookup, method_details, pagination, room_selector, sort_descending,
    user_from_params, Ctx, GROUP_NOT_FOUND,
};
use crate::model::{Room, User};
use crate::names::valid_room_name;
use crate::reply::{ok, ApiError, ApiResult};
use chrono::Utc;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};

fn room<'s>(ctx: &'s Ctx<'_>, rid: &str) -> Result<&'s Room, ApiError> {
    ctx.st
        .rooms
        .get(rid)
        .ok_or_else(|| ApiError::meteor("error-room-not-found", GROUP_NOT_FOUND))
}

fn room_mut<'s>(ctx: &'s mut Ctx<'_>, rid: &str) -> Result<&'s mut Room, ApiError> {
    ctx.st
        .rooms
        .get_mut(rid)
        .ok_or_else(|| ApiError::meteor("error-room-not-found", GROUP_NOT_FOUND))
}

fn group_reply(ctx: &Ctx<'_>, rid: &str) -> ApiResult {
    Ok(ok(json!({ "group": room(ctx, rid)?.json() })))
}

/// `getValidRoomName`'s name checks (pattern, blocked names, uniqueness across all rooms).
fn check_room_name(ctx: &Ctx<'_>, name: &str) -> Result<(), ApiError> {
    let details = json!({ "function": "RocketChat.getValidRoomName", "channel_name": name });
    if !valid_room_name(name) {
        return Err(ApiError::meteor_with(
            "error-invalid-room-name",
            format!("{name} is not a valid room name."),
            details,
        ));
    }
    if let Some(existing) = ctx
        .st
        .room_names
        .get(name)
        .and_then(|id| ctx.st.rooms.get(id))
    {
        return Err(if existing.is_archived() {
            ApiError::meteor_with(
                "error-archived-duplicate-name",
                format!("There's an archived channel with name {name}"),
                details,
            )
        } else {
            ApiError::meteor_with(
                "error-duplicate-channel-name",
                format!("A channel with name '{name}' exists"),
                details,
            )
        });
    }
    Ok(())
}

/// `POST groups.create`.
pub(crate) fn create(ctx: &mut Ctx<'_>) -> ApiResult {
    let p = ctx.p;
    let name = match p.str("name") {
        Some(n) if !n.is_empty() => n.trim().to_string(),
        _ => return Err(ApiError::Plain("Body param \"name\" is required".into())),
    };
    if p.raw("members").is_some_and(|m| !m.is_array()) {
        return Err(ApiError::Plain(
            "Body param \"members\" must be an array if provided".into(),
        ));
    }
    if p.raw("customFields").is_some_and(|m| !m.is_object()) {
        return Err(ApiError::Plain(
            "Body param \"customFields\" must be an object if provided".into(),
        ));
    }
    if p.raw("extraData").is_some_and(|m| !m.is_object()) {
        return Err(ApiError::Plain(
            "Body param \"extraData\" must be an object if provided".into(),
        ));
    }
    let me = ctx.me();
    if !ctx.st.has_permission(&me, "create-p", None) {
        return Err(ApiError::Forbidden);
    }
    if name.is_empty() {
        return Err(ApiError::meteor_with(
            "error-invalid-name",
            "Invalid name",
            json!({ "function": "RocketChat.createRoom" }),
        ));
    }
    check_room_name(ctx, &name)?;

    let extra = p.raw("extraData").cloned().unwrap_or(json!({}));
    let broadcast = extra
        .get("broadcast")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let encrypted = extra
        .get("encrypted")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let exclude_self = ctx.v.at_least(6, 4, 1) && p.bool("excludeSelf").unwrap_or(false);
    let ro = p.bool("readOnly").unwrap_or(false) || broadcast;
    let creator = ctx
        .st
        .users
        .get(&me)
        .map(|u| json!({ "_id": u.id, "username": u.username }))
        .unwrap_or(json!({}));
    let now = Utc::now();
    let rid = ctx.st.new_id();
    ctx.st.rooms.insert(
        rid.clone(),
        Room {
            id: rid.clone(),
            name: name.clone(),
            fname: name.clone(),
            t: "p".into(),
            ro,
            archived: None,
            broadcast,
            encrypted,
            custom_fields: p.raw("customFields").cloned().unwrap_or(json!({})),
            creator,
            ts: now,
            updated_at: now,
            msgs: 0,
            retention: None,
            sys_mes: true,
            react_when_ro: false,
            topic: None,
            description: None,
            announcement: None,
            default: false,
            featured: false,
            subs: HashMap::new(),
            sorted: BTreeSet::new(),
            active_sorted: BTreeSet::new(),
            owners: BTreeSet::new(),
            moderators: BTreeSet::new(),
            messages: Vec::new(),
        },
    );
    ctx.st.room_names.insert(name, rid.clone());
    if !exclude_self {
        ctx.st.subscribe(&rid, &me, vec!["owner".into()]);
    }
    // `Users.findUsersByUsernames`: exact usernames; unknown ones are skipped silently.
    let members: Vec<String> = p
        .raw("members")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for username in members {
        let uid = ctx.st.user_id_by_username(&username).cloned();
        if let Some(uid) =
            uid.filter(|id| ctx.st.users.get(id).is_some_and(|u| u.username == username))
        {
            ctx.st.subscribe(&rid, &uid, Vec::new());
        }
    }
    group_reply(ctx, &rid)
}

/// `GET groups.info`.
pub(crate) fn info(ctx: &mut Ctx<'_>) -> ApiResult {
    let rid = find_private_group(ctx, false)?;
    group_reply(ctx, &rid)
}

fn member_json(u: &User) -> Value {
    json!({
        "_id": u.id,
        "username": u.username,
        "name": u.name,
        "status": "offline",
        "_updatedAt": crate::model::iso(&u.updated_at),
    })
}

/// `GET groups.members`: active users only (≥4.x), sorted by username, paginated.
pub(crate) fn members(ctx: &mut Ctx<'_>) -> ApiResult {
    let rid = find_private_group(ctx, true)?;
    let me = ctx.me();
    let r = room(ctx, &rid)?;
    if r.broadcast
        && !ctx
            .st
            .has_permission(&me, "view-broadcast-member-list", Some(&rid))
    {
        return Err(ApiError::Forbidden);
    }
    let (offset, limit) = pagination(ctx.p);
    // ≤3.x read subscriptions and listed deactivated users too.
    let source = if ctx.v.major < 4 {
        &r.sorted
    } else {
        &r.active_sorted
    };
    let users = &ctx.st.users;
    let iter: Box<dyn Iterator<Item = &(String, String)>> = if sort_descending(ctx.p) {
        Box::new(source.iter().rev())
    } else {
        Box::new(source.iter())
    };
    let (page, total): (Vec<Value>, usize) = match ctx.p.nonblank("filter").map(str::to_lowercase) {
        None => {
            let page = iter
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .filter_map(|(_, id)| users.get(id))
                .map(member_json);
            (page.collect(), source.len())
        }
        Some(f) => {
            let hits: Vec<&User> = iter
                .filter_map(|(_, id)| users.get(id))
                .filter(|u| {
                    u.username.to_lowercase().contains(&f) || u.name.to_lowercase().contains(&f)
                })
                .collect();
            let total = hits.len();
            (
                hits.into_iter()
                    .skip(offset)
                    .take(limit.unwrap_or(usize::MAX))
                    .map(member_json)
                    .collect(),
                total,
            )
        }
    };
    let count = page.len();
    Ok(ok(
        json!({ "members": page, "count": count, "offset": offset, "total": total }),
    ))
}

/// `GET groups.moderators`.
pub(crate) fn moderators(ctx: &mut Ctx<'_>) -> ApiResult {
    let rid = find_private_group(ctx, true)?;
    let r = room(ctx, &rid)?;
    let list: Vec<Value> = r
        .moderators
        .iter()
        .filter_map(|uid| ctx.st.users.get(uid))
        .map(|u| json!({ "_id": u.id, "username": u.username, "name": u.name }))
        .collect();
    Ok(ok(json!({ "moderators": list })))
}

/// `GET groups.roles`: subscriptions that carry room roles.
pub(crate) fn roles(ctx: &mut Ctx<'_>) -> ApiResult {
    let rid = find_private_group(ctx, true)?;
    let r = room(ctx, &rid)?;
    let holders: BTreeSet<&String> = r.owners.iter().chain(r.moderators.iter()).collect();
    let list: Vec<Value> = holders
        .into_iter()
        .filter_map(|uid| Some((ctx.st.users.get(uid)?, r.subs.get(uid)?)))
        .map(|(u, s)| json!({ "rid": rid, "u": u.brief(), "roles": s.roles, "_id": s.id }))
        .collect();
    Ok(ok(json!({ "roles": list })))
}

/// `getUserListFromParams`: `userId`+`userIds` by id, else `username`+`usernames` by name;
/// unknown entries dropped. Returns `None` when no user parameter is present at all.
fn user_list_from_params(ctx: &Ctx<'_>) -> Option<Vec<String>> {
    let p = ctx.p;
    let strings = |key: &str| -> Vec<String> {
        match p.raw(key) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    let by_id = p.raw("userId").is_some() || p.raw("userIds").is_some();
    let by_name = p.raw("username").is_some() || p.raw("usernames").is_some();
    if !by_id && !by_name {
        return None;
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    if by_id {
        for id in strings("userId").into_iter().chain(strings("userIds")) {
            if ctx.st.users.contains_key(&id) && seen.insert(id.clone()) {
                out.push(id);
            }
        }
    } else {
        for name in strings("username").into_iter().chain(strings("usernames")) {
            if let Some(id) = ctx.st.user_id_by_username(&name) {
                if seen.insert(id.clone()) {
                    out.push(id.clone());
                }
            }
        }
    }
    Some(out)
}

fn add_members(ctx: &mut Ctx<'_>, rid: &str, uids: &[String]) {
    let now = Utc::now();
    for uid in uids {
        if ctx.st.subscribe(rid, uid, Vec::new()) {
            if let Some(r) = ctx.st.rooms.get_mut(rid) {
                r.post_system_message(now);
            }
        }
    }
}

/// `POST groups.invite`: one user, or (4.x+) batches; already-members are skipped.
pub(crate) fn invite(ctx: &mut Ctx<'_>) -> ApiResult {
    if !ctx.batch_invite {
        return invite_single_user_server(ctx);
    }
    let id_or_name = ctx
        .p
        .nonblank("roomId")
        .or_else(|| ctx.p.nonblank("roomName"))
        .map(str::to_string);
    let Some(id_or_name) = id_or_name else {
        return Err(ApiError::meteor(
            "error-room-param-not-provided",
            "The parameter \"roomId\" or \"roomName\" is required",
        ));
    };
    // `Rooms.findOneByIdOrName`: no access or archived check here.
    let rid = ctx
        .st
        .rooms
        .get(&id_or_name)
        .or_else(|| {
            ctx.st
                .room_names
                .get(&id_or_name)
                .and_then(|id| ctx.st.rooms.get(id))
        })
        .filter(|r| r.t == "p")
        .map(|r| r.id.clone())
        .ok_or_else(|| ApiError::meteor("error-room-not-found", GROUP_NOT_FOUND))?;
    let Some(uids) = user_list_from_params(ctx) else {
        return Err(ApiError::meteor(
            "error-users-params-not-provided",
            "Please provide \"userId\" or \"username\" or \"userIds\" or \"usernames\" as param",
        ));
    };
    if uids.is_empty() {
        return Err(ApiError::meteor(
            "error-empty-invite-list",
            "Cannot invite if no valid users are provided",
        ));
    }
    let me = ctx.me();
    let allowed = (ctx.st.is_member(&rid, &me)
        && ctx
            .st
            .has_permission(&me, "add-user-to-joined-room", Some(&rid)))
        || ctx.st.has_permission(&me, "add-user-to-any-p-room", None);
    if !allowed {
        return Err(ApiError::meteor_with(
            "error-not-allowed",
            "Not allowed",
            method_details("addUsersToRoom"),
        ));
    }
    add_members(ctx, &rid, &uids);
    group_reply(ctx, &rid)
}

/// `groups.invite` as ≤3.6 servers had it: `findPrivateGroupByIdOrName` + `getUserFromParams`
/// + `addUserToRoom`; arrays are not understood.
fn invite_single_user_server(ctx: &mut Ctx<'_>) -> ApiResult {
    let rid = find_private_group(ctx, true)?;
    let uid = user_from_params(ctx.st, ctx.p)?;
    let me = ctx.me();
    if !ctx
        .st
        .has_permission(&me, "add-user-to-joined-room", Some(&rid))
        && !ctx.st.has_permission(&me, "add-user-to-any-p-room", None)
    {
        return Err(ApiError::meteor_with(
            "error-not-allowed",
            "Not allowed",
            method_details("addUserToRoom"),
        ));
    }
    add_members(ctx, &rid, &[uid]);
    group_reply(ctx, &rid)
}

/// `POST groups.kick`: 7.x check order (room without access check, target, `remove-user`,
/// caller membership, target membership, last owner); ≤6.x looked the group up with the
/// access and archived checks first.
pub(crate) fn kick(ctx: &mut Ctx<'_>) -> ApiResult {
    let me = ctx.me();
    let method = method_details("removeUserFromRoom");
    let (rid, target, bypass) = if ctx.v.modern() {
        let sel = room_selector(ctx.p)?;
        let rid = lookup(ctx.st, &sel)
            .filter(|r| r.t == "p")
            .map(|r| r.id.clone())
            .ok_or_else(|| ApiError::meteor("error-room-not-found", GROUP_NOT_FOUND))?;
        let target = user_from_params(ctx.st, ctx.p)?;
        if !ctx.st.has_permission(&me, "remove-user", Some(&rid)) {
            return Err(ApiError::meteor_with(
                "error-not-allowed",
                "Not allowed",
                method,
            ));
        }
        let bypass = ctx
            .st
            .has_permission(&me, "kick-user-from-any-p-room", None);
        if !bypass && !ctx.st.is_member(&rid, &me) {
            return Err(ApiError::meteor("error-room-not-found", GROUP_NOT_FOUND));
        }
        (rid, target, bypass)
    } else {
        let rid = find_private_group(ctx, true)?;
        let target = user_from_params(ctx.st, ctx.p)?;
        if !ctx.st.has_permission(&me, "remove-user", Some(&rid)) {
            return Err(ApiError::meteor_with(
                "error-not-allowed",
                "Not allowed",
                method,
            ));
        }
        (rid, target, false)
    };
    let r = room(ctx, &rid)?;
    if !bypass && !r.subs.contains_key(&target) {
        return Err(ApiError::meteor_with(
            "error-user-not-in-room",
            "User is not in this room",
            method,
        ));
    }
    if r.owners.contains(&target) && r.owners.len() == 1 {
        return Err(ApiError::meteor_with(
            "error-you-are-last-owner",
            "You are the last owner. Please set new owner before leaving the room.",
            method,
        ));
    }
    ctx.st.unsubscribe(&rid, &target);
    room_mut(ctx, &rid)?.post_system_message(Utc::now());
    Ok(ok(json!({})))
}

fn change_role(ctx: &mut Ctx<'_>, role: &str, add: bool) -> ApiResult {
    let rid = find_private_group(ctx, true)?;
    let target = user_from_params(ctx.st, ctx.p)?;
    let method = match (role, add) {
        ("moderator", true) => "addRoomModerator",
        ("moderator", false) => "removeRoomModerator",
        (_, true) => "addRoomOwner",
        (_, false) => "removeRoomOwner",
    };
    let details = method_details(method);
    let permission = if role == "moderator" {
        "set-moderator"
    } else {
        "set-owner"
    };
    let me = ctx.me();
    if !ctx.st.has_permission(&me, permission, Some(&rid)) {
        return Err(ApiError::meteor_with(
            "error-not-allowed",
            "Not allowed",
            details,
        ));
    }
    let r = room(ctx, &rid)?;
    let sub = r.subs.get(&target);
    let holds = sub.is_some_and(|s| s.roles.iter().any(|x| x == role));
    if add {
        if sub.is_none() {
            return Err(ApiError::meteor_with(
                "error-user-not-in-room",
                "User is not in this room",
                details,
            ));
        }
        if holds {
            return Err(if role == "moderator" {
                ApiError::meteor_with(
                    "error-user-already-moderator",
                    "User is already a moderator",
                    details,
                )
            } else {
                ApiError::meteor_with(
                    "error-user-already-owner",
                    "User is already an owner",
                    details,
                )
            });
        }
    } else {
        if sub.is_none() {
            return Err(ApiError::meteor_with(
                "error-invalid-room",
                "Invalid room",
                details,
            ));
        }
        if !holds {
            return Err(if role == "moderator" {
                ApiError::meteor_with(
                    "error-user-not-moderator",
                    "User is not a moderator",
                    details,
                )
            } else {
                ApiError::meteor_with("error-user-not-owner", "User is not an owner", details)
            });
        }
        if role == "owner" && r.owners.len() == 1 {
            return Err(ApiError::meteor_with(
                "error-remove-last-owner",
                "This is the last owner. Please set a new owner before removing this one.",
                details,
            ));
        }
    }
    ctx.st.set_room_role(&rid, &target, role, add);
    room_mut(ctx, &rid)?.post_system_message(Utc::now());
    Ok(ok(json!({})))
}

/// `POST groups.addModerator`.
pub(crate) fn add_moderator(ctx: &mut Ctx<'_>) -> ApiResult {
    change_role(ctx, "moderator", true)
}

/// `POST groups.removeModerator`.
pub(crate) fn remove_moderator(ctx: &mut Ctx<'_>) -> ApiResult {
    change_role(ctx, "moderator", false)
}

/// `POST groups.addOwner`.
pub(crate) fn add_owner(ctx: &mut Ctx<'_>) -> ApiResult {
    change_role(ctx, "owner", true)
}

/// `POST groups.removeOwner`.
pub(crate) fn remove_owner(ctx: &mut Ctx<'_>) -> ApiResult {
    change_role(ctx, "owner", false)
}

/// `POST groups.archive`: archiving an archived group fails (`error-room-archived`).
pub(crate) fn archive(ctx: &mut Ctx<'_>) -> ApiResult {
    let rid = find_private_group(ctx, true)?;
    let me = ctx.me();
    if !ctx.st.has_permission(&me, "archive-room", Some(&rid)) {
        return Err(ApiError::meteor_with(
            "error-not-authorized",
            "Not authorized",
            method_details("archiveRoom"),
        ));
    }
    let r = room_mut(ctx, &rid)?;
    r.archived = Some(true);
    r.post_system_message(Utc::now());
    Ok(ok(json!({})))
}

/// `POST groups.unarchive`: lenient, unarchiving an active group succeeds (and posts again).
pub(crate) fn unarchive(ctx: &mut Ctx<'_>) -> ApiResult {
    let rid = find_private_group(ctx, false)?;
    let me = ctx.me();
    if !ctx.st.has_permission(&me, "unarchive-room", Some(&rid)) {
        return Err(ApiError::meteor_with(
            "error-not-authorized",
            "Not authorized",
            method_details("unarchiveRoom"),
        ));
    }
    let r = room_mut(ctx, &rid)?;
    r.archived = Some(false);
    r.post_system_message(Utc::now());
    Ok(ok(json!({})))
}

/// `POST groups.setReadOnly`: setting the current value fails (plain text).
pub(crate) fn set_read_only(ctx: &mut Ctx<'_>) -> ApiResult {
    let Some(ro) = ctx
        .p
        .raw("readOnly")
        .map(|v| v.as_bool().unwrap_or(!(v == &json!(0) || v == &json!(""))))
    else {
        return Err(ApiError::Plain(
            "The bodyParam \"readOnly\" is required".into(),
        ));
    };
    let rid = find_private_group(ctx, true)?;
    let r = room(ctx, &rid)?;
    if r.ro == ro {
        return Err(ApiError::Plain(
            "The private group read only setting is the same as what it would be changed to."
                .into(),
        ));
    }
    let details = json!({ "method": "saveRoomSettings", "action": "Editing_room" });
    let me = ctx.me();
    if !ctx.st.has_permission(&me, "edit-room", Some(&rid)) {
        return Err(ApiError::meteor_with(
            "error-action-not-allowed",
            "Editing room is not allowed",
            details,
        ));
    }
    if r.broadcast {
        return Err(ApiError::meteor_with(
            "error-action-not-allowed",
            "Editing readOnly/reactWhenReadOnly are not allowed for broadcast rooms",
            details,
        ));
    }
    let r = room_mut(ctx, &rid)?;
    r.ro = ro;
    r.post_system_message(Utc::now());
    group_reply(ctx, &rid)
}

/// `POST groups.delete`: works on archived groups; a second delete is `error-room-not-found`.
pub(crate) fn delete(ctx: &mut Ctx<'_>) -> ApiResult {
    let rid = find_private_group(ctx, false)?;
    let me = ctx.me();
    if !ctx.st.has_permission(&me, "delete-p", Some(&rid)) {
        return Err(ApiError::meteor_with(
            "error-not-allowed",
            "Not allowed",
            method_details("eraseRoom"),
        ));
    }
    ctx.st.delete_room(&rid);
    Ok(ok(json!({})))
}

/// `saveRoomName`: same name is a silent no-op; otherwise name rules, uniqueness across
/// rooms and (7.x+) users, then a system message.
pub(crate) fn apply_rename(ctx: &mut Ctx<'_>, rid: &str, name: &str) -> Result<(), ApiError> {
    if room(ctx, rid)?.name == name {
        return Ok(());
    }
    check_room_name(ctx, name)?;
    if ctx.v.modern() && ctx.st.user_id_by_username(name).is_some() {
        return Err(ApiError::meteor_with(
            "error-duplicate-handle",
            format!("A room, team or user with name '{name}' already exists"),
            json!({ "function": "RocketChat.saveRoomName", "handle": name }),
        ));
    }
    let old = room(ctx, rid)?.name.clone();
    ctx.st.room_names.remove(&old);
    ctx.st.room_names.insert(name.to_string(), rid.to_string());
    let r = room_mut(ctx, rid)?;
    r.name = name.to_string();
    r.fname = name.to_string();
    r.post_system_message(Utc::now());
    Ok(())
}

/// `POST groups.rename`.
pub(crate) fn rename(ctx: &mut Ctx<'_>) -> ApiResult {
    let Some(name) = ctx.p.nonblank("name").map(|n| n.trim().to_string()) else {
        return Err(ApiError::Plain("The bodyParam \"name\" is required".into()));
    };
    let rid = find_private_group(ctx, true)?;
    let me = ctx.me();
    if !ctx.st.has_permission(&me, "edit-room", Some(&rid)) {
        return Err(ApiError::meteor_with(
            "error-action-not-allowed",
            "Editing room is not allowed",
            json!({ "method": "saveRoomSettings", "action": "Editing_room" }),
        ));
    }
    apply_rename(ctx, &rid, &name)?;
    group_reply(ctx, &rid)
}
