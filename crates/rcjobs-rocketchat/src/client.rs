//! The HTTP core: one pooled, certificate-verifying reqwest client, authentication, the
//! response envelope, rate-limit waits and transient retries. Endpoint methods live in
//! `endpoints/`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once, RwLock};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use rcjobs_chat::{OpenGate, RequestGate};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::config::{Auth, RocketChatConfig, Secret};
use crate::error::{self, classify_response, RocketChatError};
use crate::observer::{NoopObserver, RequestObserver};
use crate::types::ServerVersion;

/// Result alias for client calls.
pub type RcResult<T> = Result<T, RocketChatError>;

/// Tri-state capability flag stored in an atomic: unknown / yes / no.
#[derive(Debug, Default)]
pub(crate) struct Capability(AtomicU8);

impl Capability {
    pub(crate) fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }
    pub(crate) fn set(&self, value: bool) {
        self.0.store(if value { 1 } else { 2 }, Ordering::Relaxed);
    }
}

/// Login state: who we are and the token in use. `generation` tells concurrent callers that
/// saw the same 401 whether someone already logged in again.
#[derive(Clone)]
struct Credentials {
    user_id: String,
    token: Secret,
    generation: u64,
}

/// Extra pause added after a rate-limit reset, for clock granularity.
const RESET_MARGIN: Duration = Duration::from_millis(25);
/// How many 429s in a row one call waits out before giving up.
const MAX_RATE_LIMIT_WAITS: u32 = 4;

pub(crate) struct Inner {
    http: reqwest::Client,
    api_base: Url,
    root: Url,
    pub(crate) config: RocketChatConfig,
    creds: RwLock<Option<Credentials>>,
    generation: AtomicU64,
    login_lock: tokio::sync::Mutex<()>,
    observer: Arc<dyn RequestObserver>,
    gate: Arc<dyn RequestGate>,
    paused: Mutex<HashMap<&'static str, DateTime<Utc>>>,
    pub(crate) version: Mutex<Option<ServerVersion>>,
    pub(crate) batch_invite: Capability,
    pub(crate) infinite_count: Capability,
    pub(crate) roles_endpoint: Capability,
}

