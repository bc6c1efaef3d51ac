//! In-handler retries of one chat call that failed transiently (5xx, timeout, connection
//! reset).
//!
//! A blip on one call must not send the whole job through the queue's durable backoff
//! (which re-runs the entire room and waits seconds to minutes): a few short, capped,
//! jittered waits ride it out. Errors that outlast them go back to the caller, whose job
//! then takes the durable backoff. Every other error class is returned at once: rate limits
//! already have their own path (the client waits out short resets, the job snoozes on long
//! ones), and permission, authentication or missing-room errors do not pass by waiting.
//!
//! The handlers wrap the chat *mutations* (invites, kicks, moderator changes, account
//! creation, archiving). Reads are left alone: the Rocket.Chat client already retries GETs
//! in-call (`get_retries`), and wrapping them again would multiply the attempts.

use rand::Rng;
use rcjobs_chat::ChatResult;
use std::future::Future;
use std::time::Duration;

/// How a chat call that failed with [`rcjobs_chat::ChatError::Transient`] is retried inside
/// the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRetry {
    /// The wait before each retry, before jitter; their number is the number of retries.
    pub delays: Vec<Duration>,
    /// Upper bound of one wait after jitter.
    pub max_delay: Duration,
}

impl Default for CallRetry {
    /// Three retries after about 0.2 s, 0.5 s and 1.2 s (at most 2 s each): short enough
    /// that a run of ~100 calls with a few percent failing loses seconds, not minutes.
    fn default() -> Self {
        CallRetry {
            delays: vec![
                Duration::from_millis(200),
                Duration::from_millis(500),
                Duration::from_millis(1200),
            ],
            max_delay: Duration::from_secs(2),
        }
    }
}

impl CallRetry {
    /// No retries: every error is returned as it comes.
    pub fn none() -> CallRetry {
        CallRetry {
            delays: Vec::new(),
            max_delay: Duration::ZERO,
        }
    }

    /// The wait before retry `retry` (0 = the first), or `None` once the retries are used up.
    ///
    /// Jittered to 50–150 % so that workers hit by the same outage do not come back in step.
    pub fn delay(&self, retry: usize) -> Option<Duration> {
        let base = *self.delays.get(retry)?;
        let factor: f64 = rand::rng().random_range(0.5..1.5);
        Some(base.mul_f64(factor).min(self.max_delay))
    }

    /// Runs `call`, and again after a short wait each time it fails transiently, until it
    /// succeeds, fails otherwise, or the retries are used up (then the last error is
    /// returned). `call` must be safe to repeat: chat mutations are idempotent, and a failed
    /// answer may hide a change that was applied.
    pub async fn run<T, F, Fut>(&self, mut call: F) -> ChatResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ChatResult<T>>,
    {
        let mut retry = 0;
        loop {
            match call().await {
                Err(e) if e.is_transient() => {
                    let Some(wait) = self.delay(retry) else {
                        return Err(e);
                    };
                    tracing::debug!(error = %e, retry = retry + 1, wait_ms = wait.as_millis() as u64, "chat call failed transiently: retrying");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::Utc;
    use rcjobs_chat::ChatError;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    fn transient() -> ChatError {
        ChatError::Transient {
            endpoint: "groups.addModerator".into(),
            message: "500".into(),
        }
    }

    fn quick() -> CallRetry {
        CallRetry {
            delays: vec![
                Duration::from_millis(10),
                Duration::from_millis(20),
                Duration::from_millis(40),
            ],
            max_delay: Duration::from_millis(50),
        }
    }

    /// A call that fails with `errors` in order, then succeeds; counts its calls.
    async fn flaky(calls: &AtomicUsize, errors: &[ChatError]) -> ChatResult<&'static str> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        match errors.get(n) {
            Some(e) => Err(e.clone()),
            None => Ok("done"),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicUsize::new(0);
        let errors = [transient(), transient()];
        let started = Instant::now();
        let r = quick().run(|| flaky(&calls, &errors)).await;
        assert_eq!(r.unwrap(), "done");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two waits of at least half of 10 ms and 20 ms.
        assert!(started.elapsed() >= Duration::from_millis(15));
    }

    #[tokio::test]
    async fn persistent_transient_failure_gives_up_after_the_retries() {
        let calls = AtomicUsize::new(0);
        let errors = vec![transient(); 10];
        let r = quick().run(|| flaky(&calls, &errors)).await;
        assert!(matches!(r, Err(ChatError::Transient { .. })), "{r:?}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "one call and three retries"
        );
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let others = [
            ChatError::RateLimited {
                endpoint: "groups.kick".into(),
                retry_at: Utc::now(),
            },
            ChatError::Unauthorized {
                endpoint: "groups.kick".into(),
            },
            ChatError::RoomNotFound {
                endpoint: "groups.kick".into(),
                message: "gone".into(),
            },
            ChatError::Forbidden {
                endpoint: "groups.kick".into(),
                code: "error-not-allowed".into(),
                message: "no".into(),
            },
        ];
        for e in others {
            let calls = AtomicUsize::new(0);
            let errors = [e.clone()];
            let r = quick().run(|| flaky(&calls, &errors)).await;
            assert!(r.is_err(), "{e:?} returned as is");
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{e:?} was retried");
        }
    }

    #[tokio::test]
    async fn no_retries_returns_the_first_error() {
        let calls = AtomicUsize::new(0);
        let errors = [transient()];
        let r = CallRetry::none().run(|| flaky(&calls, &errors)).await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delays_are_jittered_capped_and_bounded_in_number() {
        let p = CallRetry::default();
        for _ in 0..200 {
            let d0 = p.delay(0).unwrap();
            assert!(d0 >= Duration::from_millis(100) && d0 < Duration::from_millis(300));
            let d2 = p.delay(2).unwrap();
            assert!(d2 >= Duration::from_millis(600) && d2 <= Duration::from_secs(2));
        }
        assert_eq!(p.delay(3), None);
        let spread: std::collections::HashSet<Duration> =
            (0..50).map(|_| p.delay(1).unwrap()).collect();
        assert!(spread.len() > 1, "no jitter");
    }
}
