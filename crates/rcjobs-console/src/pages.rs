//! The pages and the actions. Every query here is an O(1) counter read, an index lookup, or
//! bounded by a LIMIT (BENCHMARKS.md, "Console page cost", has their times on 1,000,000 jobs).

use crate::auth::{authorize, context};
use crate::html::{csrf_field, esc, page, AppError};
use crate::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use rcjobs_queue::{BulkAction, JobFilter, JobRecord, JobState, Pause, PauseTarget};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Rows a list page shows.
const PAGE_ROWS: i64 = 100;
/// The most jobs one bulk action takes (the count shown says when a filter matches more).
const BULK_MAX: i64 = 100_000;
/// History rows the overview's throughput reads at most (BRIN on finished_at): 333/s.
const RECENT_CAP: i64 = 20_000;
/// The newest completed jobs the overview's wait figures are computed from.
const WAIT_SAMPLE: i64 = 1_000;
/// Dead jobs of the last hour whose error classes the overview reads at most.
const ERROR_SAMPLE: i64 = 5_000;
/// Scheduled jobs the overview counts per claim-index group at most: counting them all costs
/// O(scheduled jobs) (a periodic reconcile spreads one per room over the hour).
const SCHEDULED_CAP: i64 = 10_000;
/// The sync priority an operator's "sync now" uses (as `rcjobs rooms sync`).
const ROOM_SYNC_PRIORITY: i16 = -10;

fn ago(t: DateTime<Utc>) -> String {
    let s = (Utc::now() - t).num_seconds();
    let (n, fut) = (s.abs(), s < 0);
    let v = if n < 120 {
        format!("{n}s")
    } else if n < 7200 {
        format!("{}m", n / 60)
    } else if n < 172_800 {
        format!("{}h", n / 3600)
    } else {
        format!("{}d", n / 86_400)
    };
    if fut {
        format!("in {v}")
    } else {
        format!("{v} ago")
    }
}

fn time(t: DateTime<Utc>) -> String {
    format!(
        "<span title=\"{}\">{}</span>",
        rcjobs_queue::display_time(&t),
        esc(&ago(t))
    )
}

fn state_badge(j: &JobRecord, pauses: &[Pause]) -> String {
    let st = match j.state {
        JobState::Ready | JobState::Blocked if j.run_at > Utc::now() => "scheduled",
        s => s.as_str(),
    };
    let mut b = format!("<span class=\"badge {st}\">{st}</span>");
    if matches!(j.state, JobState::Ready | JobState::Blocked)
        && rcjobs_queue::is_paused(pauses, &j.queue, &j.kind)
    {
        b.push_str(" <span class=\"badge paused\">paused</span>");
    }
    b
}

async fn table_exists(pool: &PgPool, name: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(pool)
        .await?)
}

/// A flash message from a redirect (`?done=`), shown once.
fn notice(q: &HashMap<String, String>) -> String {
    q.get("done")
        .map(|d| format!("<div class=\"notice\" id=\"notice\">{}</div>", esc(d)))
        .unwrap_or_default()
}

fn redirect_with(to: &str, msg: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}done={}", urlencode(msg))).into_response()
}

fn urlencode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            _ => {
                let _ = write!(o, "%{b:02X}");
            }
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

