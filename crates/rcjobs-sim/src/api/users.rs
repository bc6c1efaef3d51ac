//! `users.*`: lookups, creation, (de)activation and listing.

use super::{pagination, sort_descending, Ctx};
use crate::model::{iso, NewUser, User};
use crate::names::{blocked_username, valid_email, valid_username};
use crate::perms::KNOWN_ROLES;
use crate::reply::{ok, ApiError, ApiResult};
use chrono::Utc;
use serde_json::{json, Value};

/// A user record; `full` adds what only the user or holders of `view-full-other-user-info` see.
fn user_json(u: &User, full: bool) -> Value {
    let mut j = json!({
        "_id": u.id,
        "username": u.username,
        "name": u.name,
        "type": u.kind,
        "status": "offline",
        "active": u.active,
        "utcOffset": 0,
    });
    if full {
        j["emails"] = u.emails_json();
        j["roles"] = json!(u.roles);
        j["createdAt"] = json!(iso(&u.created_at));
        j["_updatedAt"] = json!(iso(&u.updated_at));
        j["statusConnection"] = json!("offline");
        j["requirePasswordChange"] = json!(u.require_password_change);
        j["settings"] = json!({});
        if let Some(n) = &u.nickname {
            j["nickname"] = json!(n);
        }
        if let Some(b) = &u.bio {
            j["bio"] = json!(b);
        }
    }
    j
}

/// `GET users.info` by `userId` or `username` (case-insensitive).
pub(crate) fn info(ctx: &mut Ctx<'_>) -> ApiResult {
    let p = ctx.p;
    let found = if let Some(id) = p.nonblank("userId") {
        ctx.st.users.get(id)
    } else if let Some(name) = p.nonblank("username") {
        ctx.st
            .user_id_by_username(name)
            .and_then(|id| ctx.st.users.get(id))
    } else if p.nonblank("importId").is_some() {
        None
    } else if ctx.v.modern() {
        return Err(ApiError::InvalidParams(
            "must have required property 'userId'".into(),
        ));
    } else {
        return Err(ApiError::meteor(
            "error-user-param-not-provided",
            "The required \"userId\" or \"username\" param was not provided",
        ));
    };
    let u = found.ok_or_else(|| ApiError::Plain("User not found.".into()))?;
    let me = ctx.me();
    let full = u.id == me
        || ctx
            .st
            .has_permission(&me, "view-full-other-user-info", None);
    let mut j = user_json(u, full);
    j["canViewAllInfo"] = json!(full);
    Ok(ok(json!({ "user": j })))
}

fn field_required(field: &str) -> ApiError {
    ApiError::meteor_with(
        "error-the-field-is-required",
        format!("The field {field} is required"),
        json!({ "method": "insertOrUpdateUser", "field": field }),
    )
}

/// `POST users.create` (admin): validation as `validateUserData`, then uniqueness.
pub(crate) fn create(ctx: &mut Ctx<'_>) -> ApiResult {
    let p = ctx.p;
    if ctx.v.modern() {
        for key in ["email", "name", "password", "username"] {
            match p.raw(key) {
                None => {
                    return Err(ApiError::InvalidParams(format!(
                        "must have required property '{key}'"
                    )))
                }
                Some(v) if !v.is_string() => {
                    return Err(ApiError::InvalidParams(format!("/{key} must be string")))
                }
                _ => {}
            }
        }
    }
    let me = ctx.me();
    let method = "insertOrUpdateUser";
    if !ctx.st.has_permission(&me, "create-user", None) {
        return Err(ApiError::meteor_with(
            "error-action-not-allowed",
            "Adding user is not allowed",
            json!({ "method": method, "action": "Adding_user" }),
        ));
    }
    let roles: Vec<String> = match p.raw("roles") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec!["user".into()],
    };
    if roles.iter().any(|r| r == "admin") && !ctx.st.has_permission(&me, "assign-admin-role", None)
    {
        return Err(ApiError::meteor_with(
            "error-action-not-allowed",
            "Assigning admin is not allowed",
            json!({ "method": method, "action": "Assign_admin" }),
        ));
    }
    if let Some(bad) = roles.iter().find(|r| !KNOWN_ROLES.contains(&r.as_str())) {
        return Err(ApiError::meteor_with(
            "error-action-not-allowed",
            format!("Role {bad} does not exist"),
            json!({ "method": method, "action": "Assign_role" }),
        ));
    }
    let name = p.str("name").map(str::trim).unwrap_or_default().to_string();
    let username = p
        .str("username")
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let email = p
        .str("email")
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let random_password = p.bool("setRandomPassword").unwrap_or(false);
    let password = p.str("password").unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(field_required("Name"));
    }
    if username.is_empty() {
        return Err(field_required("Username"));
    }
    if !valid_username(&username) {
        return Err(ApiError::meteor_with(
            "error-input-is-not-a-valid-field",
            format!("{username} is not a valid username"),
            json!({ "method": method, "input": username, "field": "Username" }),
        ));
    }
    if password.is_empty() && !random_password {
        return Err(field_required("Password"));
    }
    if email.is_empty() {
        return Err(field_required("Email"));
    }
    if !valid_email(&email) {
        return Err(ApiError::meteor_with(
            "error-invalid-email",
            format!("Invalid email {email}"),
            json!({ "method": method, "email": email }),
        ));
    }
    if blocked_username(&username) {
        return Err(ApiError::meteor_with(
            "error-blocked-username",
            format!("{username} is blocked and can't be used!"),
            json!({ "method": method, "field": username }),
        ));
    }
    if ctx.st.user_id_by_username(&username).is_some() {
        return Err(ApiError::meteor_with(
            "error-field-unavailable",
            format!("{username} is already in use :("),
            json!({ "method": method, "field": username }),
        ));
    }
    if ctx.st.email_taken(&email) {
        return Err(ApiError::meteor_with(
            "error-field-unavailable",
            format!("{email} is already in use :("),
            json!({ "method": method, "field": email }),
        ));
    }
    let password = if random_password {
        ctx.st.new_secret()
    } else {
        password
    };
    let uid = ctx.st.insert_user(NewUser {
        id: None,
        username,
        name,
        email: Some(email),
        active: p.bool("active").unwrap_or(true),
        roles,
        password: Some(password),
        token: None,
    });
    if let Some(u) = ctx.st.users.get_mut(&uid) {
        u.require_password_change = p.bool("requirePasswordChange").unwrap_or(false);
        u.nickname = p.str("nickname").map(str::to_string);
        u.bio = p.str("bio").map(str::to_string);
    }
    let u = ctx.st.users.get(&uid).ok_or(ApiError::Internal)?;
    Ok(ok(json!({ "user": user_json(u, true) })))
}

