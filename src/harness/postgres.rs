//! The database the harness runs in: reach the configured server (starting the machine's
//! local cluster if it is down), then drop and recreate a dedicated database so every run
//! starts clean and re-running works.

use anyhow::{bail, Context};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Validates a database name we splice into DDL (`^[a-z][a-z0-9_]*$`, at most 63 bytes).
pub fn validate_db_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(ok, "database name {name:?} must match ^[a-z][a-z0-9_]*$");
    Ok(())
}

fn is_loopback(opts: &PgConnectOptions) -> bool {
    matches!(opts.get_host(), "127.0.0.1" | "localhost" | "::1") || opts.get_host().starts_with('/')
}

async fn admin_connect(server: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    server
        .clone()
        .database("postgres")
        .disable_statement_logging()
        .connect()
        .await
}

/// The newest cluster version under `/etc/postgresql` (Debian layout), if any.
fn local_cluster_version() -> Option<String> {
    let mut versions: Vec<(u32, String)> = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let major = name.split('.').next()?.parse::<u32>().ok()?;
            e.path().join("main").is_dir().then_some((major, name))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, v)| v)
}

/// Makes sure the server of `url` answers. If it does not and it is on this machine, starts
/// the installed Debian cluster (`pg_ctlcluster --skip-systemctl-redirect <ver> main start`)
/// and waits up to 30 s. Anything else is left to the operator (`scripts/ensure-postgres.sh`
/// also installs and configures one).
pub async fn ensure_server(url: &str) -> anyhow::Result<PgConnectOptions> {
    let opts = PgConnectOptions::from_str(url).context("DATABASE_URL is not a Postgres URL")?;
    let first_error = match admin_connect(&opts).await {
        Ok(c) => {
            let _ = c.close().await;
            return Ok(opts);
        }
        Err(e) => e,
    };
    if !is_loopback(&opts) {
        bail!(
            "cannot reach Postgres at {}:{}: {first_error}",
            opts.get_host(),
            opts.get_port()
        );
    }
    let Some(version) = local_cluster_version() else {
        bail!(
            "cannot reach Postgres at {}:{} ({first_error}) and no local cluster is installed; \
             run scripts/ensure-postgres.sh or point DATABASE_URL at a server",
            opts.get_host(),
            opts.get_port()
        );
    };
    eprintln!("Postgres is not answering; starting the local cluster {version}/main");
    let status = tokio::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "start"])
        .status()
        .await;
    if let Err(e) = &status {
        bail!("cannot run pg_ctlcluster ({e}); run scripts/ensure-postgres.sh");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin_connect(&opts).await {
            Ok(c) => {
                let _ = c.close().await;
                return Ok(opts);
            }
            Err(e) if Instant::now() >= deadline => {
                bail!("Postgres did not come up within 30 s ({e}); run scripts/ensure-postgres.sh")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Drops (if present) and creates database `name` on the server of `server`; returns the
/// options to connect to it.
pub async fn reset_database(
    server: &PgConnectOptions,
    name: &str,
) -> anyhow::Result<PgConnectOptions> {
    validate_db_name(name)?;
    let mut admin = admin_connect(server)
        .await
        .context("connecting to the server")?;
    // `name` was validated above: a plain identifier.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("dropping database {name}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating database {name}"))?;
    let _ = admin.close().await;
    Ok(server.clone().database(name).disable_statement_logging())
}

/// Drops database `name` (used by tests and `--drop-database`).
pub async fn drop_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    validate_db_name(name)?;
    let mut admin = admin_connect(server)
        .await
        .context("connecting to the server")?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    let _ = admin.close().await;
    Ok(())
}

/// A pool of at most `max` connections on `opts`.
pub async fn pool(opts: &PgConnectOptions, max: u32) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.clone())
        .await?)
}

/// `version()` of the server, for summaries.
pub async fn server_version(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, String>("SHOW server_version")
        .fetch_one(pool)
        .await
        .unwrap_or_default()
}

/// Creates the queue schema, registers every job kind, and creates the worker's schema.
pub async fn migrate_all(pool: &PgPool) -> anyhow::Result<()> {
    rcjobs_queue::migrate(pool)
        .await
        .context("queue migrations")?;
    rcjobs_producer::register_kinds(pool)
        .await
        .context("registering job kinds")?;
    rcjobs_worker::migrate(pool)
        .await
        .context("worker migrations (rcjobs_sync)")?;
    Ok(())
}