pub(crate) async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let ctx = context(&state, &headers);
    let pool = &state.pool;
    let (st, capped) = rcjobs_queue::stats::stats_capped(pool, Some(SCHEDULED_CAP)).await?;
    let pauses = rcjobs_queue::list_pauses(pool).await?;
    let held = rcjobs_queue::paused_counts(pool).await?;
    let mut b = String::new();
    let refresh = state.config.refresh_secs;
    if refresh > 0 {
        let _ = write!(b, "<div data-refresh=\"{refresh}\"></div>");
    }
    b.push_str(&notice(&q));
    b.push_str("<h1>Overview</h1><div class=\"cards\">");
    // past the cap, scheduled is a lower bound and due (ready less scheduled) an upper one
    let (le, ge) = if capped { ("≤ ", "≥ ") } else { ("", "") };
    for (id, n, label) in [
        (
            "due",
            format!("{le}{}", st.due_total()),
            "due (waiting for a worker)",
        ),
        (
            "scheduled",
            format!("{ge}{}", st.scheduled_total()),
            "scheduled (not due yet)",
        ),
        (
            "running",
            st.total(JobState::Running).to_string(),
            "running",
        ),
        (
            "blocked",
            st.total(JobState::Blocked).to_string(),
            "blocked (behind a lane)",
        ),
        ("dead", st.total(JobState::Dead).to_string(), "dead"),
    ] {
        let _ = write!(
            b,
            "<div class=\"card\" id=\"card-{id}\"><b>{n}</b><span>{label}</span></div>"
        );
    }
    let _ = write!(
        b,
        "<div class=\"card\"><b>{:.0}s</b><span>oldest due job waiting</span></div></div>",
        st.oldest_ready_age_seconds
    );

    // per queue and kind, from the counters
    let mut rows: BTreeMap<(String, String), [i64; 6]> = BTreeMap::new();
    for c in &st.counts {
        let e = rows.entry((c.queue.clone(), c.kind.clone())).or_default();
        match c.state {
            JobState::Ready => e[0] += c.count,
            JobState::Running => e[2] += c.count,
            JobState::Blocked => e[3] += c.count,
            JobState::Dead => e[4] += c.count,
            _ => {}
        }
    }
    for s in &st.scheduled {
        let e = rows.entry((s.queue.clone(), s.kind.clone())).or_default();
        e[1] += s.count;
        if s.state == JobState::Ready {
            e[0] -= s.count;
        }
    }
    for (q, k, n) in &held {
        rows.entry((q.clone(), k.clone())).or_default()[5] += n;
    }
    b.push_str("<h2>By queue and kind</h2><table id=\"by-kind\"><tr><th>queue</th><th>kind</th><th>due</th><th>scheduled</th><th>running</th><th>blocked</th><th>dead</th><th>paused</th></tr>");
    for ((queue, kind), n) in &rows {
        if n.iter().all(|x| *x == 0) {
            continue;
        }
        let paused = if rcjobs_queue::is_paused(&pauses, queue, kind) {
            format!("<span class=\"badge paused\">paused</span> {}", n[5])
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<tr><td>{q}</td><td><a href=\"/jobs?kind={ku}&amp;queue={qu}\">{k}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\"><a href=\"/jobs?state=dead&amp;kind={ku}\">{}</a></td><td>{paused}</td></tr>",
            n[0].max(0), n[1], n[2], n[3], n[4],
            q = esc(queue), k = esc(kind), ku = urlencode(kind), qu = urlencode(queue)
        );
    }
    b.push_str("</table>");

    // Throughput: history rows finished in the last minute (BRIN on finished_at), read up
    // to a cap: past it the figure is a lower bound. Waits: the newest completed jobs by id
    // (the newest WAIT_SAMPLE history rows by a backward primary-key scan, whatever the rest).
    let done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM rcjobs.job_history
                                WHERE finished_at > now() - interval '1 minute' AND state = 'completed'
                                LIMIT $1) h",
    )
    .bind(RECENT_CAP)
    .fetch_one(pool)
    .await?;
    let waits: (i64, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*), avg(w)::float8, percentile_cont(0.95) WITHIN GROUP (ORDER BY w)::float8
           FROM (SELECT extract(epoch FROM started_at - run_at) AS w
                   FROM (SELECT state, finished_at, started_at, run_at FROM rcjobs.job_history
                          ORDER BY id DESC LIMIT $1) n
                  WHERE state = 'completed' AND finished_at > now() - interval '5 minutes') h",
    )
    .bind(WAIT_SAMPLE)
    .fetch_one(pool)
    .await?;
    let ge = if done >= RECENT_CAP { "≥ " } else { "" };
    let _ = write!(
        b,
        "<h2>Last minutes</h2><div class=\"cards\"><div class=\"card\" id=\"throughput\"><b>{ge}{:.1}/s</b><span>jobs completed, last minute</span></div><div class=\"card\"><b>{:.1}s</b><span>mean wait, due → started</span></div><div class=\"card\"><b>{:.1}s</b><span>p95 wait</span></div><div class=\"card\"><b>{}</b><span>completed jobs of the last 5 min among the newest 1,000</span></div></div>",
        done as f64 / 60.0,
        waits.1.unwrap_or(0.0),
        waits.2.unwrap_or(0.0),
        waits.0
    );

    // workers and what they run (the lease index holds running jobs only)
    let inflight: Vec<(Option<uuid::Uuid>, i64)> = sqlx::query_as(
        "SELECT worker_id, count(*) FROM rcjobs.job WHERE lease_until IS NOT NULL GROUP BY 1",
    )
    .fetch_all(pool)
    .await?;
    let inflight: HashMap<String, i64> = inflight
        .into_iter()
        .map(|(w, n)| (w.map(|w| w.to_string()).unwrap_or_default(), n))
        .collect();
    b.push_str("<h2>Workers alive</h2><table id=\"workers\"><tr><th>worker</th><th>host</th><th>queues</th><th>concurrency</th><th>in flight</th><th>started</th><th>heartbeat</th></tr>");
    for w in &st.workers {
        let id = w.id.to_string();
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{} (pid {})</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\"><a href=\"/jobs?state=running\">{}</a></td><td>{}</td><td>{}</td></tr>",
            esc(&id[..8]),
            esc(&w.hostname),
            w.pid,
            esc(&w.queues.join(", ")),
            w.concurrency,
            inflight.get(&id).copied().unwrap_or(0),
            time(w.started_at),
            time(w.last_seen)
        );
    }
    if st.workers.is_empty() {
        b.push_str("<tr><td colspan=\"7\" class=\"muted\">no worker has sent a heartbeat in the last 30 s</td></tr>");
    }
    b.push_str("</table>");

    // chat-server health: rate-limit pauses and the classes of recent failures
    b.push_str("<h2>Chat server</h2>");
    if table_exists(pool, "rcjobs_sync.rate_window").await? {
        let paused: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT route, paused_until FROM rcjobs_sync.rate_window
              WHERE paused_until > now() ORDER BY paused_until DESC LIMIT 20",
        )
        .fetch_all(pool)
        .await?;
        if paused.is_empty() {
            b.push_str("<p id=\"rate-limit\">no rate-limit pause in force</p>");
        } else {
            b.push_str("<table id=\"rate-limit\"><tr><th>route</th><th>paused until</th></tr>");
            for (r, u) in paused {
                let _ = write!(b, "<tr><td>{}</td><td>{}</td></tr>", esc(&r), time(u));
            }
            b.push_str("</table>");
        }
    }
    let classes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(errors -> -1 ->> 'class', 'unclassified'), count(*) FROM (
             SELECT errors FROM rcjobs.job_history
              WHERE finished_at > now() - interval '1 hour' AND state = 'dead' LIMIT $1) h
          GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
    )
    .bind(ERROR_SAMPLE)
    .fetch_all(pool)
    .await?;
    b.push_str("<table id=\"error-classes\"><tr><th>error class (dead in the last hour)</th><th>jobs</th></tr>");
    for (c, n) in &classes {
        let _ = write!(b, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(c));
    }
    if classes.is_empty() {
        b.push_str("<tr><td colspan=\"2\" class=\"muted\">none</td></tr>");
    }
    b.push_str("</table>");
    if !pauses.is_empty() {
        b.push_str("<h2>Paused</h2><ul>");
        for p in &pauses {
            let _ = write!(
                b,
                "<li>{} since {} by {}</li>",
                esc(&p.target.to_string()),
                time(p.paused_at),
                esc(&p.paused_by)
            );
        }
        b.push_str("</ul>");
    }
    Ok(page(&ctx, "Overview", "Overview", &b))
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

