//! `migrate`, `enqueue`, `jobs …`, `status`: the queue's operator commands.

use super::config::Settings;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rcjobs_queue::{display_time, JobFilter, JobRecord, JobState, NewJob, QueueStats};
use sqlx::PgPool;

/// `rcjobs migrate` arguments.
#[derive(Debug, Args)]
pub struct MigrateArgs {}

/// `rcjobs enqueue` arguments.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Job kind (must be registered, see `rcjobs migrate`).
    pub kind: String,
    /// Payload: a JSON object.
    #[arg(long)]
    pub payload: String,
    /// Dedup key: while a job of this kind with this key has not started, enqueues fold into it.
    #[arg(long = "key")]
    pub dedup_key: Option<String>,
    /// Exclusion key: jobs with the same key run one at a time, in enqueue order.
    #[arg(long)]
    pub exclusion_key: Option<String>,
    /// Priority (lower runs first).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i16,
    /// Named queue.
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// When to run: RFC 3339 (`2030-01-01T10:00:00Z`) or a delay (`+30s`, `+5m`, `+2h`, `+1d`).
    #[arg(long, value_parser = parse_run_at)]
    pub run_at: Option<DateTime<Utc>>,
    /// Attempts before the job goes dead (default: the kind's).
    #[arg(long)]
    pub max_attempts: Option<i32>,
}

/// `rcjobs status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Which jobs: the filters `jobs list` and the bulk forms of `retry`, `cancel`, `run-now`
/// and `delete` share.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only jobs in this state (ready, running, blocked, completed, dead, cancelled, superseded).
    #[arg(long)]
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs of this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only jobs enqueued since: RFC 3339, or an age (`30m`, `2h`, `1d`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only jobs whose latest error contains this text (case-insensitive). Reads at most
    /// the newest --scan rows of each table.
    #[arg(long)]
    pub error_like: Option<String>,
    /// Only jobs whose payload has these values: `cmid=42`, `courseid=7,userid=3`. Reads at
    /// most the newest --scan rows of each table.
    #[arg(long, value_parser = rcjobs_queue::parse_payload_filter)]
    pub payload: Option<serde_json::Value>,
    /// Rows of each table read by --error-like / --payload.
    #[arg(long, default_value_t = rcjobs_queue::DEFAULT_SCAN)]
    pub scan: i64,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.state.is_none()
            && self.kind.is_none()
            && self.queue.is_none()
            && self.since.is_none()
            && self.error_like.is_none()
            && self.payload.is_none()
    }

    fn to_filter(&self, limit: i64) -> JobFilter {
        JobFilter {
            state: self.state,
            kind: self.kind.clone(),
            queue: self.queue.clone(),
            since: self.since,
            error_like: self.error_like.clone(),
            payload: self.payload.clone(),
            scan: self.scan,
            limit,
        }
    }
}

/// A bulk action's confirmation and bound.
#[derive(Debug, Clone, Args)]
pub struct BulkArgs {
    /// Act without asking (the count is still printed).
    #[arg(long)]
    pub yes: bool,
    /// At most this many jobs in one go.
    #[arg(long, default_value_t = 100_000)]
    pub max: i64,
}

