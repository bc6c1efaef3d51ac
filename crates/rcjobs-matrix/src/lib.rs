//! The Matrix implementation of [`rcjobs_chat::ChatBackend`], for Synapse homeservers.
//!
//! - [`MatrixClient`]: one pooled keep-alive HTTP client with verified TLS (rustls, ring),
//!   the bot's access token (never printed: [`Secret`]), the shared [`rcjobs_chat::RequestGate`]
//!   and `M_LIMIT_EXCEEDED` handling, and one method per Client-Server or Synapse admin call.
//! - [`MatrixBackend`]: the idempotent, username-based backend the job handlers use: private
//!   invite-only rooms keyed by alias, force-joins (or invites), power levels written once per
//!   batch, archive as a reversible power-level lock (decision 0012), purging room deletes.
//! - [`ids`]: usernames to Matrix user ids (`@localpart:server_name`) by the spec's grammar.
//!
//! How each operation maps onto the Matrix APIs is in `docs/matrix.md`.

#![forbid(unsafe_code)]

mod backend;
mod client;
mod config;
mod error;
pub mod ids;

pub use backend::MatrixBackend;
pub use client::{ClientBuilder, MatrixClient, MxResult, NoopObserver, RequestObserver};
pub use config::{Auth, MatrixConfig, Membership, Secret};
pub use error::MatrixError;