/// A filter from query or form fields (`state kind queue since error payload`).
fn filter_from(q: &HashMap<String, String>) -> Result<JobFilter, AppError> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let bad = |e: String| AppError::new(StatusCode::BAD_REQUEST, e);
    Ok(JobFilter {
        state: get("state").map(str::parse).transpose().map_err(bad)?,
        kind: get("kind").map(String::from),
        queue: get("queue").map(String::from),
        since: get("since").map(parse_since).transpose().map_err(bad)?,
        error_like: get("error").map(String::from),
        payload: get("payload")
            .map(rcjobs_queue::parse_payload_filter)
            .transpose()
            .map_err(bad)?,
        scan: 0,
        limit: PAGE_ROWS,
    })
}

fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("bad 'since' {s:?}: {e} (RFC 3339 or an age like 2h)"))?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .ok_or_else(|| format!("'since' {s:?} is too far back"))
}

const FILTER_FIELDS: [&str; 6] = ["state", "kind", "queue", "since", "error", "payload"];

fn filter_hidden(q: &HashMap<String, String>) -> String {
    FILTER_FIELDS
        .iter()
        .filter_map(|k| q.get(*k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)))
        .collect()
}

pub(crate) async fn jobs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let ctx = context(&state, &headers);
    let f = filter_from(&q)?;
    let list = rcjobs_queue::list_jobs(&state.pool, &f).await?;
    let pauses = rcjobs_queue::list_pauses(&state.pool).await?;
    let v = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    let mut b = notice(&q);
    b.push_str(
        "<h1>Jobs</h1><form class=\"filters\" method=\"get\" action=\"/jobs\" id=\"filter\">",
    );
    let _ = write!(
        b,
        "<label>state<select name=\"state\" id=\"f-state\"><option value=\"\">any</option>"
    );
    for s in JobState::ALL {
        let sel = if q.get("state").map(String::as_str) == Some(s.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, "<option{sel}>{}</option>", s.as_str());
    }
    let _ = write!(
        b,
        "</select></label><label>kind<input name=\"kind\" id=\"f-kind\" value=\"{}\"></label><label>queue<input name=\"queue\" value=\"{}\" size=\"8\"></label><label>since (2h, RFC 3339)<input name=\"since\" value=\"{}\" size=\"10\"></label><label>error contains<input name=\"error\" id=\"f-error\" value=\"{}\"></label><label>payload (cmid=42)<input name=\"payload\" id=\"f-payload\" value=\"{}\"></label><button type=\"submit\" id=\"apply\">Filter</button></form>",
        v("kind"), v("queue"), v("since"), v("error"), v("payload")
    );
    if f.is_bounded_scan() {
        let _ = write!(
            b,
            "<p class=\"muted\">error and payload filters search the newest {} jobs of each table.</p>",
            rcjobs_queue::DEFAULT_SCAN
        );
    }
    if ctx.can_act() {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/jobs/bulk\" class=\"filters\" id=\"bulk\">{}{}<label>on every job of this filter<select name=\"action\" id=\"bulk-action\"><option value=\"retry\">retry (dead)</option><option value=\"cancel\">cancel (pending)</option><option value=\"run-now\">run now (pending)</option><option value=\"delete\">delete (dead, or the filter's state)</option></select></label><button type=\"submit\" id=\"bulk-preview\">Count and confirm…</button></form>",
            csrf_field(&ctx),
            filter_hidden(&q)
        );
    }
    b.push_str("<table id=\"jobs\"><tr><th>id</th><th>kind</th><th>queue</th><th>state</th><th>attempt</th><th>run at</th><th>payload</th><th>last error</th></tr>");
    for j in &list {
        let err: String = j
            .last_error
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(80)
            .collect();
        let _ = write!(
            b,
            "<tr data-id=\"{id}\"><td><a href=\"/jobs/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}/{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&j.kind),
            esc(&j.queue),
            state_badge(j, &pauses),
            j.attempt,
            j.max_attempts,
            time(j.run_at),
            esc(&j.payload.to_string()),
            esc(&err),
            id = j.id
        );
    }
    if list.is_empty() {
        b.push_str("<tr><td colspan=\"8\" class=\"muted\">no job matches</td></tr>");
    }
    b.push_str("</table>");
    if list.len() as i64 >= PAGE_ROWS {
        let _ = write!(b, "<p class=\"muted\">the newest {PAGE_ROWS} shown</p>");
    }
    Ok(page(&ctx, "Jobs", "Jobs", &b))
}

