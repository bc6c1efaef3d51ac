//! Worker settings.

use crate::retry::RetryPolicy;
use std::time::Duration;

/// Tuning of a [`crate::Worker`]. The defaults re-run a crashed worker's jobs within
/// `lease_ttl + sweep_interval` = 12 s.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Handlers running at once.
    pub concurrency: usize,
    /// Queues served, claimed round-robin.
    pub queues: Vec<String>,
    /// Most jobs taken by one claim statement.
    pub batch_size: usize,
    /// Jobs claimed ahead of free handler slots (leased, renewed, handed back unstarted at
    /// shutdown).
    pub prefetch: usize,
    /// Lease length; renewed every `heartbeat_interval` while the job runs.
    pub lease_ttl: Duration,
    /// Lease renewal and worker heartbeat period (must be well under `lease_ttl`).
    pub heartbeat_interval: Duration,
    /// How often this worker sweeps expired leases and compacts counters.
    pub sweep_interval: Duration,
    /// Claim even without a notification this often (fallback if a NOTIFY is lost).
    pub poll_interval: Duration,
    /// How long shutdown waits for running handlers before interrupting them.
    pub shutdown_timeout: Duration,
    /// Backoff for retryable failures.
    pub retry: RetryPolicy,
    /// Most acknowledgements per statement.
    pub ack_batch: usize,
    /// Acknowledgement statements in flight at once. With one, a worker's claims and acks
    /// alternate and the database idles between them; two keep it busy (see BENCHMARKS.md).
    pub ack_parallelism: usize,
    /// How long a small batch of acknowledgements may wait for more before its statement
    /// starts (a statement costs about the same whether it carries 50 jobs or 500).
    pub ack_linger: Duration,
    /// Whether this worker runs the sweeper, counter compaction and pruning.
    pub maintenance: bool,
    /// How long completed/cancelled/superseded jobs stay in history.
    pub history_retention: Duration,
    /// How long dead jobs stay in history.
    pub dead_retention: Duration,
    /// How often history is pruned.
    pub prune_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            queues: vec!["default".into()],
            batch_size: 100,
            prefetch: 0,
            lease_ttl: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            sweep_interval: Duration::from_secs(2),
            poll_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            ack_batch: 1000,
            ack_parallelism: 2,
            ack_linger: Duration::from_millis(2),
            maintenance: true,
            history_retention: Duration::from_secs(7 * 86_400),
            dead_retention: Duration::from_secs(30 * 86_400),
            prune_interval: Duration::from_secs(60),
        }
    }
}
