//! `write_room_ids` against a real restricted Moodle role (docs/operations.md, "Letting
//! Moodle link to the rooms rcjobs creates"): the worker's Moodle pool connects as a login
//! role that may only read Moodle's tables. Without the column grant, storing a created
//! room's id is refused by Postgres: the room still works, the job completes and the room
//! records `permission_missing` (every sync, while the grant is missing); the first sync
//! after `GRANT UPDATE (rocketchatid)` stores it. With the grant from the start the id is
//! stored when the room is made.

#![allow(clippy::unwrap_used)]

mod common;

use common::{creating_accounts, faulty_chat, small_site, sql, Env, P};
use rcjobs_moodle::MoodleDb;
use rcjobs_rocketchat::{Auth, RocketChatBackend, RocketChatClient, RocketChatConfig, Secret};
use rcjobs_worker::runtime::WorkerStack;
use rcjobs_worker::{CancellationToken, Engine, WorkerConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// A login role that may read every table of the test database and write nothing.
struct ReadOnlyRole {
    name: String,
    admin: PgPool,
    /// The test database, for the drop.
    url: String,
}

impl ReadOnlyRole {
    async fn create(env: &Env) -> ReadOnlyRole {
        let name = format!("{}_moodle_ro", env.db.name);
        let admin = env.pool().clone();
        for stmt in [
            format!("DROP ROLE IF EXISTS {name}"),
            format!("CREATE ROLE {name} LOGIN"),
            format!("GRANT CONNECT ON DATABASE {} TO {name}", env.db.name),
            format!("GRANT USAGE ON SCHEMA public TO {name}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name}"),
        ] {
            // identifiers built from the test database's generated name
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&admin)
                .await
                .unwrap();
        }
        ReadOnlyRole {
            name,
            admin,
            url: env.db.url.clone(),
        }
    }

    /// The column grant docs/operations.md documents, and nothing else.
    async fn grant_room_id_column(&self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "GRANT UPDATE (rocketchatid) ON {P}rocketchat TO {}",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
    }

    /// A pool on the test database connecting as this role (trust auth on the test server).
    async fn pool(&self, env: &Env) -> PgPool {
        let opts: PgConnectOptions = env.db.options().username(&self.name);
        PgPoolOptions::new()
            .max_connections(3)
            .connect_with(opts)
            .await
            .unwrap()
    }
}

/// Roles outlive databases: drop this one even when the test panics (before the test
/// database goes, whose privileges `DROP OWNED` revokes).
impl Drop for ReadOnlyRole {
    fn drop(&mut self) {
        let (name, url) = (self.name.clone(), self.url.clone());
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                // a fresh connection: the test's runtime (and the pool's tasks) may be gone
                if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await {
                    for stmt in [
                        format!("DROP OWNED BY {name}"),
                        format!("DROP ROLE IF EXISTS {name}"),
                    ] {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(&mut c).await;
                    }
                }
            });
        });
        let _ = done.join();
    }
}

/// A worker whose Moodle pool is `moodle_pool` (the queue and sync state keep the owner's pool).
async fn start_worker(
    env: &Env,
    moodle_pool: PgPool,
    cfg: WorkerConfig,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let rc = RocketChatConfig::new(
        url::Url::parse(&env.sim.base_url()).unwrap(),
        Auth::Token {
            user_id: env.sim.bot_user_id().to_owned(),
            token: Secret::new(env.sim.bot_token().to_owned()),
        },
    );
    let client = RocketChatClient::builder(rc).build().unwrap();
    let backend = RocketChatBackend::connect(client).await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&env.db.url)
        .await
        .unwrap();
    let engine = Arc::new(
        Engine::new(
            pool.clone(),
            MoodleDb::new(moodle_pool, P).unwrap(),
            Arc::new(backend),
            cfg,
            None,
        )
        .unwrap(),
    );
    let builder = rcjobs_queue::Worker::builder(pool)
        .concurrency(4)
        .poll_interval(Duration::from_millis(200))
        .retry_policy(rcjobs_queue::RetryPolicy {
            base: Duration::from_millis(200),
            ..Default::default()
        });
    let worker = WorkerStack::build(builder, engine, None).unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        worker
            .run(async move { s.cancelled().await })
            .await
            .unwrap();
    });
    (stop, task)
}

