//! One LISTEN connection per process: wakes claim loops when jobs become runnable.

use crate::NOTIFY_CHANNEL;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A shared wakeup signal fed by `LISTEN rcjobs_jobs`. Cloning shares the one connection;
/// the listener stops when the last clone is dropped. After a lost connection it reconnects
/// by itself and signals a wakeup (notifications may have been missed, so claimers re-scan).
#[derive(Clone)]
pub struct Wakeup {
    rx: watch::Receiver<u64>,
    _guard: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeup")
            .field("generation", &*self.rx.borrow())
            .finish()
    }
}

impl Wakeup {
    /// Starts the listener task on a connection taken from `pool`.
    pub fn start(pool: &PgPool) -> Wakeup {
        let (tx, rx) = watch::channel(0u64);
        let pool = pool.clone();
        let task = tokio::spawn(async move { listen_loop(pool, tx).await });
        Wakeup {
            rx,
            _guard: Arc::new(AbortOnDrop(task)),
        }
    }

    /// A receiver that resolves `changed()` on every wakeup after it was last marked seen.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rx.clone()
    }
}

async fn listen_loop(pool: PgPool, tx: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "rcjobs: LISTEN connection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        listener.ignore_pool_close_event(false);
        if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::warn!(error = %e, "rcjobs: LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        // anything may have happened while we were not listening
        tx.send_modify(|g| *g += 1);
        backoff = Duration::from_millis(100);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    while listener.next_buffered().is_some() {}
                    tx.send_modify(|g| *g += 1);
                }
                Ok(None) => {
                    tracing::info!("rcjobs: LISTEN connection lost; reconnecting");
                    tx.send_modify(|g| *g += 1);
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "rcjobs: LISTEN connection error; reconnecting");
                    tx.send_modify(|g| *g += 1);
                    tokio::time::sleep(backoff).await;
                    break;
                }
            }
        }
    }
}
