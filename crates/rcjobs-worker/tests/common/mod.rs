//! Shared harness for scenario tests: real Postgres (queue + Moodle schema + fixture), the
//! simulator behind the real Rocket.Chat client, real queue workers, all put together by
//! `rcjobs_worker::wiring` as `rcjobs worker` does (limiter, metrics, hooks included).

#![allow(dead_code, clippy::unwrap_used)]

use rcjobs_moodle::fixture::{FixtureSpec, FixtureSummary};
use rcjobs_moodle::{MoodleDb, Prefix};
use rcjobs_producer::{EnqueueOptions, Job};
use rcjobs_rocketchat::{Auth, RocketChatConfig, Secret};
use rcjobs_sim::{SimConfig, SimHandle};
use rcjobs_testkit::{wait_for, TestDb};
use rcjobs_worker::wiring::{
    build_engine, build_worker, metrics_for, ChatConnection, EngineParts, WorkerParts,
};
use rcjobs_worker::{CancellationToken, Engine, WorkerConfig};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const P: &str = "mdl_";

pub struct Env {
    pub db: TestDb,
    pub prefix: Prefix,
    pub moodle: MoodleDb,
    pub sim: SimHandle,
    pub engine: Arc<Engine>,
    pub fixture: FixtureSummary,
}

/// A running worker: abort it (crash) or stop it (drain).
pub struct RunningWorker {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

pub fn sql(s: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(s.replace("{p}", P))
}

impl Env {
    /// Queue + sync schemas, Moodle schema + a small fixture (room group ids blanked unless
    /// `keep_ids`, so the worker creates the rooms), simulator, engine.
    pub async fn new(spec: FixtureSpec, sim_cfg: SimConfig, cfg: WorkerConfig) -> Env {
        let db = TestDb::with_pool_size(4).await;
        rcjobs_queue::migrate(&db.pool).await.unwrap();
        rcjobs_producer::register_kinds(&db.pool).await.unwrap();
        rcjobs_worker::migrate(&db.pool).await.unwrap();
        // Migrations are idempotent.
        rcjobs_worker::migrate(&db.pool).await.unwrap();
        let prefix = Prefix::new(P).unwrap();
        rcjobs_moodle::schema::create(&db.pool, &prefix)
            .await
            .unwrap();
        let fixture = rcjobs_moodle::fixture::generate(&db.pool, &prefix, &spec)
            .await
            .unwrap();
        sqlx::query(sql("UPDATE {p}rocketchat SET rocketchatid = ''"))
            .execute(&db.pool)
            .await
            .unwrap();
        let sim = rcjobs_sim::spawn(sim_cfg).await.unwrap();
        // What docs/handlers.md asks of the bot account beyond the `bot` role.
        sim.grant_permission("bot", "create-user");
        sim.grant_permission("bot", "unarchive-room");
        sim.grant_permission("bot", "clean-channel-history");
        let moodle_pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&db.url)
            .await
            .unwrap();
        let moodle = MoodleDb::new(moodle_pool, P).unwrap();
        let engine = Self::engine_for(&db, &moodle, &sim, cfg).await;
        Env {
            db,
            prefix,
            moodle,
            sim,
            engine,
            fixture,
        }
    }

    async fn engine_for(
        db: &TestDb,
        moodle: &MoodleDb,
        sim: &SimHandle,
        cfg: WorkerConfig,
    ) -> Arc<Engine> {
        let target = Target {
            db_url: db.url.clone(),
            sim_url: sim.base_url(),
            bot_id: sim.bot_user_id().to_owned(),
            bot_token: sim.bot_token().to_owned(),
        };
        target.engine(moodle.clone(), cfg).await
    }

    fn target(&self) -> Target {
        Target {
            db_url: self.db.url.clone(),
            sim_url: self.sim.base_url(),
            bot_id: self.sim.bot_user_id().to_owned(),
            bot_token: self.sim.bot_token().to_owned(),
        }
    }

