//! `login`, `logout`, `me` and `info`.

use super::Ctx;
use crate::model::{iso, User};
use crate::reply::{ok, ApiError, ApiResult};
use serde_json::{json, Value};

/// The caller's own record (`me`, and `data.me` of a login).
pub(crate) fn me_json(u: &User, site_url: &str) -> Value {
    json!({
        "_id": u.id,
        "name": u.name,
        "emails": u.emails_json(),
        "status": "offline",
        "statusConnection": "offline",
        "username": u.username,
        "utcOffset": 0,
        "active": u.active,
        "roles": u.roles,
        "settings": { "preferences": {} },
        "avatarUrl": format!("{site_url}/avatar/{}", u.username),
        "createdAt": iso(&u.created_at),
        "_updatedAt": iso(&u.updated_at),
    })
}

fn login_reply(ctx: &Ctx<'_>, uid: &str, token: &str) -> ApiResult {
    let u = ctx.st.users.get(uid).ok_or(ApiError::LoginFailed)?;
    let mut body = json!({
        "status": "success",
        "data": { "userId": u.id, "authToken": token, "me": me_json(u, ctx.site_url) },
    });
    if ctx.v.modern() {
        body["success"] = Value::Bool(true);
    }
    Ok(body)
}

/// `POST login`: `{user|username|email, password}` or `{resume}`; any failure is the same
/// `Unauthorized` 401 (7.0+ never says which credential was wrong).
pub(crate) fn login(ctx: &mut Ctx<'_>) -> ApiResult {
    let p = ctx.p;
    if let Some(resume) = p.nonblank("resume") {
        let uid = ctx
            .st
            .users
            .values()
            .find(|u| u.active && u.tokens.contains(resume))
            .map(|u| u.id.clone());
        let uid = uid.ok_or(ApiError::LoginFailed)?;
        return login_reply(ctx, &uid, resume);
    }
    let (Some(who), Some(password)) = (
        p.nonblank("user")
            .or_else(|| p.nonblank("username"))
            .or_else(|| p.nonblank("email")),
        p.str("password"),
    ) else {
        return Err(ApiError::LoginFailed);
    };
    let by_email = p.nonblank("email").is_some()
        && p.nonblank("user").is_none()
        && p.nonblank("username").is_none();
    let uid = if who.contains('@') || by_email {
        ctx.st.by_email.get(&who.to_lowercase()).cloned()
    } else {
        ctx.st.user_id_by_username(who).cloned()
    };
    let uid = uid.ok_or(ApiError::LoginFailed)?;
    let good = ctx
        .st
        .users
        .get(&uid)
        .is_some_and(|u| u.active && u.password.as_deref() == Some(password));
    if !good {
        return Err(ApiError::LoginFailed);
    }
    let token = ctx.st.new_secret();
    if let Some(u) = ctx.st.users.get_mut(&uid) {
        u.tokens.insert(token.clone());
    }
    login_reply(ctx, &uid, &token)
}

/// `POST logout`: drops the token used for this call.
pub(crate) fn logout(ctx: &mut Ctx<'_>) -> ApiResult {
    let me = ctx.me();
    if let (Some(u), Some(t)) = (ctx.st.users.get_mut(&me), ctx.token.as_ref()) {
        u.tokens.remove(t);
    }
    let mut body = json!({ "status": "success", "data": { "message": "You've been logged out!" } });
    if ctx.v.modern() {
        body["success"] = Value::Bool(true);
    }
    Ok(body)
}

/// `GET me`.
pub(crate) fn me(ctx: &mut Ctx<'_>) -> ApiResult {
    let me = ctx.me();
    let u = ctx.st.users.get(&me).ok_or(ApiError::NotLoggedIn)?;
    Ok(ok(me_json(u, ctx.site_url)))
}

/// `GET permissions.listAll`: every permission with the roles that hold it (`update`), none
/// removed. Any logged-in user may read it, as on a real server.
pub(crate) fn permissions_list_all(ctx: &mut Ctx<'_>) -> ApiResult {
    let update: Vec<Value> = crate::perms::KNOWN_PERMISSIONS
        .iter()
        .map(|p| {
            json!({
                "_id": p,
                "roles": ctx.st.grants.roles_of(p),
                "_updatedAt": "2024-01-01T00:00:00.000Z",
            })
        })
        .collect();
    Ok(ok(json!({ "update": update, "remove": [] })))
}

/// `GET info` (and `/api/info`): the server version.
pub(crate) fn info(ctx: &mut Ctx<'_>) -> ApiResult {
    Ok(ok(json!({ "version": ctx.version_text })))
}
