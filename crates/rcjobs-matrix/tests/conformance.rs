//! The backend conformance suite against the Matrix backend on a real Synapse 1.163
//! (`scripts/ensure-synapse.sh`), generous limits for every case but the rate-limit one,
//! which uses the server with Synapse's default limits.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use rcjobs_chat::{ChatBackend, ChatError, NewRoom};
use rcjobs_chat_conformance::{conformance_tests, Fixture, RateLimitProbe};
use rcjobs_matrix::MatrixBackend;

use common::*;

struct Matrix {
    synapse: Synapse,
    backend: MatrixBackend,
}

#[async_trait]
impl Fixture for Matrix {
    type Backend = MatrixBackend;

    fn backend(&self) -> &MatrixBackend {
        &self.backend
    }

    async fn seed_users(&self, prefix: &str, n: usize) -> Vec<String> {
        let names = (0..n).map(|_| self.unique(prefix)).collect();
        seed(&self.backend, names).await
    }

    /// Nothing pages on Matrix (`joined_members` answers every member at once); the suite
    /// still fills a room past this many members.
    fn largest_page(&self) -> usize {
        20
    }

    /// `rc_room_creation` (burst 10, then one per ~62 s) on the default-limits server: room
    /// creations until the 429. Later runs meet it at once, with the time left.
    async fn rate_limited_call(&self) -> RateLimitProbe {
        let strict = connect(self.synapse.strict_config()).await;
        let start = Utc::now();
        for _ in 0..20 {
            let room = NewRoom {
                name: self.unique("ct.rl"),
                ..NewRoom::default()
            };
            match strict.create_room(&room).await {
                Ok(_) => continue,
                Err(error @ ChatError::RateLimited { .. }) => {
                    return RateLimitProbe {
                        error,
                        earliest: start,
                        latest: Utc::now() + Duration::seconds(65),
                    }
                }
                Err(e) => panic!("create_room on the default-limits server: {e}"),
            }
        }
        panic!("20 room creations without a 429: is the strict server on Synapse's defaults?");
    }
}

async fn matrix() -> Matrix {
    let synapse = Synapse::get();
    let backend = connect(synapse.config()).await;
    Matrix { synapse, backend }
}

conformance_tests!(matrix);
