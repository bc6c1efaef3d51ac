//! Background tasks of a worker: lease/worker heartbeat, sweeper, counter compaction, pruning.

use super::hooks::LeaseLoss;
use super::runtime::{lease_lost, Shared};
use crate::lease;
use rand::Rng;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Renews the leases of every job this worker holds (buffered, running or being
/// acknowledged), independent of the handlers, and refreshes the worker row.
pub(crate) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.config.heartbeat_interval;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // Only leases held for more than half a heartbeat are renewed: a job that finishes
        // soon after its claim never costs a renewal (in a busy drain, renewing every held
        // job made renewals the biggest statement and held row locks the acks waited on).
        // Skipped leases still have at least `lease_ttl - 1.5 × heartbeat` left at the next
        // heartbeat.
        let sent = Instant::now();
        let horizon = sent + shared.config.lease_ttl.saturating_sub(every / 2);
        let leases: Vec<(i64, i32)> = shared
            .slots()
            .iter()
            .filter(|(_, s)| s.expires < horizon && !s.lost)
            .map(|(id, s)| (*id, s.token))
            .collect();
        match lease::renew(&shared.pool, &leases, shared.config.lease_ttl).await {
            Ok(renewed) => {
                let renewed: HashSet<i64> = renewed.into_iter().collect();
                {
                    let mut slots = shared.slots();
                    for id in &renewed {
                        if let Some(s) = slots.get_mut(id) {
                            s.expires = sent + shared.config.lease_ttl;
                        }
                    }
                }
                for (id, token) in leases {
                    if !renewed.contains(&id) {
                        lease_lost(&shared, id, token, LeaseLoss::Renewal);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "rcjobs: lease renewal failed; retrying at the next heartbeat")
            }
        }
        let r = sqlx::query(
            "INSERT INTO rcjobs.worker (id, hostname, pid, queues, concurrency)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET last_seen = now()",
        )
        .bind(shared.id)
        .bind(
            hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into()),
        )
        .bind(std::process::id() as i32)
        .bind(&shared.config.queues)
        .bind(shared.config.concurrency as i32)
        .execute(&shared.pool)
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "rcjobs: worker heartbeat failed");
        }
    }
}

/// Sweeps expired leases, compacts counters and prunes history. Every worker runs it;
/// SKIP LOCKED and an advisory lock keep concurrent sweepers from colliding.
pub(crate) async fn sweeper(shared: Arc<Shared>, stop: CancellationToken) {
    let cfg = &shared.config;
    let mut last_prune: Option<Instant> = None;
    loop {
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.sweep_interval.mul_f64(jitter)) => {}
        }
        loop {
            match lease::sweep(&shared.pool, 1000).await {
                Ok(r) => {
                    if r.expired > 0 {
                        tracing::warn!(
                            expired = r.expired,
                            requeued = r.requeued,
                            dead = r.dead,
                            "rcjobs: swept expired leases"
                        );
                        shared.hooks.swept(&r);
                    }
                    if r.expired < 1000 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rcjobs: sweep failed");
                    break;
                }
            }
        }
        if let Err(e) = crate::stats::compact_stats(&shared.pool).await {
            tracing::warn!(error = %e, "rcjobs: counter compaction failed");
        }
        if last_prune.is_none_or(|t| t.elapsed() >= cfg.prune_interval) {
            last_prune = Some(Instant::now());
            match crate::admin::prune_history(
                &shared.pool,
                cfg.history_retention,
                cfg.dead_retention,
                10_000,
            )
            .await
            {
                Ok(n) if n > 0 => tracing::info!(pruned = n, "rcjobs: pruned job history"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "rcjobs: history pruning failed"),
            }
            let _ = sqlx::query(
                "DELETE FROM rcjobs.worker WHERE last_seen < now() - interval '1 hour'",
            )
            .execute(&shared.pool)
            .await;
        }
    }
}
