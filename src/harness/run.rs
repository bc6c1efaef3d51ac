//! One end-to-end run: database, schemas, site, chat server, workers, triggers, comparator,
//! and the convergence wait the demo and the benchmarks time.

use super::chat::{CallCounter, ChatServer, SimOptions, SIM_BOT};
use super::compare::{Comparator, Mismatches, RoomTruth};
use super::progress::Progress;
use super::site::Site;
use super::workers::{self, WorkerOptions, WorkerSet};
use crate::cmd::config::Settings;
use anyhow::Context;
use rcjobs_chat::{ChatBackend, OpenGate};
use rcjobs_moodle::fixture::FixtureSpec;
use rcjobs_moodle::triggers::TriggerMode;
use rcjobs_worker::wiring::ChatConnection;
use rcjobs_worker::{SyncState, UsernameMapping};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to set up.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Database created (dropped first) on the server of `DATABASE_URL`.
    pub database: String,
    /// The synthetic site.
    pub fixture: FixtureSpec,
    /// The simulator (ignored with `ROCKETCHAT_URL`).
    pub sim: SimOptions,
    /// Draw progress bars.
    pub progress: bool,
}

/// How [`Run::setup_with`] treats the database and the connection budget (the defaults are
/// what `bench e2e` gets through [`Run::setup`]).
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Who creates the database, written into its comment (`demo`, `bench e2e`).
    pub purpose: &'static str,
    /// Drop an existing database of the name even if rcjobs did not create it.
    pub replace_database: bool,
    /// The flag that sets `replace_database`, named in the refusal (`None`: no such flag).
    pub replace_flag: Option<&'static str>,
    /// Postgres connections the run may open in total.
    pub max_connections: u32,
    /// Workers x concurrency the run will start, to check the budget before the site is
    /// generated (the pools are sized again when the workers start).
    pub workers: Option<(usize, usize)>,
    /// A chat server found by the caller (the Matrix homeserver of `target/synapse/env`),
    /// used instead of what the settings name.
    pub chat: Option<ChatConnection>,
}

impl Default for SetupOptions {
    fn default() -> Self {
        SetupOptions {
            purpose: "the rcjobs harness (demo or bench)",
            replace_database: false,
            replace_flag: None,
            max_connections: workers::DEFAULT_CONNECTION_CAP,
            workers: None,
            chat: None,
        }
    }
}

/// A set-up run.
pub struct Run {
    server: PgConnectOptions,
    /// Connect options of the run's database.
    pub db: PgConnectOptions,
    /// Pool for the harness's own queries (stats, enrolments).
    pub pool: PgPool,
    /// The Moodle side.
    pub site: Site,
    /// The chat server.
    pub chat: ChatServer,
    /// Calls of every client of the run, per endpoint.
    pub calls: Arc<CallCounter>,
    /// Desired vs actual.
    pub comparator: Comparator,
    /// For comparisons against a real server (`None` with the simulator).
    compare_backend: Option<Arc<dyn ChatBackend>>,
    workers: Option<WorkerSet>,
    progress: bool,
    database: String,
    max_connections: u32,
    plan: Option<workers::ConnectionPlan>,
}

/// What a convergence wait saw.
#[derive(Debug, Clone)]
pub struct Converged {
    /// When the chat server first equalled Moodle (from the wait's start), if it did.
    pub at: Option<Duration>,
    /// The last comparison.
    pub mismatches: Mismatches,
}

impl Run {
    /// Reaches Postgres, recreates the database, migrates, generates the site, starts the chat
    /// server (seeding the simulator with the site's accounts).
    pub async fn setup(settings: &Settings, spec: &RunSpec) -> anyhow::Result<Run> {
        Self::setup_with(settings, spec, &SetupOptions::default()).await
    }

    /// [`Run::setup`] with explicit database and connection-budget options. Never drops a
    /// database rcjobs did not create unless `opts.replace_database`.
    pub async fn setup_with(
        settings: &Settings,
        spec: &RunSpec,
        opts: &SetupOptions,
    ) -> anyhow::Result<Run> {
        let server = super::postgres::ensure_server(&settings.database_url).await?;
        if let Some((count, concurrency)) = opts.workers {
            // Fail before minutes of fixture generation, not when the workers start.
            let conns = super::postgres::server_connections_of(&server).await?;
            workers::plan_connections(&conns, 1, opts.max_connections, count, concurrency)?;
        }
        let policy = super::postgres::ResetPolicy {
            purpose: opts.purpose,
            replace_foreign: opts.replace_database,
            replace_flag: opts.replace_flag,
        };
        let db = super::postgres::reset_database(&server, &spec.database, &policy).await?;
        let half = workers::HARNESS_CONNECTIONS / 2;
        let pool = super::postgres::pool(&db, half).await?;
        super::postgres::migrate_all(&pool).await?;
        let moodle_pool = super::postgres::pool(&db, half).await?;
        let site =
            super::site::create(&pool, moodle_pool, &settings.moodle_prefix, &spec.fixture).await?;
        let mapping = UsernameMapping::new(&[]).context("username mapping")?;
        let usernames: Vec<String> = site
            .live_usernames()
            .await?
            .iter()
            .filter_map(|u| mapping.map(u).ok())
            .collect();
        let chat = match &opts.chat {
            Some(connection) => ChatServer::External {
                connection: connection.clone(),
            },
            None => ChatServer::start(settings, &usernames, &spec.sim).await?,
        };
        let calls = Arc::new(CallCounter::default());
        let (compare_backend, bot, backend_name) = match &chat {
            ChatServer::Sim(_) => (None, SIM_BOT.to_owned(), "rocketchat"),
            ChatServer::External { connection } => {
                // Its calls are not the workers': keep them out of the run's counts, and
                // out of the workers' shared rate budget.
                let b = connection
                    .connect(Arc::new(OpenGate), Arc::new(CallCounter::default()))
                    .await
                    .with_context(|| format!("connecting to the {}", chat.describe()))?;
                let bot = b.bot_username().to_owned();
                (Some(b), bot, connection.backend_name())
            }
        };
        let comparator = Comparator::new(
            site.moodle.clone(),
            SyncState::for_backend(pool.clone(), backend_name),
            mapping,
            &bot,
        );
        Ok(Run {
            server,
            db,
            pool,
            site,
            chat,
            calls,
            comparator,
            compare_backend,
            workers: None,
            progress: spec.progress,
            database: spec.database.clone(),
            max_connections: opts.max_connections,
            plan: None,
        })
    }

