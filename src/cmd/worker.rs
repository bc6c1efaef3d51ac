//! `rcjobs worker`: runs the job handlers against Moodle and the chat server (Rocket.Chat or
//! Matrix) until SIGTERM or SIGINT, then drains (running jobs finish, prefetched ones go back
//! to the queue).

use super::config::{
    check_min_duration, ChatBackendKind, DurationSetting, Settings, WorkerFileSettings,
};
use anyhow::Context;
use clap::Args;
use rcjobs_queue::RetryPolicy;
use rcjobs_worker::wiring::{build_engine, build_worker, metrics_for, EngineParts, WorkerParts};
use rcjobs_worker::{CancellationToken, WorkerConfig};
use sqlx::postgres::PgPoolOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `rcjobs worker` arguments. Each has a key of the same name in the config file's `[worker]`
/// section; a flag (or its environment variable) wins over the file, the file over the
/// built-in default. So no flag carries a clap default: an absent flag must be told apart
/// from one that repeats the default. Durations take seconds (`30`) or humantime (`30s`,
/// `5m`, `1h 30m`).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The chat server's kind: `rocketchat` (`CHAT_URL`, `CHAT_USER_ID`, `CHAT_TOKEN`, or
    /// their `ROCKETCHAT_*` names) or `matrix` (`MATRIX_HOMESERVER_URL`, then
    /// `MATRIX_ACCESS_TOKEN` or `MATRIX_USER` + `MATRIX_PASSWORD`) [default: rocketchat].
    #[arg(long, value_enum, env = "CHAT_BACKEND")]
    pub chat_backend: Option<ChatBackendKind>,
    /// Jobs run at once by this process [default: 16].
    #[arg(long, env = "RCJOBS_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Where to serve /metrics, /healthz and /readyz [default: 0.0.0.0:9187].
    #[arg(long, env = "RCJOBS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Queues to serve (comma-separated) [default: default].
    #[arg(long, value_delimiter = ',', env = "RCJOBS_QUEUES")]
    pub queues: Option<Vec<String>>,
    /// Handler settings (TOML: create_accounts, username_rules, naming, rate_limit,
    /// reconcile_interval_secs, ...; see docs/handlers.md).
    #[arg(long, value_name = "FILE", env = "RCJOBS_HANDLERS_CONFIG")]
    pub handlers_config: Option<PathBuf>,
    /// Create chat accounts for Moodle users who have none (overrides the handlers file;
    /// `--create-accounts=false` turns it off).
    #[arg(
        long,
        env = "RCJOBS_CREATE_ACCOUNTS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub create_accounts: Option<bool>,
    /// Time between periodic reconciles of every room, whole seconds (0 = off; overrides the
    /// handlers file) [default: 1h].
    #[arg(long, value_name = "DURATION", env = "RCJOBS_RECONCILE_INTERVAL")]
    pub reconcile_interval: Option<DurationSetting>,
    /// The bot's Rocket.Chat username (default: asked from the server; Matrix: the access
    /// token's user).
    #[arg(long, env = "ROCKETCHAT_BOT_USERNAME")]
    pub bot_username: Option<String>,
    /// How long a claimed job stays leased without a heartbeat before another worker may
    /// take it over (crash recovery ≤ lease TTL + sweep interval) [default: 10s].
    #[arg(long, value_name = "DURATION", env = "RCJOBS_LEASE_TTL")]
    pub lease_ttl: Option<DurationSetting>,
    /// Time between sweeps for expired leases [default: 2s].
    #[arg(long, value_name = "DURATION", env = "RCJOBS_SWEEP_INTERVAL")]
    pub sweep_interval: Option<DurationSetting>,
    /// Time running jobs get to finish after SIGTERM before they are handed back (keep below
    /// the orchestrator's termination grace period; 0 = hand back at once) [default: 30s].
    #[arg(long, value_name = "DURATION", env = "RCJOBS_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<DurationSetting>,
    /// Delay before the first retry of a failed job, doubling per attempt up to 24 h
    /// [default: 60s, Moodle's].
    #[arg(long, value_name = "DURATION", env = "RCJOBS_RETRY_BASE")]
    pub retry_base: Option<DurationSetting>,
    /// Chat request timeout [default: 30s].
    #[arg(long, value_name = "DURATION", env = "CHAT_TIMEOUT")]
    pub chat_timeout: Option<DurationSetting>,
    /// A direct database URL for the LISTEN connection when `DATABASE_URL` goes through a
    /// transaction-pooling PgBouncer (LISTEN needs a session of its own).
    #[arg(long, value_name = "URL", env = "DATABASE_LISTEN_URL")]
    pub listen_database_url: Option<String>,
}