/// `rcjobs jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Which jobs.
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one job with its error history and its lane.
    Show {
        /// Job id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a dead job, every dead job (--dead) or the dead jobs of a filter back in the queue
    /// with fresh attempts.
    Retry {
        /// Job id.
        #[arg(conflicts_with = "dead")]
        id: Option<i64>,
        /// Retry every dead job.
        #[arg(long)]
        dead: bool,
        /// Which jobs (instead of an id).
        #[command(flatten)]
        filter: FilterArgs,
        /// Confirmation and bound.
        #[command(flatten)]
        bulk: BulkArgs,
    },
    /// Cancel a job, or the pending jobs of a filter, that has not started.
    Cancel {
        /// Job id.
        id: Option<i64>,
        /// Which jobs (instead of an id).
        #[command(flatten)]
        filter: FilterArgs,
        /// Confirmation and bound.
        #[command(flatten)]
        bulk: BulkArgs,
    },
    /// Make a pending job (or those of a filter) due now, ahead of its lane.
    RunNow {
        /// Job id.
        id: Option<i64>,
        /// Which jobs (instead of an id).
        #[command(flatten)]
        filter: FilterArgs,
        /// Confirmation and bound.
        #[command(flatten)]
        bulk: BulkArgs,
    },
    /// Move a pending job's run time.
    Reschedule {
        /// Job id.
        id: i64,
        /// RFC 3339 (`2030-01-01T10:00:00Z`) or a delay (`+30s`, `+2h`).
        #[arg(long, value_parser = parse_run_at)]
        run_at: DateTime<Utc>,
    },
    /// Delete a pending or dead job for good (never a running one), or those of a filter
    /// (dead ones unless --state ready|blocked).
    Delete {
        /// Job id.
        id: Option<i64>,
        /// Which jobs (instead of an id).
        #[command(flatten)]
        filter: FilterArgs,
        /// Confirmation and bound.
        #[command(flatten)]
        bulk: BulkArgs,
    },
}

/// `rcjobs queue …`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Pause a queue or a job kind: its jobs stay queued (and listed) but no worker takes
    /// them, from each worker's next claim; survives restarts.
    Pause {
        /// What to pause.
        #[command(flatten)]
        target: PauseArgs,
        /// Why (shown by `queue list` and the console).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused queue or kind.
    Resume {
        /// What to resume.
        #[command(flatten)]
        target: PauseArgs,
    },
    /// Queues and kinds with their depth and pause state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A queue or a kind.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PauseArgs {
    /// A queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// A job kind (every queue).
    #[arg(long)]
    pub kind: Option<String>,
}

impl PauseArgs {
    fn target(&self) -> rcjobs_queue::PauseTarget {
        match (&self.queue, &self.kind) {
            (Some(q), _) => rcjobs_queue::PauseTarget::Queue(q.clone()),
            (None, Some(k)) => rcjobs_queue::PauseTarget::Kind(k.clone()),
            // clap's required group guarantees one of them
            (None, None) => rcjobs_queue::PauseTarget::Queue("default".into()),
        }
    }
}

/// Parses `--since`: RFC 3339, or an age back from now (`30m`, `2h`, `1d`).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("bad --since {s:?}: {e} (expected RFC 3339 or an age like 2h)"))?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .ok_or_else(|| format!("--since {s:?} is too far back"))
}

/// Who runs an operator command, for the pause records and the logs.
pub(crate) fn operator() -> String {
    // sudo hides the person behind root
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user} (cli)")
}

/// Parses `--run-at`: RFC 3339, or `+DURATION` from now in humantime's syntax (`+30s`,
/// `+2h`, `+1d 12h`). Refuses what the queue cannot hold instead of panicking or wrapping.
pub fn parse_run_at(s: &str) -> Result<DateTime<Utc>, String> {
    if let Some(rel) = s.strip_prefix('+') {
        let d = humantime::parse_duration(rel.trim())
            .map_err(|e| format!("bad delay {s:?}: {e} (expected e.g. +30s, +15m, +2h, +1d)"))?;
        let t = chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d))
            .ok_or_else(|| format!("delay {s:?} is too far ahead"))?;
        return rcjobs_queue::check_run_at(Some(t)).map(|()| t);
    }
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("bad time {s:?}: {e} (expected RFC 3339 like 2030-01-01T10:00:00Z, or +30s)")
        })?;
    rcjobs_queue::check_run_at(Some(t)).map(|()| t)
}

pub(crate) async fn connect(s: &Settings) -> anyhow::Result<PgPool> {
    let opts = super::db::parse_url("DATABASE_URL", &s.database_url)?;
    super::db::pool(&opts, 4)
        .await
        .context("cannot connect to the queue database (DATABASE_URL)")
}

