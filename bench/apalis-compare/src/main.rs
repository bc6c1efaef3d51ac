//! Runs the `rcjobs bench queue` benchmark against apalis-postgres 1.0 and probes three of its
//! semantics (retry backoff, crash recovery, per-key ordering) with small experiments.

mod bench;
mod db;
mod semantics;

use clap::{Parser, Subcommand};

/// Command line: with no subcommand, runs the queue benchmark.
#[derive(Debug, Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    bench: bench::BenchArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A failing job: are retries persisted with a backoff (`run_at` moved)?
    Retry(semantics::RetryArgs),
    /// SIGKILL a worker holding a job; how long until another worker runs it?
    Crash(semantics::CrashArgs),
    /// Jobs sharing a key, enqueued in order: do they run one at a time, in order?
    Ordering(semantics::OrderingArgs),
    /// Internal: the worker process that `crash` kills.
    #[command(hide = true)]
    CrashChild(semantics::CrashChildArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        None => bench::run(cli.bench).await,
        Some(Cmd::Retry(a)) => semantics::retry(a).await,
        Some(Cmd::Crash(a)) => semantics::crash(a).await,
        Some(Cmd::Ordering(a)) => semantics::ordering(a).await,
        Some(Cmd::CrashChild(a)) => semantics::crash_child(a).await,
    }
}