/// The worker's settings after flags, environment, config file and defaults are merged and
/// checked. `None` leaves the queue runtime's or the handlers file's own default in place.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// The chat server's kind.
    pub chat_backend: ChatBackendKind,
    /// Jobs run at once (≥ 1).
    pub concurrency: usize,
    /// Metrics and health address.
    pub metrics_addr: SocketAddr,
    /// Queues served (at least one).
    pub queues: Vec<String>,
    /// Handler settings file.
    pub handlers_config: Option<PathBuf>,
    /// Overrides the handlers file's `create_accounts`.
    pub create_accounts: Option<bool>,
    /// Overrides the handlers file's `reconcile_interval_secs` (0 = off).
    pub reconcile_interval_secs: Option<u64>,
    /// Bot username.
    pub bot_username: Option<String>,
    /// Lease TTL.
    pub lease_ttl: Option<Duration>,
    /// Sweep period.
    pub sweep_interval: Option<Duration>,
    /// Drain deadline.
    pub drain_timeout: Duration,
    /// First retry delay.
    pub retry_base: Option<Duration>,
    /// Chat request timeout.
    pub chat_timeout: Duration,
    /// Direct URL for LISTEN and migrations.
    pub listen_database_url: Option<String>,
}

/// Default `--concurrency`.
const DEFAULT_CONCURRENCY: usize = 16;
/// Default `--metrics-addr`.
const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9187);
/// Default `--drain-timeout`.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--chat-timeout`.
const DEFAULT_CHAT_TIMEOUT: Duration = Duration::from_secs(30);

