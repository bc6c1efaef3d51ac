//! Connecting to Postgres so that a failure says why, promptly: sqlx's pool retries
//! "connection refused" and "too many clients" until its acquire timeout and then says only
//! "pool timed out", so every pool here is preceded by one plain connection whose error is
//! kept and reported with the server's (or the OS's) own words and a hint.

use super::config::{check_postgres_url, redact_url};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// How long one connection attempt may take before it is reported as unanswered.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `host:port` of `opts`, for messages.
pub fn server_label(opts: &PgConnectOptions) -> String {
    format!("{}:{}", opts.get_host(), opts.get_port())
}

/// Parses a Postgres URL, refusing other schemes (`mysql://…`) with a clear message.
pub fn parse_url(what: &str, url: &str) -> anyhow::Result<PgConnectOptions> {
    check_postgres_url(what, url)?;
    PgConnectOptions::from_str(url).map_err(|e| {
        anyhow::anyhow!(
            "{what} {} is not a valid Postgres URL: {e}",
            redact_url(url)
        )
    })
}

/// Whether `e` means "nothing listens there" (the case where starting a local cluster helps).
pub(crate) fn is_refused(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
    ))
}

/// One line for a failed connection: where, the server's or OS's own words, and a hint.
pub fn describe_connect_error(opts: &PgConnectOptions, e: &sqlx::Error) -> String {
    let at = format!(
        "{} (database {}, user {})",
        server_label(opts),
        opts.get_database().unwrap_or("<default>"),
        opts.get_username()
    );
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    let hint = match code.as_deref() {
        Some("28P01" | "28000") => {
            "check the user and password in DATABASE_URL (postgres://USER:PASSWORD@HOST:PORT/DB) \
             and the server's pg_hba.conf"
        }
        Some("3D000") => "create the database, or point DATABASE_URL at one that exists",
        Some("53300") => {
            "the server is at max_connections: stop idle clients, raise max_connections, \
             or put PgBouncer in front (docs/operations.md)"
        }
        Some("57P03") => "the server is starting up or shutting down; try again in a moment",
        _ if is_refused(e) => {
            "nothing listens there: is PostgreSQL running, and is the host/port in DATABASE_URL right?"
        }
        _ => "",
    };
    let reason = match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    if hint.is_empty() {
        format!("cannot connect to Postgres at {at}: {reason}")
    } else {
        format!("cannot connect to Postgres at {at}: {reason} ({hint})")
    }
}

/// One plain connection on `opts`, bounded by [`CONNECT_TIMEOUT`]; the raw sqlx error (the
/// caller decides whether it is worth a retry).
pub(crate) async fn try_connect(opts: &PgConnectOptions) -> Result<PgConnection, ConnectFailure> {
    match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(ConnectFailure::Error(e)),
        Err(_) => Err(ConnectFailure::Timeout),
    }
}

pub(crate) enum ConnectFailure {
    Error(sqlx::Error),
    Timeout,
}

impl ConnectFailure {
    pub(crate) fn describe(&self, opts: &PgConnectOptions) -> String {
        match self {
            ConnectFailure::Error(e) => describe_connect_error(opts, e),
            ConnectFailure::Timeout => format!(
                "cannot connect to Postgres at {}: no answer within {} s (wrong host, or a \
                 firewall dropping packets?)",
                server_label(opts),
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
    pub(crate) fn refused(&self) -> bool {
        matches!(self, ConnectFailure::Error(e) if is_refused(e))
    }
}

/// Connects once to `opts`, reporting a failure promptly with the server's reason.
pub async fn connect(opts: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    try_connect(opts)
        .await
        .map_err(|f| anyhow::anyhow!(f.describe(opts)))
}

/// A pool of at most `max` connections on `opts`. One plain connection is made first so that
/// a refused or rejected connection is reported at once with its reason (the pool itself would
/// retry it silently until its acquire timeout).
pub async fn pool(opts: &PgConnectOptions, max: u32) -> anyhow::Result<PgPool> {
    let probe = connect(opts).await?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.clone())
        .await
        .map_err(|e| anyhow::anyhow!(describe_connect_error(opts, &e)))
}
