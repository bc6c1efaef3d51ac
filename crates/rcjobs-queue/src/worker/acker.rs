//! Batched acknowledgements: outcomes gather while earlier batches are in flight, then go to
//! the database in one statement per kind (complete / settle), up to
//! `ack_parallelism` batches at once.

use super::hooks::{JobInfo, LeaseLoss};
use super::runtime::{lease_lost, Shared};
use crate::lease::{self, Settle, SettleOutcome};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub(crate) enum AckKind {
    Complete,
    Settle(Settle),
}

pub(crate) struct Ack {
    pub id: i64,
    pub token: i32,
    pub info: JobInfo,
    pub kind: AckKind,
}

pub(crate) enum AckMsg {
    Ack(Ack),
    Stop(oneshot::Sender<()>),
}

/// How long a batch is retried while the database is unreachable before giving up on it
/// (its jobs then come back through lease expiry: at-least-once).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<AckMsg>) {
    let max = shared.config.ack_batch.max(1);
    let parallel = shared.config.ack_parallelism.max(1);
    let linger = shared.config.ack_linger;
    let mut stop: Option<oneshot::Sender<()>> = None;
    let mut closed = false;
    let mut pending: Vec<Ack> = Vec::new();
    let mut inflight = FuturesUnordered::new();
    // when the oldest pending acknowledgement arrived while nothing was in flight
    let mut gather_since: Option<Instant> = None;
    loop {
        while !closed && stop.is_none() {
            match rx.try_recv() {
                Ok(AckMsg::Ack(a)) => pending.push(a),
                Ok(AckMsg::Stop(tx)) => stop = Some(tx),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
            }
        }
        let ending = stop.is_some() || closed;
        let worthwhile = pending.len() >= (max / 2).max(1);
        if pending.is_empty() {
            gather_since = None;
        } else if gather_since.is_none() {
            gather_since = Some(Instant::now());
        }
        // A statement has a fixed cost (~1-2 ms of database CPU) whatever its size, so under
        // a steady stream a small batch waits up to `ack_linger` for company. A second
        // statement starts only with a worthwhile batch: small ones would trade the batching
        // that makes acks cheap for parallelism the database cannot use.
        let gathered = gather_since.is_some_and(|t| t.elapsed() >= linger);
        let start = !pending.is_empty()
            && inflight.len() < parallel
            && (ending || worthwhile || (inflight.is_empty() && gathered));
        if start {
            gather_since = None;
            let rest = pending.split_off(pending.len().min(max));
            let batch = std::mem::replace(&mut pending, rest);
            let sh = shared.clone();
            inflight.push(async move { flush(&sh, batch).await });
            continue;
        }
        if ending && pending.is_empty() && inflight.is_empty() {
            break;
        }
        let wait_gather = inflight.is_empty() && !pending.is_empty();
        let gather_deadline = gather_since
            .map(|t| t + linger)
            .unwrap_or_else(Instant::now);
        tokio::select! {
            m = rx.recv(), if !ending => match m {
                Some(AckMsg::Ack(a)) => pending.push(a),
                Some(AckMsg::Stop(tx)) => stop = Some(tx),
                None => closed = true,
            },
            Some(()) = inflight.next(), if !inflight.is_empty() => {}
            _ = tokio::time::sleep_until(gather_deadline.into()), if wait_gather => {}
        }
    }
    if let Some(tx) = stop {
        let _ = tx.send(());
    }
}

async fn flush(shared: &Arc<Shared>, batch: Vec<Ack>) {
    let mut completes = Vec::new();
    let mut settles = Vec::new();
    let mut infos: HashMap<i64, (i32, JobInfo, Option<Settle>)> =
        HashMap::with_capacity(batch.len());
    for a in batch {
        match a.kind {
            AckKind::Complete => {
                completes.push((a.id, a.token));
                infos.insert(a.id, (a.token, a.info, None));
            }
            AckKind::Settle(s) => {
                settles.push((a.id, a.token, s.clone()));
                infos.insert(a.id, (a.token, a.info, Some(s)));
            }
        }
    }
    if !completes.is_empty() {
        if let Some(report) =
            with_retry("complete", || lease::complete(&shared.pool, &completes)).await
        {
            for id in &report.accepted {
                if let Some((_, info, _)) = infos.get(id) {
                    shared.hooks.completed(info);
                }
            }
            for id in &report.rejected {
                if let Some((token, _, _)) = infos.get(id) {
                    lease_lost(shared, *id, *token, LeaseLoss::StaleAck);
                }
            }
        }
    }
    if !settles.is_empty() {
        if let Some(rows) = with_retry("settle", || lease::settle(&shared.pool, &settles)).await {
            let mut seen = std::collections::HashSet::with_capacity(rows.len());
            for (id, outcome) in rows {
                seen.insert(id);
                let Some((_, info, s)) = infos.get(&id) else {
                    continue;
                };
                match (outcome, s) {
                    (SettleOutcome::Retried, Some(Settle::Retry { run_at, .. })) => {
                        shared.hooks.retried(info, *run_at)
                    }
                    (SettleOutcome::Snoozed, Some(Settle::Snooze { until })) => {
                        shared.hooks.snoozed(info, *until)
                    }
                    (
                        SettleOutcome::Dead,
                        Some(Settle::Retry { error, .. } | Settle::Dead { error }),
                    ) => shared.hooks.dead(info, error),
                    (SettleOutcome::Superseded, _) => shared.hooks.superseded(info),
                    _ => {}
                }
            }
            for (id, token, _) in &settles {
                if !seen.contains(id) {
                    lease_lost(shared, *id, *token, LeaseLoss::StaleAck);
                }
            }
        }
    }
    {
        let mut slots = shared.slots();
        for id in infos.keys() {
            slots.remove(id);
        }
    }
    // the claim loop counts acknowledged-but-unflushed jobs against its capacity
    shared.freed.notify_one();
}

async fn with_retry<T, F, Fut>(what: &str, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::QueueError>>,
{
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) if start.elapsed() < GIVE_UP_AFTER => {
                tracing::warn!(error = %e, what, "rcjobs: acknowledgement failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(error = %e, what, "rcjobs: giving up on acknowledgements; the jobs will be redelivered after their leases expire");
                return None;
            }
        }
    }
}