/// Runs `rcjobs migrate`.
pub async fn migrate(s: &Settings, _a: MigrateArgs) -> anyhow::Result<()> {
    let pool = connect(s).await?;
    rcjobs_queue::migrate(&pool).await?;
    // The queue is generic; the job kinds (and the SQL-side required-field checks the Moodle
    // triggers rely on) and the worker's sync-state tables belong to the application layer.
    rcjobs_producer::register_kinds(&pool).await?;
    rcjobs_worker::migrate(&pool).await?;
    let v = rcjobs_queue::schema_version(&pool).await?.unwrap_or(0);
    println!("queue schema is at version {v}; job kinds registered; sync-state schema ready");
    Ok(())
}

/// Runs `rcjobs enqueue`.
pub async fn enqueue(s: &Settings, a: EnqueueArgs) -> anyhow::Result<()> {
    let payload: serde_json::Value = serde_json::from_str(&a.payload)
        .map_err(|e| anyhow::anyhow!("--payload is not valid JSON: {e}"))?;
    anyhow::ensure!(
        payload.is_object(),
        "--payload must be a JSON object, e.g. '{{\"course_id\": 7}}'"
    );
    // Our own kinds go through the typed producer: plugin-shaped customdata is reduced to
    // ids, fields are checked with a clear message, and the kind's dedup/exclusion keys apply.
    // Any other kind is left to the queue, which rejects it unless it has been registered.
    let mut job = match a.kind.parse::<rcjobs_producer::Kind>() {
        Ok(kind) => {
            let typed = rcjobs_producer::Job::parse_kind(kind, &payload)
                .with_context(|| format!("invalid payload for {}", a.kind))?;
            let opts = rcjobs_producer::EnqueueOptions {
                queue: Some(a.queue),
                priority: a.priority,
                run_at: a.run_at,
                dedup_key: a.dedup_key.map(Some),
                max_attempts: a.max_attempts,
            };
            typed.to_new_job(&opts)
        }
        Err(_) => {
            let mut job = NewJob::new(a.kind, payload)
                .queue(a.queue)
                .priority(a.priority);
            job.run_at = a.run_at;
            job.dedup_key = a.dedup_key;
            job.max_attempts = a.max_attempts;
            job
        }
    };
    if a.exclusion_key.is_some() {
        job.exclusion_key = a.exclusion_key;
    }
    let pool = connect(s).await?;
    let e = rcjobs_queue::enqueue(&pool, &job).await?;
    if e.deduplicated {
        eprintln!("a pending job with the same key already exists");
    }
    println!("{}", e.id);
    Ok(())
}

