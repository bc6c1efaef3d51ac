//! The shared Rocket.Chat rate limiter: [`PgRequestGate`] implements
//! [`rcjobs_chat::RequestGate`] with state in `rcjobs_sync.rate_window`, so every worker
//! replica draws from one budget per route and honours one pause per route.
//!
//! Model: Rocket.Chat counts calls per route in a **fixed window** that starts with the
//! first call after the previous window expired (`docs/rocketchat-api.md` §4.1). The gate
//! mirrors that: a window per route starts at the first acquire after the last one ended;
//! at most `calls` acquisitions are granted in it. Replicas lease tokens in small batches
//! (one row update per batch, not per request). A 429 seen by any replica writes
//! `paused_until` (from `X-RateLimit-Reset`) and resets the window, so after the pause the
//! next window is aligned with the server's: no request beyond the limit after the first
//! 429. Routes without a configured budget (the bot role bypasses the server's limiter)
//! only honour pauses.
//!
//! Every grant re-reads the shared pause (`pause_refresh_ms = 0`, the default), so a 429
//! seen by one replica stops the others from the moment it is committed, not up to a cache
//! period later: with the old 500 ms cache, requests kept leaving the other replicas after
//! the first 429 (issue 14). The cost is one primary-key read per chat call; a positive
//! `pause_refresh_ms` trades that strictness for fewer reads.
//!
//! Database trouble never blocks chat calls for long: every gate query is bounded by
//! `db_timeout_ms`, after which the gate fails open (logged) and the server's own 429
//! handling remains the backstop.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rcjobs_chat::RequestGate;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A per-route budget: `calls` per `per_secs` (Rocket.Chat default 10 / 60 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteLimit {
    /// Calls allowed per window.
    pub calls: u32,
    /// Window length in seconds.
    pub per_secs: u64,
}

/// Limiter settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Budget for every route without an override; `None` = no budget, pauses only.
    pub default_limit: Option<RouteLimit>,
    /// Per-route budgets (`groups.invite`, …).
    pub per_route: HashMap<String, RouteLimit>,
    /// Most tokens a replica leases per database round trip.
    pub lease_batch: u32,
    /// Added to each window to absorb clock and network skew (milliseconds).
    pub margin_ms: u64,
    /// How long a known "no pause" answer is trusted before the shared pause is read again
    /// (milliseconds). 0 = read it before every request, which is what keeps a 429 on one
    /// replica from being followed by requests from another.
    pub pause_refresh_ms: u64,
    /// Longest wait for one limiter query before failing open (milliseconds).
    pub db_timeout_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            default_limit: None,
            per_route: HashMap::new(),
            lease_batch: 5,
            margin_ms: 300,
            pause_refresh_ms: 0,
            db_timeout_ms: 2000,
        }
    }
}

impl RateLimitConfig {
    fn limit_for(&self, route: &str) -> Option<RouteLimit> {
        self.per_route.get(route).copied().or(self.default_limit)
    }
}

#[derive(Debug, Default)]
struct Local {
    tokens: u32,
    window_end: Option<DateTime<Utc>>,
    paused_until: Option<DateTime<Utc>>,
    checked: Option<Instant>,
}

enum Lease {
    Granted {
        tokens: u32,
        window_end: DateTime<Utc>,
    },
    WaitUntil(DateTime<Utc>),
    Paused(DateTime<Utc>),
}

/// The Postgres-backed [`RequestGate`] shared by all replicas.
pub struct PgRequestGate {
    pool: PgPool,
    cfg: RateLimitConfig,
    local: Mutex<HashMap<String, Local>>,
}

