//! Prometheus metrics and health endpoints for rcjobs processes.
//!
//! One [`Metrics`] handle per process holds every `rcjobs_*` metric in its own registry; the
//! worker calls one method per event (`job_finished`, `chat_request`, …) and a sampler copies
//! the queue's O(1) counter table into [`Metrics::set_jobs_by_state`]. This crate runs no SQL:
//! a scrape only encodes what is already in memory, so scraping never loads the database.
//! Label values are bounded by construction (see [`labels`]): never a job id, user or room.
//!
//! [`serve`] exposes `/metrics`, `/healthz` (the process is alive) and `/readyz` (the
//! [`Readiness`] check passes: database reachable, not draining).

mod metrics;
mod server;

pub mod labels;

pub use labels::{JobOutcome, MembershipAction, MembershipFailure, OTHER};
pub use metrics::{Metrics, MetricsConfig, StateCount, JOB_STATES};
pub use server::{router, serve, AlwaysReady, MetricsServer, Readiness, READINESS_TIMEOUT};

use std::net::SocketAddr;

/// What can go wrong creating, encoding or serving metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be created or registered (a duplicate or malformed name: a bug).
    #[error("metrics registry: {0}")]
    Registry(prometheus::Error),
    /// The text exposition could not be produced.
    #[error("encoding metrics: {0}")]
    Encode(String),
    /// The listen address could not be bound.
    #[error("binding metrics server to {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// Serving failed.
    #[error("metrics server: {0}")]
    Io(std::io::Error),
}

// The causes are in the messages and deliberately not `source`s: error reports that walk the
// chain (`{:#}`) printed each of them twice.
impl From<prometheus::Error> for MetricsError {
    fn from(e: prometheus::Error) -> Self {
        MetricsError::Registry(e)
    }
}
