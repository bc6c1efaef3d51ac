//! The database the harness runs in: reach the configured server (starting the machine's
//! local cluster on the URL's port if it is down), then create a dedicated database so every
//! run starts clean and re-running works.
//!
//! Safety rule: the harness only ever drops a database it created itself. Every database it
//! creates carries a comment starting with [`OWNED_MARK`]; an existing database without it is
//! left alone unless the caller explicitly asked to replace it (`rcjobs demo
//! --replace-database`).
//!
//! Connections go through `crate::cmd::db`, which reports a failure with the server's own
//! reason at once.

use crate::cmd::db::try_connect;
pub use crate::cmd::db::{connect, parse_url, pool, server_label};
use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::time::{Duration, Instant};

/// Start of the comment on every database the harness creates (and so may drop).
pub const OWNED_MARK: &str = "created by rcjobs";

/// Validates a database name we splice into DDL (`^[a-z][a-z0-9_]*$`, at most 63 bytes).
pub fn validate_db_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(ok, "database name {name:?} must match ^[a-z][a-z0-9_]*$");
    // The maintenance databases are never ours to drop, whatever flag is given.
    anyhow::ensure!(
        !matches!(name, "postgres" | "template0" | "template1"),
        "database name {name:?} is a PostgreSQL system database; choose another name"
    );
    Ok(())
}

fn is_loopback(opts: &PgConnectOptions) -> bool {
    matches!(opts.get_host(), "127.0.0.1" | "localhost" | "::1") || opts.get_host().starts_with('/')
}

fn admin_options(server: &PgConnectOptions) -> PgConnectOptions {
    server
        .clone()
        .database("postgres")
        .disable_statement_logging()
}

async fn admin_connect(server: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    connect(&admin_options(server)).await
}

/// A Debian cluster under `/etc/postgresql/<version>/<name>` and the port it is configured on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCluster {
    /// Major version directory (`15`).
    pub version: String,
    /// Cluster name (`main`).
    pub name: String,
    /// `port` from its `postgresql.conf` (5432 when unset).
    pub port: u16,
}

/// The `port = N` setting of a `postgresql.conf` text (the last one wins, as in Postgres).
pub fn conf_port(conf: &str) -> u16 {
    let mut port = 5432;
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("port") else {
            continue;
        };
        let rest = rest.trim_start();
        // `port = 5433` and `port 5433` are both valid postgresql.conf syntax.
        let value = rest.strip_prefix('=').unwrap_or(rest);
        if let Ok(p) = value.trim().trim_matches('\'').parse::<u16>() {
            port = p;
        }
    }
    port
}

/// Every cluster of the Debian layout on this machine.
fn local_clusters() -> Vec<LocalCluster> {
    let mut out = Vec::new();
    let Ok(versions) = std::fs::read_dir("/etc/postgresql") else {
        return out;
    };
    for v in versions.filter_map(|e| e.ok()) {
        let version = v.file_name().to_string_lossy().into_owned();
        let Ok(clusters) = std::fs::read_dir(v.path()) else {
            continue;
        };
        for c in clusters.filter_map(|e| e.ok()) {
            let Ok(conf) = std::fs::read_to_string(c.path().join("postgresql.conf")) else {
                continue;
            };
            out.push(LocalCluster {
                version: version.clone(),
                name: c.file_name().to_string_lossy().into_owned(),
                port: conf_port(&conf),
            });
        }
    }
    out.sort_by(|a, b| (&a.version, &a.name).cmp(&(&b.version, &b.name)));
    out
}