    /// A worker on its own runtime and thread, with its own pools and client, that can be
    /// killed like a crashed process: every task it has is dropped mid-flight, nothing is
    /// acknowledged, its leases run out.
    pub fn crashable_worker(&self, concurrency: usize) -> CrashableWorker {
        let target = self.target();
        let cfg = self.engine.config().clone();
        let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let moodle_pool = PgPoolOptions::new()
                    .max_connections(3)
                    .connect(&target.db_url)
                    .await
                    .unwrap();
                let engine = target
                    .engine(MoodleDb::new(moodle_pool, P).unwrap(), cfg)
                    .await;
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .connect(&target.db_url)
                    .await
                    .unwrap();
                let worker = build_worker(WorkerParts {
                    engine,
                    queue: worker_builder(pool, concurrency),
                    hooks: None,
                })
                .unwrap();
                tokio::spawn(async move {
                    let _ = worker.run(std::future::pending::<()>()).await;
                });
                let _ = crash_rx.await;
            });
            rt.shutdown_background();
        });
        CrashableWorker {
            crash: Some(crash_tx),
            thread: Some(thread),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// Starts a queue worker with every handler registered (its own pool of 8).
    pub async fn start_worker(&self, concurrency: usize) -> RunningWorker {
        self.start_worker_on(self.engine.clone(), concurrency).await
    }

    /// Starts a queue worker like [`Env::start_worker`] around another engine (another
    /// backend's).
    pub async fn start_worker_on(&self, engine: Arc<Engine>, concurrency: usize) -> RunningWorker {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&self.db.url)
            .await
            .unwrap();
        let worker = build_worker(WorkerParts {
            engine,
            queue: worker_builder(pool, concurrency),
            hooks: None,
        })
        .unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            worker
                .run(async move { s.cancelled().await })
                .await
                .unwrap();
        });
        RunningWorker { stop, task }
    }

    pub async fn enqueue(&self, job: &Job) {
        rcjobs_producer::enqueue(self.pool(), job).await.unwrap();
    }

    pub async fn enqueue_raw(&self, kind: &str, payload: Value) {
        let job = Job::parse(kind, &payload).unwrap();
        rcjobs_producer::enqueue_with(self.pool(), &job, &EnqueueOptions::default())
            .await
            .unwrap();
    }

    /// Waits until no job is ready, blocked or running.
    pub async fn drain(&self) {
        let pool = self.pool().clone();
        wait_for("queue drained", Duration::from_secs(60), || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM rcjobs.job WHERE state IN ('ready', 'running', 'blocked') AND run_at <= now() + interval '1 second'",
                )
                .fetch_one(&pool)
                .await
                .ok()?;
                (n == 0).then_some(())
            }
        })
        .await;
    }

    /// Prints queue history and sync state (for failing assertions).
    pub async fn dump(&self) {
        let rows = sqlx::query("SELECT id, kind, state, attempt, payload::text, coalesce(last_error, '') FROM rcjobs.job_history ORDER BY id")
            .fetch_all(self.pool()).await.unwrap();
        for r in rows {
            eprintln!(
                "job {} {} {} a{} {} {}",
                r.get::<i64, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2),
                r.get::<i32, _>(3),
                r.get::<String, _>(4),
                r.get::<String, _>(5)
            );
        }
        let rows = sqlx::query("SELECT cmid, coalesce(room_id, ''), state, coalesce(last_result, ''), coalesce(member_count, -1) FROM rcjobs_sync.room ORDER BY cmid")
            .fetch_all(self.pool()).await.unwrap();
        for r in rows {
            eprintln!(
                "room cm{} {} {} {} {}",
                r.get::<i64, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2),
                r.get::<String, _>(3),
                r.get::<i32, _>(4)
            );
        }
        let rows = sqlx::query("SELECT cmid, subject, code, detail FROM rcjobs_sync.outcome ORDER BY cmid, subject LIMIT 50")
            .fetch_all(self.pool()).await.unwrap();
        for r in rows {
            eprintln!(
                "outcome cm{} {} {} {}",
                r.get::<i64, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2),
                r.get::<String, _>(3)
            );
        }
    }

    /// Dead jobs with their reasons.
    pub async fn dead_jobs(&self) -> Vec<(String, String)> {
        sqlx::query("SELECT kind, coalesce(last_error, '') AS e FROM rcjobs.job_history WHERE state = 'dead'")
            .fetch_all(self.pool())
            .await
            .map(|rows| rows.iter().map(|r| (r.get::<String, _>("kind"), r.get::<String, _>("e"))).collect())
            .unwrap_or_default()
    }

    /// Enqueues a sync of every live room (what `reconcile_all` does, without spreading).
    pub async fn sync_all(&self) {
        self.enqueue_raw("reconcile_all", serde_json::json!({"period_secs": 0}))
            .await;
    }

    /// Live chat cmids.
    pub async fn live_cmids(&self) -> Vec<(i64, bool)> {
        sqlx::query(sql(
            "SELECT cm.id, (cm.visible = 1 AND cm.visibleoncoursepage = 1) AS vis
               FROM {p}course_modules cm JOIN {p}modules m ON m.id = cm.module AND m.name = 'rocketchat'
              WHERE cm.deletioninprogress = 0 ORDER BY cm.id",
        ))
        .fetch_all(self.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    /// Moodle truth, computed independently of `rcjobs-moodle` (moodle.md §3.1): username →
    /// moderator, for the room of `cmid`.
    pub async fn truth(&self, cmid: i64) -> BTreeMap<String, bool> {
        let now = chrono::Utc::now().timestamp();
        sqlx::query(sql(
            "WITH cm AS (
               SELECT cm.id, cm.course, ctx.path, r.moderatorroles, r.userroles
                 FROM {p}course_modules cm
                 JOIN {p}modules m ON m.id = cm.module AND m.name = 'rocketchat'
                 JOIN {p}rocketchat r ON r.id = cm.instance
                 JOIN {p}context ctx ON ctx.contextlevel = 70 AND ctx.instanceid = cm.id
                WHERE cm.id = $1 AND cm.deletioninprogress = 0)
             SELECT u.username,
                    bool_or(ra.roleid::text = ANY(string_to_array(replace(coalesce(cm.moderatorroles, ''), ' ', ''), ','))) AS moderator
               FROM cm
               JOIN {p}role_assignments ra
                 ON ra.contextid::text = ANY(string_to_array(btrim(cm.path, '/'), '/'))
                AND (ra.roleid::text = ANY(string_to_array(replace(coalesce(cm.moderatorroles, ''), ' ', ''), ','))
                  OR ra.roleid::text = ANY(string_to_array(replace(coalesce(cm.userroles, ''), ' ', ''), ',')))
               JOIN {p}user u ON u.id = ra.userid AND u.deleted = 0 AND u.suspended = 0
              WHERE EXISTS (SELECT 1 FROM {p}user_enrolments ue JOIN {p}enrol e ON e.id = ue.enrolid
                             WHERE e.courseid = cm.course AND ue.userid = u.id AND ue.status = 0 AND e.status = 0
                               AND ue.timestart <= $2 AND (ue.timeend = 0 OR ue.timeend > $2))
              GROUP BY u.username",
        ))
        .bind(cmid)
        .bind(now)
        .fetch_all(self.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<bool, _>(1)))
        .collect()
    }

    /// The chat room id the worker maps `cmid` to.
    pub async fn room_id(&self, cmid: i64) -> Option<String> {
        sqlx::query_scalar(
            "SELECT room_id FROM rcjobs_sync.room WHERE cmid = $1 AND state = 'active'",
        )
        .bind(cmid)
        .fetch_optional(self.pool())
        .await
        .unwrap()
        .flatten()
    }

    /// The simulator's members of `room_id` (bot excluded): username → moderator.
    pub fn chat_members(&self, room_id: &str) -> Option<(BTreeMap<String, bool>, bool)> {
        let snap = self.sim.snapshot();
        let room = snap.rooms.iter().find(|r| r.id == room_id)?;
        let bot = "rcjobs.bot";
        Some((
            room.members
                .iter()
                .filter(|m| m.username != bot)
                .map(|m| (m.username.clone(), m.roles.iter().any(|r| r == "moderator")))
                .collect(),
            room.archived,
        ))
    }

    /// Asserts that every live, visible chat activity's room equals Moodle truth, and hidden
    /// ones are archived. Returns the number of rooms checked.
    pub async fn assert_converged(&self) -> usize {
        let mut checked = 0;
        for (cmid, visible) in self.live_cmids().await {
            let id = self
                .room_id(cmid)
                .await
                .unwrap_or_else(|| panic!("cm {cmid} has no room"));
            let (members, archived) = self
                .chat_members(&id)
                .unwrap_or_else(|| panic!("room {id} of cm {cmid} missing in chat"));
            if visible {
                assert!(!archived, "room of visible cm {cmid} archived");
                let truth = self.truth(cmid).await;
                if members != truth {
                    self.dump().await;
                }
                assert_eq!(members, truth, "room of cm {cmid} differs from Moodle");
            } else {
                assert!(archived, "room of hidden cm {cmid} not archived");
            }
            checked += 1;
        }
        checked
    }
}