/// Moodle's `rocketchatid` of `cmid`'s instance.
async fn stored_id(env: &Env, cmid: i64) -> String {
    sqlx::query_scalar(sql(
        "SELECT rocketchatid FROM {p}rocketchat WHERE id = (SELECT instance FROM {p}course_modules WHERE id = $1)",
    ))
    .bind(cmid)
    .fetch_one(env.pool())
    .await
    .unwrap()
}

/// The room-level outcome of `cmid` (code, detail), if any.
async fn room_outcome(env: &Env, cmid: i64) -> Option<(String, String)> {
    sqlx::query_as("SELECT code, detail FROM rcjobs_sync.outcome WHERE cmid = $1 AND subject = ''")
        .bind(cmid)
        .fetch_optional(env.pool())
        .await
        .unwrap()
}

fn writing_ids() -> WorkerConfig {
    WorkerConfig {
        write_room_ids: true,
        ..creating_accounts()
    }
}

/// Syncs every room once with a worker on `moodle_pool` and waits for the queue to drain.
async fn sync_all_with(env: &Env, moodle_pool: PgPool) {
    let (stop, task) = start_worker(env, moodle_pool, writing_ids()).await;
    env.sync_all().await;
    env.drain().await;
    stop.cancel();
    task.await.unwrap();
    let dead = env.dead_jobs().await;
    assert!(dead.is_empty(), "jobs died: {dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_room_id_write_is_recorded_and_the_room_works() {
    let env = Env::new(small_site(21), faulty_chat(), writing_ids()).await;
    let role = ReadOnlyRole::create(&env).await;
    let ro = role.pool(&env).await;
    // The role really is refused (so the worker's write below is refused, not skipped).
    let refused = sqlx::query(sql("UPDATE {p}rocketchat SET rocketchatid = rocketchatid"))
        .execute(&ro)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );

    sync_all_with(&env, ro.clone()).await;
    let checked = env.assert_converged().await;
    assert!(checked >= 3, "only {checked} rooms");
    let completed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rcjobs.job_history WHERE kind = 'synchronize_group' AND state = 'completed'",
    )
    .fetch_one(env.pool())
    .await
    .unwrap();
    assert!(
        completed >= checked as i64,
        "{completed} syncs completed for {checked} rooms"
    );
    for (cmid, visible) in env.live_cmids().await {
        assert!(env.room_id(cmid).await.is_some(), "cm {cmid} has no room");
        assert_eq!(
            stored_id(&env, cmid).await,
            "",
            "cm {cmid}: nothing may be written"
        );
        if !visible {
            continue; // a hidden activity's room records `room_archived` after archiving
        }
        let (code, detail) = room_outcome(&env, cmid)
            .await
            .unwrap_or_else(|| panic!("cm {cmid}: the refusal was not recorded"));
        assert_eq!(code, "permission_missing", "cm {cmid}: {detail}");
        assert!(
            detail.contains("GRANT UPDATE (rocketchatid)"),
            "cm {cmid}: the outcome should say what to grant: {detail}"
        );
    }

    // Granted afterwards: the next sync of each room stores its id and clears the outcome.
    role.grant_room_id_column().await;
    sync_all_with(&env, ro.clone()).await;
    for (cmid, visible) in env.live_cmids().await {
        let room = env.room_id(cmid).await.unwrap();
        if visible {
            assert_eq!(
                stored_id(&env, cmid).await,
                room,
                "cm {cmid} after the grant"
            );
            assert_eq!(room_outcome(&env, cmid).await, None, "cm {cmid}");
        }
    }
    ro.close().await;
    drop(role);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_column_grant_the_room_id_is_stored() {
    let env = Env::new(small_site(22), faulty_chat(), writing_ids()).await;
    let role = ReadOnlyRole::create(&env).await;
    role.grant_room_id_column().await;
    let ro = role.pool(&env).await;
    // Only that column: any other write is still refused.
    let refused = sqlx::query(sql("UPDATE {p}rocketchat SET name = name"))
        .execute(&ro)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );

    sync_all_with(&env, ro.clone()).await;
    env.assert_converged().await;
    for (cmid, _) in env.live_cmids().await {
        let room = env.room_id(cmid).await.unwrap();
        assert_eq!(stored_id(&env, cmid).await, room, "cm {cmid}");
        if let Some((code, detail)) = room_outcome(&env, cmid).await {
            assert_ne!(code, "permission_missing", "cm {cmid}: {detail}");
        }
    }
    ro.close().await;
    drop(role);
}
