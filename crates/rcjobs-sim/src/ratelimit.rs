//! The REST rate limiter: Meteor's `RateLimiter` as Rocket.Chat configures it for `/api/v1`.
//! One rule per route + method; one counter per client IP under it; fixed window: all counters
//! of a rule reset together once the interval has passed since the rule last reset.

use crate::config::RateLimit;
use std::collections::HashMap;
use std::net::IpAddr;

/// The limiter's answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// `X-RateLimit-Limit`.
    pub limit: u32,
    /// `X-RateLimit-Remaining`.
    pub remaining: u32,
    /// `X-RateLimit-Reset`: absolute epoch milliseconds.
    pub reset_ms: i64,
    /// Whether the call is over the limit (429).
    pub blocked: bool,
    /// Seconds to wait as the 429 text says (`ceil(timeToReset / 1000)`).
    pub wait_secs: u64,
}

struct Rule {
    last_reset_ms: i64,
    counts: HashMap<IpAddr, u32>,
}

/// All rules, keyed by `(method, route)`.
#[derive(Default)]
pub(crate) struct Limiter {
    rules: HashMap<(String, String), Rule>,
}

impl Limiter {
    /// Counts one call (before checking, as Meteor does) and says whether it may pass.
    pub fn check(
        &mut self,
        method: &str,
        route: &str,
        ip: IpAddr,
        cfg: &RateLimit,
        now_ms: i64,
    ) -> Verdict {
        let interval = i64::try_from(cfg.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let rule = self
            .rules
            .entry((method.to_string(), route.to_string()))
            .or_insert_with(|| Rule {
                last_reset_ms: now_ms,
                counts: HashMap::new(),
            });
        if now_ms - rule.last_reset_ms >= interval {
            rule.last_reset_ms = now_ms;
            rule.counts.clear();
        }
        let count = rule.counts.entry(ip).or_insert(0);
        *count = count.saturating_add(1);
        let time_to_reset = (interval - (now_ms - rule.last_reset_ms)).max(0);
        let blocked = *count > cfg.calls;
        Verdict {
            limit: cfg.calls,
            remaining: cfg.calls.saturating_sub(*count),
            reset_ms: now_ms + time_to_reset,
            blocked,
            wait_secs: u64::try_from(time_to_reset).unwrap_or(0).div_ceil(1000),
        }
    }

    /// Forgets every window (after the limit is reconfigured).
    pub fn clear(&mut self) {
        self.rules.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fixed_window_per_route_method_ip() {
        let mut l = Limiter::default();
        let cfg = RateLimit {
            calls: 2,
            window: Duration::from_secs(60),
        };
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let v1 = l.check("POST", "/api/v1/groups.invite", a, &cfg, 1_000);
        assert_eq!((v1.remaining, v1.blocked, v1.reset_ms), (1, false, 61_000));
        let v2 = l.check("POST", "/api/v1/groups.invite", a, &cfg, 2_000);
        assert_eq!((v2.remaining, v2.blocked), (0, false));
        let v3 = l.check("POST", "/api/v1/groups.invite", a, &cfg, 30_500);
        assert_eq!(
            (v3.remaining, v3.blocked, v3.reset_ms, v3.wait_secs),
            (0, true, 61_000, 31)
        );
        assert!(
            !l.check("POST", "/api/v1/groups.invite", b, &cfg, 30_500)
                .blocked
        );
        assert!(
            !l.check("GET", "/api/v1/groups.invite", a, &cfg, 30_500)
                .blocked
        );
        assert!(
            !l.check("POST", "/api/v1/groups.kick", a, &cfg, 30_500)
                .blocked
        );
        let v4 = l.check("POST", "/api/v1/groups.invite", a, &cfg, 61_000);
        assert_eq!((v4.remaining, v4.blocked, v4.reset_ms), (1, false, 121_000));
    }
}