pub(crate) async fn job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let ctx = context(&state, &headers);
    let pool = &state.pool;
    let j = rcjobs_queue::get_job(pool, id)
        .await?
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, format!("job {id} not found")))?;
    let pauses = rcjobs_queue::list_pauses(pool).await?;
    let mut b = notice(&q);
    let _ = write!(
        b,
        "<h1>Job {id} <span id=\"job-state\">{}</span></h1><dl class=\"kv\">",
        state_badge(&j, &pauses)
    );
    let opt = |t: Option<DateTime<Utc>>| t.map(time).unwrap_or_else(|| "-".into());
    for (k, v) in [
        ("kind", esc(&j.kind)),
        ("queue", esc(&j.queue)),
        ("priority", j.priority.to_string()),
        ("attempt", format!("{}/{}", j.attempt, j.max_attempts)),
        ("enqueued", time(j.enqueued_at)),
        (
            "run at",
            format!("<span id=\"run-at\">{}</span>", time(j.run_at)),
        ),
        ("started", opt(j.started_at)),
        ("finished", opt(j.finished_at)),
        ("lease until", opt(j.lease_until)),
        ("dedup key", esc(j.dedup_key.as_deref().unwrap_or("-"))),
        (
            "exclusion key",
            esc(j.exclusion_key.as_deref().unwrap_or("-")),
        ),
        ("snoozes (rate limits)", j.snoozes.to_string()),
        (
            "superseded by",
            j.superseded_by
                .map(|s| format!("<a href=\"/jobs/{s}\">{s}</a>"))
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "payload",
            format!("<code>{}</code>", esc(&j.payload.to_string())),
        ),
    ] {
        let _ = write!(b, "<dt>{k}</dt><dd>{v}</dd>");
    }
    b.push_str("</dl>");
    if let (Some(key), false) = (&j.exclusion_key, j.state.is_finished()) {
        let l = rcjobs_queue::lane_info(pool, key).await?;
        let more = if l.blocked >= rcjobs_queue::admin::LANE_COUNT_CAP {
            "+"
        } else {
            ""
        };
        let what = match l.head {
            Some((h, _, _)) if h == id => format!(
                "this job heads lane <code>{}</code>; {}{more} job(s) wait behind it",
                esc(key),
                l.blocked
            ),
            Some((h, st, at)) => format!(
                "waits behind <a href=\"/jobs/{h}\" id=\"lane-head\">job {h}</a> ({st}, run at {}) in lane <code>{}</code>; {}{more} blocked",
                time(at),
                esc(key),
                l.blocked
            ),
            None => format!("lane <code>{}</code> has no head", esc(key)),
        };
        let _ = write!(b, "<h2>Lane</h2><p id=\"lane\">{what}</p>");
    }
    if ctx.can_act() {
        b.push_str("<div class=\"actions\">");
        let csrf = csrf_field(&ctx);
        let button = |action: &str, label: &str, danger: bool, confirm: &str| {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/jobs/{id}/{action}\" data-confirm=\"{}\">{csrf}<button id=\"do-{action}\"{}>{label}</button></form>",
                esc(confirm),
                if danger { " class=\"danger\"" } else { "" }
            )
        };
        match j.state {
            JobState::Dead => {
                b.push_str(&button("retry", "Retry", false, ""));
                b.push_str(&button(
                    "delete",
                    "Delete",
                    true,
                    "Delete this job for good?",
                ));
            }
            JobState::Ready | JobState::Blocked => {
                b.push_str(&button("run-now", "Run now", false, ""));
                b.push_str(&button("cancel", "Cancel", true, "Cancel this job?"));
                b.push_str(&button(
                    "delete",
                    "Delete",
                    true,
                    "Delete this job for good?",
                ));
                let _ = write!(
                    b,
                    "<form class=\"inline\" method=\"post\" action=\"/jobs/{id}/reschedule\">{csrf}<input name=\"run_at\" id=\"reschedule-at\" placeholder=\"+2h or RFC 3339\" size=\"16\" required><button id=\"do-reschedule\">Reschedule</button></form>"
                );
            }
            _ => {
                b.push_str("<span class=\"muted\">no action applies to a job in this state</span>")
            }
        }
        b.push_str("</div>");
    }
    b.push_str("<h2>Errors</h2><table id=\"errors\"><tr><th>attempt</th><th>at</th><th>class</th><th>error</th></tr>");
    let errs = j.errors.as_array().cloned().unwrap_or_default();
    for e in errs.iter().rev() {
        let s = |k: &str| {
            e.get(k)
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        let _ = write!(
            b,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s("attempt")),
            esc(&s("at")),
            esc(&s("class")),
            esc(&s("error"))
        );
    }
    if errs.is_empty() {
        b.push_str("<tr><td colspan=\"4\" class=\"muted\">none</td></tr>");
    }
    b.push_str("</table>");
    Ok(page(&ctx, &format!("Job {id}"), "Jobs", &b))
}