/// Runs `rcjobs jobs …`.
pub async fn jobs(s: &Settings, c: JobsCommand) -> anyhow::Result<()> {
    let pool = connect(s).await?;
    match c {
        JobsCommand::List {
            filter,
            limit,
            json,
        } => {
            let f = filter.to_filter(limit);
            let jobs = rcjobs_queue::list_jobs(&pool, &f).await?;
            let pauses = rcjobs_queue::list_pauses(&pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print_job_table(&jobs, &pauses);
                if f.is_bounded_scan() {
                    eprintln!("(searched the newest {} jobs of each table)", filter.scan);
                }
            }
        }
        JobsCommand::Show { id, json } => {
            let job = rcjobs_queue::get_job(&pool, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("job {id} not found"))?;
            let lane = match (&job.exclusion_key, job.state.is_finished()) {
                (Some(k), false) => Some(rcjobs_queue::lane_info(&pool, k).await?),
                _ => None,
            };
            let pauses = rcjobs_queue::list_pauses(&pool).await?;
            if json {
                let mut v = serde_json::to_value(&job)?;
                v["lane"] = serde_json::to_value(&lane)?;
                v["paused"] = (!job.state.is_finished()
                    && rcjobs_queue::is_paused(&pauses, &job.queue, &job.kind))
                .into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_job(&job, &pauses);
                if let Some(l) = lane {
                    print_lane(&job, &l);
                }
            }
        }
        JobsCommand::Retry {
            id,
            dead,
            filter,
            bulk,
        } => {
            if dead {
                let (requeued, superseded) = rcjobs_queue::retry_all_dead(&pool).await?;
                println!("requeued {requeued} dead job(s); {superseded} already covered by a pending job");
            } else if let Some(id) = id {
                match rcjobs_queue::retry_job(&pool, id).await? {
                    rcjobs_queue::RetryOutcome::Requeued => println!("job {id} requeued"),
                    rcjobs_queue::RetryOutcome::Superseded => {
                        println!("job {id} not requeued: a pending job with the same dedup key covers it")
                    }
                }
            } else {
                bulk_cli(&pool, rcjobs_queue::BulkAction::Retry, &filter, &bulk).await?;
            }
        }
        JobsCommand::Cancel { id, filter, bulk } => match id {
            Some(id) => {
                rcjobs_queue::cancel_job(&pool, id).await?;
                tracing::info!(job = id, by = %operator(), "job cancelled");
                println!("job {id} cancelled");
            }
            None => bulk_cli(&pool, rcjobs_queue::BulkAction::Cancel, &filter, &bulk).await?,
        },
        JobsCommand::RunNow { id, filter, bulk } => match id {
            Some(id) => {
                rcjobs_queue::run_now(&pool, id).await?;
                tracing::info!(job = id, by = %operator(), "job made due now");
                println!("job {id} is due now, first of its lane");
            }
            None => bulk_cli(&pool, rcjobs_queue::BulkAction::RunNow, &filter, &bulk).await?,
        },
        JobsCommand::Reschedule { id, run_at } => {
            rcjobs_queue::reschedule(&pool, id, run_at).await?;
            tracing::info!(job = id, run_at = %run_at, by = %operator(), "job rescheduled");
            println!("job {id} rescheduled to {}", display_time(&run_at));
        }
        JobsCommand::Delete { id, filter, bulk } => match id {
            Some(id) => {
                rcjobs_queue::delete_job(&pool, id).await?;
                tracing::info!(job = id, by = %operator(), "job deleted");
                println!("job {id} deleted");
            }
            None => bulk_cli(&pool, rcjobs_queue::BulkAction::Delete, &filter, &bulk).await?,
        },
    }
    Ok(())
}

/// A bulk action from the command line: the count first, then `--yes` or a typed `yes`.
async fn bulk_cli(
    pool: &PgPool,
    action: rcjobs_queue::BulkAction,
    filter: &FilterArgs,
    bulk: &BulkArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !filter.is_empty(),
        "give a job id or a filter (--state --kind --queue --since --error-like --payload)"
    );
    let f = filter.to_filter(0);
    let ids = rcjobs_queue::bulk_targets(pool, action, &f, bulk.max).await?;
    let bound = if f.is_bounded_scan() {
        format!(" (searched the newest {} jobs of each table)", filter.scan)
    } else {
        String::new()
    };
    println!("{} job(s) match{bound}", ids.len());
    if ids.is_empty() {
        return Ok(());
    }
    if !bulk.yes {
        use std::io::{BufRead, IsTerminal, Write};
        anyhow::ensure!(
            std::io::stdin().is_terminal(),
            "not a terminal: add --yes to {} these {} job(s)",
            action.as_str(),
            ids.len()
        );
        print!("{} these {} job(s)? type yes: ", action.as_str(), ids.len());
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != "yes" {
            println!("nothing done");
            return Ok(());
        }
    }
    let r = rcjobs_queue::bulk_apply(pool, action, &ids).await?;
    tracing::info!(action = action.as_str(), filter = ?f, done = r.done, skipped = r.skipped,
        by = %operator(), "bulk action");
    println!(
        "{}: {} job(s) done, {} skipped (moved on meanwhile)",
        action.as_str(),
        r.done,
        r.skipped
    );
    Ok(())
}