    /// Starts the workers (replacing none; call [`Run::stop_workers`] first to change them).
    pub async fn start_workers(&mut self, opts: &WorkerOptions) -> anyhow::Result<()> {
        anyhow::ensure!(self.workers.is_none(), "workers already running");
        let mut opts = opts.clone();
        // A real server has no seeded accounts: create them as the plugin's option does.
        if matches!(self.chat, ChatServer::External { .. }) {
            opts.config.create_accounts = true;
        }
        // Size the pools from what the server has free now; the harness's own open
        // connections are part of the plan, not "others".
        let conns = super::postgres::server_connections(&self.pool).await?;
        let own = self.pool.size() + self.site.moodle.pool().size();
        let plan = workers::plan_connections(
            &conns,
            own,
            self.max_connections,
            opts.count,
            opts.concurrency,
        )?;
        self.workers = Some(
            workers::start(
                &self.db,
                self.site.prefix.as_str(),
                &self.chat,
                self.calls.clone(),
                &opts,
                plan.per_replica,
            )
            .await?,
        );
        self.plan = Some(plan);
        Ok(())
    }

    /// The connection plan of the running (or last started) workers.
    pub fn connection_plan(&self) -> Option<workers::ConnectionPlan> {
        self.plan
    }

    /// Stops the workers gracefully.
    pub async fn stop_workers(&mut self) -> anyhow::Result<()> {
        if let Some(w) = self.workers.take() {
            w.stop().await?;
        }
        Ok(())
    }

    /// The running workers' counters.
    pub fn worker_counters(&self) -> Option<&workers::RunCounters> {
        self.workers.as_ref().map(|w| &*w.counters)
    }

    /// Installs the change-capture trigger set into the Moodle tables.
    pub async fn install_triggers(&self) -> anyhow::Result<()> {
        rcjobs_moodle::triggers::install(&self.pool, &self.site.prefix, TriggerMode::ChangeCapture)
            .await
            .context("installing the Moodle triggers")
    }

    /// Enqueues a sync of every room now (a `reconcile_all` over a zero-length period).
    pub async fn sync_everything(&self) -> anyhow::Result<()> {
        let job =
            rcjobs_producer::Job::parse("reconcile_all", &serde_json::json!({"period_secs": 0}))?;
        rcjobs_producer::enqueue(&self.pool, &job).await?;
        Ok(())
    }

    /// Moodle's desired state of every live chat activity.
    pub async fn truth_all(&self) -> anyhow::Result<Vec<RoomTruth>> {
        let rooms = self.site.all_rooms().await?;
        self.comparator.truth(&rooms).await
    }

    /// Compares once.
    pub async fn compare(&self, truths: &mut [RoomTruth]) -> anyhow::Result<Mismatches> {
        self.comparator.resolve_rooms(truths).await?;
        let backend = self.compare_backend.as_deref();
        let rooms = self
            .comparator
            .chat_rooms(&self.chat, backend, truths)
            .await?;
        Ok(self.comparator.compare(truths, &rooms))
    }

    /// Polls the comparator every `poll` until the chat server equals `truths` (and, with
    /// `drain`, the queue has nothing left to run), or `deadline` passes. Time is measured
    /// from `start`.
    pub async fn wait_converged(
        &self,
        phase: &str,
        truths: &mut [RoomTruth],
        start: Instant,
        deadline: Duration,
        poll: Duration,
        drain: bool,
    ) -> anyhow::Result<Converged> {
        let progress = Progress::new(phase, truths.len() as u64, !self.progress);
        let baseline = super::progress::finished_jobs(&self.pool).await?;
        let mut at = None;
        let mut last_jobs = Instant::now() - Duration::from_secs(1);
        loop {
            let m = self.compare(truths).await?;
            progress.set_rooms(
                m.rooms_converged + m.rooms_archived_skipped,
                truths.len() as u64,
            );
            if last_jobs.elapsed() >= Duration::from_millis(250) {
                progress.refresh_jobs(&self.pool, baseline).await;
                last_jobs = Instant::now();
            }
            if m.total() == 0 && at.is_none() {
                at = Some(start.elapsed());
            }
            if at.is_some() && (!drain || super::progress::pending_jobs(&self.pool).await? == 0) {
                progress.refresh_jobs(&self.pool, baseline).await;
                progress.finish();
                return Ok(Converged { at, mismatches: m });
            }
            if m.total() > 0 {
                at = None; // not converged after all (a later job changed it back)
            }
            if start.elapsed() >= deadline {
                progress.finish();
                return Ok(Converged {
                    at: None,
                    mismatches: m,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Stops workers and the chat server; drops the database when `drop_db`.
    pub async fn teardown(mut self, drop_db: bool) -> anyhow::Result<()> {
        self.stop_workers().await?;
        self.chat.shutdown().await;
        self.pool.close().await;
        self.site.moodle.pool().close().await;
        if drop_db {
            super::postgres::drop_database(&self.server, &self.database).await?;
        }
        Ok(())
    }
}
