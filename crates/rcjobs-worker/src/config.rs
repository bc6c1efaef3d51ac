//! Worker settings (handlers, mapping, naming, limiter, periodic reconcile).

use crate::limiter::RateLimitConfig;
use crate::mapping::MappingRule;
use crate::naming::NamingConfig;
use serde::{Deserialize, Serialize};

/// Everything the handlers need to know besides connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Create chat accounts for Moodle users who have none (the plugin's
    /// `create_user_account_if_not_exists`). Off: such users are recorded as `user_missing`.
    pub create_accounts: bool,
    /// Username mapping rules, applied in order (empty = identity).
    pub username_rules: Vec<MappingRule>,
    /// Names of rooms the worker creates.
    pub naming: NamingConfig,
    /// Shared rate limiter.
    pub rate_limit: RateLimitConfig,
    /// Period of `reconcile_all` in seconds (0 = no periodic reconcile).
    pub reconcile_interval_secs: u64,
    /// Queue the worker's own follow-up jobs go to.
    pub queue: String,
    /// Priority of periodic syncs (event-driven syncs use 0; lower runs first).
    pub periodic_priority: i16,
    /// How long a course module that still carries another live module's room id (a
    /// duplicate or restore the plugin has not finished: it commits the source's id first and
    /// writes the new group's id after creating it) waits for Moodle's own id before the
    /// worker gives it a room of its own, in seconds.
    pub duplicate_wait_secs: u64,
    /// Store the id of a room the worker creates in Moodle's `rocketchat.rocketchatid`, so
    /// that Moodle's activity links to it (only where Moodle has no id; never overwritten).
    /// Off by default: the worker writes into Moodle's database only when told, and it needs
    /// `GRANT UPDATE (rocketchatid) ON <prefix>rocketchat` (docs/operations.md).
    pub write_room_ids: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            create_accounts: false,
            username_rules: Vec::new(),
            naming: NamingConfig::default(),
            rate_limit: RateLimitConfig::default(),
            reconcile_interval_secs: 3600,
            queue: "default".into(),
            periodic_priority: 10,
            duplicate_wait_secs: 600,
            write_room_ids: false,
        }
    }
}