/// Runs `rcjobs queue …`.
pub async fn queue(s: &Settings, c: QueueCommand) -> anyhow::Result<()> {
    let pool = connect(s).await?;
    match c {
        QueueCommand::Pause { target, reason } => {
            let t = target.target();
            let by = operator();
            if rcjobs_queue::pause(&pool, &t, &by, &reason).await? {
                tracing::info!(target = %t, by = %by, reason = %reason, "paused");
                println!(
                    "{t} paused: its jobs stay queued, workers take none from their next claim"
                );
            } else {
                println!("{t} was already paused");
            }
        }
        QueueCommand::Resume { target } => {
            let t = target.target();
            if rcjobs_queue::resume(&pool, &t).await? {
                tracing::info!(target = %t, by = %operator(), "resumed");
                println!("{t} resumed");
            } else {
                println!("{t} was not paused");
            }
        }
        QueueCommand::List { json } => {
            let st = rcjobs_queue::stats(&pool).await?;
            let pauses = rcjobs_queue::list_pauses(&pool).await?;
            let held = rcjobs_queue::paused_counts(&pool).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "pauses": pauses,
                        "held_by_kind_pause": held.iter().map(|(q, k, n)| serde_json::json!({"queue": q, "kind": k, "jobs": n})).collect::<Vec<_>>(),
                        "counts": st.counts,
                    }))?
                );
            } else {
                print_queue_list(&st, &pauses);
            }
        }
    }
    Ok(())
}

fn print_queue_list(st: &QueueStats, pauses: &[rcjobs_queue::Pause]) {
    let mut rows: std::collections::BTreeMap<(String, String), [i64; 4]> = Default::default();
    for c in &st.counts {
        let e = rows.entry((c.queue.clone(), c.kind.clone())).or_default();
        match c.state {
            JobState::Ready => e[0] += c.count,
            JobState::Blocked => e[1] += c.count,
            JobState::Running => e[2] += c.count,
            JobState::Dead => e[3] += c.count,
            _ => {}
        }
    }
    let mut t = table(&[
        "QUEUE", "KIND", "READY", "BLOCKED", "RUNNING", "DEAD", "PAUSED",
    ]);
    for ((q, k), n) in &rows {
        let paused = pauses
            .iter()
            .find(|p| match &p.target {
                rcjobs_queue::PauseTarget::Queue(x) => x == q,
                rcjobs_queue::PauseTarget::Kind(x) => x == k,
            })
            .map(|p| format!("{} by {} {}", p.target, p.paused_by, ago(p.paused_at)))
            .unwrap_or_default();
        t.add_row(vec![
            q.clone(),
            k.clone(),
            n[0].to_string(),
            n[1].to_string(),
            n[2].to_string(),
            n[3].to_string(),
            paused,
        ]);
    }
    println!("{t}");
    if pauses.is_empty() {
        println!("nothing paused");
    }
    for p in pauses {
        let why = if p.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", p.reason)
        };
        println!(
            "paused: {} since {} by {}{why}",
            p.target,
            display_time(&p.paused_at),
            p.paused_by
        );
    }
}

fn print_lane(job: &JobRecord, l: &rcjobs_queue::LaneInfo) {
    let blocked = if l.blocked >= rcjobs_queue::admin::LANE_COUNT_CAP {
        format!("{}+", l.blocked)
    } else {
        l.blocked.to_string()
    };
    match l.head {
        Some((id, _, _)) if id == job.id => {
            println!(
                "lane          {} (this job is its head; {blocked} waiting behind)",
                l.key
            )
        }
        Some((id, st, at)) => println!(
            "lane          {} waits behind job {id} ({st}, run at {}); {blocked} blocked",
            l.key,
            display_time(&at)
        ),
        None => println!("lane          {} (no head)", l.key),
    }
}

