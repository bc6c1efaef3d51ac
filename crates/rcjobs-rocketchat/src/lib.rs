//! A typed async Rocket.Chat REST client, and the [`rcjobs_chat::ChatBackend`] built on it.
//!
//! - [`RocketChatClient`]: one pooled HTTP/1.1 keep-alive client with verified TLS (rustls,
//!   ring), connect and request timeouts, personal-access-token or password auth, and one
//!   public method per REST endpoint (`users_info_by_username`, `groups_invite`, …).
//! - [`RocketChatError`]: every failure classified ([`ErrorClass`]) so callers can act:
//!   retry, wait for the rate-limit reset, stop, or treat "already in state" as success.
//! - [`RocketChatBackend`]: the idempotent, batched, username-based backend the job
//!   handlers use.
//! - [`RequestObserver`]: per-request metrics without a Prometheus dependency.
//!
//! Server differences between 3.x and 8.x that the client absorbs are described in
//! `docs/rocketchat.md` ("The client: versions and behaviours handled").

#![forbid(unsafe_code)]

mod backend;
mod client;
mod config;
mod endpoints;
mod error;
mod observer;
mod types;

pub use backend::RocketChatBackend;
pub use client::{ClientBuilder, RcResult, RocketChatClient};
pub use config::{Auth, RocketChatConfig, Secret};
pub use error::{ErrorClass, RocketChatError, TransportKind};
pub use observer::{NoopObserver, RequestObserver};
pub use types::{
    CreateUser, Group, Invitees, Member, MembersPage, RetentionSettings, RoomRetention, RoomRole,
    RoomSel, ServerVersion, User, UserRef, UserSel,
};
