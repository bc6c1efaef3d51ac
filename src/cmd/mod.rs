//! Command tree. Each command group lives in its own module and owns its clap arguments.

pub mod bench;
pub mod bench_capture;
pub mod bench_e2e;
pub mod bench_matrix;
pub mod config;
pub mod console;
pub mod cpu_times;
pub mod db;
pub mod demo;
pub mod moodle;
pub mod queue;
pub mod rooms;
pub mod sim;
pub mod worker;

use clap::{Parser, Subcommand};

/// Keeps Rocket.Chat private groups in step with Moodle courses.
#[derive(Debug, Parser)]
#[command(name = "rcjobs", version, about, propagate_version = true)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: config::GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the queue schema (idempotent).
    Migrate(queue::MigrateArgs),
    /// Run a worker until SIGTERM/SIGINT, then drain gracefully.
    Worker(worker::WorkerArgs),
    /// Enqueue one job and print its id.
    Enqueue(queue::EnqueueArgs),
    /// Inspect and repair jobs.
    #[command(subcommand)]
    Jobs(queue::JobsCommand),
    /// Pause, resume and list queues and job kinds.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Queue depth by state and kind, oldest ready age, dead count, workers alive.
    Status(queue::StatusArgs),
    /// Moodle database: schema, synthetic site, trigger set.
    #[command(subcommand)]
    Moodle(moodle::MoodleCommand),
    /// The rooms rcjobs manages: declare (standalone mode), list, sync now.
    #[command(subcommand)]
    Rooms(rooms::RoomsCommand),
    /// Run the Rocket.Chat simulator.
    Sim(sim::SimArgs),
    /// The whole system end to end on one machine, with a summary.
    Demo(demo::DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The operator console: a web UI for the queue and the rooms.
    Ui(console::UiArgs),
}

/// Sets up `tracing` output (text or JSON) from `RUST_LOG`. The default is `info`, except for
/// the demo and the benchmarks, whose progress bars and summaries would drown in one log line
/// per job: they default to `warn`.
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let global = &cli.global;
    let default = match cli.command {
        Command::Demo(_) | Command::Bench(_) => "warn",
        _ => "info,sqlx=warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: a log redirected to a file or collected by Kubernetes
    // must not carry escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if global.log_format() == config::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Dispatches to the command's module.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = config::Settings::load(&cli.global)?;
    match cli.command {
        Command::Migrate(a) => queue::migrate(&settings, a).await,
        Command::Worker(a) => worker::run(&settings, a).await,
        Command::Enqueue(a) => queue::enqueue(&settings, a).await,
        Command::Jobs(c) => queue::jobs(&settings, c).await,
        Command::Queue(c) => queue::queue(&settings, c).await,
        Command::Status(a) => queue::status(&settings, a).await,
        Command::Moodle(c) => moodle::run(&settings, c).await,
        Command::Rooms(c) => rooms::run(&settings, c).await,
        Command::Sim(a) => sim::run(&settings, a).await,
        Command::Demo(a) => demo::run(&settings, a).await,
        Command::Bench(c) => bench::run(&settings, c).await,
        Command::Ui(a) => console::run(&settings, a).await,
    }
}