/// Where the harness' database and simulator are.
#[derive(Clone)]
struct Target {
    db_url: String,
    sim_url: String,
    bot_id: String,
    bot_token: String,
}

impl Target {
    async fn engine(&self, moodle: MoodleDb, cfg: WorkerConfig) -> Arc<Engine> {
        let mut rc = RocketChatConfig::new(
            url::Url::parse(&self.sim_url).unwrap(),
            Auth::Token {
                user_id: self.bot_id.clone(),
                token: Secret::new(self.bot_token.clone()),
            },
        );
        rc.rate_limit_max_wait = Duration::from_millis(200);
        let pool = PgPoolOptions::new()
            .max_connections(3)
            .connect(&self.db_url)
            .await
            .unwrap();
        let chat = ChatConnection::RocketChat(rc);
        build_engine(EngineParts {
            pool,
            moodle,
            metrics: metrics_for(&chat).unwrap(),
            chat,
            config: cfg,
            observer: None,
        })
        .await
        .unwrap()
    }
}

/// Queue worker settings for tests: short leases so crash recovery is quick.
fn worker_builder(pool: PgPool, concurrency: usize) -> rcjobs_queue::WorkerBuilder {
    rcjobs_queue::Worker::builder(pool)
        .concurrency(concurrency)
        .lease_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(500))
        .sweep_interval(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(200))
        .retry_policy(rcjobs_queue::RetryPolicy {
            base: Duration::from_millis(200),
            ..Default::default()
        })
}

