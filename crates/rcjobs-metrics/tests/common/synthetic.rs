//! A simulated worker's event stream: every kind of event the real worker reports, at a
//! steady pace, with no database or chat server. Shared by the live Prometheus test and the
//! `synthetic_load` example (which includes this file by path).
#![allow(dead_code)]

use std::time::Duration;

use rcjobs_metrics::{JobOutcome, MembershipAction, MembershipFailure, Metrics, StateCount};

/// A tiny deterministic generator (xorshift64*): enough variety for a load, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const KINDS: [&str; 3] = ["course_sync", "room_sync", "user_sync"];
const ENDPOINTS: [&str; 5] = [
    "groups.members",
    "groups.invite",
    "groups.kick",
    "groups.addModerator",
    "users.info",
];

/// Feeds `metrics` with ten rounds of events per second until `deadline` or `stop` fires.
pub async fn run(
    metrics: &Metrics,
    deadline: tokio::time::Instant,
    stop: impl std::future::Future<Output = ()>,
) {
    metrics.set_worker_concurrency(8);
    tokio::pin!(stop);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let mut backlog: i64 = 400;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        for _ in 0..rng.below(6) {
            let kind = KINDS[rng.below(3) as usize];
            metrics.jobs_enqueued("default", kind, 1 + rng.below(3));
            metrics.job_started(kind, Duration::from_millis(rng.below(3000)));
            let outcome = match rng.below(100) {
                0..=84 => JobOutcome::Completed,
                85..=91 => JobOutcome::Retried,
                92..=96 => JobOutcome::Snoozed,
                97 => JobOutcome::Dead,
                98 => JobOutcome::Cancelled,
                99 if rng.below(2) == 0 => JobOutcome::Superseded,
                _ => JobOutcome::LeaseLost,
            };
            metrics.job_finished(kind, outcome, Duration::from_millis(5 + rng.below(800)));
        }
        for _ in 0..rng.below(10) {
            let endpoint = ENDPOINTS[rng.below(ENDPOINTS.len() as u64) as usize];
            let status = match rng.below(100) {
                0..=89 => Some(200),
                90..=94 => Some(429),
                95..=97 => Some(502),
                _ => None,
            };
            metrics.chat_request(endpoint, status, Duration::from_millis(2 + rng.below(300)));
            if status == Some(429) {
                metrics.chat_paused(endpoint, Duration::from_millis(500 + rng.below(2000)));
            }
        }
        metrics.membership_applied(MembershipAction::Invite, rng.below(20));
        metrics.membership_applied(MembershipAction::Kick, rng.below(3));
        metrics.membership_applied(MembershipAction::Promote, rng.below(2));
        if rng.below(20) == 0 {
            metrics.membership_applied(MembershipAction::CreateRoom, 1);
            metrics.membership_failed(MembershipAction::Invite, MembershipFailure::UserMissing, 1);
        }
        backlog = (backlog + rng.below(21) as i64 - 10).max(0);
        metrics.set_jobs_by_state(KINDS.iter().flat_map(|kind| {
            [
                StateCount {
                    queue: "default",
                    kind,
                    state: "ready",
                    count: backlog,
                },
                StateCount {
                    queue: "default",
                    kind,
                    state: "running",
                    count: 3,
                },
                StateCount {
                    queue: "default",
                    kind,
                    state: "blocked",
                    count: 12,
                },
                StateCount {
                    queue: "default",
                    kind,
                    state: "dead",
                    count: 1,
                },
            ]
        }));
        metrics.set_oldest_ready_age("default", Some(Duration::from_secs(backlog as u64 / 10)));
        if rng.below(50) == 0 {
            metrics.leases_expired(1);
        }
        metrics.set_db_pool("queue", 6, 2 + rng.below(3) as u32, 10);
        metrics.set_db_pool("listen", 1, 0, 1);
    }
}
