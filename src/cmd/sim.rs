//! `rcjobs sim`: runs the Rocket.Chat simulator in the foreground until Ctrl-C.

use super::config::Settings;
use anyhow::Context;
use clap::Args;
use rcjobs_sim::{RateLimit, Seed, SimConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `rcjobs sim` arguments. (`--version` here is the imitated Rocket.Chat version, so the
/// subcommand has no auto-generated `--version` flag.)
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Latency added to every API call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Turn the REST rate limiter on: CALLS/SECONDS per route, method and client IP
    /// (Rocket.Chat's default is 10/60). Accounts with the admin or bot role bypass it.
    #[arg(long, value_name = "N/SECS")]
    pub rate_limit: Option<RateLimit>,
    /// Probability (0..1) of answering an API call with a 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Probability (0..1) of holding an answer back for --slow-ms (past client timeouts).
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    /// Probability (0..1) of closing the connection without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// How long a "slow" answer is held back, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub slow_ms: u64,
    /// JSON seed file: `{"bot": {"username", "user_id", "token", "roles", "password"}, "users": [{"username", "name", "email", "active", "roles", "password"}]}`.
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
    /// Behave like a server of 3.6 or older: `groups.invite` takes one user, no arrays.
    #[arg(long)]
    pub no_batch_invite: bool,
    /// Rocket.Chat version to imitate (version-dependent behaviour follows it).
    #[arg(long, value_name = "V", default_value = "7.4.0")]
    pub version: String,
    /// Seed of the random source (ids, tokens, fault decisions).
    #[arg(long, default_value_t = 0x5eed_5eed)]
    pub rng_seed: u64,
    /// The bot's user id (overrides the seed file's; empty = generated). Give the worker's
    /// `ROCKETCHAT_USER_ID` so the two agree without a seed file.
    #[arg(long, env = "SIM_BOT_USER_ID")]
    pub bot_user_id: Option<String>,
    /// The bot's personal access token (overrides the seed file's; empty = generated). Give
    /// the worker's `ROCKETCHAT_TOKEN`.
    #[arg(long, env = "SIM_BOT_TOKEN", hide_env_values = true)]
    pub bot_token: Option<String>,
    /// Permissions granted to the bot's role besides its stock ones, comma-separated.
    /// Default: what docs/handlers.md asks of the bot (create-user for account creation,
    /// unarchive-room for bin restores and visibility changes, edit-room-retention-policy for
    /// retention, clean-channel-history for course resets). `--grant ''` grants none.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "create-user,unarchive-room,edit-room-retention-policy,clean-channel-history"
    )]
    pub grant: Vec<String>,
}

/// The seed with the command line's bot id and token applied.
fn seed_with_bot(mut seed: Seed, a: &SimArgs) -> Seed {
    if let Some(id) = &a.bot_user_id {
        seed.bot.user_id = id.clone();
    }
    if let Some(token) = &a.bot_token {
        seed.bot.token = token.clone();
    }
    seed
}

/// Runs `rcjobs sim`.
pub async fn run(_s: &Settings, a: SimArgs) -> anyhow::Result<()> {
    let seed: Seed = match &a.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading seed file {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("parsing seed file {}", path.display()))?
        }
        None => Seed::default(),
    };
    let seed = seed_with_bot(seed, &a);
    let config = SimConfig {
        addr: a.addr,
        latency: Duration::from_millis(a.latency_ms),
        rate_limit: a.rate_limit,
        fail_rate: a.fail_rate,
        timeout_rate: a.timeout_rate,
        drop_rate: a.drop_rate,
        slow_delay: Duration::from_millis(a.slow_ms),
        batch_invite: !a.no_batch_invite,
        version: a.version,
        seed,
        rng_seed: a.rng_seed,
    };
    let sim = rcjobs_sim::spawn(config)
        .await
        .context("starting the simulator")?;
    let role = seed_bot_role(&sim);
    for perm in a.grant.iter().filter(|p| !p.is_empty()) {
        sim.grant_permission(&role, perm);
    }
    // Dev-only simulator: printing its bot token is how a developer points a worker at it.
    println!("Rocket.Chat simulator listening");
    println!("  base URL:    {}", sim.base_url());
    println!("  bot user id: {}", sim.bot_user_id());
    println!("  bot token:   {}", sim.bot_token());
    println!(
        "  inspect:     {}/_sim/state  {}/_sim/requests",
        sim.base_url(),
        sim.base_url()
    );
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sim.shutdown().await;
    Ok(())
}

/// The role the bot's extra permissions go to: its first server role (`bot` by default).
fn seed_bot_role(sim: &rcjobs_sim::SimHandle) -> String {
    let snap = sim.snapshot();
    snap.users
        .iter()
        .find(|u| u.id == sim.bot_user_id())
        .and_then(|u| u.roles.first().cloned())
        .unwrap_or_else(|| "bot".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{seed_with_bot, SimArgs};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn the_bot_can_be_given_the_workers_credentials() {
        let a = Cli::try_parse_from([
            "sim",
            "--bot-user-id",
            "rcjobs-bot",
            "--bot-token",
            "simulator-token",
        ])
        .unwrap()
        .sim;
        let seed = seed_with_bot(rcjobs_sim::Seed::default(), &a);
        assert_eq!(seed.bot.user_id, "rcjobs-bot");
        assert_eq!(seed.bot.token, "simulator-token");
        assert_eq!(a.grant, crate::harness::chat::BOT_GRANTS);
    }
}