/// A typed Rocket.Chat REST client. Cheap to clone (shared connection pool and state).
///
/// The raw endpoint methods (`users_info_by_username`, `groups_invite`, …) map one-to-one to
/// REST calls and return the server's refusals as errors; [`crate::RocketChatBackend`] builds
/// the idempotent, batched [`rcjobs_chat::ChatBackend`] on top of them.
#[derive(Clone)]
pub struct RocketChatClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RocketChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocketChatClient")
            .field("api_base", &self.inner.api_base.as_str())
            .field("auth", &self.inner.config.auth)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RocketChatClient`] with optional metrics observer and shared request gate.
pub struct ClientBuilder {
    config: RocketChatConfig,
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
    /// Receives one event per HTTP exchange (for Prometheus in the worker).
    pub fn observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Admission control shared by all replicas (see [`rcjobs_chat::RequestGate`]).
    pub fn gate(mut self, gate: Arc<dyn RequestGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Builds the HTTP client (TLS with verified certificates, timeouts, keep-alive pool).
    pub fn build(self) -> RcResult<RocketChatClient> {
        install_crypto_provider();
        let config = self.config;
        let api_base = config
            .api_base()
            .map_err(|e| RocketChatError::Config(format!("base URL: {e}")))?;
        let root = api_base
            .join("../../")
            .map_err(|e| RocketChatError::Config(format!("base URL: {e}")))?;
        let mut roots = Vec::new();
        for pem in &config.extra_root_certs_pem {
            roots.push(
                reqwest::Certificate::from_pem(pem)
                    .map_err(|e| RocketChatError::Config(format!("CA certificate: {e}")))?,
            );
        }
        let base = || {
            reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .timeout(config.request_timeout)
                .pool_max_idle_per_host(config.pool_max_idle_per_host)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_keepalive(Duration::from_secs(30))
                .tcp_nodelay(true)
                .http1_only()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("rcjobs-rocketchat/", env!("CARGO_PKG_VERSION")))
        };
        let mut builder = base();
        for cert in &roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        let http = match builder.build() {
            Ok(http) => http,
            // A host without a CA bundle cannot build the platform verifier; for a plain-HTTP
            // server (the simulator, a loopback proxy) trust only the configured roots.
            Err(_) if api_base.scheme() == "http" => base()
                .tls_certs_only(roots)
                .build()
                .map_err(|e| RocketChatError::Config(format!("HTTP client: {e}")))?,
            Err(e) => return Err(RocketChatError::Config(format!("HTTP client: {e}"))),
        };
        let creds = match &config.auth {
            Auth::Token { user_id, token } => Some(Credentials {
                user_id: user_id.clone(),
                token: token.clone(),
                generation: 0,
            }),
            Auth::Password { .. } => None,
        };
        let inner = Inner {
            http,
            api_base,
            root,
            batch_invite: Capability::default(),
            infinite_count: Capability::default(),
            roles_endpoint: Capability::default(),
            creds: RwLock::new(creds),
            generation: AtomicU64::new(0),
            login_lock: tokio::sync::Mutex::new(()),
            observer: self.observer,
            gate: self.gate,
            paused: Mutex::new(HashMap::new()),
            version: Mutex::new(None),
            config,
        };
        if let Some(b) = inner.config.batch_invite {
            inner.batch_invite.set(b);
        }
        if let Some(b) = inner.config.members_count_zero {
            inner.infinite_count.set(b);
        }
        Ok(RocketChatClient {
            inner: Arc::new(inner),
        })
    }
}

/// rustls needs one process-wide crypto provider; this crate uses ring. If another one was
/// installed first it is kept.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// One REST call to make.
pub(crate) struct Call {
    pub endpoint: &'static str,
    pub method: Method,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    /// Send `X-User-Id`/`X-Auth-Token` (everything but `login`).
    pub auth: bool,
    /// Relative to the server root instead of `api/v1/` (for `api/info`).
    pub from_root: bool,
}

impl Call {
    pub(crate) fn get(endpoint: &'static str, query: Vec<(&'static str, String)>) -> Self {
        Call {
            endpoint,
            method: Method::GET,
            query,
            body: None,
            auth: true,
            from_root: false,
        }
    }
    pub(crate) fn post(endpoint: &'static str, body: Value) -> Self {
        Call {
            endpoint,
            method: Method::POST,
            query: Vec::new(),
            body: Some(body),
            auth: true,
            from_root: false,
        }
    }
}

impl RocketChatClient {
    /// A client with no observer and an open gate.
    pub fn new(config: RocketChatConfig) -> RcResult<Self> {
        Self::builder(config).build()
    }

    /// Starts a builder (to add an observer or a shared gate).
    pub fn builder(config: RocketChatConfig) -> ClientBuilder {
        ClientBuilder {
            config,
            observer: Arc::new(NoopObserver),
            gate: Arc::new(OpenGate),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &RocketChatConfig {
        &self.inner.config
    }

    /// The `…/api/v1/` base every endpoint is joined onto.
    pub fn api_base(&self) -> &Url {
        &self.inner.api_base
    }

    /// The user id the client acts as, once known (immediately for token auth, after the
    /// first call for password auth).
    pub fn user_id(&self) -> Option<String> {
        self.read_creds().map(|c| c.user_id)
    }

    /// The URL of an endpoint (`groups.members` → `…/api/v1/groups.members`).
    pub fn endpoint_url(&self, endpoint: &str) -> RcResult<Url> {
        self.inner
            .api_base
            .join(endpoint)
            .map_err(|e| RocketChatError::Config(format!("endpoint {endpoint}: {e}")))
    }

    fn read_creds(&self) -> Option<Credentials> {
        self.inner
            .creds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `POST login` with the configured password; stores the returned token. With token
    /// auth this is a no-op.
    pub async fn login(&self) -> RcResult<()> {
        let stale = self.read_creds().map(|c| c.generation);
        self.relogin(stale).await
    }

    async fn credentials(&self) -> RcResult<Credentials> {
        if let Some(c) = self.read_creds() {
            return Ok(c);
        }
        Box::pin(self.relogin(None)).await?;
        self.read_creds()
            .ok_or_else(|| RocketChatError::Unauthorized {
                endpoint: "login",
                message: "no credentials after login".to_owned(),
            })
    }

    /// Logs in again unless another task already did since `stale_generation` was read.
    async fn relogin(&self, stale_generation: Option<u64>) -> RcResult<()> {
        let Auth::Password { user, password } = &self.inner.config.auth else {
            return Ok(());
        };
        let _guard = self.inner.login_lock.lock().await;
        let current = self.read_creds().map(|c| c.generation);
        if current.is_some() && current != stale_generation {
            return Ok(());
        }
        let call = Call {
            endpoint: "login",
            method: Method::POST,
            query: Vec::new(),
            body: Some(serde_json::json!({ "user": user, "password": password.expose() })),
            auth: false,
            from_root: false,
        };
        let value = Box::pin(self.execute(&call)).await?;
        let data = value.get("data").unwrap_or(&value);
        let user_id = data.get("userId").and_then(Value::as_str);
        let token = data.get("authToken").and_then(Value::as_str);
        let (Some(user_id), Some(token)) = (user_id, token) else {
            return Err(RocketChatError::Decode {
                endpoint: "login",
                message: "no data.userId/data.authToken in the answer".to_owned(),
            });
        };
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.inner.creds.write().unwrap_or_else(|p| p.into_inner()) = Some(Credentials {
            user_id: user_id.to_owned(),
            token: Secret::new(token),
            generation,
        });
        tracing::info!(user_id, "logged in to Rocket.Chat");
        Ok(())
    }

    /// Sends a call and decodes `T` from the whole JSON answer.
    pub(crate) async fn call<T: DeserializeOwned>(&self, call: Call) -> RcResult<T> {
        let endpoint = call.endpoint;
        let value = self.execute(&call).await?;
        serde_json::from_value(value).map_err(|e| RocketChatError::Decode {
            endpoint,
            message: e.to_string(),
        })
    }

    /// Sends a call and decodes `T` from one field of the answer (`group`, `user`, …).
    pub(crate) async fn call_field<T: DeserializeOwned>(
        &self,
        call: Call,
        field: &'static str,
    ) -> RcResult<T> {
        let endpoint = call.endpoint;
        let mut value = self.execute(&call).await?;
        let inner =
            value
                .get_mut(field)
                .map(Value::take)
                .ok_or_else(|| RocketChatError::Decode {
                    endpoint,
                    message: format!("answer has no `{field}`"),
                })?;
        serde_json::from_value(inner).map_err(|e| RocketChatError::Decode {
            endpoint,
            message: format!("`{field}`: {e}"),
        })
    }

    /// The request loop: rate-limit window, gate, auth, send, classify, and the in-call
    /// retries (429 within `rate_limit_max_wait`, one re-login on 401 with password auth,
    /// `get_retries` for transient GET failures).
    pub(crate) async fn execute(&self, call: &Call) -> RcResult<Value> {
        let endpoint = call.endpoint;
        let cfg = &self.inner.config;
        let url = if call.from_root {
            self.inner.root.join(endpoint)
        } else {
            self.inner.api_base.join(endpoint)
        }
        .map_err(|e| RocketChatError::Config(format!("endpoint {endpoint}: {e}")))?;
        let mut transient_retries = 0u32;
        let mut rate_limit_waits = 0u32;
        let mut relogged = false;
        loop {
            self.wait_for_window(endpoint).await?;
            self.inner.gate.acquire(endpoint).await;
            let creds = if call.auth {
                Some(self.credentials().await?)
            } else {
                None
            };
            // A 429 may have landed on another task of this client while this one waited in
            // the gate or for a login: re-check right before sending, so a call already past
            // the gate does not follow the 429 out (issue 14).
            if self.paused_until(endpoint).is_some() {
                continue;
            }
            let mut request = self.inner.http.request(call.method.clone(), url.clone());
            if !call.query.is_empty() {
                request = request.query(&call.query);
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            if let Some(c) = &creds {
                let mut token = HeaderValue::from_str(c.token.expose()).map_err(|_| {
                    RocketChatError::Config("token is not a valid header value".to_owned())
                })?;
                token.set_sensitive(true);
                request = request
                    .header("X-User-Id", c.user_id.as_str())
                    .header("X-Auth-Token", token);
            }
            let started = Instant::now();
            let outcome = async {
                let response = request.send().await?;
                let status = response.status();
                let headers = response.headers().clone();
                let text = response.text().await?;
                Ok::<_, reqwest::Error>((status, headers, text))
            }
            .await;
            let elapsed = started.elapsed();
            let (status, headers, text) = match outcome {
                Ok(parts) => parts,
                Err(e) => {
                    self.inner.observer.on_response(endpoint, 0, elapsed);
                    let err = error::transport(endpoint, &e);
                    tracing::debug!(endpoint, ?elapsed, error = %err, "Rocket.Chat call failed");
                    if call.method == Method::GET && transient_retries < cfg.get_retries {
                        transient_retries += 1;
                        tokio::time::sleep(backoff(transient_retries)).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            self.inner
                .observer
                .on_response(endpoint, status.as_u16(), elapsed);
            tracing::debug!(
                endpoint,
                status = status.as_u16(),
                ?elapsed,
                "Rocket.Chat call"
            );
            if error::header_remaining(&headers) == Some(0) {
                if let Some(reset) = error::header_reset_ms(&headers)
                    .and_then(DateTime::from_timestamp_millis)
                    .filter(|r| *r > Utc::now())
                {
                    self.pause(endpoint, reset).await;
                }
            }
            if status.is_success() {
                let value: Value =
                    serde_json::from_str(&text).map_err(|e| RocketChatError::Decode {
                        endpoint,
                        message: format!("{e}: {}", error::excerpt(&text)),
                    })?;
                if value.get("success") == Some(&Value::Bool(false)) {
                    return Err(classify_response(
                        endpoint,
                        reqwest::StatusCode::BAD_REQUEST,
                        &headers,
                        &text,
                        SystemTime::now(),
                    ));
                }
                return Ok(value);
            }
            let err = classify_response(endpoint, status, &headers, &text, SystemTime::now());
            match &err {
                RocketChatError::RateLimited { retry_at, .. } => {
                    self.pause(endpoint, *retry_at).await;
                    rate_limit_waits += 1;
                    if rate_limit_waits <= MAX_RATE_LIMIT_WAITS
                        && error::until(*retry_at) <= cfg.rate_limit_max_wait
                    {
                        continue;
                    }
                    return Err(err);
                }
                RocketChatError::Unauthorized { .. }
                    if !relogged && call.auth && matches!(cfg.auth, Auth::Password { .. }) =>
                {
                    relogged = true;
                    Box::pin(self.relogin(creds.map(|c| c.generation))).await?;
                    continue;
                }
                RocketChatError::Server { .. }
                    if call.method == Method::GET && transient_retries < cfg.get_retries =>
                {
                    transient_retries += 1;
                    tokio::time::sleep(backoff(transient_retries)).await;
                    continue;
                }
                _ => return Err(err),
            }
        }
    }

    /// Records that `endpoint` is exhausted until `until` (locally and in the shared gate).
    async fn pause(&self, endpoint: &'static str, until: DateTime<Utc>) {
        {
            let mut paused = self.inner.paused.lock().unwrap_or_else(|p| p.into_inner());
            let entry = paused.entry(endpoint).or_insert(until);
            if *entry < until {
                *entry = until;
            }
        }
        self.inner.gate.pause(endpoint, until).await;
    }

    /// The end of a known exhausted window of `endpoint`, if it has not passed.
    fn paused_until(&self, endpoint: &'static str) -> Option<DateTime<Utc>> {
        let mut paused = self.inner.paused.lock().unwrap_or_else(|p| p.into_inner());
        match paused.get(endpoint) {
            Some(u) if *u > Utc::now() => Some(*u),
            Some(_) => {
                paused.remove(endpoint);
                None
            }
            None => None,
        }
    }

    /// Waits out a known exhausted window, or fails fast if it is longer than allowed.
    async fn wait_for_window(&self, endpoint: &'static str) -> RcResult<()> {
        let Some(until) = self.paused_until(endpoint) else {
            return Ok(());
        };
        let wait = error::until(until);
        if wait > self.inner.config.rate_limit_max_wait {
            return Err(RocketChatError::RateLimited {
                endpoint,
                retry_at: until,
            });
        }
        self.inner.observer.on_rate_limited(endpoint, wait);
        tracing::debug!(
            endpoint,
            ?wait,
            "waiting for the rate-limit window to reset"
        );
        tokio::time::sleep(wait + RESET_MARGIN).await;
        Ok(())
    }
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
    fn builds_endpoint_urls_and_redacts_debug() {
        let cfg = RocketChatConfig::new(
            Url::parse("https://chat.example.org/prefix").unwrap(),
            Auth::Token {
                user_id: "BOTID".into(),
                token: "tok-ABCDEF-0123456789".into(),
            },
        );
        let client = RocketChatClient::new(cfg).unwrap();
        assert_eq!(
            client.endpoint_url("groups.members").unwrap().as_str(),
            "https://chat.example.org/prefix/api/v1/groups.members"
        );
        assert_eq!(
            client.inner.root.as_str(),
            "https://chat.example.org/prefix/"
        );
        let text = format!("{client:?}");
        assert!(!text.contains("tok-ABCDEF-0123456789"), "{text}");
        assert!(text.contains("BOTID"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(20), Duration::from_secs(5));
    }
}