/// See [`Env::crashable_worker`].
pub struct CrashableWorker {
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrashableWorker {
    /// Kills the worker's runtime (all its tasks vanish at their next await point).
    pub fn crash(mut self) {
        if let Some(tx) = self.crash.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The fixture spec used by most scenarios: small, with an empty course for mass enrolment.
pub fn small_site(seed: u64) -> FixtureSpec {
    let mut s = FixtureSpec::new(80, 3, seed);
    s.enrolments_per_user = 2;
    s.empty_courses = 1;
    s
}

/// The periodic reconcile's period in tests: shortened from the default hour so that it
/// runs during a test, never switched off (what users run is what we test).
pub const TEST_RECONCILE_SECS: u64 = 20;

/// The chat server scenarios run against: the simulator failing 5 % of calls with a 500
/// (before or after applying them), as real servers do under load.
pub fn faulty_chat() -> SimConfig {
    SimConfig {
        fail_rate: 0.05,
        ..SimConfig::default()
    }
}

/// Handler settings for scenarios: accounts created on demand, the periodic reconcile on
/// with a [`TEST_RECONCILE_SECS`] period.
pub fn creating_accounts() -> WorkerConfig {
    WorkerConfig {
        create_accounts: true,
        reconcile_interval_secs: TEST_RECONCILE_SECS,
        ..WorkerConfig::default()
    }
}
