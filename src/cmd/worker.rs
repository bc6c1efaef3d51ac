//! `rcjobs worker`: runs the job handlers against Moodle and Rocket.Chat until SIGTERM or
//! SIGINT, then drains (running jobs finish, prefetched ones go back to the queue).

use super::config::Settings;
use anyhow::Context;
use clap::Args;
use rcjobs_metrics::{Metrics, MetricsConfig};
use rcjobs_rocketchat::{
    Auth, RequestObserver, RocketChatBackend, RocketChatClient, RocketChatConfig, Secret,
};
use rcjobs_worker::runtime::{MetricsHooks, WorkerStack};
use rcjobs_worker::{CancellationToken, Engine, PgRequestGate, WorkerConfig};
use sqlx::postgres::PgPoolOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `rcjobs worker` arguments.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Jobs run at once by this process.
    #[arg(long, default_value_t = 16, env = "RCJOBS_CONCURRENCY")]
    pub concurrency: usize,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9187", env = "RCJOBS_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Queues to serve (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "default",
        env = "RCJOBS_QUEUES"
    )]
    pub queues: Vec<String>,
    /// Handler settings (TOML: create_accounts, username_rules, naming, rate_limit,
    /// reconcile_interval_secs, ...; see docs/handlers.md).
    #[arg(long, value_name = "FILE", env = "RCJOBS_HANDLERS_CONFIG")]
    pub handlers_config: Option<PathBuf>,
    /// Create chat accounts for Moodle users who have none (overrides the file).
    #[arg(long, env = "RCJOBS_CREATE_ACCOUNTS")]
    pub create_accounts: bool,
    /// Seconds between periodic reconciles of every room (0 = off; overrides the file).
    #[arg(long, env = "RCJOBS_RECONCILE_INTERVAL")]
    pub reconcile_interval: Option<u64>,
    /// The bot's Rocket.Chat username (default: asked from the server).
    #[arg(long, env = "ROCKETCHAT_BOT_USERNAME")]
    pub bot_username: Option<String>,
    /// Seconds a claimed job stays leased without a heartbeat before another worker may take
    /// it over (crash recovery ≤ lease TTL + sweep interval).
    #[arg(long, value_name = "SECS", env = "RCJOBS_LEASE_TTL")]
    pub lease_ttl: Option<u64>,
    /// Seconds between sweeps for expired leases.
    #[arg(long, value_name = "SECS", env = "RCJOBS_SWEEP_INTERVAL")]
    pub sweep_interval: Option<u64>,
    /// Seconds running jobs get to finish after SIGTERM before they are handed back
    /// (keep below the orchestrator's termination grace period).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        env = "RCJOBS_DRAIN_TIMEOUT"
    )]
    pub drain_timeout: u64,
    /// Delay before the first retry of a failed job, doubling per attempt (Moodle's: 60).
    #[arg(long, value_name = "SECS", env = "RCJOBS_RETRY_BASE")]
    pub retry_base: Option<u64>,
    /// Rocket.Chat request timeout in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        env = "ROCKETCHAT_TIMEOUT"
    )]
    pub chat_timeout: u64,
    /// A direct database URL for the LISTEN connection when `DATABASE_URL` goes through a
    /// transaction-pooling PgBouncer (LISTEN needs a session of its own).
    #[arg(long, value_name = "URL", env = "DATABASE_LISTEN_URL")]
    pub listen_database_url: Option<String>,
}

/// `/readyz`: not draining, and the queue database answers a trivial query.
struct DbReadiness {
    pool: sqlx::PgPool,
    draining: CancellationToken,
}

#[async_trait::async_trait]
impl rcjobs_metrics::Readiness for DbReadiness {
    async fn ready(&self) -> Result<(), String> {
        if self.draining.is_cancelled() {
            return Err("draining".into());
        }
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| format!("queue database unreachable: {e}"))
    }
}

/// Chat request events → metrics.
struct ChatMetrics(Metrics);

