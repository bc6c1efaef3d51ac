//! The contract every [`rcjobs_chat::ChatBackend`] must keep, as one shared test suite, and
//! the in-memory reference backend the handler tests can use.
//!
//! A backend's test file implements [`Fixture`] (a backend, a way to make accounts out of
//! band, its largest page size, and how to provoke its server's rate limit) and expands
//! [`conformance_tests!`], which generates one `#[tokio::test]` per case in [`cases`]. River's
//! `riverdrivertest` is the model: one contract, several implementations, one suite. The
//! suite runs against [`MemoryBackend`] (this crate's tests), the Rocket.Chat client and
//! simulator (`crates/rcjobs-rocketchat/tests/conformance.rs`) and the Matrix backend on a
//! real Synapse (`crates/rcjobs-matrix/tests/conformance.rs`).
//!
//! This is a test helper crate: product code never depends on it.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rcjobs_chat::{ChatBackend, ChatError};

pub mod cases;
mod memory;

pub use memory::MemoryBackend;

/// What a rate-limited call gave, and the retry time the server announced for it.
#[derive(Debug, Clone)]
pub struct RateLimitProbe {
    /// The backend's answer to the refused call.
    pub error: ChatError,
    /// The earliest `retry_at` consistent with the server's answer.
    pub earliest: DateTime<Utc>,
    /// The latest `retry_at` consistent with the server's answer.
    pub latest: DateTime<Utc>,
}

/// One backend under test, with the hooks the suite needs from its server.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// The backend type.
    type Backend: ChatBackend;

    /// The backend under test (already connected).
    fn backend(&self) -> &Self::Backend;

    /// Creates `n` active accounts the way an administrator or an identity provider would
    /// (not through the backend), and returns their usernames.
    async fn seed_users(&self, prefix: &str, n: usize) -> Vec<String>;

    /// The largest number of entries the backend reads or writes in one call (listing page,
    /// invite batch); the suite puts more members than this into one room. Backends that
    /// never page answer a size worth exceeding anyway.
    fn largest_page(&self) -> usize;

    /// Makes the server refuse a call for its rate limit and returns what the backend said.
    async fn rate_limited_call(&self) -> RateLimitProbe;

    /// A name nobody used before on this server (servers may outlive a test run): lower-case
    /// letters, digits and dots only, valid on every backend.
    fn unique(&self, prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = Utc::now().timestamp_micros();
        format!("{prefix}.{t:x}.{n}")
    }
}

/// Generates one `#[tokio::test]` per conformance case, each with a fresh fixture from
/// `$make` (an `async fn() -> impl Fixture`). The calling crate needs `tokio` (with the
/// `macros` and `rt-multi-thread` features) as a dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            create_user_then_find,
            rooms_by_name_and_id,
            idempotent_adds,
            unknown_users_reported,
            idempotent_removes,
            pagination_past_every_page_size,
            moderator_round_trip,
            read_only_round_trip,
            archive_round_trip,
            delete_room_is_final,
            unknown_room_is_room_not_found,
            rate_limit_is_mapped_with_the_servers_retry_time,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $make().await;
                $crate::cases::$case(&fixture).await;
            }
        )*
    };
}