impl std::fmt::Debug for PgRequestGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRequestGate")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn until_now(t: DateTime<Utc>) -> Duration {
    (t - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

impl PgRequestGate {
    /// A gate on `pool` (the queue database, schema `rcjobs_sync` migrated).
    pub fn new(pool: PgPool, cfg: RateLimitConfig) -> PgRequestGate {
        PgRequestGate {
            pool,
            cfg,
            local: Mutex::new(HashMap::new()),
        }
    }

    fn with_local<T>(&self, route: &str, f: impl FnOnce(&mut Local) -> T) -> T {
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(route.to_owned()).or_default())
    }

    async fn lease(&self, route: &str, limit: RouteLimit) -> Result<Lease, sqlx::Error> {
        let batch = self.cfg.lease_batch.clamp(1, (limit.calls / 4).max(1));
        let window =
            Duration::from_secs(limit.per_secs) + Duration::from_millis(self.cfg.margin_ms);
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO rcjobs_sync.rate_window (route, window_start) VALUES ($1, '-infinity') ON CONFLICT DO NOTHING")
            .bind(route)
            .execute(&mut *tx)
            .await?;
        let (now, start, used, paused): (DateTime<Utc>, DateTime<Utc>, i32, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT clock_timestamp(),
                    CASE WHEN window_start = '-infinity' THEN '1970-01-01'::timestamptz ELSE window_start END,
                    used, paused_until
               FROM rcjobs_sync.rate_window WHERE route = $1 FOR UPDATE",
        )
        .bind(route)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(p) = paused.filter(|p| *p > now) {
            tx.commit().await?;
            return Ok(Lease::Paused(p));
        }
        let window = chrono::Duration::milliseconds(window_ms);
        let (start, used) = if now >= start + window {
            (now, 0u32)
        } else {
            (start, used.max(0) as u32)
        };
        let avail = limit.calls.saturating_sub(used);
        if avail == 0 {
            tx.commit().await?;
            return Ok(Lease::WaitUntil(start + window));
        }
        let take = avail.min(batch);
        sqlx::query(
            "UPDATE rcjobs_sync.rate_window SET window_start = $2, used = $3 WHERE route = $1",
        )
        .bind(route)
        .bind(start)
        .bind((used + take) as i32)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Expire local tokens a little before the window so a late local grant can't spill
        // into the server's next window uncounted.
        Ok(Lease::Granted {
            tokens: take,
            window_end: start + window,
        })
    }

    /// Bounds a limiter query by `db_timeout_ms`: a stalled database must not hold every
    /// chat call (the caller fails open on the error).
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        let limit = Duration::from_millis(self.cfg.db_timeout_ms.max(1));
        tokio::time::timeout(limit, f)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    async fn shared_pause(&self, route: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        let p: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "SELECT paused_until FROM rcjobs_sync.rate_window WHERE route = $1 AND paused_until > clock_timestamp()",
        )
        .bind(route)
        .fetch_optional(&self.pool)
        .await?;
        Ok(p.flatten())
    }
}

#[async_trait]
impl RequestGate for PgRequestGate {
    async fn acquire(&self, route: &str) {
        let limit = self.cfg.limit_for(route);
        let refresh = Duration::from_millis(self.cfg.pause_refresh_ms);
        loop {
            let now = Utc::now();
            // 1. A pause we already know about (ours, or one read from the table).
            let paused = self.with_local(route, |l| l.paused_until.filter(|p| *p > now));
            if let Some(p) = paused {
                tokio::time::sleep(until_now(p)).await;
                continue;
            }
            // 2. A pause another replica may have recorded since we last looked. Read
            //    before every grant (by default), local tokens included: tokens leased
            //    before another replica's 429 must not go out during its pause.
            let stale = self.with_local(route, |l| {
                refresh.is_zero() || l.checked.is_none_or(|c| c.elapsed() >= refresh)
            });
            if stale {
                match self.bounded(self.shared_pause(route)).await {
                    Ok(Some(p)) => {
                        self.with_local(route, |l| {
                            l.paused_until = Some(p);
                            l.tokens = 0;
                            l.window_end = None;
                        });
                        continue;
                    }
                    Ok(None) => self.with_local(route, |l| l.checked = Some(Instant::now())),
                    Err(e) => {
                        tracing::warn!(route, error = %e, "rate limiter: cannot read shared pause; proceeding");
                        self.with_local(route, |l| l.checked = Some(Instant::now()));
                        if limit.is_none() {
                            return;
                        }
                    }
                }
            }
            // 3. The budget, if the route has one.
            let Some(limit) = limit else {
                return;
            };
            let took = self.with_local(route, |l| {
                if l.tokens > 0 && l.window_end.is_some_and(|e| e > now) {
                    l.tokens -= 1;
                    true
                } else {
                    false
                }
            });
            if took {
                return;
            }
            match self.bounded(self.lease(route, limit)).await {
                Ok(Lease::Granted { tokens, window_end }) => {
                    self.with_local(route, |l| {
                        l.tokens = tokens - 1;
                        l.window_end = Some(window_end);
                    });
                    return;
                }
                Ok(Lease::WaitUntil(t)) => tokio::time::sleep(until_now(t)).await,
                Ok(Lease::Paused(t)) => self.with_local(route, |l| l.paused_until = Some(t)),
                Err(e) => {
                    tracing::warn!(route, error = %e, "rate limiter: cannot lease tokens; proceeding");
                    return;
                }
            }
        }
    }

    async fn pause(&self, route: &str, until: DateTime<Utc>) {
        self.with_local(route, |l| {
            l.paused_until = Some(l.paused_until.map_or(until, |p| p.max(until)));
            l.tokens = 0;
            l.window_end = None;
        });
        // The server's next window starts with the first call after the reset: start ours
        // then too ('-infinity' = "starts at the next lease").
        // Awaited before the caller goes on (the client's 429 path retries only after this
        // returns), so the pause is in the shared table before this replica sends again.
        let r = self.bounded(sqlx::query(
            "INSERT INTO rcjobs_sync.rate_window (route, window_start, used, paused_until)
             VALUES ($1, '-infinity', 0, $2)
             ON CONFLICT (route) DO UPDATE
                SET paused_until = greatest(rcjobs_sync.rate_window.paused_until, EXCLUDED.paused_until),
                    window_start = '-infinity', used = 0",
        )
        .bind(route)
        .bind(until)
        .execute(&self.pool))
        .await;
        if let Err(e) = r {
            tracing::warn!(route, error = %e, "rate limiter: cannot share pause");
        }
    }
}
