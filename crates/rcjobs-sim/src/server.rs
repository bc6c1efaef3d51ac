//! The HTTP side: router, the per-call pipeline (latency, faults, auth, rate limit, handler)
//! and the read-only `/_sim/*` inspection endpoints.

use crate::api::{self, Ctx};
use crate::config::RateLimit;
use crate::listener::ConnMeta;
use crate::model::{State, REQUEST_LOG_LEN};
use crate::params::Params;
use crate::ratelimit::{Limiter, Verdict};
use crate::reply::{internal_error, too_many_requests, ApiError};
use crate::version::Version;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Settings that can change while the server runs, plus the fault dice.
pub(crate) struct Dynamic {
    pub latency: Duration,
    pub rate_limit: Option<RateLimit>,
    pub fail_rate: f64,
    pub timeout_rate: f64,
    pub drop_rate: f64,
    pub slow_delay: Duration,
    pub rng: StdRng,
}

/// Shared server state.
pub(crate) struct App {
    pub state: Mutex<State>,
    pub limiter: Mutex<Limiter>,
    pub dynamic: Mutex<Dynamic>,
    pub version: Version,
    pub version_text: String,
    pub batch_invite: bool,
    pub site_url: String,
}

/// Locks a mutex, recovering from a poisoned lock (a panicking handler must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the fault dice decided for one call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    Drop,
    FailBefore,
    FailAfter,
    Slow,
}

impl App {
    fn roll(&self) -> (Fault, Duration, Duration) {
        let mut d = lock(&self.dynamic);
        let (latency, slow) = (d.latency, d.slow_delay);
        let (drop_rate, fail_rate, timeout_rate) = (d.drop_rate, d.fail_rate, d.timeout_rate);
        let fault = if drop_rate > 0.0 && d.rng.random_bool(drop_rate.clamp(0.0, 1.0)) {
            Fault::Drop
        } else if fail_rate > 0.0 && d.rng.random_bool(fail_rate.clamp(0.0, 1.0)) {
            // Half the 500s come after the change was applied (the answer is lost, as behind a
            // failing proxy), so callers must converge rather than assume nothing happened.
            if d.rng.random_bool(0.5) {
                Fault::FailBefore
            } else {
                Fault::FailAfter
            }
        } else if timeout_rate > 0.0 && d.rng.random_bool(timeout_rate.clamp(0.0, 1.0)) {
            Fault::Slow
        } else {
            Fault::None
        };
        (fault, latency, slow)
    }
}

/// Builds the router.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/{*endpoint}", any(api_v1))
        .route("/api/info", get(api_info))
        .route("/_sim/state", get(sim_state))
        .route("/_sim/requests", get(sim_requests))
        .fallback(not_found)
        .with_state(app)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "success": false, "error": "Resource not found" })),
    )
        .into_response()
}

async fn api_v1(
    AxState(app): AxState<Arc<App>>,
    ConnectInfo(conn): ConnectInfo<ConnMeta>,
    method: Method,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    call(app, conn, method, endpoint, headers, query, body).await
}

async fn api_info(
    AxState(app): AxState<Arc<App>>,
    ConnectInfo(conn): ConnectInfo<ConnMeta>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    call(
        app,
        conn,
        Method::GET,
        "info".into(),
        headers,
        query,
        Bytes::new(),
    )
    .await
}

fn parse_params(method: &Method, query: Option<&str>, body: &Bytes) -> Result<Params, ApiError> {
    let mut map = Map::new();
    if let Some(q) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(q);
        for (k, v) in pairs {
            map.insert(k, Value::String(v));
        }
    }
    if *method != Method::GET && !body.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => map.extend(o),
            Ok(_) | Err(_) => return Err(ApiError::Plain("Invalid JSON body".into())),
        }
    }
    Ok(Params(map))
}

/// Decodes `a=1&b=x%20y` (form encoding: `+` is a space).
fn serde_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn client_ip(headers: &HeaderMap, conn: &ConnMeta) -> IpAddr {
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| conn.remote.ip())
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Drops secrets from a parameter record.
fn redacted(p: &Params) -> Value {
    let mut m = p.0.clone();
    for k in ["password", "resume", "code", "token"] {
        if m.contains_key(k) {
            m.insert(k.into(), Value::String("<redacted>".into()));
        }
    }
    Value::Object(m)
}

struct Outcome {
    status: StatusCode,
    body: Value,
    verdict: Option<Verdict>,
    caller: Option<String>,
    params: Value,
}

fn json_response(status: StatusCode, body: &Value, verdict: Option<Verdict>) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Some(v) = verdict {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(v.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(v.remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(v.reset_ms));
    }
    resp
}

