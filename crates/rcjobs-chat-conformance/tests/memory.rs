//! The conformance suite against the in-memory reference backend.

use async_trait::async_trait;
use chrono::{Duration, Utc};
use rcjobs_chat::ChatError;
use rcjobs_chat_conformance::{conformance_tests, Fixture, MemoryBackend, RateLimitProbe};

struct Memory(MemoryBackend);

#[async_trait]
impl Fixture for Memory {
    type Backend = MemoryBackend;

    fn backend(&self) -> &MemoryBackend {
        &self.0
    }

    async fn seed_users(&self, prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let name = self.unique(prefix);
                self.0.add_user(&name, true);
                name
            })
            .collect()
    }

    fn largest_page(&self) -> usize {
        self.0.page_size()
    }

    async fn rate_limited_call(&self) -> RateLimitProbe {
        let retry_at = Utc::now() + Duration::seconds(30);
        self.0.inject(ChatError::RateLimited {
            endpoint: "find_user".into(),
            retry_at,
        });
        let error = rcjobs_chat::ChatBackend::find_user(&self.0, "anyone")
            .await
            .expect_err("the injected rate limit");
        RateLimitProbe {
            error,
            earliest: retry_at,
            latest: retry_at,
        }
    }
}

async fn memory() -> Memory {
    Memory(MemoryBackend::new(7))
}

conformance_tests!(memory);
