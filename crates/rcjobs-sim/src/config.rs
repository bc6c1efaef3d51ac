//! Simulator configuration and seed data.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// How the simulator behaves. `Default` gives a quiet, fast, fault-free 7.4.0 server on a free
/// loopback port with the REST rate limiter off.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen (default `127.0.0.1:0`, a free port).
    pub addr: SocketAddr,
    /// Added to every API call before it is handled (async sleep; other requests go on).
    pub latency: Duration,
    /// The REST rate limiter: `None` = off (Rocket.Chat's default when on is 10 calls per 60 s).
    pub rate_limit: Option<RateLimit>,
    /// Probability of answering an API call with a 500.
    pub fail_rate: f64,
    /// Probability of holding an answer for `slow_delay` (to go past client timeouts).
    pub timeout_rate: f64,
    /// Probability of closing the connection without any response.
    pub drop_rate: f64,
    /// How long a "slow" answer is held back.
    pub slow_delay: Duration,
    /// `true` = `groups.invite` takes `userIds`/`usernames` arrays (4.x+); `false` = behave like a
    /// ≤3.6 server that takes one user only.
    pub batch_invite: bool,
    /// The Rocket.Chat version to imitate (`major.minor.patch`); version-dependent behaviour
    /// (401 body shape, retention quirk, kick checks, ...) follows it.
    pub version: String,
    /// Users and the bot account present at start.
    pub seed: Seed,
    /// Seed of the random source (ids, tokens, fault decisions), so runs repeat.
    pub rng_seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            rate_limit: None,
            fail_rate: 0.0,
            timeout_rate: 0.0,
            drop_rate: 0.0,
            slow_delay: Duration::from_secs(30),
            batch_invite: true,
            version: "7.4.0".into(),
            seed: Seed::default(),
            rng_seed: 0x5eed_5eed,
        }
    }
}

/// A fixed-window limit: `calls` per `window` per route, method and client IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls allowed in one window.
    pub calls: u32,
    /// Window length.
    pub window: Duration,
}

impl Default for RateLimit {
    /// Rocket.Chat's defaults: 10 calls per 60 s.
    fn default() -> Self {
        RateLimit {
            calls: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// Why a `N/SECS` rate-limit string was rejected.
#[derive(Debug, thiserror::Error)]
#[error("rate limit must look like CALLS/SECONDS (e.g. 10/60), got {0:?}")]
pub struct RateLimitParseError(String);

impl FromStr for RateLimit {
    type Err = RateLimitParseError;

    /// Parses `CALLS/SECONDS`, e.g. `10/60`; seconds may be fractional (`5/0.5`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RateLimitParseError(s.to_string());
        let (calls, secs) = s.split_once('/').ok_or_else(err)?;
        let calls: u32 = calls.trim().parse().map_err(|_| err())?;
        let secs: f64 = secs.trim().parse().map_err(|_| err())?;
        if calls == 0 || !(secs.is_finite() && secs > 0.0) {
            return Err(err());
        }
        Ok(RateLimit {
            calls,
            window: Duration::from_secs_f64(secs),
        })
    }
}

/// Accounts present when the simulator starts. Loadable from JSON (`rcjobs sim --seed FILE`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    /// The account the worker uses (personal access token owner).
    pub bot: SeedBot,
    /// Other users.
    pub users: Vec<SeedUser>,
}

/// The worker's account. Empty `user_id`/`token` are generated from the rng seed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedBot {
    /// Username (default `rcjobs.bot`).
    pub username: String,
    /// `_id`; empty = generated.
    pub user_id: String,
    /// Personal access token; empty = generated.
    pub token: String,
    /// Server roles (default `["bot"]`, which bypasses the rate limiter; use `["user"]` to be limited).
    pub roles: Vec<String>,
    /// Password for `POST /api/v1/login` (none = token only).
    pub password: Option<String>,
}

impl Default for SeedBot {
    fn default() -> Self {
        SeedBot {
            username: "rcjobs.bot".into(),
            user_id: String::new(),
            token: String::new(),
            roles: vec!["bot".into()],
            password: None,
        }
    }
}

impl fmt::Debug for SeedBot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedBot")
            .field("username", &self.username)
            .field("user_id", &self.user_id)
            .field("token", &"<redacted>")
            .field("roles", &self.roles)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A user present at start (or added later with `SimHandle::add_user`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Username (must pass the username rules).
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// E-mail address.
    #[serde(default)]
    pub email: String,
    /// Whether the account is active (default true).
    #[serde(default = "yes")]
    pub active: bool,
    /// Server roles (default `["user"]`).
    #[serde(default = "user_role")]
    pub roles: Vec<String>,
    /// Password for `POST /api/v1/login`.
    #[serde(default)]
    pub password: Option<String>,
}

fn yes() -> bool {
    true
}

fn user_role() -> Vec<String> {
    vec!["user".into()]
}

impl SeedUser {
    /// An active `user`-role account with a derived name and e-mail and no password.
    pub fn new(username: &str) -> Self {
        SeedUser {
            username: username.into(),
            name: username.into(),
            email: format!("{username}@example.test"),
            active: true,
            roles: user_role(),
            password: None,
        }
    }
}

impl fmt::Debug for SeedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedUser")
            .field("username", &self.username)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("active", &self.active)
            .field("roles", &self.roles)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_rate_limits() {
        let r: RateLimit = "10/60".parse().unwrap();
        assert_eq!(
            r,
            RateLimit {
                calls: 10,
                window: Duration::from_secs(60)
            }
        );
        let r: RateLimit = "3/0.5".parse().unwrap();
        assert_eq!(r.window, Duration::from_millis(500));
        for bad in ["", "10", "0/60", "10/0", "x/1", "10/-1"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn seed_json_defaults_and_redaction() {
        let s: Seed = serde_json::from_str(
            r#"{"bot":{"username":"b","token":"secret-tok","password":"pw"},"users":[{"username":"u1"}]}"#,
        )
        .unwrap();
        assert_eq!(s.bot.roles, vec!["bot"]);
        assert!(s.users[0].active);
        assert_eq!(s.users[0].roles, vec!["user"]);
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("secret-tok") && !dbg.contains("pw\""),
            "{dbg}"
        );
        assert!(serde_json::from_str::<Seed>(r#"{"bogus":1}"#).is_err());
    }
}
