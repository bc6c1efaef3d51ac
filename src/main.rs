//! `rcjobs`: the command-line entry point (one binary for workers, producers and operators).

mod cmd;
mod harness;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    cmd::init_logging(&cli);
    match cmd::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