impl RequestObserver for ChatMetrics {
    fn on_response(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        self.0
            .chat_request(endpoint, (status != 0).then_some(status), elapsed);
    }

    fn on_rate_limited(&self, endpoint: &'static str, wait: Duration) {
        self.0.chat_paused(endpoint, wait);
    }
}

fn handler_config(a: &WorkerArgs) -> anyhow::Result<WorkerConfig> {
    let mut cfg = match &a.handlers_config {
        Some(path) => {
            use figment::providers::Format;
            anyhow::ensure!(
                path.exists(),
                "handlers config {} does not exist",
                path.display()
            );
            figment::Figment::from(figment::providers::Toml::file(path))
                .extract::<WorkerConfig>()
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => WorkerConfig::default(),
    };
    if a.create_accounts {
        cfg.create_accounts = true;
    }
    if let Some(i) = a.reconcile_interval {
        cfg.reconcile_interval_secs = i;
    }
    if let Some(q) = a.queues.first() {
        cfg.queue = q.clone();
    }
    Ok(cfg)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `rcjobs worker`.
pub async fn run(s: &Settings, a: WorkerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.concurrency > 0, "--concurrency must be at least 1");
    let cfg = handler_config(&a)?;
    let url = s
        .rocketchat_url
        .as_deref()
        .context("ROCKETCHAT_URL is not set")?;
    let user_id = s
        .rocketchat_user_id
        .clone()
        .context("ROCKETCHAT_USER_ID is not set")?;
    let token = s
        .rocketchat_token
        .clone()
        .context("ROCKETCHAT_TOKEN is not set")?;

    let (queue_conns, moodle_conns) = pool_sizes(a.concurrency);
    let queue_opts = super::db::parse_url("DATABASE_URL", &s.database_url)?;
    let pool = super::db::pool(&queue_opts, queue_conns)
        .await
        .context("connecting to the queue database")?;
    rcjobs_queue::check_schema(&pool)
        .await
        .context("queue schema (run `rcjobs migrate`)")?;
    // Usually `rcjobs migrate` has already done this: then no lock is taken. When it has not,
    // migrate on the direct connection if there is one (the migrator's session advisory lock
    // must not go through a transaction-pooling PgBouncer).
    if rcjobs_worker::migrations_pending(&pool)
        .await
        .context("reading schema rcjobs_sync")?
    {
        match &a.listen_database_url {
            Some(url) => {
                let direct = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .context("connecting to DATABASE_LISTEN_URL to migrate rcjobs_sync")?;
                rcjobs_worker::migrate(&direct).await
            }
            None => rcjobs_worker::migrate(&pool).await,
        }
        .context("migrating schema rcjobs_sync")?;
    }
    let moodle_pool = if s.moodle_url() == s.database_url {
        pool.clone()
    } else {
        let moodle_opts = super::db::parse_url("MOODLE_DATABASE_URL", s.moodle_url())?;
        super::db::pool(&moodle_opts, moodle_conns)
            .await
            .context("connecting to the Moodle database")?
    };
    let moodle = rcjobs_moodle::MoodleDb::new(moodle_pool, &s.moodle_prefix)?;

    let known_kinds = rcjobs_producer::Kind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    let metrics = Metrics::new(MetricsConfig {
        known_kinds,
        ..MetricsConfig::default()
    })?;
    metrics.set_worker_concurrency(a.concurrency);

    let gate = Arc::new(PgRequestGate::new(pool.clone(), cfg.rate_limit.clone()));
    let mut rc = RocketChatConfig::new(
        url::Url::parse(url).context("ROCKETCHAT_URL is not a URL")?,
        Auth::Token {
            user_id,
            token: Secret::new(token),
        },
    );
    rc.bot_username = a.bot_username.clone();
    rc.request_timeout = Duration::from_secs(a.chat_timeout);
    let client = RocketChatClient::builder(rc)
        .observer(Arc::new(ChatMetrics(metrics.clone())))
        .gate(gate)
        .build()
        .context("building the Rocket.Chat client")?;
    let backend = RocketChatBackend::connect(client)
        .await
        .context("connecting to Rocket.Chat")?;
    tracing::info!(bot = %rcjobs_chat::ChatBackend::bot_username(&backend), "connected to Rocket.Chat");

    let engine = Arc::new(Engine::new(
        pool.clone(),
        moodle,
        Arc::new(backend),
        cfg,
        Some(metrics.clone()),
    )?);
    let mut builder = rcjobs_queue::Worker::builder(pool.clone())
        .concurrency(a.concurrency)
        .queues(a.queues.clone())
        .shutdown_timeout(Duration::from_secs(a.drain_timeout))
        .hooks(Arc::new(MetricsHooks::new(metrics.clone())));
    if let Some(ttl) = a.lease_ttl {
        builder = builder.lease_ttl(Duration::from_secs(ttl));
    }
    if let Some(every) = a.sweep_interval {
        builder = builder.sweep_interval(Duration::from_secs(every));
    }
    if let Some(base) = a.retry_base {
        builder = builder.retry_policy(rcjobs_queue::RetryPolicy {
            base: Duration::from_secs(base),
            ..rcjobs_queue::RetryPolicy::default()
        });
    }
    if let Some(url) = &a.listen_database_url {
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy(url)
            .context("DATABASE_LISTEN_URL is not a valid database URL")?;
        builder = builder.wakeup(rcjobs_queue::Wakeup::start(&listen_pool));
    }
    let worker = WorkerStack::build(builder, engine, Some(metrics.clone()))?;

    let stop = CancellationToken::new();
    let server = rcjobs_metrics::MetricsServer::bind(
        a.metrics_addr,
        metrics.clone(),
        Arc::new(DbReadiness {
            pool: pool.clone(),
            draining: stop.clone(),
        }),
    )
    .await?;
    tracing::info!(addr = %server.local_addr()?, "metrics server listening");
    // The server outlives the drain: /healthz stays up and /readyz answers 503 (draining)
    // until the last running job has finished.
    let server_stop_token = CancellationToken::new();
    let server_stop = server_stop_token.clone();
    let server_task = tokio::spawn(server.run(async move { server_stop.cancelled().await }));

    let drain = stop.clone();
    let drain_metrics = metrics.clone();
    tracing::info!(concurrency = a.concurrency, queues = ?a.queues, "worker running");
    worker
        .run(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: draining");
            drain_metrics.set_draining(true);
            drain.cancel();
        })
        .await?;
    stop.cancel();
    server_stop_token.cancel();
    let _ = server_task.await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Connections of the queue pool and of the Moodle pool for `concurrency` jobs at once. A
/// handler holds a connection only for one short statement at a time, never across a chat
/// call, so half the concurrency covers the handlers; the queue runtime itself needs up to
/// five (claim, acknowledgements, heartbeat, sweeper, LISTEN) plus one spare. Two default
/// replicas (concurrency 16) take 2 x (14 + 10) = 48 connections, which a stock PostgreSQL
/// (max_connections = 100) holds with room for Moodle; it used to be 2 x (24 + 18).
fn pool_sizes(concurrency: usize) -> (u32, u32) {
    let half = u32::try_from(concurrency.div_ceil(2)).unwrap_or(u32::MAX / 2);
    (half.saturating_add(6), half.saturating_add(2))
}

#[cfg(test)]
mod tests {
    use super::pool_sizes;

    #[test]
    fn two_default_replicas_fit_a_stock_postgres() {
        let (q, m) = pool_sizes(16);
        assert_eq!((q, m), (14, 10));
        assert!(
            2 * (q + m) <= 50,
            "two replicas leave half of max_connections = 100"
        );
        assert_eq!(pool_sizes(1), (7, 3));
    }
}
