//! The HTTP endpoint every worker serves: `/metrics`, `/healthz`, `/readyz`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::{Metrics, MetricsError};

/// How long `/readyz` waits for the readiness check before answering 503. A probe that
/// hangs on a stuck database would otherwise hold kubelet's connection until its own timeout.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this process should receive work: implemented by the worker (database reachable,
/// not draining).
#[async_trait]
pub trait Readiness: Send + Sync {
    /// `Ok(())` when ready; otherwise a short reason shown in the `/readyz` body. The reason
    /// must not contain secrets (it is served to anyone who can reach the port).
    async fn ready(&self) -> Result<(), String>;
}

/// A readiness check that always passes, for processes with no dependencies to check.
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysReady;

#[async_trait]
impl Readiness for AlwaysReady {
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Arc<dyn Readiness>,
}

/// The routes, for embedding into another axum server.
pub fn router(metrics: Metrics, readiness: Arc<dyn Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

/// A bound but not yet serving metrics server; binding first lets callers learn the port
/// (`127.0.0.1:0` in tests) and fail early on an address in use.
pub struct MetricsServer {
    listener: TcpListener,
    router: Router,
}

impl MetricsServer {
    /// Binds `addr`.
    pub async fn bind(
        addr: SocketAddr,
        metrics: Metrics,
        readiness: Arc<dyn Readiness>,
    ) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| MetricsError::Bind(addr, e))?;
        Ok(Self {
            listener,
            router: router(metrics, readiness),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, MetricsError> {
        self.listener.local_addr().map_err(MetricsError::Io)
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests end.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), MetricsError> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(MetricsError::Io)
    }
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    readiness: Arc<dyn Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    let server = MetricsServer::bind(addr, metrics, readiness).await?;
    tracing::info!(addr = %server.local_addr()?, "metrics server listening");
    server.run(shutdown).await
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(READINESS_TIMEOUT, state.readiness.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: readiness check timed out\n",
        )
            .into_response(),
    }
}