fn parse_run_at(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Some(rel) = s.strip_prefix('+') {
        let d =
            humantime::parse_duration(rel.trim()).map_err(|e| format!("bad delay {s:?}: {e}"))?;
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d))
            .ok_or_else(|| format!("delay {s:?} is too far ahead"));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("bad time {s:?}: {e} (RFC 3339, or +30m)"))
}

pub(crate) async fn job_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let who = authorize(&state, &headers, &form)?;
    let pool = &state.pool;
    let msg = match action.as_str() {
        "retry" => match rcjobs_queue::retry_job(pool, id).await? {
            rcjobs_queue::RetryOutcome::Requeued => format!("job {id} requeued"),
            rcjobs_queue::RetryOutcome::Superseded => {
                format!("job {id} not requeued: a pending job with the same dedup key covers it")
            }
        },
        "cancel" => {
            rcjobs_queue::cancel_job(pool, id).await?;
            format!("job {id} cancelled")
        }
        "run-now" => {
            rcjobs_queue::run_now(pool, id).await?;
            format!("job {id} is due now, first of its lane")
        }
        "reschedule" => {
            let at = parse_run_at(form.get("run_at").map(String::as_str).unwrap_or(""))
                .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
            rcjobs_queue::reschedule(pool, id, at).await?;
            format!(
                "job {id} rescheduled to {}",
                rcjobs_queue::display_time(&at)
            )
        }
        "delete" => {
            rcjobs_queue::delete_job(pool, id).await?;
            tracing::info!(target: "rcjobs_console::audit", who = %who, job = id, action = %action, "console action");
            return Ok(redirect_with("/jobs", &format!("job {id} deleted")));
        }
        _ => return Err(AppError::new(StatusCode::NOT_FOUND, "no such action")),
    };
    tracing::info!(target: "rcjobs_console::audit", who = %who, job = id, action = %action, "console action");
    Ok(redirect_with(&format!("/jobs/{id}"), &msg))
}

