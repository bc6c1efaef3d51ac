//! A hook for request metrics, so the worker can export Prometheus series without this crate
//! depending on Prometheus.

use std::time::Duration;

/// Receives one event per HTTP exchange. Called inline on the request path: keep it cheap.
pub trait RequestObserver: Send + Sync {
    /// An HTTP answer arrived (`status`), or none did (`status == 0`: timeout, connect
    /// failure, reset). `elapsed` covers sending and reading the body.
    fn on_response(&self, endpoint: &'static str, status: u16, elapsed: Duration);

    /// The client is about to wait `wait` for `endpoint`'s rate-limit window to reset
    /// (after a 429, or because the last answer said no calls remain).
    fn on_rate_limited(&self, endpoint: &'static str, wait: Duration) {
        let _ = (endpoint, wait);
    }
}

/// An observer that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl RequestObserver for NoopObserver {
    fn on_response(&self, _endpoint: &'static str, _status: u16, _elapsed: Duration) {}
}
