//! The `/api/v1` endpoints: a route table and the lookups every endpoint shares.

mod auth;
mod groups;
mod rooms;
mod users;

use crate::model::{Room, State};
use crate::params::Params;
use crate::reply::{ApiError, ApiResult};
use crate::version::Version;
use serde_json::json;

/// What an endpoint sees: the locked state, the caller and the parameters.
pub(crate) struct Ctx<'a> {
    pub st: &'a mut State,
    /// The authenticated user id (`None` only on routes without `authRequired`).
    pub caller: Option<String>,
    /// The token the caller authenticated with.
    pub token: Option<String>,
    pub p: &'a Params,
    pub v: Version,
    pub batch_invite: bool,
    pub site_url: &'a str,
    pub version_text: &'a str,
}

impl Ctx<'_> {
    /// The caller's id (empty on unauthenticated routes, which never ask).
    pub fn me(&self) -> String {
        self.caller.clone().unwrap_or_default()
    }
}

/// One endpoint.
#[derive(Clone, Copy)]
pub(crate) struct Route {
    /// Whether the route needs `X-User-Id`/`X-Auth-Token`.
    pub auth: bool,
    /// The handler (runs under the state lock, never blocks).
    pub handler: fn(&mut Ctx<'_>) -> ApiResult,
}

/// The route for `method` + endpoint name (`groups.invite`), if the simulator serves it.
pub(crate) fn route(method: &str, endpoint: &str) -> Option<Route> {
    let r = |auth, handler| Some(Route { auth, handler });
    match (method, endpoint) {
        ("POST", "login") => r(false, auth::login),
        ("POST" | "GET", "logout") => r(true, auth::logout),
        ("GET", "me") => r(true, auth::me),
        ("GET", "info") => r(false, auth::info),
        ("GET", "permissions.listAll") => r(true, auth::permissions_list_all),
        ("GET", "users.info") => r(true, users::info),
        ("POST", "users.create") => r(true, users::create),
        ("POST", "users.setActiveStatus") => r(true, users::set_active_status),
        ("GET", "users.list") => r(true, users::list),
        ("POST", "groups.create") => r(true, groups::create),
        ("GET", "groups.info") => r(true, groups::info),
        ("GET", "groups.members") => r(true, groups::members),
        ("GET", "groups.moderators") => r(true, groups::moderators),
        ("GET", "groups.roles") => r(true, groups::roles),
        ("POST", "groups.invite") => r(true, groups::invite),
        ("POST", "groups.kick") => r(true, groups::kick),
        ("POST", "groups.addModerator") => r(true, groups::add_moderator),
        ("POST", "groups.removeModerator") => r(true, groups::remove_moderator),
        ("POST", "groups.addOwner") => r(true, groups::add_owner),
        ("POST", "groups.removeOwner") => r(true, groups::remove_owner),
        ("POST", "groups.archive") => r(true, groups::archive),
        ("POST", "groups.unarchive") => r(true, groups::unarchive),
        ("POST", "groups.setReadOnly") => r(true, groups::set_read_only),
        ("POST", "groups.delete") => r(true, groups::delete),
        ("POST", "groups.rename") => r(true, groups::rename),
        ("POST", "rooms.saveRoomSettings") => r(true, rooms::save_room_settings),
        ("POST", "rooms.cleanHistory") => r(true, rooms::clean_history),
        ("GET", "rooms.nameExists") => r(true, rooms::name_exists),
        _ => None,
    }
}

/// Not-found text of `findPrivateGroupByIdOrName`.
pub(crate) const GROUP_NOT_FOUND: &str =
    "The required \"roomId\" or \"roomName\" param provided does not match any group";

/// How the caller named the room.
pub(crate) enum RoomSel {
    Id(String),
    Name(String),
}

/// `roomId` wins over `roomName`; neither gives `error-room-param-not-provided`.
pub(crate) fn room_selector(p: &Params) -> Result<RoomSel, ApiError> {
    if let Some(id) = p.nonblank("roomId") {
        return Ok(RoomSel::Id(id.to_string()));
    }
    if let Some(name) = p.nonblank("roomName") {
        return Ok(RoomSel::Name(name.to_string()));
    }
    Err(ApiError::meteor(
        "error-room-param-not-provided",
        "The parameter \"roomId\" or \"roomName\" is required",
    ))
}

/// The room a selector points at, of any type and without any access check.
pub(crate) fn lookup<'s>(st: &'s State, sel: &RoomSel) -> Option<&'s Room> {
    match sel {
        RoomSel::Id(id) => st.rooms.get(id),
        RoomSel::Name(name) => st.room_names.get(name).and_then(|id| st.rooms.get(id)),
    }
}

