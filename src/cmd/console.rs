//! `rcjobs ui`: the operator console (crate `rcjobs-console`, `docs/console.md`).

use super::config::Settings;
use anyhow::Context as _;
use clap::Args;
use std::net::SocketAddr;

/// `rcjobs ui` arguments.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Where to listen. Loopback by default: put a TLS reverse proxy in front to reach it
    /// from elsewhere.
    #[arg(long, default_value = "127.0.0.1:9188", env = "RCJOBS_UI_ADDR")]
    pub addr: SocketAddr,
    /// The bearer token that allows actions (sign-in on the page, or `Authorization: Bearer`).
    /// Without it the console is read-only.
    #[arg(long, env = "RCJOBS_UI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A header set by a trusted reverse proxy that authenticated the operator (e.g.
    /// X-Forwarded-User); its value names who acts and allows actions. Off by default: only
    /// with a proxy that strips the header from clients and is the only way in.
    #[arg(long, env = "RCJOBS_UI_TRUSTED_HEADER")]
    pub trusted_header: Option<String>,
    /// Show only: no action, whatever the credentials.
    #[arg(long)]
    pub read_only: bool,
    /// Seconds between refreshes of the overview page (0: none).
    #[arg(long, default_value_t = 5)]
    pub refresh: u32,
}

/// Runs `rcjobs ui` until SIGINT/SIGTERM.
pub async fn run(s: &Settings, a: UiArgs) -> anyhow::Result<()> {
    // JIT off: the skip scans behind the counters are cheap but estimated from functions'
    // default 1,000 rows, so Postgres compiled them on every page (80-250 ms of a 5 ms query
    // on the 1,000,000-job table, BENCHMARKS.md)
    let opts = super::db::parse_url("DATABASE_URL", &s.database_url)?.options([("jit", "off")]);
    let pool = super::db::pool(&opts, 4)
        .await
        .context("cannot connect to the queue database (DATABASE_URL)")?;
    rcjobs_queue::check_schema(&pool).await?;
    let token = a.token.filter(|t| !t.trim().is_empty());
    if let Some(t) = &token {
        anyhow::ensure!(
            t.len() >= 16,
            "RCJOBS_UI_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 24`)"
        );
    }
    let config = rcjobs_console::Config {
        addr: a.addr,
        token,
        trusted_header: a.trusted_header.filter(|h| !h.trim().is_empty()),
        read_only: a.read_only,
        refresh_secs: a.refresh,
    };
    if !a.addr.ip().is_loopback() && config.token.is_none() && config.trusted_header.is_none() {
        tracing::warn!(addr = %a.addr, "console listens beyond loopback; it is read-only (no token)");
    }
    let mode = if !config.actions_possible() {
        "read-only"
    } else if config.trusted_header.is_some() {
        "actions for the token or the trusted proxy header"
    } else {
        "actions for the token holder"
    };
    tracing::info!(addr = %a.addr, mode, "operator console listening on http://{}", a.addr);
    rcjobs_console::serve(pool, config, async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
    .await?;
    Ok(())
}