fn ago(t: DateTime<Utc>) -> String {
    if t == DateTime::<Utc>::MAX_UTC {
        return "never".into();
    }
    if t == DateTime::<Utc>::MIN_UTC {
        return "always".into();
    }
    let d = Utc::now() - t;
    let secs = d.num_seconds();
    let (n, u, suffix) = if secs.abs() < 120 {
        (secs.abs(), "s", secs >= 0)
    } else if secs.abs() < 7200 {
        (secs.abs() / 60, "m", secs >= 0)
    } else if secs.abs() < 172_800 {
        (secs.abs() / 3600, "h", secs >= 0)
    } else {
        (secs.abs() / 86_400, "d", secs >= 0)
    };
    if suffix {
        format!("{n}{u} ago")
    } else {
        format!("in {n}{u}")
    }
}

/// A table for the terminal: no fixed widths, so long kind names never break it.
pub(crate) fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

/// The state as an operator reads it: a pending job not due yet is `scheduled`.
fn shown_state(j: &JobRecord) -> &'static str {
    match j.state {
        JobState::Ready | JobState::Blocked if j.run_at > Utc::now() => "scheduled",
        st => st.as_str(),
    }
}

fn print_job_table(jobs: &[JobRecord], pauses: &[rcjobs_queue::Pause]) {
    let mut t = table(&[
        "ID",
        "KIND",
        "QUEUE",
        "STATE",
        "ATTEMPT",
        "RUN AT",
        "LAST ERROR",
    ]);
    for j in jobs {
        let err: String = j
            .last_error
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        t.add_row(vec![
            j.id.to_string(),
            j.kind.clone(),
            j.queue.clone(),
            shown_state_paused(j, pauses),
            format!("{}/{}", j.attempt, j.max_attempts),
            ago(j.run_at),
            err,
        ]);
    }
    if jobs.is_empty() {
        println!("(no jobs)");
    } else {
        println!("{t}");
    }
}

/// The state, with `(paused)` when a pause holds a pending job.
fn shown_state_paused(j: &JobRecord, pauses: &[rcjobs_queue::Pause]) -> String {
    if !j.state.is_finished()
        && j.state != JobState::Running
        && rcjobs_queue::is_paused(pauses, &j.queue, &j.kind)
    {
        format!("{} (paused)", shown_state(j))
    } else {
        shown_state(j).to_string()
    }
}

fn print_job(j: &JobRecord, pauses: &[rcjobs_queue::Pause]) {
    println!("id            {}", j.id);
    println!("kind          {}", j.kind);
    println!("queue         {}", j.queue);
    println!("state         {}", shown_state_paused(j, pauses));
    println!("priority      {}", j.priority);
    println!("attempt       {}/{}", j.attempt, j.max_attempts);
    println!(
        "enqueued      {} ({})",
        display_time(&j.enqueued_at),
        ago(j.enqueued_at)
    );
    println!(
        "run at        {} ({})",
        display_time(&j.run_at),
        ago(j.run_at)
    );
    if let Some(t) = j.started_at {
        println!("started       {} ({})", display_time(&t), ago(t));
    }
    if let Some(t) = j.finished_at {
        println!("finished      {} ({})", display_time(&t), ago(t));
    }
    if let Some(t) = j.lease_until {
        println!("lease until   {}", display_time(&t));
    }
    if let Some(k) = &j.dedup_key {
        println!("dedup key     {k}");
    }
    if let Some(k) = &j.exclusion_key {
        println!("exclusion key {k}");
    }
    if let Some(s) = j.superseded_by {
        println!("superseded by {s}");
    }
    if j.snoozes > 0 {
        println!("snoozes       {}", j.snoozes);
    }
    println!("payload       {}", j.payload);
    if let Some(e) = &j.last_error {
        println!("last error    {e}");
    }
    if let Some(errs) = j.errors.as_array().filter(|a| !a.is_empty()) {
        println!("errors:");
        for e in errs {
            println!(
                "  attempt {:>3}  {}  [{}] {}",
                e["attempt"],
                e["at"].as_str().unwrap_or(""),
                e["class"].as_str().unwrap_or(""),
                e["error"].as_str().unwrap_or("")
            );
        }
    }
}

