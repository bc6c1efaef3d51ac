//! Retry backoff: Moodle's adhoc-task schedule (60 s doubling to 24 h) with jitter.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff stored in the job row as its next `run_at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt.
    pub base: Duration,
    /// Upper bound.
    pub cap: Duration,
    /// Multiplier per attempt.
    pub factor: f64,
    /// Random spread, as a fraction of the delay (0.1 = ±10 %), so failed jobs do not all
    /// come back at once.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(86_400),
            factor: 2.0,
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// The delay before retrying after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = (attempt.max(1) - 1).min(64);
        let raw = self.base.as_secs_f64() * self.factor.powi(exp);
        let capped = raw.min(self.cap.as_secs_f64());
        let spread = if self.jitter > 0.0 {
            rand::rng().random_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        Duration::from_secs_f64((capped * (1.0 + spread)).clamp(0.0, self.cap.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moodle_schedule_with_cap_and_jitter() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(1), Duration::from_secs(60));
        assert_eq!(p.delay(2), Duration::from_secs(120));
        assert_eq!(p.delay(5), Duration::from_secs(960));
        assert_eq!(p.delay(12), Duration::from_secs(86_400));
        assert_eq!(p.delay(400), Duration::from_secs(86_400));
        let j = RetryPolicy::default();
        for _ in 0..100 {
            let d = j.delay(3).as_secs_f64();
            assert!((216.0..=264.0).contains(&d), "{d}");
            assert!(j.delay(30).as_secs_f64() <= 86_400.0);
        }
    }
}
