//! Who may act, sessions, CSRF.

use crate::html::{esc, page, AppError};
use crate::AppState;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SESSION_COOKIE: &str = "rcjobs_session";
const CSRF_COOKIE: &str = "rcjobs_csrf";
/// A sign-in lasts a working day.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Signed-in operators by session id (in memory: a restart signs everybody out, which is
/// the safe direction).
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, (String, Instant)>>>);

impl Sessions {
    fn get(&self, sid: &str) -> Option<String> {
        let mut m = self.0.lock().ok()?;
        let now = Instant::now();
        m.retain(|_, (_, exp)| *exp > now);
        m.get(sid).map(|(who, _)| who.clone())
    }

    fn insert(&self, who: String) -> Option<String> {
        let sid = random_token();
        let mut m = self.0.lock().ok()?;
        m.insert(sid.clone(), (who, Instant::now() + SESSION_TTL));
        Some(sid)
    }

    fn remove(&self, sid: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(sid);
        }
    }
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit, so the time taken tells nothing about the token.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// What a page needs to know about the request.
pub(crate) struct Ctx {
    /// The CSRF token forms carry.
    pub csrf: String,
    /// Whether the response must set the CSRF cookie (first visit).
    pub set_csrf: bool,
    /// The operator, when actions are allowed for this request.
    pub who: Option<String>,
    /// Why there are no actions (shown in the header), when there are none.
    pub why_read_only: Option<&'static str>,
    /// Whether a sign-in could grant actions.
    pub can_sign_in: bool,
}

impl Ctx {
    /// Whether action buttons are shown.
    pub fn can_act(&self) -> bool {
        self.who.is_some()
    }
}

fn operator(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let c = &state.config;
    if c.read_only {
        return None;
    }
    if let Some(h) = &c.trusted_header {
        if let Some(v) = headers.get(h.as_str()).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            if !v.is_empty() {
                return Some(format!("{v} (proxy)"));
            }
        }
    }
    if let Some(token) = &c.token {
        if let Some(b) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            if same(b.trim(), token) {
                return Some("bearer token".into());
            }
        }
        if let Some(sid) = cookie(headers, SESSION_COOKIE) {
            return state.sessions.get(sid);
        }
    }
    None
}

pub(crate) fn context(state: &AppState, headers: &HeaderMap) -> Ctx {
    let (csrf, set_csrf) = match cookie(headers, CSRF_COOKIE) {
        Some(v) if v.len() >= 32 => (v.to_string(), false),
        _ => (random_token(), true),
    };
    let who = operator(state, headers);
    let why_read_only = if who.is_some() {
        None
    } else if state.config.read_only {
        Some("read-only mode")
    } else if !state.config.actions_possible() {
        Some("read-only: no RCJOBS_UI_TOKEN configured")
    } else {
        Some("read-only until you sign in")
    };
    Ctx {
        csrf,
        set_csrf,
        who,
        why_read_only,
        can_sign_in: !state.config.read_only && state.config.token.is_some(),
    }
}

/// The `Set-Cookie` value for the CSRF token.
pub(crate) fn csrf_cookie(value: &str) -> String {
    format!("{CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict")
}

/// An action's gate: an operator, a same-origin request, and the form's CSRF token equal to
/// the cookie's. Returns who acts.
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<String, AppError> {
    if let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        let o = origin.split("://").nth(1).unwrap_or(origin);
        if o != host {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "cross-origin request refused",
            ));
        }
    }
    let bearer = headers.contains_key(header::AUTHORIZATION);
    let who = operator(state, headers).ok_or_else(|| {
        AppError::new(
            StatusCode::FORBIDDEN,
            if state.config.actions_possible() {
                "sign in first: actions need the console token"
            } else {
                "this console is read-only"
            },
        )
    })?;
    // A bearer header is never sent by a browser on its own, so it cannot be forged
    // cross-site; everything else (session cookie, proxy header) is, and needs the token.
    if !bearer {
        let ok = match (cookie(headers, CSRF_COOKIE), form.get("csrf")) {
            (Some(c), Some(f)) => c.len() >= 32 && same(c, f),
            _ => false,
        };
        if !ok {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: reload the page and try again",
            ));
        }
    }
    Ok(who)
}

pub(crate) async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ctx = context(&state, &headers);
    let body = if ctx.can_sign_in {
        format!(
            r#"<h1>Sign in</h1>
<form method="post" action="/login" class="filters">
<input type="hidden" name="csrf" value="{csrf}">
<label>Console token<input type="password" name="token" id="token" autocomplete="current-password" required></label>
<label>Your name (for the action log)<input name="name" id="name" maxlength="100"></label>
<button type="submit" id="sign-in">Sign in</button></form>
<p class="muted">The token is the one in <code>RCJOBS_UI_TOKEN</code> where the console runs.</p>"#,
            csrf = esc(&ctx.csrf)
        )
    } else {
        "<h1>Sign in</h1><p>This console is read-only: it was started without RCJOBS_UI_TOKEN or with --read-only.</p>".into()
    };
    page(&ctx, "Sign in", "", &body)
}

pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let csrf_ok = matches!(
        (cookie(&headers, CSRF_COOKIE), form.get("csrf")),
        (Some(c), Some(f)) if c.len() >= 32 && same(c, f)
    );
    if !csrf_ok {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and try again",
        ));
    }
    let Some(token) = state
        .config
        .token
        .as_ref()
        .filter(|_| !state.config.read_only)
    else {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "this console is read-only",
        ));
    };
    let given = form.get("token").map(String::as_str).unwrap_or("");
    if !same(given, token) {
        tracing::warn!(target: "rcjobs_console::audit", "console sign-in refused: wrong token");
        return Err(AppError::new(StatusCode::FORBIDDEN, "wrong token"));
    }
    let name: String = form
        .get("name")
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .unwrap_or("operator")
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    let who = format!("{name} (token)");
    let sid = state
        .sessions
        .insert(who.clone())
        .ok_or_else(|| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "session store"))?;
    tracing::info!(target: "rcjobs_console::audit", who = %who, "console sign-in");
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = format!("{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict").parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let who = authorize(&state, &headers, &form)?;
    if let Some(sid) = cookie(&headers, SESSION_COOKIE) {
        state.sessions.remove(sid);
    }
    tracing::info!(target: "rcjobs_console::audit", who = %who, "console sign-out");
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) =
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict").parse()
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}
