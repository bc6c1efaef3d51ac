//! An in-memory Rocket.Chat REST server for tests, benchmarks and the demo.
//!
//! It answers the `/api/v1` endpoints the rcjobs worker uses with Rocket.Chat's own bodies,
//! error strings, status codes, permission rules, pagination and REST rate limiter (see
//! `docs/rocketchat.md`, "The simulator"), so a client cannot tell it from a real server on
//! those paths. It can add latency and faults (500s, slow answers, dropped connections), and
//! exposes its state read-only at `GET /_sim/state` and `GET /_sim/requests`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rcjobs_sim::SimError> {
//! let sim = rcjobs_sim::spawn(rcjobs_sim::SimConfig::default()).await?;
//! println!("{} as {}", sim.base_url(), sim.bot_user_id());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod config;
mod handle;
mod ids;
mod listener;
mod model;
mod names;
mod params;
mod perms;
mod ratelimit;
mod reply;
mod server;
mod version;

pub use config::{RateLimit, RateLimitParseError, Seed, SeedBot, SeedUser, SimConfig};
pub use handle::{
    spawn, MemberSnapshot, RoomSnapshot, SimError, SimHandle, Snapshot, UserSnapshot,
};
pub use model::Retention;