impl WorkerArgs {
    /// Merges the flags (and their environment variables) over the config file's `[worker]`
    /// section and the defaults, and refuses values the runtime cannot work with.
    pub fn resolve(self, file: &WorkerFileSettings) -> anyhow::Result<WorkerOptions> {
        let dur =
            |flag: Option<DurationSetting>, key: Option<DurationSetting>| flag.or(key).map(|d| d.0);
        // Rocket.Chat's name for CHAT_TIMEOUT, still honoured below the neutral one.
        let chat_timeout_alias = match std::env::var("ROCKETCHAT_TIMEOUT") {
            Ok(v) if self.chat_timeout.is_none() => Some(
                v.parse::<DurationSetting>()
                    .map_err(|e| anyhow::anyhow!("ROCKETCHAT_TIMEOUT: {e}"))?,
            ),
            _ => None,
        };
        let concurrency = self
            .concurrency
            .or(file.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY);
        anyhow::ensure!(
            concurrency > 0,
            "concurrency (--concurrency, [worker] concurrency) must be at least 1"
        );
        let queues = self
            .queues
            .or_else(|| file.queues.clone())
            .unwrap_or_else(|| vec!["default".into()]);
        anyhow::ensure!(
            !queues.is_empty() && queues.iter().all(|q| !q.trim().is_empty()),
            "queues (--queues, [worker] queues) must name at least one queue, none empty"
        );
        // The handlers keep the interval in whole seconds; a fraction would be cut silently.
        let reconcile_interval_secs = match dur(self.reconcile_interval, file.reconcile_interval) {
            Some(d) => {
                anyhow::ensure!(
                    d.subsec_nanos() == 0,
                    "reconcile interval (--reconcile-interval, [worker] reconcile_interval) = {}                      must be whole seconds (0 = off)",
                    humantime::format_duration(d)
                );
                Some(d.as_secs())
            }
            None => None,
        };
        let lease_ttl = dur(self.lease_ttl, file.lease_ttl)
            .map(|d| {
                check_min_duration(
                    "lease TTL (--lease-ttl, [worker] lease_ttl)",
                    d,
                    Duration::from_secs(1),
                    "the heartbeat renews leases every third of it",
                )
            })
            .transpose()?;
        let sweep_interval = dur(self.sweep_interval, file.sweep_interval)
            .map(|d| {
                check_min_duration(
                    "sweep interval (--sweep-interval, [worker] sweep_interval)",
                    d,
                    Duration::from_millis(100),
                    "a shorter one keeps the database busy with sweeps",
                )
            })
            .transpose()?;
        let retry_base = dur(self.retry_base, file.retry_base)
            .map(|d| {
                anyhow::ensure!(
                    d <= RetryPolicy::default().cap,
                    "retry base (--retry-base, [worker] retry_base) = {} is longer than the                      retry cap of {}",
                    humantime::format_duration(d),
                    humantime::format_duration(RetryPolicy::default().cap)
                );
                check_min_duration(
                    "retry base (--retry-base, [worker] retry_base)",
                    d,
                    Duration::from_secs(1),
                    "a failing job would be retried in a tight loop",
                )
            })
            .transpose()?;
        let chat_timeout = check_min_duration(
            "chat timeout (--chat-timeout, [worker] chat_timeout)",
            dur(self.chat_timeout.or(chat_timeout_alias), file.chat_timeout)
                .unwrap_or(DEFAULT_CHAT_TIMEOUT),
            Duration::from_secs(1),
            "every chat request would time out",
        )?;
        Ok(WorkerOptions {
            chat_backend: self.chat_backend.or(file.chat_backend).unwrap_or_default(),
            concurrency,
            metrics_addr: self
                .metrics_addr
                .or(file.metrics_addr)
                .unwrap_or(DEFAULT_METRICS_ADDR),
            queues,
            handlers_config: self
                .handlers_config
                .or_else(|| file.handlers_config.clone()),
            create_accounts: self.create_accounts.or(file.create_accounts),
            reconcile_interval_secs,
            bot_username: self.bot_username.or_else(|| file.bot_username.clone()),
            lease_ttl,
            sweep_interval,
            drain_timeout: dur(self.drain_timeout, file.drain_timeout)
                .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            retry_base,
            chat_timeout,
            listen_database_url: self
                .listen_database_url
                .or_else(|| file.listen_database_url.clone()),
        })
    }
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

fn handler_config(a: &WorkerOptions) -> anyhow::Result<WorkerConfig> {
    let mut cfg = match &a.handlers_config {
        Some(path) => {
            use figment::providers::Format;
            anyhow::ensure!(
                path.exists(),
                "handlers config {} does not exist",
                path.display()
            );
            let file = figment::Figment::from(figment::providers::Toml::file(path));
            let mut cfg = file
                .extract::<WorkerConfig>()
                .with_context(|| format!("parsing {}", path.display()))?;
            // What the file sets wins over Moodle's plugin settings; what it leaves out, Moodle
            // may supply.
            for (key, _) in rcjobs_worker::config::MOODLE_SETTINGS {
                if file.find_value(key).is_ok() {
                    cfg.explicit.set(key);
                }
            }
            cfg
        }
        None => WorkerConfig::default(),
    };
    if let Some(on) = a.create_accounts {
        cfg.create_accounts = on;
        cfg.explicit.set("create_accounts");
    }
    if let Some(i) = a.reconcile_interval_secs {
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
    let a = a.resolve(&s.worker)?;
    let cfg = handler_config(&a)?;
    let chat = s.chat_connection(a.chat_backend, a.bot_username.clone(), a.chat_timeout)?;

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

    let metrics = metrics_for(&chat)?;
    metrics.set_worker_concurrency(a.concurrency);
    let engine = build_engine(EngineParts {
        pool: pool.clone(),
        moodle,
        chat,
        config: cfg,
        metrics: metrics.clone(),
        observer: None,
    })
    .await
    .context("connecting to the chat server")?;
    let mut builder = rcjobs_queue::Worker::builder(pool.clone())
        .concurrency(a.concurrency)
        .queues(a.queues.clone())
        .shutdown_timeout(a.drain_timeout);
    if let Some(ttl) = a.lease_ttl {
        builder = builder.lease_ttl(ttl);
    }
    if let Some(every) = a.sweep_interval {
        builder = builder.sweep_interval(every);
    }
    if let Some(base) = a.retry_base {
        builder = builder.retry_policy(RetryPolicy {
            base,
            ..RetryPolicy::default()
        });
    }
    if let Some(url) = &a.listen_database_url {
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy(url)
            .context("DATABASE_LISTEN_URL is not a valid database URL")?;
        builder = builder.wakeup(rcjobs_queue::Wakeup::start(&listen_pool));
    }
    let worker = build_worker(WorkerParts {
        engine,
        queue: builder,
        hooks: None,
    })?;

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

    use super::{WorkerArgs, WorkerOptions};
    use crate::cmd::config::{ChatBackendKind, Settings};
    use crate::cmd::{Cli, Command};
    use clap::Parser;
    use std::time::Duration;

    /// Writes `toml` to a file of its own, parses `rcjobs --config FILE worker ARGS...`, loads
    /// the settings the way `rcjobs` does and resolves the worker's options.
    fn resolve(name: &str, toml: &str, args: &[&str]) -> anyhow::Result<WorkerOptions> {
        let path = std::env::temp_dir().join(format!(
            "rcjobs-worker-config-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, toml)?;
        let mut argv = vec![
            "rcjobs",
            "--config",
            path.to_str().unwrap_or_default(),
            "worker",
        ];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv);
        let loaded = cli
            .map_err(anyhow::Error::from)
            .and_then(|cli| Ok((Settings::load(&cli.global)?, cli.command)));
        let _ = std::fs::remove_file(&path);
        let (settings, command) = loaded?;
        let Command::Worker(a) = command else {
            anyhow::bail!("not the worker command");
        };
        a.resolve(&settings.worker)
    }

    const FILE: &str = r#"
        [worker]
        chat_backend = "matrix"
        concurrency = 3
        queues = ["sync", "bulk"]
        metrics_addr = "127.0.0.1:9999"
        create_accounts = true
        reconcile_interval = "1h 30m"
        bot_username = "sync-bot"
        lease_ttl = "45s"
        sweep_interval = 5
        drain_timeout = "1m"
        retry_base = "2m"
        chat_timeout = "10s"
        listen_database_url = "postgres://rc@db:5432/rcjobs"
        handlers_config = "/etc/rcjobs/handlers.toml"
    "#;

    #[test]
    fn every_worker_setting_can_come_from_the_file() {
        let o = resolve("file", FILE, &[]).expect("resolves");
        if std::env::var_os("CHAT_BACKEND").is_none() {
            assert_eq!(o.chat_backend, ChatBackendKind::Matrix);
        }
        assert_eq!(o.concurrency, 3);
        assert_eq!(o.queues, ["sync", "bulk"]);
        assert_eq!(o.metrics_addr.to_string(), "127.0.0.1:9999");
        assert_eq!(o.create_accounts, Some(true));
        assert_eq!(o.reconcile_interval_secs, Some(5400));
        assert_eq!(o.bot_username.as_deref(), Some("sync-bot"));
        assert_eq!(o.lease_ttl, Some(Duration::from_secs(45)));
        assert_eq!(o.sweep_interval, Some(Duration::from_secs(5)));
        assert_eq!(o.drain_timeout, Duration::from_secs(60));
        assert_eq!(o.retry_base, Some(Duration::from_secs(120)));
        assert_eq!(o.chat_timeout, Duration::from_secs(10));
        assert_eq!(
            o.listen_database_url.as_deref(),
            Some("postgres://rc@db:5432/rcjobs")
        );
        assert_eq!(
            o.handlers_config.as_deref(),
            Some(std::path::Path::new("/etc/rcjobs/handlers.toml"))
        );
    }

    #[test]
    fn flags_override_the_file() {
        let o = resolve(
            "flags",
            FILE,
            &[
                "--concurrency",
                "8",
                "--queues",
                "x,y",
                "--lease-ttl",
                "20",
                "--drain-timeout",
                "0",
                "--retry-base",
                "5",
                "--chat-timeout",
                "2m",
                "--reconcile-interval",
                "0",
                "--create-accounts=false",
                "--chat-backend",
                "rocketchat",
            ],
        )
        .expect("resolves");
        assert_eq!(o.chat_backend, ChatBackendKind::Rocketchat);
        assert_eq!(o.concurrency, 8);
        assert_eq!(o.queues, ["x", "y"]);
        assert_eq!(o.lease_ttl, Some(Duration::from_secs(20)));
        assert_eq!(o.drain_timeout, Duration::ZERO, "0 = hand back at once");
        assert_eq!(o.retry_base, Some(Duration::from_secs(5)));
        assert_eq!(o.chat_timeout, Duration::from_secs(120));
        assert_eq!(o.reconcile_interval_secs, Some(0), "0 still means off");
        assert_eq!(o.create_accounts, Some(false));
        // Not given as flags: still the file's.
        assert_eq!(o.sweep_interval, Some(Duration::from_secs(5)));
        assert_eq!(o.bot_username.as_deref(), Some("sync-bot"));
        let on = resolve("flag-bare", "", &["--create-accounts"]).expect("resolves");
        assert_eq!(on.create_accounts, Some(true));
    }

    #[test]
    fn defaults_apply_without_flags_or_file() {
        let o = resolve("defaults", "", &[]).expect("resolves");
        assert_eq!(o.concurrency, 16);
        assert_eq!(o.queues, ["default"]);
        assert_eq!(o.metrics_addr.to_string(), "0.0.0.0:9187");
        assert_eq!(o.drain_timeout, Duration::from_secs(30));
        assert_eq!(o.chat_timeout, Duration::from_secs(30));
        assert_eq!(
            (o.lease_ttl, o.sweep_interval, o.retry_base),
            (None, None, None),
            "the queue runtime keeps its own defaults"
        );
        assert_eq!((o.create_accounts, o.reconcile_interval_secs), (None, None));
    }

    #[test]
    fn unknown_worker_keys_and_bad_values_are_refused() {
        let e = |toml: &str, args: &[&str]| {
            format!(
                "{:#}",
                resolve("bad", toml, args).expect_err("must be refused")
            )
        };
        let msg = e("[worker]\nconcurency = 4\n", &[]);
        assert!(msg.contains("concurency"), "{msg}");
        let msg = e("[wroker]\nconcurrency = 4\n", &[]);
        assert!(msg.contains("wroker"), "{msg}");
        let msg = e("", &["--lease-ttl", "soon"]);
        assert!(msg.contains("soon") && msg.contains("30s"), "{msg}");
        let msg = e("[worker]\nlease_ttl = \"0s\"\n", &[]);
        assert!(
            msg.contains("lease_ttl") && msg.contains("at least 1s"),
            "{msg}"
        );
        let msg = e("", &["--sweep-interval", "0"]);
        assert!(msg.contains("--sweep-interval"), "{msg}");
        let msg = e("", &["--retry-base", "0"]);
        assert!(msg.contains("tight loop"), "{msg}");
        let msg = e("", &["--retry-base", "2d"]);
        assert!(msg.contains("retry cap"), "{msg}");
        let msg = e("", &["--chat-timeout", "0"]);
        assert!(msg.contains("chat timeout"), "{msg}");
        let msg = e("", &["--reconcile-interval", "1500ms"]);
        assert!(msg.contains("whole seconds"), "{msg}");
        let msg = e("[worker]\nconcurrency = 0\n", &[]);
        assert!(msg.contains("at least 1"), "{msg}");
    }

    #[test]
    fn worker_args_have_no_clap_defaults() {
        // A clap default would hide the file's value: absent must stay absent.
        let cli = Cli::try_parse_from(["rcjobs", "worker"]).expect("parses");
        let Command::Worker(WorkerArgs {
            concurrency,
            drain_timeout,
            chat_timeout,
            metrics_addr,
            queues,
            ..
        }) = cli.command
        else {
            panic!("worker");
        };
        if std::env::var_os("RCJOBS_CONCURRENCY").is_none() {
            assert_eq!(concurrency, None);
        }
        assert!(drain_timeout.is_none() && chat_timeout.is_none());
        assert!(metrics_addr.is_none() || std::env::var_os("RCJOBS_METRICS_ADDR").is_some());
        assert!(queues.is_none() || std::env::var_os("RCJOBS_QUEUES").is_some());
    }
}
