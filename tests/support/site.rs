//! A test site: the queue, kind registry and sync schemas, a synthetic Moodle site (the
//! `rcjobs-moodle` fixture, rooms not created yet so the workers create them), the Rocket.Chat
//! simulator seeded with the site's live accounts, and optionally the change-capture triggers.

use rcjobs_moodle::fixture::{FixtureSpec, FixtureSummary};
use rcjobs_moodle::triggers::TriggerMode;
use rcjobs_moodle::{MoodleDb, Prefix};
use rcjobs_sim::{Seed, SeedUser, SimConfig, SimHandle};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::Duration;

/// Moodle table prefix used by every test site.
pub const PREFIX: &str = "mdl_";

/// A set-up site.
pub struct Site {
    /// Pool for the test's own queries (workload, checks).
    pub pool: PgPool,
    /// The read-only Moodle model.
    pub moodle: MoodleDb,
    /// What the fixture generated.
    pub fixture: FixtureSummary,
    /// The validated prefix.
    pub prefix: Prefix,
}

/// Opens a pool that tags its connections `application_name=rcjobs-test`, so chaos can tell
/// the test's own backends from the workers'.
pub async fn test_pool(url: &str, max: u32) -> PgPool {
    let opts: sqlx::postgres::PgConnectOptions = url.parse().expect("database url");
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.application_name("rcjobs-test"))
        .await
        .expect("connect test pool")
}

/// Migrates the queue (and registers every kind) and the worker's sync schema.
pub async fn migrate_all(pool: &PgPool) {
    rcjobs_queue::migrate(pool).await.expect("queue migrations");
    rcjobs_producer::register_kinds(pool)
        .await
        .expect("register kinds");
    rcjobs_worker::migrate(pool)
        .await
        .expect("rcjobs_sync migrations");
}

/// Creates the Moodle schema and a fixture site with `spec` in the database of `pool`, rooms
/// unlinked (`rocketchatid = ''`) so that the first sync of each creates it.
pub async fn create(pool: &PgPool, spec: &FixtureSpec) -> Site {
    let prefix = Prefix::new(PREFIX).expect("prefix");
    rcjobs_moodle::schema::create(pool, &prefix)
        .await
        .expect("moodle schema");
    let fixture = rcjobs_moodle::fixture::generate(pool, &prefix, spec)
        .await
        .expect("fixture");
    sqlx::query("UPDATE mdl_rocketchat SET rocketchatid = ''")
        .execute(pool)
        .await
        .expect("unlink rooms");
    let moodle = MoodleDb::new(pool.clone(), PREFIX).expect("moodle model");
    Site {
        pool: pool.clone(),
        moodle,
        fixture,
        prefix,
    }
}

impl Site {
    /// Installs the change-capture trigger set (Moodle writes become jobs).
    pub async fn install_triggers(&self) {
        rcjobs_moodle::triggers::install(&self.pool, &self.prefix, TriggerMode::ChangeCapture)
            .await
            .expect("install triggers");
    }

    /// Usernames of every account that is not deleted.
    pub async fn live_usernames(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT username FROM mdl_user WHERE deleted = 0 ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .expect("usernames")
    }

    /// Enqueues a sync of every room now (`reconcile_all` over a zero-length period).
    pub async fn sync_everything(&self) -> i64 {
        let job =
            rcjobs_producer::Job::parse("reconcile_all", &serde_json::json!({"period_secs": 0}))
                .expect("job");
        rcjobs_producer::enqueue(&self.pool, &job)
            .await
            .expect("enqueue reconcile_all")
            .id
    }
}

/// Starts the simulator with the site's accounts and `tune` applied to the config.
pub async fn start_sim(site: &Site, tune: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let users = site
        .live_usernames()
        .await
        .into_iter()
        .map(|u| SeedUser::new(&u))
        .collect();
    let mut cfg = SimConfig {
        seed: Seed {
            users,
            ..Seed::default()
        },
        ..SimConfig::default()
    };
    tune(&mut cfg);
    rcjobs_sim::spawn(cfg).await.expect("start simulator")
}