/// Makes sure the server of `url` answers. If nothing listens there and it is on this machine,
/// starts the installed Debian cluster configured for the URL's port
/// (`pg_ctlcluster --skip-systemctl-redirect <ver> <name> start`) and waits up to 30 s. Any
/// other failure (authentication, too many clients, a remote server) is reported at once with
/// the server's reason; `scripts/ensure-postgres.sh` installs and configures a server on a
/// throw-away machine.
pub async fn ensure_server(url: &str) -> anyhow::Result<PgConnectOptions> {
    let opts = parse_url("DATABASE_URL", url)?;
    let admin = admin_options(&opts);
    let first = match try_connect(&admin).await {
        Ok(c) => {
            let _ = c.close().await;
            return Ok(opts);
        }
        Err(f) => f,
    };
    // Starting a cluster only helps when nothing listens; a refusal by a running server
    // (password, max_connections) must be reported as it is.
    if !first.refused() || !is_loopback(&opts) {
        bail!(first.describe(&admin));
    }
    let clusters = local_clusters();
    let Some(cluster) = clusters.iter().find(|c| c.port == opts.get_port()) else {
        let known = if clusters.is_empty() {
            "no local cluster is installed".to_owned()
        } else {
            let list: Vec<String> = clusters
                .iter()
                .map(|c| format!("{}/{} on port {}", c.version, c.name, c.port))
                .collect();
            format!(
                "no local cluster is configured for port {} (found {})",
                opts.get_port(),
                list.join(", ")
            )
        };
        bail!(
            "{}; {known}: start one, run scripts/ensure-postgres.sh on a throw-away machine, \
             or point DATABASE_URL at a server",
            first.describe(&admin)
        );
    };
    eprintln!(
        "Postgres is not answering on {}; starting the local cluster {}/{}",
        server_label(&opts),
        cluster.version,
        cluster.name
    );
    let status = tokio::process::Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &cluster.version,
            &cluster.name,
            "start",
        ])
        .status()
        .await;
    match status {
        Err(e) => bail!("cannot run pg_ctlcluster ({e}); start PostgreSQL yourself or run scripts/ensure-postgres.sh"),
        Ok(s) if !s.success() => bail!(
            "pg_ctlcluster {} {} start failed ({s}); start PostgreSQL yourself (as root or the postgres user)",
            cluster.version,
            cluster.name
        ),
        Ok(_) => {}
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_connect(&admin).await {
            Ok(c) => {
                let _ = c.close().await;
                return Ok(opts);
            }
            Err(f) if Instant::now() >= deadline || !f.refused() => {
                bail!("{} (after starting the local cluster)", f.describe(&admin))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// What the server allows and how much of it is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConnections {
    /// `max_connections`.
    pub max_connections: u32,
    /// Slots only superusers (or `pg_use_reserved_connections`) may take: not counted as ours.
    pub reserved: u32,
    /// Client backends connected now (this process's own included).
    pub in_use: u32,
}

/// Reads `max_connections`, the reserved slots and the client backends now connected.
pub async fn server_connections<'e, E>(conn: E) -> anyhow::Result<ServerConnections>
where
    E: sqlx::PgExecutor<'e>,
{
    // `reserved_connections` exists from PostgreSQL 16 (missing_ok gives NULL before).
    let (max, reserved, in_use): (i32, i32, i64) = sqlx::query_as(
        "SELECT current_setting('max_connections')::int,
                current_setting('superuser_reserved_connections')::int
                  + coalesce(current_setting('reserved_connections', true)::int, 0),
                (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
    )
    .fetch_one(conn)
    .await
    .context("reading max_connections and pg_stat_activity")?;
    Ok(ServerConnections {
        max_connections: u32::try_from(max).unwrap_or(0),
        reserved: u32::try_from(reserved).unwrap_or(0),
        in_use: u32::try_from(in_use).unwrap_or(u32::MAX),
    })
}

/// [`server_connections`] over a fresh admin connection on `server` (which it counts as this
/// process's own: one of `in_use`).
pub async fn server_connections_of(server: &PgConnectOptions) -> anyhow::Result<ServerConnections> {
    let mut admin = admin_connect(server).await?;
    let r = server_connections(&mut admin).await;
    let _ = admin.close().await;
    r
}

/// What `reset_database` may do with an existing database of the name.
#[derive(Debug, Clone, Copy)]
pub struct ResetPolicy<'a> {
    /// Written into the database's comment after [`OWNED_MARK`] (`demo`, `bench e2e`).
    pub purpose: &'a str,
    /// Drop an existing database even if rcjobs did not create it.
    pub replace_foreign: bool,
    /// The flag that sets `replace_foreign`, for the refusal's hint (`None`: no such flag).
    pub replace_flag: Option<&'a str>,
}

/// An existing database's comment and size, read from the admin connection.
async fn existing_database(
    admin: &mut PgConnection,
    name: &str,
) -> anyhow::Result<Option<(Option<String>, String, String)>> {
    let row: Option<(Option<String>, String, String)> = sqlx::query_as(
        "SELECT shobj_description(d.oid, 'pg_database'),
                pg_get_userbyid(d.datdba)::text,
                pg_size_pretty(pg_database_size(d.oid))
           FROM pg_database d WHERE d.datname = $1",
    )
    .bind(name)
    .fetch_optional(&mut *admin)
    .await
    .with_context(|| format!("looking up database {name}"))?;
    Ok(row)
}

fn is_owned(comment: Option<&str>) -> bool {
    comment.is_some_and(|c| c.starts_with(OWNED_MARK))
}

/// Creates database `name` on the server of `server`, marked as created by rcjobs, and returns
/// the options to connect to it. An existing database of that name is dropped first only if
/// rcjobs created it, or if `policy.replace_foreign`; otherwise this fails and says what is
/// there and how to proceed.
pub async fn reset_database(
    server: &PgConnectOptions,
    name: &str,
    policy: &ResetPolicy<'_>,
) -> anyhow::Result<PgConnectOptions> {
    validate_db_name(name)?;
    let mut admin = admin_connect(server).await?;
    if let Some((comment, owner, size)) = existing_database(&mut admin, name).await? {
        if !is_owned(comment.as_deref()) && !policy.replace_foreign {
            let _ = admin.close().await;
            let how = match policy.replace_flag {
                Some(flag) => format!(
                    "choose another name (--database NAME), drop it yourself, or pass {flag} to drop and recreate it"
                ),
                None => "choose another name (--database NAME) or drop it yourself".to_owned(),
            };
            bail!(
                "database {name} already exists on {} (owner {owner}, {size}{}) and was not created \
                 by rcjobs, so it is left alone: {how}",
                server_label(server),
                comment
                    .map(|c| format!(", comment {c:?}"))
                    .unwrap_or_default()
            );
        }
        // `name` was validated above: a plain identifier.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .with_context(|| format!("dropping database {name}"))?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating database {name}"))?;
    let comment = format!(
        "{OWNED_MARK} {} at {}: safe to drop",
        policy.purpose,
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    // COMMENT takes no bind parameters: quote the literal (purpose is ours, but be safe).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "COMMENT ON DATABASE {name} IS '{}'",
        comment.replace('\'', "''")
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("marking database {name} as created by rcjobs"))?;
    let _ = admin.close().await;
    Ok(server.clone().database(name).disable_statement_logging())
}

/// Drops database `name` if rcjobs created it (used by `--drop-database` and teardown); a
/// database without the mark is refused.
pub async fn drop_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    validate_db_name(name)?;
    let mut admin = admin_connect(server).await?;
    let Some((comment, _, _)) = existing_database(&mut admin, name).await? else {
        let _ = admin.close().await;
        return Ok(());
    };
    anyhow::ensure!(
        is_owned(comment.as_deref()),
        "not dropping database {name} on {}: it was not created by rcjobs",
        server_label(server)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("dropping database {name}"))?;
    let _ = admin.close().await;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_port_reads_the_last_setting() {
        assert_eq!(conf_port("# port = 1\n"), 5432);
        assert_eq!(
            conf_port("port = 5433\t\t# (change requires restart)\n"),
            5433
        );
        assert_eq!(conf_port("port = 5433\nport='5434'\n"), 5434);
        assert_eq!(conf_port("portal = 7\n"), 5432);
    }

    #[test]
    fn system_databases_are_never_targets() {
        for n in ["postgres", "template0", "template1", "Demo", "a-b", ""] {
            assert!(validate_db_name(n).is_err(), "{n}");
        }
        assert!(validate_db_name("rcjobs_demo").is_ok());
    }

    #[test]
    fn other_schemes_are_refused() {
        let e = parse_url("DATABASE_URL", "mysql://root@127.0.0.1:3306/moodle")
            .expect_err("mysql refused");
        assert!(e.to_string().contains("mysql"), "{e}");
        assert!(parse_url("DATABASE_URL", "postgresql://u@h:5/d").is_ok());
    }
}
