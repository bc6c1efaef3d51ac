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

/// `rcjobs jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state (ready, running, blocked, completed, dead, cancelled, superseded).
        #[arg(long)]
        state: Option<JobState>,
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs of this queue.
        #[arg(long)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one job with its error history.
    Show {
        /// Job id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a dead job (or all dead jobs) back in the queue with fresh attempts.
    Retry {
        /// Job id.
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<i64>,
        /// Retry every dead job.
        #[arg(long)]
        dead: bool,
    },
    /// Cancel a job that has not started.
    Cancel {
        /// Job id.
        id: i64,
    },
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
            state,
            kind,
            queue,
            limit,
            json,
        } => {
            let jobs = rcjobs_queue::list_jobs(
                &pool,
                &JobFilter {
                    state,
                    kind,
                    queue,
                    limit,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print_job_table(&jobs);
            }
        }
        JobsCommand::Show { id, json } => {
            let job = rcjobs_queue::get_job(&pool, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("job {id} not found"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print_job(&job);
            }
        }
        JobsCommand::Retry { id, dead } => {
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
            }
        }
        JobsCommand::Cancel { id } => {
            rcjobs_queue::cancel_job(&pool, id).await?;
            println!("job {id} cancelled");
        }
    }
    Ok(())
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

fn print_job_table(jobs: &[JobRecord]) {
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
            shown_state(j).to_string(),
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

fn print_job(j: &JobRecord) {
    println!("id            {}", j.id);
    println!("kind          {}", j.kind);
    println!("queue         {}", j.queue);
    println!("state         {}", shown_state(j));
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
    let perms = bot_permissions(s).await;
    if a.json {
        let v = serde_json::json!({
            "bot_permissions": perms.to_json(),
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