/// `POST users.setActiveStatus`: idempotent; refuses to leave no active admin; last owners
/// need `confirmRelinquish` (ownership then passes to the oldest other member).
pub(crate) fn set_active_status(ctx: &mut Ctx<'_>) -> ApiResult {
    let p = ctx.p;
    let uid = match p.raw("userId") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::InvalidParams("/userId must be string".into())),
        None => {
            return Err(ApiError::InvalidParams(
                "must have required property 'userId'".into(),
            ))
        }
    };
    let active = match p.raw("activeStatus") {
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::InvalidParams(
                "/activeStatus must be boolean".into(),
            ))
        }
        None => {
            return Err(ApiError::InvalidParams(
                "must have required property 'activeStatus'".into(),
            ))
        }
    };
    let me = ctx.me();
    if !ctx
        .st
        .has_permission(&me, "edit-other-user-active-status", None)
        && !ctx
            .st
            .has_permission(&me, "manage-moderation-actions", None)
    {
        return Err(ApiError::Unauthorized);
    }
    let user = ctx
        .st
        .users
        .get(&uid)
        .ok_or_else(|| ApiError::Plain("User not found".into()))?;
    if !active && user.active {
        if user.roles.iter().any(|r| r == "admin") {
            let other_admins = ctx
                .st
                .users
                .values()
                .filter(|u| u.id != uid && u.active && u.roles.iter().any(|r| r == "admin"))
                .count();
            if other_admins == 0 {
                return Err(ApiError::meteor_with(
                    "error-action-not-allowed",
                    "Leaving the app without an active admin is not allowed",
                    json!({ "method": "setUserActiveStatus", "action": "Change_Active_Status" }),
                ));
            }
        }
        let mut last_owner_of: Vec<String> = user
            .rooms
            .iter()
            .filter(|rid| {
                ctx.st.rooms.get(*rid).is_some_and(|r| {
                    r.owners.len() == 1 && r.owners.contains(&uid) && r.subs.len() > 1
                })
            })
            .cloned()
            .collect();
        last_owner_of.sort();
        if !last_owner_of.is_empty() {
            if !p.bool("confirmRelinquish").unwrap_or(false) {
                let details: Vec<Value> = last_owner_of
                    .iter()
                    .filter_map(|rid| ctx.st.rooms.get(rid))
                    .map(|r| json!({ "rid": r.id, "name": r.name, "t": r.t }))
                    .collect();
                return Err(ApiError::meteor_with(
                    "user-last-owner",
                    "",
                    Value::Array(details),
                ));
            }
            for rid in &last_owner_of {
                let heir = ctx.st.rooms.get(rid).and_then(|r| {
                    r.subs
                        .iter()
                        .filter(|(id, _)| **id != uid)
                        .min_by_key(|(_, s)| s.ts)
                        .map(|(id, _)| id.clone())
                });
                if let Some(heir) = heir {
                    ctx.st.set_room_role(rid, &heir, "owner", true);
                }
            }
        }
    }
    ctx.st.set_active(&uid, active);
    if let Some(u) = ctx.st.users.get_mut(&uid) {
        u.updated_at = Utc::now();
    }
    Ok(ok(json!({ "user": { "_id": uid, "active": active } })))
}

/// `GET users.list`: every user, sorted by username, paginated like `groups.members`.
pub(crate) fn list(ctx: &mut Ctx<'_>) -> ApiResult {
    let me = ctx.me();
    if !ctx.st.has_permission(&me, "view-d-room", None) {
        return Err(ApiError::Unauthorized);
    }
    let full = ctx
        .st
        .has_permission(&me, "view-full-other-user-info", None);
    let (offset, limit) = pagination(ctx.p);
    let total = ctx.st.users_sorted.len();
    let iter: Box<dyn Iterator<Item = &(String, String)>> = if sort_descending(ctx.p) {
        Box::new(ctx.st.users_sorted.iter().rev())
    } else {
        Box::new(ctx.st.users_sorted.iter())
    };
    let users: Vec<Value> = iter
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .filter_map(|(_, id)| ctx.st.users.get(id))
        .map(|u| {
            let mut j = user_json(u, full);
            j["roles"] = json!(u.roles);
            j
        })
        .collect();
    let count = users.len();
    Ok(ok(
        json!({ "users": users, "count": count, "offset": offset, "total": total }),
    ))
}
