use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Admission control in front of every HTTP call a backend makes.
///
/// Chat servers limit requests per route (Rocket.Chat: a fixed window per route + method +
/// client IP). Several worker replicas share one server and one bot account, so the budget
/// must be shared too: the worker implements this trait with a token bucket in Postgres, and
/// a 429 seen by one replica pauses that route for all of them until the server's reset time.
/// Backends call [`RequestGate::acquire`] before each request and [`RequestGate::pause`] on a
/// rate-limit answer; `route` is the backend's own route name (e.g. `groups.invite`).
#[async_trait]
pub trait RequestGate: Send + Sync + 'static {
    /// Waits until one request on `route` may be sent.
    async fn acquire(&self, route: &str);

    /// Records that the server refused `route` until `until`; later `acquire` calls wait.
    async fn pause(&self, route: &str, until: DateTime<Utc>);
}

/// A gate that never waits: for tests and for servers without limits.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenGate;

#[async_trait]
impl RequestGate for OpenGate {
    async fn acquire(&self, _route: &str) {}
    async fn pause(&self, _route: &str, _until: DateTime<Utc>) {}
}