/// Runs `rcjobs status`.
pub async fn status(s: &Settings, a: StatusArgs) -> anyhow::Result<()> {
    let pool = connect(s).await?;
    rcjobs_queue::check_schema(&pool).await?;
    let st = rcjobs_queue::stats(&pool).await?;
    let pauses = rcjobs_queue::list_pauses(&pool).await?;
    let perms = bot_permissions(s).await;
    if a.json {
        let v = serde_json::json!({
            "bot_permissions": perms.to_json(),
            "pauses": pauses,
            "counts": st.counts,
            "totals": JobState::ALL.iter().map(|s| (s.as_str(), st.total(*s))).collect::<std::collections::BTreeMap<_, _>>(),
            "due": st.due_total(),
            "scheduled": st.scheduled_total(),
            "scheduled_counts": st.scheduled,
            "oldest_ready_age_seconds": st.oldest_ready_age_seconds,
            "oldest_ready_age_by_queue": st.oldest_ready_age_by_queue,
            "dead": st.total(JobState::Dead),
            "workers_alive": st.workers.len(),
            "workers": st.workers,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_status(&st);
        // a paused queue or kind explains a backlog that does not move: say it up front
        for p in &pauses {
            println!(
                "paused:                   {} since {} by {}",
                p.target,
                display_time(&p.paused_at),
                p.paused_by
            );
        }
        perms.print();
    }
    Ok(())
}

/// What `rcjobs status` found out about the bot's permissions (issue 18 §4).
enum BotPermissions {
    /// Not asked, and why.
    NotChecked(String),
    /// What the bot lacks of every capability some feature needs.
    Checked(Vec<rcjobs_worker::preflight::Finding>),
}

/// Asks the chat server of `ROCKETCHAT_*` what the bot lacks, for every feature (account
/// creation and retention included: status does not know the workers' settings). Never fails
/// the command: a chat server that cannot be asked is reported as not checked.
async fn bot_permissions(s: &Settings) -> BotPermissions {
    let (Some(url), Some(user_id), Some(token)) = (
        &s.rocketchat_url,
        &s.rocketchat_user_id,
        &s.rocketchat_token,
    ) else {
        return BotPermissions::NotChecked(
            "ROCKETCHAT_URL, ROCKETCHAT_USER_ID and ROCKETCHAT_TOKEN are not all set".into(),
        );
    };
    let asked = async {
        let mut rc = rcjobs_rocketchat::RocketChatConfig::new(
            url::Url::parse(url).context("ROCKETCHAT_URL is not a URL")?,
            rcjobs_rocketchat::Auth::Token {
                user_id: user_id.clone(),
                token: rcjobs_rocketchat::Secret::new(token.clone()),
            },
        );
        // an operator waiting at a prompt, not a worker riding out a slow server
        rc.request_timeout = std::time::Duration::from_secs(10);
        let client = rcjobs_rocketchat::RocketChatClient::builder(rc)
            .build()
            .context("building the Rocket.Chat client")?;
        let backend = rcjobs_rocketchat::RocketChatBackend::connect(client)
            .await
            .context("connecting to Rocket.Chat")?;
        let needed = rcjobs_worker::preflight::needed_capabilities(true, true);
        rcjobs_worker::preflight::missing_permissions(&backend, &needed)
            .await
            .context("reading the bot's permissions")
    };
    match asked.await {
        Ok(found) => BotPermissions::Checked(found),
        Err(e) => BotPermissions::NotChecked(format!("{e:#}")),
    }
}

impl BotPermissions {
    fn to_json(&self) -> serde_json::Value {
        match self {
            BotPermissions::NotChecked(why) => {
                serde_json::json!({"checked": false, "reason": why})
            }
            BotPermissions::Checked(found) => serde_json::json!({
                "checked": true,
                "missing": found.iter().map(|f| serde_json::json!({
                    "permission": f.permission,
                    "needed_for": f.capability.purpose(),
                    "only_with": rcjobs_worker::preflight::only_with(f.capability),
                    "message": f.message(),
                })).collect::<Vec<_>>(),
            }),
        }
    }

    fn print(&self) {
        match self {
            BotPermissions::NotChecked(why) => {
                println!("bot permissions:          not checked ({why})");
            }
            BotPermissions::Checked(found) if found.is_empty() => {
                println!("bot permissions:          every one the features need is held");
            }
            BotPermissions::Checked(found) => {
                println!("bot permissions:          {} missing", found.len());
                for f in found {
                    let only = rcjobs_worker::preflight::only_with(f.capability)
                        .map(|k| format!(" (only with {k} on)"))
                        .unwrap_or_default();
                    println!("  {}{only}", f.message());
                }
            }
        }
    }
}

fn print_status(st: &QueueStats) {
    let mut t = table(&[
        "QUEUE",
        "KIND",
        "DUE",
        "RUNNING",
        "BLOCKED",
        "SCHEDULED",
        "COMPLETED",
        "DEAD",
    ]);
    let mut keys: Vec<(&str, &str)> = st
        .counts
        .iter()
        .map(|c| (c.queue.as_str(), c.kind.as_str()))
        .collect();
    keys.sort();
    keys.dedup();
    for (q, k) in &keys {
        let n = |s: JobState| -> i64 {
            st.counts
                .iter()
                .filter(|c| c.queue == *q && c.kind == *k && c.state == s)
                .map(|c| c.count)
                .sum()
        };
        // due = ready or blocked with run_at passed; scheduled = not due yet (either)
        let later_ready = st.scheduled_in(q, k, JobState::Ready);
        let later_blocked = st.scheduled_in(q, k, JobState::Blocked);
        t.add_row(vec![
            q.to_string(),
            k.to_string(),
            (n(JobState::Ready) - later_ready).to_string(),
            n(JobState::Running).to_string(),
            (n(JobState::Blocked) - later_blocked).to_string(),
            (later_ready + later_blocked).to_string(),
            n(JobState::Completed).to_string(),
            n(JobState::Dead).to_string(),
        ]);
    }
    if !keys.is_empty() {
        println!("{t}");
    }
    if keys.is_empty() {
        println!("(no jobs)");
    }
    println!();
    println!(
        "oldest due job waiting:   {:.1} s",
        st.oldest_ready_age_seconds
    );
    for (q, age) in &st.oldest_ready_age_by_queue {
        println!("  queue {q}: {age:.1} s");
    }
    println!("scheduled for later:      {}", st.scheduled_total());
    println!("dead jobs:                {}", st.total(JobState::Dead));
    println!("workers alive:            {}", st.workers.len());
    for w in &st.workers {
        println!(
            "  {}  {} pid {}  queues {}  concurrency {}  last seen {}",
            w.id,
            w.hostname,
            w.pid,
            w.queues.join(","),
            w.concurrency,
            ago(w.last_seen)
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_run_at;

    #[test]
    fn run_at_parsing_refuses_what_the_queue_cannot_hold() {
        assert!(parse_run_at("+30s").is_ok());
        assert!(parse_run_at("+2d").is_ok());
        assert!(parse_run_at("2030-01-01T10:00:00Z").is_ok());
        assert!(parse_run_at("+1d 12h").is_ok());
        // used to panic (chrono overflow) or wrap to tomorrow
        for s in ["+300000000d", "+213503982334602d", "+9223372036854775807s"] {
            let e = parse_run_at(s).unwrap_err();
            assert!(
                e.contains("too far ahead")
                    || e.contains("run_at must be")
                    || e.contains("too large"),
                "{s}: {e}"
            );
        }
        assert!(parse_run_at("1960-01-01T00:00:00Z").is_err());
        assert!(parse_run_at("+5 fortnights")
            .unwrap_err()
            .contains("bad delay"));
    }
}
