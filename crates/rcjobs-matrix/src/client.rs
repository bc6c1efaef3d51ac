//! The HTTP core (one pooled, certificate-verifying reqwest client, the bot's token, the
//! shared request gate and `M_LIMIT_EXCEEDED` waits) and one method per Matrix call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rcjobs_chat::{OpenGate, RequestGate};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use crate::config::{Auth, MatrixConfig, Secret};
use crate::error::{excerpt, MatrixError};

/// Result alias for client calls.
pub type MxResult<T> = Result<T, MatrixError>;

/// Extra pause after a rate-limit reset, for clock granularity.
const RESET_MARGIN: Duration = Duration::from_millis(25);
/// How many 429s in a row one call waits out before handing the wait to the job.
const MAX_RATE_LIMIT_WAITS: u32 = 4;
/// When a 429 carries neither `retry_after_ms` nor `Retry-After`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// Receives one event per HTTP exchange (request metrics without a Prometheus dependency).
pub trait RequestObserver: Send + Sync {
    /// An answer arrived (`status`), or none did (`status == 0`).
    fn on_response(&self, route: &'static str, status: u16, elapsed: Duration);

    /// The client is about to wait `wait` for `route`'s rate limit.
    fn on_rate_limited(&self, route: &'static str, wait: Duration) {
        let _ = (route, wait);
    }
}

/// An observer that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl RequestObserver for NoopObserver {
    fn on_response(&self, _route: &'static str, _status: u16, _elapsed: Duration) {}
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: MatrixConfig,
    token: RwLock<Option<(Secret, u64)>>,
    login_lock: tokio::sync::Mutex<()>,
    observer: Arc<dyn RequestObserver>,
    gate: Arc<dyn RequestGate>,
    paused: Mutex<HashMap<&'static str, DateTime<Utc>>>,
}

/// A Matrix Client-Server + Synapse admin API client. Cheap to clone.
#[derive(Clone)]
pub struct MatrixClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MatrixClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixClient")
            .field("homeserver", &self.inner.base.as_str())
            .field("auth", &self.inner.config.auth)
            .finish_non_exhaustive()
    }
}