/// One API call through the whole pipeline.
async fn call(
    app: Arc<App>,
    conn: ConnMeta,
    method: Method,
    endpoint: String,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let ip = client_ip(&headers, &conn);
    let key = format!("{} {}", method.as_str(), endpoint);
    {
        let mut st = lock(&app.state);
        *st.counters.by_endpoint.entry(key.clone()).or_insert(0) += 1;
        st.counters.total += 1;
    }
    let (fault, latency, slow) = app.roll();
    if fault != Fault::None {
        lock(&app.state).counters.faults += 1;
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Fault::Drop => {
            conn.cut();
            record(
                &app,
                &method,
                &endpoint,
                0,
                ip,
                None,
                Value::Null,
                started,
                "dropped",
            );
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Fault::FailBefore => {
            let (s, b) = internal_error();
            record(
                &app,
                &method,
                &endpoint,
                s.as_u16(),
                ip,
                None,
                Value::Null,
                started,
                "fault:500-before",
            );
            return json_response(s, &b, None);
        }
        _ => {}
    }
    let out = handle(
        &app,
        &method,
        &endpoint,
        &headers,
        query.as_deref(),
        &body,
        ip,
    );
    let (status, body_value, verdict) = if fault == Fault::FailAfter {
        let (s, b) = internal_error();
        (s, b, None)
    } else {
        (out.status, out.body, out.verdict)
    };
    if fault == Fault::Slow {
        tokio::time::sleep(slow).await;
    }
    let note = match fault {
        Fault::FailAfter => "fault:500-after",
        Fault::Slow => "fault:slow",
        _ => "",
    };
    record(
        &app,
        &method,
        &endpoint,
        status.as_u16(),
        ip,
        out.caller,
        out.params,
        started,
        note,
    );
    json_response(status, &body_value, verdict)
}

#[allow(clippy::too_many_arguments)]
fn record(
    app: &App,
    method: &Method,
    endpoint: &str,
    status: u16,
    ip: IpAddr,
    caller: Option<String>,
    params: Value,
    started: Instant,
    note: &str,
) {
    let mut st = lock(&app.state);
    *st.counters.by_status.entry(status).or_insert(0) += 1;
    if st.counters.log.len() >= REQUEST_LOG_LEN {
        st.counters.log.pop_front();
    }
    st.counters.log.push_back(json!({
        "at": now_ms(),
        "method": method.as_str(),
        "endpoint": endpoint,
        "status": status,
        "ip": ip.to_string(),
        "userId": caller,
        "params": params,
        "ms": started.elapsed().as_secs_f64() * 1000.0,
        "fault": note,
    }));
}

/// Auth, rate limit and the endpoint, all under one state lock (never held across an await).
fn handle(
    app: &App,
    method: &Method,
    endpoint: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Bytes,
    ip: IpAddr,
) -> Outcome {
    let v = app.version;
    let fail = |e: ApiError, params: Value, caller: Option<String>, verdict: Option<Verdict>| {
        let (status, body) = e.render(&v);
        Outcome {
            status,
            body,
            verdict,
            caller,
            params,
        }
    };
    let Some(route) = api::route(method.as_str(), endpoint) else {
        return fail(ApiError::NotFound, Value::Null, None, None);
    };
    let params = match parse_params(method, query, body) {
        Ok(p) => p,
        Err(e) => return fail(e, Value::Null, None, None),
    };
    let logged_params = redacted(&params);
    let mut st = lock(&app.state);
    let mut caller = None;
    let mut token = None;
    if route.auth {
        let uid = header(headers, "x-user-id");
        let tok = header(headers, "x-auth-token");
        match (uid, tok) {
            (Some(uid), Some(tok))
                if st.users.get(&uid).is_some_and(|u| u.tokens.contains(&tok)) =>
            {
                caller = Some(uid);
                token = Some(tok);
            }
            _ => return fail(ApiError::NotLoggedIn, logged_params, None, None),
        }
    }
    let limit = lock(&app.dynamic).rate_limit;
    let mut verdict = None;
    if let Some(limit) = limit {
        let bypass = caller
            .as_deref()
            .is_some_and(|uid| st.has_permission(uid, "api-bypass-rate-limit", None));
        if !bypass {
            let path = format!("/api/v1/{endpoint}");
            let vd = lock(&app.limiter).check(method.as_str(), &path, ip, &limit, now_ms());
            if vd.blocked {
                st.counters.rate_limited += 1;
                return Outcome {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    body: too_many_requests(vd.wait_secs),
                    verdict: Some(vd),
                    caller,
                    params: logged_params,
                };
            }
            verdict = Some(vd);
        }
    }
    let mut ctx = Ctx {
        st: &mut st,
        caller: caller.clone(),
        token,
        p: &params,
        v,
        batch_invite: app.batch_invite,
        site_url: &app.site_url,
        version_text: &app.version_text,
    };
    match (route.handler)(&mut ctx) {
        Ok(body) => Outcome {
            status: StatusCode::OK,
            body,
            verdict,
            caller,
            params: logged_params,
        },
        Err(e) => {
            tracing::debug!(endpoint, error = %e.kind(), "sim: API error");
            fail(e, logged_params, caller, verdict)
        }
    }
}

async fn sim_state(AxState(app): AxState<Arc<App>>) -> Response {
    let snap = crate::handle::snapshot_of(&app);
    Json(snap).into_response()
}

async fn sim_requests(AxState(app): AxState<Arc<App>>) -> Response {
    let st = lock(&app.state);
    let c = &st.counters;
    Json(json!({
        "total": c.total,
        "rateLimited": c.rate_limited,
        "byEndpoint": c.by_endpoint,
        "byStatus": c.by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<String, Value>>(),
        "recent": c.log,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_strings() {
        assert_eq!(
            serde_urlencoded_pairs("roomName=a%2Eb&count=0&x=a+b&flag&bad=%zz"),
            vec![
                ("roomName".into(), "a.b".into()),
                ("count".into(), "0".into()),
                ("x".into(), "a b".into()),
                ("flag".into(), String::new()),
                ("bad".into(), "%zz".into()),
            ]
        );
        assert_eq!(
            serde_urlencoded_pairs("a=%4"),
            vec![("a".into(), "%4".into())]
        );
    }
}
