//! Test support: a fresh, real PostgreSQL database per test.
//!
//! Every test gets its own database (created from `template0`) so tests can run in
//! parallel and never see each other's rows. The server is the one `.ci/run` makes sure
//! is running: `RCJOBS_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`).

#![forbid(unsafe_code)]

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Base URL of the test server (no database name).
pub fn server_url() -> String {
    std::env::var("RCJOBS_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A throw-away database, dropped (with its connections) when this value is dropped.
pub struct TestDb {
    /// Name of the database.
    pub name: String,
    /// Full connection URL of the database.
    pub url: String,
    /// A pool on the database, for the test's own queries.
    pub pool: PgPool,
}

impl TestDb {
    /// Creates an empty database and a small pool on it.
    ///
    /// # Panics
    /// When the server cannot be reached: a test without its database cannot mean anything.
    pub async fn new() -> TestDb {
        Self::with_pool_size(8).await
    }

    /// Like [`TestDb::new`] with a chosen pool size.
    pub async fn with_pool_size(max: u32) -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "rcjobs_t_{}_{}_{}",
            std::process::id(),
            n,
            rand::random::<u32>() % 100_000
        );
        let mut admin = admin_conn().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0"
        )))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create test database {name}: {e}"));
        let _ = admin.close().await;
        let url = format!("{}/{}", server_url(), name);
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect to test database {name}: {e}"));
        TestDb { name, url, pool }
    }

    /// Connection options for this database (for tools that want to build their own pool).
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .unwrap_or_else(|e| panic!("bad url {}: {e}", self.url))
            .disable_statement_logging()
    }
}

async fn admin_conn() -> PgConnection {
    let url = format!("{}/postgres", server_url());
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "connect to the test server at {url}: {e} (is PostgreSQL running? .ci/run starts it)"
        )
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a separate thread with its own runtime can
        // block on the DROP without deadlocking it.
        let handle = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    let mut admin = admin_conn().await;
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                });
            }
        });
        let _ = handle.join();
    }
}

/// Polls `check` until it returns `Some`, or panics after `deadline` with `what`.
///
/// Tests wait on conditions with generous deadlines rather than sleeping for tuned times.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