/// Builds a [`MatrixClient`] with an optional observer and shared request gate.
pub struct ClientBuilder {
    config: MatrixConfig,
    observer: Arc<dyn RequestObserver>,
    gate: Arc<dyn RequestGate>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Receives one event per HTTP exchange.
    pub fn observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Admission control shared by all replicas (see [`rcjobs_chat::RequestGate`]).
    pub fn gate(mut self, gate: Arc<dyn RequestGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Builds the HTTP client (verified TLS, timeouts, keep-alive pool).
    pub fn build(self) -> MxResult<MatrixClient> {
        install_crypto_provider();
        let config = self.config;
        let mut base = config.homeserver_url.clone();
        base.set_query(None);
        base.set_fragment(None);
        if base.cannot_be_a_base() {
            return Err(MatrixError::Config(
                "homeserver URL cannot be a base".into(),
            ));
        }
        let mut roots = Vec::new();
        for pem in &config.extra_root_certs_pem {
            roots.push(
                reqwest::Certificate::from_pem(pem)
                    .map_err(|e| MatrixError::Config(format!("CA certificate: {e}")))?,
            );
        }
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .timeout(config.request_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_keepalive(Duration::from_secs(30))
                .tcp_nodelay(true)
                .http1_only()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("rcjobs-matrix/", env!("CARGO_PKG_VERSION")))
        };
        let mut b = builder();
        for cert in &roots {
            b = b.add_root_certificate(cert.clone());
        }
        let http = match b.build() {
            Ok(http) => http,
            // A host without a CA bundle cannot build the platform verifier; a plain-HTTP
            // loopback homeserver (the tests') then trusts only the configured roots.
            Err(_) if base.scheme() == "http" => builder()
                .tls_certs_only(roots)
                .build()
                .map_err(|e| MatrixError::Config(format!("HTTP client: {e}")))?,
            Err(e) => return Err(MatrixError::Config(format!("HTTP client: {e}"))),
        };
        let token = match &config.auth {
            Auth::Token(t) => Some((t.clone(), 0)),
            Auth::Password { .. } => None,
        };
        Ok(MatrixClient {
            inner: Arc::new(Inner {
                http,
                base,
                config,
                token: RwLock::new(token),
                login_lock: tokio::sync::Mutex::new(()),
                observer: self.observer,
                gate: self.gate,
                paused: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// rustls needs one process-wide crypto provider; this crate uses ring, like the
/// Rocket.Chat client. One installed first is kept.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// One HTTP call: `route` names it for the gate, metrics and errors.
struct Call {
    route: &'static str,
    method: Method,
    path: Vec<String>,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    auth: bool,
}

impl Call {
    fn new(route: &'static str, method: Method, path: &[&str]) -> Self {
        Call {
            route,
            method,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body: None,
            auth: true,
        }
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// A successful answer.
struct Answer {
    status: u16,
    body: Value,
}

/// A Synapse account as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    /// The full user id.
    pub name: String,
    /// Deactivated accounts cannot log in.
    #[serde(default)]
    pub deactivated: bool,
    /// Server admin.
    #[serde(default)]
    pub admin: bool,
}

/// A room as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct RoomDetails {
    /// The room id.
    pub room_id: String,
    /// `m.room.name`, if set.
    #[serde(default)]
    pub name: Option<String>,
    /// `m.room.canonical_alias`, if set.
    #[serde(default)]
    pub canonical_alias: Option<String>,
    /// The creator (`m.room.create` sender): in room v12 it outranks every power level.
    #[serde(default)]
    pub creator: Option<String>,
    /// The room version.
    #[serde(default)]
    pub version: Option<String>,
}

impl MatrixClient {
    /// A client without observer and with an open gate.
    pub fn new(config: MatrixConfig) -> MxResult<Self> {
        Self::builder(config).build()
    }

    /// Starts a builder (to add an observer or a shared gate).
    pub fn builder(config: MatrixConfig) -> ClientBuilder {
        ClientBuilder {
            config,
            observer: Arc::new(NoopObserver),
            gate: Arc::new(OpenGate),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &MatrixConfig {
        &self.inner.config
    }

    fn url(&self, path: &[String]) -> MxResult<Url> {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|_| MatrixError::Config("homeserver URL cannot be a base".into()))?
            .pop_if_empty()
            .extend(path);
        Ok(url)
    }

    fn current_token(&self) -> Option<(Secret, u64)> {
        self.inner
            .token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Logs in with the configured password unless another task did since `stale` was read.
    async fn login(&self, stale: Option<u64>) -> MxResult<()> {
        let Auth::Password { user, password } = &self.inner.config.auth else {
            return Ok(());
        };
        let _guard = self.inner.login_lock.lock().await;
        let current = self.current_token().map(|(_, g)| g);
        if current.is_some() && current != stale {
            return Ok(());
        }
        let mut call = Call::new("login", Method::POST, &["_matrix", "client", "v3", "login"])
            .body(json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password.expose(),
                "initial_device_display_name": "rcjobs",
            }));
        call.auth = false;
        let answer = Box::pin(self.execute(&call)).await?;
        let token = answer
            .body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| MatrixError::Decode {
                route: "login",
                message: "no access_token in the answer".into(),
            })?;
        let generation = current.unwrap_or(0) + 1;
        *self.inner.token.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Secret::new(token), generation));
        tracing::info!(user = %user, "logged in to the Matrix homeserver");
        Ok(())
    }

    /// The request loop: known rate-limit window, gate, auth, send, classify, and the
    /// in-call retries (short `M_LIMIT_EXCEEDED` waits, one re-login on 401 with a password,
    /// `get_retries` for transient GET failures).
    async fn execute(&self, call: &Call) -> MxResult<Answer> {
        let route = call.route;
        let cfg = &self.inner.config;
        let url = self.url(&call.path)?;
        let mut transient_retries = 0u32;
        let mut rate_limit_waits = 0u32;
        let mut relogged = false;
        loop {
            self.wait_for_window(route).await?;
            self.inner.gate.acquire(route).await;
            let token = if call.auth {
                if self.current_token().is_none() {
                    Box::pin(self.login(None)).await?;
                }
                self.current_token()
            } else {
                None
            };
            // A 429 seen by another task while this one waited in the gate: do not follow
            // it out (the same rule as the Rocket.Chat client).
            if self.paused_until(route).is_some() {
                continue;
            }
            let mut request = self.inner.http.request(call.method.clone(), url.clone());
            if !call.query.is_empty() {
                request = request.query(&call.query);
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            if let Some((t, _)) = &token {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                    .map_err(|_| MatrixError::Config("token is not a valid header value".into()))?;
                value.set_sensitive(true);
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            let started = Instant::now();
            let outcome = async {
                let response = request.send().await?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let text = response.text().await?;
                Ok::<_, reqwest::Error>((status, headers, text))
            }
            .await;
            let elapsed = started.elapsed();
            let (status, headers, text) = match outcome {
                Ok(parts) => parts,
                Err(e) => {
                    self.inner.observer.on_response(route, 0, elapsed);
                    let err = MatrixError::Transport {
                        route,
                        message: transport_message(&e),
                    };
                    if call.method == Method::GET && transient_retries < cfg.get_retries {
                        transient_retries += 1;
                        tokio::time::sleep(backoff(transient_retries)).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            self.inner.observer.on_response(route, status, elapsed);
            tracing::debug!(route, status, ?elapsed, "Matrix call");
            if (200..300).contains(&status) {
                let body = if text.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    serde_json::from_str(&text).map_err(|e| MatrixError::Decode {
                        route,
                        message: format!("{e}: {}", excerpt(&text)),
                    })?
                };
                return Ok(Answer { status, body });
            }
            let err = classify(route, status, &headers, &text, Utc::now());
            match &err {
                MatrixError::RateLimited { retry_at, .. } => {
                    self.pause(route, *retry_at).await;
                    rate_limit_waits += 1;
                    if rate_limit_waits <= MAX_RATE_LIMIT_WAITS
                        && until(*retry_at) <= cfg.rate_limit_max_wait
                    {
                        continue;
                    }
                    return Err(err);
                }
                MatrixError::Api { status: 401, .. }
                    if !relogged && call.auth && matches!(cfg.auth, Auth::Password { .. }) =>
                {
                    relogged = true;
                    Box::pin(self.login(token.map(|(_, g)| g))).await?;
                    continue;
                }
                e if e.is_transient()
                    && call.method == Method::GET
                    && transient_retries < cfg.get_retries =>
                {
                    transient_retries += 1;
                    tokio::time::sleep(backoff(transient_retries)).await;
                    continue;
                }
                _ => return Err(err),
            }
        }
    }

    /// Records that `route` is refused until `until`, locally and in the shared gate.
    async fn pause(&self, route: &'static str, until: DateTime<Utc>) {
        {
            let mut paused = self.inner.paused.lock().unwrap_or_else(|p| p.into_inner());
            let entry = paused.entry(route).or_insert(until);
            if *entry < until {
                *entry = until;
            }
        }
        self.inner.gate.pause(route, until).await;
    }

    fn paused_until(&self, route: &'static str) -> Option<DateTime<Utc>> {
        let mut paused = self.inner.paused.lock().unwrap_or_else(|p| p.into_inner());
        match paused.get(route) {
            Some(u) if *u > Utc::now() => Some(*u),
            Some(_) => {
                paused.remove(route);
                None
            }
            None => None,
        }
    }

    /// Waits out a known refusal of `route`, or fails fast when it is longer than allowed.
    async fn wait_for_window(&self, route: &'static str) -> MxResult<()> {
        let Some(until_at) = self.paused_until(route) else {
            return Ok(());
        };
        let wait = until(until_at);
        if wait > self.inner.config.rate_limit_max_wait {
            return Err(MatrixError::RateLimited {
                route,
                retry_at: until_at,
            });
        }
        self.inner.observer.on_rate_limited(route, wait);
        tokio::time::sleep(wait + RESET_MARGIN).await;
        Ok(())
    }

    // ---- Client-Server API ----

    /// `GET /account/whoami`: the bot's user id.
    pub async fn whoami(&self) -> MxResult<String> {
        let a = self
            .execute(&Call::new(
                "whoami",
                Method::GET,
                &["_matrix", "client", "v3", "account", "whoami"],
            ))
            .await?;
        str_field(&a.body, "user_id", "whoami")
    }

    /// `POST /createRoom` with `body`: the new room's id.
    pub async fn create_room(&self, body: Value) -> MxResult<String> {
        let a = self
            .execute(
                &Call::new(
                    "createRoom",
                    Method::POST,
                    &["_matrix", "client", "v3", "createRoom"],
                )
                .body(body),
            )
            .await?;
        str_field(&a.body, "room_id", "createRoom")
    }

    /// `GET /directory/room/{alias}`: the room id, `None` for an unknown alias.
    pub async fn resolve_alias(&self, alias: &str) -> MxResult<Option<String>> {
        let call = Call::new(
            "directory.room",
            Method::GET,
            &["_matrix", "client", "v3", "directory", "room", alias],
        );
        match self.execute(&call).await {
            Ok(a) => str_field(&a.body, "room_id", "directory.room").map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /rooms/{r}/joined_members`: the joined members' ids (one answer, no pages).
    pub async fn joined_members(&self, room_id: &str) -> MxResult<Vec<String>> {
        let call = Call::new(
            "joined_members",
            Method::GET,
            &[
                "_matrix",
                "client",
                "v3",
                "rooms",
                room_id,
                "joined_members",
            ],
        );
        let a = self.execute(&call).await?;
        let joined = a
            .body
            .get("joined")
            .and_then(Value::as_object)
            .ok_or_else(|| MatrixError::Decode {
                route: "joined_members",
                message: "no `joined` object".into(),
            })?;
        Ok(joined.keys().cloned().collect())
    }

    /// `GET /rooms/{r}/state/m.room.power_levels`: the whole content.
    pub async fn power_levels(&self, room_id: &str) -> MxResult<Value> {
        let call = Call::new(
            "state.power_levels",
            Method::GET,
            &[
                "_matrix",
                "client",
                "v3",
                "rooms",
                room_id,
                "state",
                "m.room.power_levels",
                "",
            ],
        );
        Ok(self.execute(&call).await?.body)
    }

    /// `PUT /rooms/{r}/state/m.room.power_levels`: replaces the whole content.
    pub async fn put_power_levels(&self, room_id: &str, content: &Value) -> MxResult<()> {
        let call = Call::new(
            "state.power_levels.put",
            Method::PUT,
            &[
                "_matrix",
                "client",
                "v3",
                "rooms",
                room_id,
                "state",
                "m.room.power_levels",
                "",
            ],
        )
        .body(content.clone());
        self.execute(&call).await.map(drop)
    }

    /// `GET /rooms/{r}/state/m.room.member/{u}`: the user's `membership`, `None` if there
    /// never was one.
    pub async fn membership(&self, room_id: &str, user_id: &str) -> MxResult<Option<String>> {
        let call = Call::new(
            "state.member",
            Method::GET,
            &[
                "_matrix",
                "client",
                "v3",
                "rooms",
                room_id,
                "state",
                "m.room.member",
                user_id,
            ],
        );
        match self.execute(&call).await {
            Ok(a) => Ok(a
                .body
                .get("membership")
                .and_then(Value::as_str)
                .map(str::to_owned)),
            Err(e) if e.errcode() == Some("M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /rooms/{r}/invite` as the bot.
    pub async fn invite(&self, room_id: &str, user_id: &str) -> MxResult<()> {
        let call = Call::new(
            "invite",
            Method::POST,
            &["_matrix", "client", "v3", "rooms", room_id, "invite"],
        )
        .body(json!({ "user_id": user_id }));
        self.execute(&call).await.map(drop)
    }

    /// `POST /rooms/{r}/kick` as the bot.
    pub async fn kick(&self, room_id: &str, user_id: &str) -> MxResult<()> {
        let call = Call::new(
            "kick",
            Method::POST,
            &["_matrix", "client", "v3", "rooms", room_id, "kick"],
        )
        .body(json!({ "user_id": user_id, "reason": "not enrolled in the Moodle course" }));
        self.execute(&call).await.map(drop)
    }

    // ---- Synapse admin API ----

    /// `GET /_synapse/admin/v2/users/{u}`; `None` for an unknown user.
    pub async fn user(&self, user_id: &str) -> MxResult<Option<UserInfo>> {
        let call = Call::new(
            "admin.users.get",
            Method::GET,
            &["_synapse", "admin", "v2", "users", user_id],
        );
        match self.execute(&call).await {
            Ok(a) => decode(a.body, "admin.users.get").map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /_synapse/admin/v2/users/{u}` without a password (SSO sites): `true` when it
    /// created the account (201), `false` when it modified an existing one (200: the PUT is
    /// an upsert).
    pub async fn put_user(&self, user_id: &str, displayname: &str, email: &str) -> MxResult<bool> {
        let mut body = json!({ "displayname": displayname });
        if !email.trim().is_empty() {
            body["threepids"] = json!([{ "medium": "email", "address": email }]);
        }
        let call = Call::new(
            "admin.users.put",
            Method::PUT,
            &["_synapse", "admin", "v2", "users", user_id],
        )
        .body(body);
        Ok(self.execute(&call).await?.status == 201)
    }

    /// `GET /_synapse/admin/v1/rooms/{r}`; `None` for an unknown (or malformed) room id.
    pub async fn room_details(&self, room_id: &str) -> MxResult<Option<RoomDetails>> {
        let call = Call::new(
            "admin.rooms.get",
            Method::GET,
            &["_synapse", "admin", "v1", "rooms", room_id],
        );
        match self.execute(&call).await {
            Ok(a) => decode(a.body, "admin.rooms.get").map(Some),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /_synapse/admin/v1/join/{r}`: the force-join (an invite from the bot, then the
    /// join, without rate limit).
    pub async fn admin_join(&self, room_id: &str, user_id: &str) -> MxResult<()> {
        let call = Call::new(
            "admin.join",
            Method::POST,
            &["_synapse", "admin", "v1", "join", room_id],
        )
        .body(json!({ "user_id": user_id }));
        self.execute(&call).await.map(drop)
    }

    /// `POST /_synapse/admin/v1/users/{u}/login`: an access token of another user
    /// ("puppet"), valid for `valid_for`. For tests and the benchmark's client-side joins.
    pub async fn login_as(&self, user_id: &str, valid_for: Duration) -> MxResult<Secret> {
        let until =
            Utc::now() + chrono::Duration::from_std(valid_for).unwrap_or(chrono::Duration::MAX);
        let call = Call::new(
            "admin.users.login",
            Method::POST,
            &["_synapse", "admin", "v1", "users", user_id, "login"],
        )
        .body(json!({ "valid_until_ms": until.timestamp_millis() }));
        let a = self.execute(&call).await?;
        str_field(&a.body, "access_token", "admin.users.login").map(Secret::new)
    }

    /// `POST /_synapse/admin/v1/purge_history/{r}`: deletes the room's events (local ones
    /// too) up to `up_to`; the asynchronous task's id.
    pub async fn purge_history(&self, room_id: &str, up_to: DateTime<Utc>) -> MxResult<String> {
        let call = Call::new(
            "admin.purge_history",
            Method::POST,
            &["_synapse", "admin", "v1", "purge_history", room_id],
        )
        .body(json!({ "delete_local_events": true, "purge_up_to_ts": up_to.timestamp_millis() }));
        let a = self.execute(&call).await?;
        str_field(&a.body, "purge_id", "admin.purge_history")
    }

    /// `GET /_synapse/admin/v1/purge_history_status/{id}`: `active`, `complete` or `failed`.
    pub async fn purge_history_status(&self, purge_id: &str) -> MxResult<String> {
        let call = Call::new(
            "admin.purge_history_status",
            Method::GET,
            &["_synapse", "admin", "v1", "purge_history_status", purge_id],
        );
        let a = self.execute(&call).await?;
        str_field(&a.body, "status", "admin.purge_history_status")
    }

    /// `GET /rooms/{r}/messages?dir=b`: the newest `limit` timeline events, newest first.
    pub async fn recent_events(&self, room_id: &str, limit: u32) -> MxResult<Vec<Value>> {
        self.messages(room_id, "b", limit).await
    }

    /// `GET /rooms/{r}/messages?dir=f`: the oldest `limit` timeline events the server
    /// still has, oldest first.
    pub async fn oldest_events(&self, room_id: &str, limit: u32) -> MxResult<Vec<Value>> {
        self.messages(room_id, "f", limit).await
    }

    async fn messages(&self, room_id: &str, dir: &str, limit: u32) -> MxResult<Vec<Value>> {
        let mut call = Call::new(
            "messages",
            Method::GET,
            &["_matrix", "client", "v3", "rooms", room_id, "messages"],
        );
        call.query = vec![("dir", dir.to_owned()), ("limit", limit.to_string())];
        let a = self.execute(&call).await?;
        Ok(a.body
            .get("chunk")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `PUT /rooms/{r}/redact/{event}/{txn}`: removes an event's content.
    pub async fn redact(&self, room_id: &str, event_id: &str, txn_id: &str) -> MxResult<()> {
        let call = Call::new(
            "redact",
            Method::PUT,
            &[
                "_matrix", "client", "v3", "rooms", room_id, "redact", event_id, txn_id,
            ],
        )
        .body(json!({ "reason": "course reset" }));
        self.execute(&call).await.map(drop)
    }

    /// `DELETE /_synapse/admin/v2/rooms/{r}` with purge: the asynchronous task's id.
    pub async fn delete_room(&self, room_id: &str) -> MxResult<String> {
        let call = Call::new(
            "admin.rooms.delete",
            Method::DELETE,
            &["_synapse", "admin", "v2", "rooms", room_id],
        )
        .body(json!({ "purge": true, "block": false }));
        let a = self.execute(&call).await?;
        str_field(&a.body, "delete_id", "admin.rooms.delete")
    }

    /// `GET /_synapse/admin/v2/rooms/delete_status/{id}`: the task's `status`
    /// (`scheduled`, `active`, `complete`, `failed`).
    pub async fn delete_status(&self, delete_id: &str) -> MxResult<String> {
        let call = Call::new(
            "admin.rooms.delete_status",
            Method::GET,
            &[
                "_synapse",
                "admin",
                "v2",
                "rooms",
                "delete_status",
                delete_id,
            ],
        );
        let a = self.execute(&call).await?;
        str_field(&a.body, "status", "admin.rooms.delete_status")
    }

    /// `GET /_synapse/admin/v2/rooms/{r}/delete_status`: the statuses of the room's tasks.
    pub async fn room_delete_statuses(&self, room_id: &str) -> MxResult<Vec<String>> {
        let call = Call::new(
            "admin.rooms.delete_status",
            Method::GET,
            &["_synapse", "admin", "v2", "rooms", room_id, "delete_status"],
        );
        let a = match self.execute(&call).await {
            Ok(a) => a,
            Err(e) if e.status() == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(a.body
            .get("results")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|t| t.get("status").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn str_field(body: &Value, field: &str, route: &'static str) -> MxResult<String> {
    body.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| MatrixError::Decode {
            route,
            message: format!("no `{field}` in the answer"),
        })
}

fn decode<T: serde::de::DeserializeOwned>(body: Value, route: &'static str) -> MxResult<T> {
    serde_json::from_value(body).map_err(|e| MatrixError::Decode {
        route,
        message: e.to_string(),
    })
}

/// A non-2xx answer as an error: 429 with its retry time, else the body's `errcode`.
fn classify(
    route: &'static str,
    status: u16,
    headers: &HeaderMap,
    text: &str,
    now: DateTime<Utc>,
) -> MatrixError {
    let body: Option<Value> = serde_json::from_str(text).ok();
    let errcode = body
        .as_ref()
        .and_then(|b| b.get("errcode"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if status == 429 || errcode.as_deref() == Some("M_LIMIT_EXCEEDED") {
        let wait = body
            .as_ref()
            .and_then(|b| b.get("retry_after_ms"))
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .or_else(|| {
                headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            })
            .unwrap_or(DEFAULT_RETRY);
        let retry_at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        return MatrixError::RateLimited { route, retry_at };
    }
    let message = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| excerpt(text));
    MatrixError::Api {
        route,
        status,
        errcode: errcode.unwrap_or_else(|| format!("HTTP {status}")),
        message,
    }
}

/// The transport error's kind and source, without the URL (which holds no secret, but logs
/// should not grow with it).
fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut message = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

fn until(at: DateTime<Utc>) -> Duration {
    (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

/// 200 ms, 400 ms, 800 ms, … capped at 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_answers_carry_the_servers_retry_time() {
        let now = Utc::now();
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("62"));
        let body =
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":61459}"#;
        match classify("createRoom", 429, &headers, body, now) {
            MatrixError::RateLimited { retry_at, .. } => {
                assert_eq!((retry_at - now).num_milliseconds(), 61459)
            }
            e => panic!("{e:?}"),
        }
        // Without retry_after_ms the header (whole seconds) is used.
        match classify(
            "createRoom",
            429,
            &headers,
            r#"{"errcode":"M_LIMIT_EXCEEDED"}"#,
            now,
        ) {
            MatrixError::RateLimited { retry_at, .. } => {
                assert_eq!((retry_at - now).num_seconds(), 62)
            }
            e => panic!("{e:?}"),
        }
        match classify(
            "kick",
            403,
            &HeaderMap::new(),
            r#"{"errcode":"M_FORBIDDEN","error":"no"}"#,
            now,
        ) {
            MatrixError::Api {
                errcode, status, ..
            } => assert_eq!((status, errcode.as_str()), (403, "M_FORBIDDEN")),
            e => panic!("{e:?}"),
        }
        match classify(
            "kick",
            502,
            &HeaderMap::new(),
            "<html>Bad gateway</html>",
            now,
        ) {
            e @ MatrixError::Api { .. } => assert!(e.is_transient()),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn paths_encode_ids_and_debug_redacts_the_token() {
        let cfg = MatrixConfig::new(
            Url::parse("https://matrix.example.edu/prefix/").unwrap(),
            Auth::Token("syt_very_secret".into()),
        );
        let client = MatrixClient::new(cfg).unwrap();
        let url = client
            .url(&[
                "_matrix".into(),
                "client".into(),
                "v3".into(),
                "rooms".into(),
                "!a:b/c".into(),
                "state".into(),
                "m.room.power_levels".into(),
                String::new(),
            ])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://matrix.example.edu/prefix/_matrix/client/v3/rooms/!a:b%2Fc/state/m.room.power_levels/"
        );
        assert!(!format!("{client:?}").contains("syt_very_secret"));
    }
}