/// Installs an audit trigger on `rcjobs.job` recording the id and kind of every job ever
/// inserted (same transaction as the insert), so the test knows every enqueued id
/// independently of the queue's own bookkeeping.
pub async fn install_job_audit(pool: &PgPool) {
    for sql in [
        "CREATE SCHEMA IF NOT EXISTS rcjobs_test",
        "CREATE TABLE IF NOT EXISTS rcjobs_test.enqueued (id bigint PRIMARY KEY, kind text NOT NULL)",
        "CREATE OR REPLACE FUNCTION rcjobs_test.audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO rcjobs_test.enqueued (id, kind) SELECT id, kind FROM new_rows
           ON CONFLICT (id) DO NOTHING;
           RETURN NULL;
         END $$",
        "DROP TRIGGER IF EXISTS rcjobs_test_audit ON rcjobs.job",
        "CREATE TRIGGER rcjobs_test_audit AFTER INSERT ON rcjobs.job REFERENCING NEW TABLE AS new_rows
         FOR EACH STATEMENT EXECUTE FUNCTION rcjobs_test.audit()",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Every audited job's fate after a run.
#[derive(Debug, Default)]
pub struct Fates {
    /// Jobs ever enqueued.
    pub enqueued: i64,
    /// In history as completed.
    pub completed: i64,
    /// In history as superseded by a newer pending job of the same dedup key.
    pub superseded: i64,
    /// Superseded jobs whose successor is not itself completed/superseded.
    pub superseded_dangling: i64,
    /// In history as cancelled.
    pub cancelled: i64,
    /// Dead: (id, kind, last error).
    pub dead: Vec<(i64, String, Option<String>)>,
    /// Still in `rcjobs.job` (ready, running or blocked) and due, running or backing off
    /// after a failure: stuck.
    pub unfinished: i64,
    /// Never run and scheduled for later: an enrolment's end, the periodic reconcile's
    /// `reconcile_all` of a coming period and its spread room syncs (the reconcile is on, as
    /// users run it, so these exist at any moment). Expected, not stuck.
    pub scheduled: i64,
    /// Neither in `rcjobs.job` nor in history: lost.
    pub lost: i64,
    /// Error-history entries by class (`retry`, `expire`, `dead`, ...).
    pub error_classes: Vec<(String, i64)>,
    /// Jobs that ran more than once (attempt > 1).
    pub rerun_jobs: i64,
}

/// Reads the fate of every audited job.
pub async fn fates(pool: &PgPool) -> Fates {
    let (enqueued, completed, superseded, cancelled, unfinished, scheduled, lost, rerun_jobs): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE h.state = 'completed'),
                count(*) FILTER (WHERE h.state = 'superseded'),
                count(*) FILTER (WHERE h.state = 'cancelled'),
                count(*) FILTER (WHERE j.id IS NOT NULL
                                   AND NOT (j.attempt = 0 AND j.snoozes = 0 AND j.state <> 'running' AND j.run_at > now())),
                count(*) FILTER (WHERE j.id IS NOT NULL
                                   AND j.attempt = 0 AND j.snoozes = 0 AND j.state <> 'running' AND j.run_at > now()),
                count(*) FILTER (WHERE j.id IS NULL AND h.id IS NULL),
                count(*) FILTER (WHERE h.attempt > 1)
           FROM rcjobs_test.enqueued e
           LEFT JOIN rcjobs.job j ON j.id = e.id
           LEFT JOIN rcjobs.job_history h ON h.id = e.id",
    )
    .fetch_one(pool)
    .await
    .expect("fates");
    let superseded_dangling: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rcjobs.job_history s
          WHERE s.state = 'superseded'
            AND NOT EXISTS (SELECT 1 FROM rcjobs.job_history t
                             WHERE t.id = s.superseded_by AND t.state IN ('completed', 'superseded'))",
    )
    .fetch_one(pool)
    .await
    .expect("superseded chain");
    let dead = sqlx::query_as(
        "SELECT id, kind, last_error FROM rcjobs.job_history WHERE state = 'dead' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("dead jobs");
    let error_classes = sqlx::query_as(
        "SELECT coalesce(e->>'class', '?'), count(*) FROM rcjobs.job_history h, jsonb_array_elements(h.errors) e
          GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("error classes");
    Fates {
        enqueued,
        completed,
        superseded,
        superseded_dangling,
        cancelled,
        dead,
        unfinished,
        scheduled,
        lost,
        error_classes,
        rerun_jobs,
    }
}

/// Jobs not finished yet that are work left to do (see [`Fates::unfinished`]: not those
/// scheduled for later that never ran), and of all unfinished jobs, those due or running now.
/// Changes still in the trigger set's outbox (the workers relay them shortly) count as due.
pub async fn pending(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    let (left, due): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT (attempt = 0 AND snoozes = 0 AND state <> 'running' AND run_at > now())),
                count(*) FILTER (WHERE state = 'running' OR (state IN ('ready', 'blocked') AND run_at <= now()))
           FROM rcjobs.job",
    )
    .fetch_one(pool)
    .await?;
    let prefix = Prefix::new(PREFIX).expect("prefix");
    let captured = rcjobs_moodle::outbox::pending(pool, &prefix)
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    Ok((left + captured, due + captured))
}
