//! Batched acknowledgements: outcomes gather while the previous batch is in flight, then go
//! to the database in one statement per kind (complete / settle).

use super::hooks::{JobInfo, LeaseLoss};
use super::runtime::{lease_lost, Shared};
use crate::lease::{self, Settle, SettleOutcome};
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
    let mut stop: Option<oneshot::Sender<()>> = None;
    while stop.is_none() {
        let mut batch = Vec::new();
        match rx.recv().await {
            None => break,
            Some(AckMsg::Ack(a)) => batch.push(a),
            Some(AckMsg::Stop(tx)) => stop = Some(tx),
        }
        while batch.len() < max && stop.is_none() {
            match rx.try_recv() {
                Ok(AckMsg::Ack(a)) => batch.push(a),
                Ok(AckMsg::Stop(tx)) => stop = Some(tx),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            flush(&shared, batch).await;
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