/// `findPrivateGroupByIdOrName`: a private group the caller is a member of (admins included:
/// no membership, no group), optionally refusing archived groups. Returns the room id.
pub(crate) fn find_private_group(
    ctx: &Ctx<'_>,
    checked_archived: bool,
) -> Result<String, ApiError> {
    let sel = room_selector(ctx.p)?;
    let room = lookup(ctx.st, &sel)
        .filter(|r| r.t == "p")
        .ok_or_else(|| ApiError::meteor("error-room-not-found", GROUP_NOT_FOUND))?;
    if !room.subs.contains_key(&ctx.me()) {
        return Err(ApiError::meteor("error-room-not-found", GROUP_NOT_FOUND));
    }
    if checked_archived && room.is_archived() {
        return Err(archived_error(room));
    }
    Ok(room.id.clone())
}

/// `error-room-archived` for a group.
pub(crate) fn archived_error(room: &Room) -> ApiError {
    ApiError::meteor(
        "error-room-archived",
        format!("The private group, {}, is archived", room.name),
    )
}

/// A non-string user parameter makes the old server code throw a JavaScript TypeError.
fn type_error(p: &Params, key: &str) -> Result<(), ApiError> {
    match p.raw(key) {
        Some(v) if !v.is_string() => Err(ApiError::Plain(format!(
            "params.{key}.trim is not a function"
        ))),
        _ => Ok(()),
    }
}

/// `getUserFromParams`: `userId`, then `username`, then `user` (usernames case-insensitive).
pub(crate) fn user_from_params(st: &State, p: &Params) -> Result<String, ApiError> {
    for key in ["userId", "username", "user"] {
        type_error(p, key)?;
    }
    let found = if let Some(id) = p.nonblank("userId") {
        st.users.get(id.trim()).map(|u| u.id.clone())
    } else if let Some(name) = p.nonblank("username").or_else(|| p.nonblank("user")) {
        st.user_id_by_username(name.trim()).cloned()
    } else {
        return Err(ApiError::meteor(
            "error-user-param-not-provided",
            "The required \"userId\" or \"username\" param was not provided",
        ));
    };
    found.ok_or_else(|| {
        ApiError::meteor(
            "error-invalid-user",
            "The required \"userId\" or \"username\" param provided does not match any users",
        )
    })
}

/// `offset`/`count` as `getPaginationItems` reads them: count defaults to 50, is capped at
/// 100, and 0 means everything. Returns `(offset, Some(limit) | None = unlimited)`.
pub(crate) fn pagination(p: &Params) -> (usize, Option<usize>) {
    let offset = p.int("offset").filter(|o| *o > 0).unwrap_or(0);
    let count = match p.int("count") {
        Some(0) => None,
        Some(c) if c > 0 => Some(c.min(100)),
        _ => Some(50),
    };
    (
        usize::try_from(offset).unwrap_or(0),
        count.map(|c| usize::try_from(c).unwrap_or(50)),
    )
}

/// Whether a `sort` param asks for descending usernames (`{"username":-1}`).
pub(crate) fn sort_descending(p: &Params) -> bool {
    p.str("sort")
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v.get("username").and_then(serde_json::Value::as_i64))
        == Some(-1)
}

/// `{method}` details shorthand.
pub(crate) fn method_details(method: &str) -> serde_json::Value {
    json!({ "method": method })
}