/// Bulk on a filter: without `confirm`, the count and a confirmation form; with `confirm`
/// (the count the operator saw), the action.
pub(crate) async fn bulk(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let who = authorize(&state, &headers, &form)?;
    let ctx = context(&state, &headers);
    let action: BulkAction = form
        .get("action")
        .map(String::as_str)
        .unwrap_or("")
        .parse()
        .map_err(|e: String| AppError::new(StatusCode::BAD_REQUEST, e))?;
    let f = filter_from(&form)?;
    let empty = f.state.is_none()
        && f.kind.is_none()
        && f.queue.is_none()
        && f.since.is_none()
        && !f.is_bounded_scan();
    if empty && action != BulkAction::Retry {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "set a filter first: a bulk cancel, run-now or delete on every job is refused",
        ));
    }
    let ids = rcjobs_queue::bulk_targets(&state.pool, action, &f, BULK_MAX).await?;
    let back = format!(
        "/jobs?{}",
        FILTER_FIELDS
            .iter()
            .filter_map(|k| form
                .get(*k)
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", urlencode(v))))
            .collect::<Vec<_>>()
            .join("&")
    );
    match form.get("confirm") {
        None => {
            let shown = FILTER_FIELDS
                .iter()
                .filter_map(|k| {
                    form.get(*k)
                        .filter(|v| !v.is_empty())
                        .map(|v| format!("{k} = {v}"))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let shown = if shown.is_empty() {
                format!(
                    "every {} job",
                    action
                        .default_states()
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("/")
                )
            } else {
                shown
            };
            let more = if ids.len() as i64 >= BULK_MAX {
                format!(" (at most {BULK_MAX} per action)")
            } else {
                String::new()
            };
            let body = format!(
                "<h1>{a} {n} job(s)?</h1><p class=\"muted\" id=\"bulk-filter\">filter: {shown}</p><p id=\"bulk-count\" data-count=\"{n}\">{n} job(s) match this filter{more}.</p><form method=\"post\" action=\"/jobs/bulk\">{csrf}{hidden}<input type=\"hidden\" name=\"action\" value=\"{a}\"><input type=\"hidden\" name=\"confirm\" value=\"{n}\"><button id=\"bulk-confirm\" class=\"danger\">Yes, {a} {n} job(s)</button> <a href=\"{back}\">cancel</a></form>",
                a = action.as_str(),
                n = ids.len(),
                shown = esc(&shown),
                csrf = csrf_field(&ctx),
                hidden = filter_hidden(&form),
                back = esc(&back)
            );
            Ok(page(&ctx, "Confirm", "Jobs", &body))
        }
        Some(c) => {
            let seen: usize = c
                .parse()
                .map_err(|_| AppError::new(StatusCode::BAD_REQUEST, "bad confirmation"))?;
            // the operator confirmed a count: act on no more jobs than they saw
            let take = &ids[..ids.len().min(seen)];
            let r = rcjobs_queue::bulk_apply(&state.pool, action, take).await?;
            tracing::info!(target: "rcjobs_console::audit", who = %who, action = action.as_str(),
                filter = ?f, done = r.done, skipped = r.skipped, "console bulk action");
            Ok(redirect_with(
                &back,
                &format!(
                    "{}: {} job(s) done, {} skipped (moved on meanwhile)",
                    action.as_str(),
                    r.done,
                    r.skipped
                ),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rooms
// ---------------------------------------------------------------------------------------------

type RoomRow = (
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<i32>,
);

/// subject, code, detail, job, at
type OutcomeRow = (String, String, String, Option<i64>, DateTime<Utc>);

const ROOM_COLUMNS: &str =
    "cmid, courseid, room_id, room_name, state, last_sync_at, last_result, member_count";

pub(crate) async fn rooms(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let ctx = context(&state, &headers);
    let pool = &state.pool;
    let mut b = notice(&q);
    b.push_str("<h1>Rooms</h1>");
    if !table_exists(pool, "rcjobs_sync.room").await? {
        b.push_str("<p>No room synced yet (the workers create <code>rcjobs_sync</code> on their first run).</p>");
        return Ok(page(&ctx, "Rooms", "Rooms", &b));
    }
    let course: Option<i64> = q.get("course").and_then(|c| c.trim().parse().ok());
    let problems = q.get("problems").is_some_and(|v| v == "1");
    let _ = write!(
        b,
        "<form class=\"filters\" method=\"get\" action=\"/rooms\"><label>course id<input name=\"course\" id=\"f-course\" value=\"{}\" size=\"8\"></label><label><span>only with problems</span><input type=\"checkbox\" name=\"problems\" value=\"1\"{}></label><button id=\"rooms-filter\">Filter</button></form>",
        course.map(|c| c.to_string()).unwrap_or_default(),
        if problems { " checked" } else { "" }
    );
    let sql = format!(
        "SELECT {ROOM_COLUMNS} FROM rcjobs_sync.room r
          WHERE ($1::bigint IS NULL OR r.courseid = $1)
            AND (NOT $2 OR EXISTS (SELECT 1 FROM rcjobs_sync.outcome o WHERE o.cmid = r.cmid))
          ORDER BY r.courseid, r.cmid LIMIT $3"
    );
    let rows: Vec<RoomRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(course)
        .bind(problems)
        .bind(PAGE_ROWS * 5)
        .fetch_all(pool)
        .await?;
    let keys: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let outcomes: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT cmid, code, count(*) FROM rcjobs_sync.outcome WHERE cmid = ANY($1) GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    let mut by_room: HashMap<i64, Vec<String>> = HashMap::new();
    for (cm, code, n) in outcomes {
        by_room.entry(cm).or_default().push(format!(
            "<span class=\"badge warn\">{} × {n}</span>",
            esc(&code)
        ));
    }
    b.push_str("<table id=\"rooms\"><tr><th>room</th><th>course</th><th>name</th><th>chat room</th><th>state</th><th>members</th><th>last sync</th><th>result</th><th>outcomes</th><th></th></tr>");
    for r in &rows {
        let kind = if r.0 < 0 { "course" } else { "activity" };
        let sync = if ctx.can_act() {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/rooms/{}/sync\">{}<button id=\"sync-{}\">Sync now</button></form>",
                r.0,
                csrf_field(&ctx),
                r.0
            )
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<tr data-cmid=\"{cm}\"><td><a href=\"/rooms/{cm}\">{kind} {cm}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{sync}</td></tr>",
            r.1.map(|c| c.to_string()).unwrap_or_default(),
            esc(r.3.as_deref().unwrap_or("")),
            esc(r.2.as_deref().unwrap_or("-")),
            esc(&r.4),
            r.7.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            r.5.map(time).unwrap_or_else(|| "never".into()),
            esc(r.6.as_deref().unwrap_or("-")),
            by_room.get(&r.0).map(|v| v.join(" ")).unwrap_or_default(),
            cm = r.0
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=\"10\" class=\"muted\">no room</td></tr>");
    }
    b.push_str("</table>");
    Ok(page(&ctx, "Rooms", "Rooms", &b))
}

pub(crate) async fn room(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(cmid): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let ctx = context(&state, &headers);
    let pool = &state.pool;
    if !table_exists(pool, "rcjobs_sync.room").await? {
        return Err(AppError::new(StatusCode::NOT_FOUND, "no room synced yet"));
    }
    let sql = format!("SELECT {ROOM_COLUMNS} FROM rcjobs_sync.room WHERE cmid = $1");
    let r: RoomRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(cmid)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, format!("room {cmid} not known")))?;
    let mut b = notice(&q);
    let _ = write!(
        b,
        "<h1>Room {cmid}</h1><dl class=\"kv\"><dt>course</dt><dd>{}</dd><dt>name</dt><dd>{}</dd><dt>chat room</dt><dd><code>{}</code></dd><dt>state</dt><dd>{}</dd><dt>last sync</dt><dd>{}</dd><dt>result</dt><dd id=\"room-result\">{}</dd><dt>members (chat server, last sync)</dt><dd>{}</dd></dl>",
        r.1.map(|c| c.to_string()).unwrap_or_default(),
        esc(r.3.as_deref().unwrap_or("")),
        esc(r.2.as_deref().unwrap_or("-")),
        esc(&r.4),
        r.5.map(time).unwrap_or_else(|| "never".into()),
        esc(r.6.as_deref().unwrap_or("-")),
        r.7.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
    );
    if ctx.can_act() {
        let _ = write!(
            b,
            "<div class=\"actions\"><form class=\"inline\" method=\"post\" action=\"/rooms/{cmid}/sync\">{}<button id=\"sync-{cmid}\">Sync now</button></form></div>",
            csrf_field(&ctx)
        );
    }
    let outcomes: Vec<OutcomeRow> = sqlx::query_as(
        "SELECT subject, code, detail, job_id, at FROM rcjobs_sync.outcome WHERE cmid = $1 ORDER BY code, subject LIMIT 500",
    )
    .bind(cmid)
    .fetch_all(pool)
    .await?;
    b.push_str("<h2>Recorded outcomes (last sync)</h2><table id=\"outcomes\"><tr><th>subject</th><th>outcome</th><th>detail</th><th>job</th><th>at</th></tr>");
    for (subject, code, detail, job, at) in &outcomes {
        let _ = write!(
            b,
            "<tr><td>{}</td><td><span class=\"badge warn\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if subject.is_empty() { "the room".into() } else { esc(subject) },
            esc(code),
            esc(detail),
            job.map(|j| format!("<a href=\"/jobs/{j}\">{j}</a>")).unwrap_or_default(),
            time(*at)
        );
    }
    if outcomes.is_empty() {
        b.push_str("<tr><td colspan=\"5\" class=\"muted\">none: the last sync converged</td></tr>");
    }
    b.push_str("</table>");
    let members: Vec<(String, bool)> = sqlx::query_as(
        "SELECT username, moderator FROM rcjobs_sync.member WHERE cmid = $1 ORDER BY username LIMIT 2000",
    )
    .bind(cmid)
    .fetch_all(pool)
    .await?;
    let _ = write!(
        b,
        "<h2>Members rcjobs manages ({})</h2><p class=\"muted\">",
        members.len()
    );
    for (u, m) in &members {
        let _ = write!(b, "{}{} ", esc(u), if *m { " (moderator)" } else { "" });
    }
    b.push_str("</p><p class=\"muted\">A live comparison with Moodle and the chat server: <code>rcjobs rooms show --cmid ID</code>.</p>");
    Ok(page(&ctx, &format!("Room {cmid}"), "Rooms", &b))
}

pub(crate) async fn room_sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(cmid): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let who = authorize(&state, &headers, &form)?;
    let pool = &state.pool;
    let course: Option<i64> =
        sqlx::query_scalar("SELECT courseid FROM rcjobs_sync.room WHERE cmid = $1")
            .bind(cmid)
            .fetch_optional(pool)
            .await?
            .flatten();
    let course = course
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, format!("room {cmid} not known")))?;
    let job = rcjobs_producer::Job::parse_kind(
        rcjobs_producer::Kind::SynchronizeGroup,
        &serde_json::json!({"cmid": cmid, "courseid": course}),
    )
    .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let opts = rcjobs_producer::EnqueueOptions {
        priority: ROOM_SYNC_PRIORITY,
        ..Default::default()
    };
    let e = rcjobs_queue::enqueue(pool, &job.to_new_job(&opts)).await?;
    tracing::info!(target: "rcjobs_console::audit", who = %who, cmid, job = e.id, "console room sync");
    let msg = if e.deduplicated {
        format!("a sync of room {cmid} was already queued (job {})", e.id)
    } else {
        format!("sync of room {cmid} queued (job {})", e.id)
    };
    let back = if form.get("back").is_some_and(|b| b == "list") {
        "/rooms".to_string()
    } else {
        format!("/rooms/{cmid}")
    };
    Ok(redirect_with(&back, &msg))
}

// ---------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------

pub(crate) async fn queues(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let ctx = context(&state, &headers);
    let pool = &state.pool;
    let counts = rcjobs_queue::stats::counts(pool).await?;
    let pauses = rcjobs_queue::list_pauses(pool).await?;
    let kinds = rcjobs_queue::list_kinds(pool).await?;
    let mut queues: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, i64> = kinds.iter().map(|k| (k.name.clone(), 0)).collect();
    for c in &counts {
        if !c.state.is_finished() {
            *queues.entry(c.queue.clone()).or_default() += c.count;
            *by_kind.entry(c.kind.clone()).or_default() += c.count;
        }
    }
    for p in &pauses {
        if let PauseTarget::Queue(name) = &p.target {
            queues.entry(name.clone()).or_default();
        }
    }
    queues.entry("default".into()).or_default();
    let pause_of = |t: &PauseTarget| pauses.iter().find(|p| &p.target == t);
    let mut b = notice(&q);
    b.push_str("<h1>Queues</h1><p class=\"muted\">A pause keeps the jobs queued and visible; every worker stops taking them at its next claim, and the pause survives restarts.</p>");
    let row = |b: &mut String, scope: &str, name: &str, pending: i64, t: PauseTarget| {
        let p = pause_of(&t);
        let status = match p {
            Some(p) => format!(
                "<span class=\"badge paused\">paused</span> {} by {}{}",
                time(p.paused_at),
                esc(&p.paused_by),
                if p.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", esc(&p.reason))
                }
            ),
            None => "<span class=\"badge ok\">active</span>".into(),
        };
        let action = if ctx.can_act() {
            let (verb, extra) = if p.is_some() {
                ("resume", String::new())
            } else {
                (
                    "pause",
                    "<input name=\"reason\" placeholder=\"reason\" size=\"14\">".to_string(),
                )
            };
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/queues/{verb}\">{}<input type=\"hidden\" name=\"scope\" value=\"{scope}\"><input type=\"hidden\" name=\"name\" value=\"{n}\">{extra}<button id=\"{verb}-{scope}-{n}\">{verb}</button></form>",
                csrf_field(&ctx),
                n = esc(name)
            )
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"n\">{pending}</td><td id=\"status-{scope}-{n}\">{status}</td><td>{action}</td></tr>",
            esc(name),
            n = esc(name)
        );
    };
    b.push_str("<h2>Queues</h2><table id=\"queues\"><tr><th>queue</th><th>pending</th><th>status</th><th></th></tr>");
    for (name, n) in &queues {
        row(&mut b, "queue", name, *n, PauseTarget::Queue(name.clone()));
    }
    b.push_str("</table><h2>Job kinds</h2><table id=\"kinds\"><tr><th>kind</th><th>pending</th><th>status</th><th></th></tr>");
    for (name, n) in &by_kind {
        row(&mut b, "kind", name, *n, PauseTarget::Kind(name.clone()));
    }
    b.push_str("</table>");
    Ok(page(&ctx, "Queues", "Queues", &b))
}

pub(crate) async fn queue_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let who = authorize(&state, &headers, &form)?;
    let name = form
        .get("name")
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AppError::new(StatusCode::BAD_REQUEST, "name missing"))?;
    let target = match form.get("scope").map(String::as_str) {
        Some("queue") => PauseTarget::Queue(name),
        Some("kind") => PauseTarget::Kind(name),
        _ => {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "scope must be queue or kind",
            ))
        }
    };
    let reason = form.get("reason").map(String::as_str).unwrap_or("");
    let msg = match action.as_str() {
        "pause" => {
            if rcjobs_queue::pause(&state.pool, &target, &who, reason).await? {
                format!("{target} paused")
            } else {
                format!("{target} was already paused")
            }
        }
        "resume" => {
            if rcjobs_queue::resume(&state.pool, &target).await? {
                format!("{target} resumed")
            } else {
                format!("{target} was not paused")
            }
        }
        _ => return Err(AppError::new(StatusCode::NOT_FOUND, "no such action")),
    };
    tracing::info!(target: "rcjobs_console::audit", who = %who, action = %action, what = %target, reason, "console queue action");
    Ok(redirect_with("/queues", &msg))
}
