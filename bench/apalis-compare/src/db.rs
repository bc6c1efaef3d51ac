//! A fresh database per run, on the server of `DATABASE_URL` (default: local trust auth).

use anyhow::Context;
use apalis_postgres::PostgresStorage;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;

/// Server URL; the database part is replaced.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(ok, "database name must match ^[a-z][a-z0-9_]*$");
    Ok(())
}

/// Options for `name` on the configured server.
pub fn options(name: &str) -> anyhow::Result<PgConnectOptions> {
    let base = PgConnectOptions::from_str(&server_url()).context("DATABASE_URL")?;
    Ok(base.database(name).disable_statement_logging())
}

async fn admin() -> anyhow::Result<PgConnection> {
    options("postgres")?
        .connect()
        .await
        .context("connect to the server")
}

/// Drops and recreates `name`, runs the apalis migrations, returns a pool of `max` connections.
pub async fn fresh(name: &str, max: u32) -> anyhow::Result<PgPool> {
    check_name(name)?;
    let mut a = admin().await?;
    // identifier validated by check_name
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut a)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut a)
        .await?;
    let _ = a.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .connect_with(options(name)?)
        .await?;
    PostgresStorage::setup(&pool)
        .await
        .context("apalis migrations")?;
    Ok(pool)
}

/// Pool on an existing database (for the crash child process).
pub async fn existing(name: &str, max: u32) -> anyhow::Result<PgPool> {
    check_name(name)?;
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .connect_with(options(name)?)
        .await?)
}

/// Drops `name` (best effort) once a run is over.
pub async fn drop_db(pool: PgPool, name: &str) {
    pool.close().await;
    if check_name(name).is_err() {
        return;
    }
    if let Ok(mut a) = admin().await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut a)
        .await;
        let _ = a.close().await;
    }
}
