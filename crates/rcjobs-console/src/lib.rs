//! rcjobs-console: the operator console served by `rcjobs ui`.
//!
//! Server-rendered pages (Overview, Jobs, Rooms, Queues) over the queue's O(1) counters and
//! indexed lookups, every asset embedded. Safe by default:
//! - actions need an operator: the bearer token (`RCJOBS_UI_TOKEN`, typed once on the sign-in
//!   page, which then holds a session cookie) or, when configured, a header set by a trusted
//!   reverse proxy; with neither configured, or with `read_only`, the console only shows;
//! - every action is a POST carrying the double-submit CSRF token (cookie `rcjobs_csrf`,
//!   `SameSite=Strict`), and a cross-origin `Origin` is refused;
//! - every action is logged (`tracing`, target `rcjobs_console::audit`) with who and what.

mod auth;
mod html;
mod pages;

use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::Sessions;

/// Everything the console can fail with before it serves.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("console server failed: {0}")]
    Serve(std::io::Error),
}

/// How the console runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (default loopback `127.0.0.1:9188`).
    pub addr: SocketAddr,
    /// The bearer token that grants actions; `None`: nobody may act (read-only console).
    pub token: Option<String>,
    /// A request header set by a trusted reverse proxy that authenticates operators (e.g.
    /// `X-Forwarded-User`); its value names the operator and grants actions. Off by default:
    /// only turn it on when nothing but the proxy can reach the console.
    pub trusted_header: Option<String>,
    /// Show only, whatever the credentials.
    pub read_only: bool,
    /// Seconds between automatic refreshes of the overview (0: none).
    pub refresh_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 9188)),
            token: None,
            trusted_header: None,
            read_only: false,
            refresh_secs: 5,
        }
    }
}

impl Config {
    /// Whether anybody could act at all (else every page says read-only).
    pub fn actions_possible(&self) -> bool {
        !self.read_only && (self.token.is_some() || self.trusted_header.is_some())
    }
}

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// The queue database.
    pub pool: PgPool,
    /// The configuration.
    pub config: Arc<Config>,
    /// Signed-in operators.
    pub sessions: Sessions,
}

/// The console's routes (for `serve` and for tests that run it on their own listener).
pub fn router(pool: PgPool, config: Config) -> Router {
    let state = AppState {
        pool,
        config: Arc::new(config),
        sessions: Sessions::default(),
    };
    Router::new()
        .route("/", get(pages::overview))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/bulk", post(pages::bulk))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/{action}", post(pages::job_action))
        .route("/rooms", get(pages::rooms))
        .route("/rooms/{cmid}", get(pages::room))
        .route("/rooms/{cmid}/sync", post(pages::room_sync))
        .route("/queues", get(pages::queues))
        .route("/queues/{action}", post(pages::queue_action))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/assets/style.css", get(html::style))
        .route("/assets/console.js", get(html::script))
        .with_state(state)
}

/// Serves the console on `config.addr` until `shutdown` resolves.
pub async fn serve(
    pool: PgPool,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    let addr = config.addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Bind { addr, source })?;
    serve_on(listener, pool, config, shutdown).await
}

/// Serves the console on a bound listener until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    pool: PgPool,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    let app = router(pool, config);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(ConsoleError::Serve)
}
