//! `rcjobs rooms …`: the rooms rcjobs manages. `add`/`remove` declare rooms in standalone mode
//! (sites without mod_rocketchat, or a course-wide room beside the plugin's), `list` shows
//! every room (the plugin's and the declared ones) with its last sync, `sync` asks for a sync
//! now.

use super::config::Settings;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use rcjobs_moodle::standalone::{self, Declaration};
use rcjobs_moodle::{MoodleDb, Prefix, Room};
use rcjobs_producer::{EnqueueOptions, Job, Kind};
use sqlx::{PgPool, Row};
use std::collections::HashMap;

/// Priority of a room's creation and of a sync asked for by an operator: ahead of fan-out work,
/// as the triggers enqueue room work (`rcjobs_enqueue_room`).
const ROOM_LIFECYCLE_PRIORITY: i16 = -20;
const ROOM_SYNC_PRIORITY: i16 = -10;

/// `rcjobs rooms …`.
#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// Declare a room for a course, an activity or every course of a category (standalone
    /// mode), and queue its creation. Idempotent.
    Add(AddArgs),
    /// Stop managing a declared room (its chat room is left as it is) or remove a category rule.
    Remove(TargetArgs),
    /// Every room (the plugin's activities and the declared rooms) with its last sync.
    List(ListArgs),
    /// Queue a sync of a room, or of every room of a course, now.
    Sync(TargetArgs),
    /// A room (or every room of a course): its chat room, last sync and recorded outcomes;
    /// with --live, Moodle's members against the chat server's.
    Show(ShowArgs),
}

/// `rcjobs rooms show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Which room(s).
    #[command(flatten)]
    pub target: ShowTarget,
    /// Compare the members Moodle wants with the chat room's, now (asks Moodle and the chat
    /// server of ROCKETCHAT_*; usernames mapped with the default rule, as without a
    /// handlers file).
    #[arg(long)]
    pub live: bool,
}

/// A course's rooms or one activity's.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ShowTarget {
    /// Every room of a course (its own and its activities').
    #[arg(long)]
    pub course: Option<i64>,
    /// An activity's room (course module id; a course room is -courseid).
    #[arg(long, allow_negative_numbers = true)]
    pub cmid: Option<i64>,
}

/// Which room(s): exactly one of course, activity or category.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A course (its own room).
    #[arg(long)]
    pub course: Option<i64>,
    /// An activity (course module id).
    #[arg(long)]
    pub cmid: Option<i64>,
    /// A category: every course in it (and in its subcategories unless --no-subcategories).
    #[arg(long)]
    pub category: Option<i64>,
}

/// `rcjobs rooms add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Which room.
    #[command(flatten)]
    pub target: Target,
    /// With --category: only the category's own courses.
    #[arg(long)]
    pub no_subcategories: bool,
    /// Display name (default: the activity's or the course's full name).
    #[arg(long)]
    pub name: Option<String>,
    /// Moderator role ids, comma separated (default: the plugin's defaultmoderatorroles, else
    /// every editingteacher-archetype role).
    #[arg(long)]
    pub moderator_roles: Option<String>,
    /// Member role ids, comma separated (default: the plugin's defaultuserroles, else every
    /// student-archetype role).
    #[arg(long)]
    pub member_roles: Option<String>,
}

/// `rcjobs rooms remove` / `sync`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Which room.
    #[command(flatten)]
    pub target: Target,
}

/// `rcjobs rooms list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this course's rooms.
    #[arg(long)]
    pub course: Option<i64>,
}

/// Runs `rcjobs rooms …`.
pub async fn run(s: &Settings, c: RoomsCommand) -> anyhow::Result<()> {
    let prefix = Prefix::new(&s.moodle_prefix)?;
    let moodle = super::moodle::pool(s).await?;
    match c {
        RoomsCommand::Add(a) => add(s, &moodle, &prefix, a).await,
        RoomsCommand::Remove(a) => remove(&moodle, &prefix, a.target).await,
        RoomsCommand::List(a) => list(s, moodle, &prefix, a).await,
        RoomsCommand::Sync(a) => sync(s, moodle, &prefix, a.target).await,
        RoomsCommand::Show(a) => show(s, moodle, &prefix, a).await,
    }
}

/// A role list as Moodle stores it ("3,4"): refused here, with the reason, rather than
/// silently ignored by the worker's lenient parser.
fn role_list(what: &str, v: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let ok = v
        .split(',')
        .all(|x| x.trim().parse::<u32>().is_ok_and(|n| n > 0));
    anyhow::ensure!(
        ok,
        "--{what} must be role ids separated by commas, like 3,4 (got {v:?})"
    );
    Ok(Some(v.replace(' ', "")))
}

async fn add(s: &Settings, moodle: &PgPool, prefix: &Prefix, a: AddArgs) -> anyhow::Result<()> {
    let moderator_roles = role_list("moderator-roles", a.moderator_roles)?;
    let user_roles = role_list("member-roles", a.member_roles)?;
    let keys: Vec<(i64, i64)> = if let Some(cat) = a.target.category {
        let keys = standalone::declare_category(
            moodle,
            prefix,
            cat,
            !a.no_subcategories,
            moderator_roles.as_deref(),
            user_roles.as_deref(),
        )
        .await?;
        println!(
            "category {cat}: every course{} gets a room; {} course room(s) declared",
            if a.no_subcategories {
                ""
            } else {
                " (subcategories included)"
            },
            keys.len()
        );
        keys.into_iter().map(|k| (k, -k)).collect()
    } else {
        let course_id = match (a.target.course, a.target.cmid) {
            (Some(c), _) => c,
            (None, Some(cm)) => standalone::course_of_module(moodle, prefix, cm).await?,
            (None, None) => anyhow::bail!("give --course, --cmid or --category"),
        };
        let d = Declaration {
            course_id,
            cmid: a.target.cmid,
            name: a.name,
            moderator_roles,
            user_roles,
        };
        let key = standalone::declare(moodle, prefix, &d).await?;
        println!("room {key} declared (course {course_id})");
        vec![(key, course_id)]
    };
    queue_creation(s, &keys).await
}

/// The SQL API queues the creation in the Moodle database; with the queue elsewhere it could
/// not, so the CLI enqueues it too (same dedup key: one job).
async fn queue_creation(s: &Settings, keys: &[(i64, i64)]) -> anyhow::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let queue = super::queue::connect(s).await?;
    let opts = EnqueueOptions {
        priority: ROOM_LIFECYCLE_PRIORITY,
        ..EnqueueOptions::default()
    };
    let mut tx = queue.begin().await?;
    for &(key, course) in keys {
        let job = Job::parse_kind(
            Kind::Restore,
            &serde_json::json!({"cmid": key, "courseid": course.abs()}),
        )?;
        rcjobs_queue::enqueue(&mut *tx, &job.to_new_job(&opts)).await?;
    }
    tx.commit().await?;
    println!("creation queued for {} room(s)", keys.len());
    Ok(())
}

async fn remove(moodle: &PgPool, prefix: &Prefix, t: Target) -> anyhow::Result<()> {
    if let Some(cat) = t.category {
        let gone = standalone::remove_rule(moodle, prefix, cat).await?;
        anyhow::ensure!(gone, "category {cat} has no rule");
        println!("category {cat}: rule removed (its courses' rooms stay declared)");
        return Ok(());
    }
    let key = t
        .cmid
        .or(t.course.map(|c| -c))
        .context("give --course or --cmid")?;
    let gone = standalone::undeclare(moodle, prefix, key).await?;
    anyhow::ensure!(gone, "room {key} is not a declared room");
    println!("room {key} no longer managed (the chat room is left as it is)");
    Ok(())
}

/// What the last sync left, from `rcjobs_sync.room` (absent before the first worker ran).
struct SyncRow {
    room_id: Option<String>,
    state: String,
    last_sync: Option<chrono::DateTime<chrono::Utc>>,
    last_result: Option<String>,
    members: Option<i32>,
}

async fn sync_rows(queue: &PgPool, keys: &[i64]) -> anyhow::Result<HashMap<i64, SyncRow>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('rcjobs_sync.room') IS NOT NULL")
        .fetch_one(queue)
        .await?;
    if !exists {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT cmid, room_id, state, last_sync_at, last_result, member_count
           FROM rcjobs_sync.room WHERE cmid = ANY($1)",
    )
    .bind(keys)
    .fetch_all(queue)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("cmid")?,
                SyncRow {
                    room_id: r.try_get("room_id")?,
                    state: r.try_get("state")?,
                    last_sync: r.try_get("last_sync_at")?,
                    last_result: r.try_get("last_result")?,
                    members: r.try_get("member_count")?,
                },
            ))
        })
        .collect()
}

async fn all_rooms(moodle: &MoodleDb, course: Option<i64>) -> anyhow::Result<Vec<Room>> {
    if let Some(c) = course {
        return Ok(moodle.rooms_of_course(c).await?);
    }
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = moodle.rooms_page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.cmid);
        out.extend(page);
    }
    Ok(out)
}

async fn list(s: &Settings, pool: PgPool, prefix: &Prefix, a: ListArgs) -> anyhow::Result<()> {
    let moodle = MoodleDb::new(pool, prefix.as_str())?;
    let rooms = all_rooms(&moodle, a.course).await?;
    let queue = super::queue::connect(s).await?;
    let keys: Vec<i64> = rooms.iter().map(|r| r.cmid).collect();
    let synced = sync_rows(&queue, &keys).await?;
    let mut t = super::queue::table(&[
        "ROOM",
        "KIND",
        "COURSE",
        "NAME",
        "CHAT ROOM",
        "STATE",
        "MEMBERS",
        "LAST SYNC",
        "RESULT",
    ]);
    for r in &rooms {
        let kind = match (r.instance_id, r.cmid < 0) {
            (0, true) => "course",
            (0, false) => "activity",
            _ => "plugin",
        };
        let sr = synced.get(&r.cmid);
        let chat = sr
            .and_then(|x| x.room_id.clone())
            .or_else(|| (!r.rocketchatid.is_empty()).then(|| r.rocketchatid.clone()))
            .unwrap_or_else(|| "-".into());
        t.add_row(vec![
            r.cmid.to_string(),
            kind.into(),
            r.course_shortname.clone(),
            r.name.clone(),
            chat,
            sr.map_or("not synced yet".into(), |x| x.state.clone()),
            sr.and_then(|x| x.members)
                .map_or("-".into(), |m| m.to_string()),
            sr.and_then(|x| x.last_sync)
                .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            sr.and_then(|x| x.last_result.clone())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
    println!("{} room(s)", rooms.len());
    Ok(())
}

async fn sync(s: &Settings, pool: PgPool, prefix: &Prefix, t: Target) -> anyhow::Result<()> {
    let moodle = MoodleDb::new(pool, prefix.as_str())?;
    let rooms: Vec<Room> = match (t.course, t.cmid, t.category) {
        (_, Some(cm), _) => moodle.room_by_cmid(cm).await?.into_iter().collect(),
        (Some(c), _, _) => moodle.rooms_of_course(c).await?,
        _ => anyhow::bail!("rooms sync takes --course or --cmid"),
    };
    anyhow::ensure!(!rooms.is_empty(), "no live room there");
    let queue = super::queue::connect(s).await?;
    let opts = EnqueueOptions {
        priority: ROOM_SYNC_PRIORITY,
        ..EnqueueOptions::default()
    };
    let mut tx = queue.begin().await?;
    for r in &rooms {
        let job = Job::parse_kind(
            Kind::SynchronizeGroup,
            &serde_json::json!({"cmid": r.cmid, "courseid": r.course_id}),
        )?;
        rcjobs_queue::enqueue(&mut *tx, &job.to_new_job(&opts)).await?;
    }
    tx.commit().await?;
    println!("sync queued for {} room(s)", rooms.len());
    Ok(())
}

/// The chat server of `ROCKETCHAT_*`, for the live member comparison.
async fn chat_backend(s: &Settings) -> anyhow::Result<rcjobs_rocketchat::RocketChatBackend> {
    let (Some(url), Some(user_id), Some(token)) = (
        &s.rocketchat_url,
        &s.rocketchat_user_id,
        &s.rocketchat_token,
    ) else {
        anyhow::bail!("--live needs ROCKETCHAT_URL, ROCKETCHAT_USER_ID and ROCKETCHAT_TOKEN");
    };
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
    rcjobs_rocketchat::RocketChatBackend::connect(client)
        .await
        .context("connecting to Rocket.Chat")
}

async fn show(s: &Settings, pool: PgPool, prefix: &Prefix, a: ShowArgs) -> anyhow::Result<()> {
    use rcjobs_chat::ChatBackend as _;
    let moodle = MoodleDb::new(pool, prefix.as_str())?;
    let rooms: Vec<Room> = match (a.target.course, a.target.cmid) {
        (_, Some(cm)) => moodle.room_by_cmid(cm).await?.into_iter().collect(),
        (Some(c), _) => moodle.rooms_of_course(c).await?,
        _ => anyhow::bail!("rooms show takes --course or --cmid"),
    };
    anyhow::ensure!(!rooms.is_empty(), "no live room there");
    let queue = super::queue::connect(s).await?;
    let keys: Vec<i64> = rooms.iter().map(|r| r.cmid).collect();
    let synced = sync_rows(&queue, &keys).await?;
    let mut outcomes: HashMap<i64, Vec<(String, String, String)>> = HashMap::new();
    let mut recorded: HashMap<i64, i64> = HashMap::new();
    if !synced.is_empty() {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT cmid, subject, code, detail FROM rcjobs_sync.outcome
              WHERE cmid = ANY($1) ORDER BY cmid, code, subject",
        )
        .bind(&keys)
        .fetch_all(&queue)
        .await?;
        for (cm, subject, code, detail) in rows {
            outcomes
                .entry(cm)
                .or_default()
                .push((subject, code, detail));
        }
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT cmid, count(*) FROM rcjobs_sync.member WHERE cmid = ANY($1) GROUP BY 1",
        )
        .bind(&keys)
        .fetch_all(&queue)
        .await?;
        recorded.extend(rows);
    }
    let backend = if a.live {
        Some(chat_backend(s).await?)
    } else {
        None
    };
    let mapping = rcjobs_worker::mapping::UsernameMapping::default();
    for r in &rooms {
        let kind = if r.cmid < 0 {
            "course room"
        } else {
            "activity room"
        };
        println!(
            "room {} ({kind}) of course {} ({}): {}",
            r.cmid, r.course_id, r.course_shortname, r.name
        );
        let sr = synced.get(&r.cmid);
        let chat_id = sr
            .and_then(|x| x.room_id.clone())
            .or_else(|| (!r.rocketchatid.is_empty()).then(|| r.rocketchatid.clone()));
        println!("  chat room      {}", chat_id.as_deref().unwrap_or("-"));
        match sr {
            None => println!("  last sync      never (no worker has synced it yet)"),
            Some(x) => {
                println!(
                    "  last sync      {} ({}, {})",
                    x.last_sync
                        .map_or("-".into(), |t| rcjobs_queue::display_time(&t)),
                    x.state,
                    x.last_result.as_deref().unwrap_or("-")
                );
                println!(
                    "  members        {} on the chat server at the last sync, {} managed by rcjobs",
                    x.members.map_or("-".into(), |m| m.to_string()),
                    recorded.get(&r.cmid).copied().unwrap_or(0)
                );
            }
        }
        match outcomes.get(&r.cmid) {
            None => println!("  outcomes       none recorded"),
            Some(list) => {
                println!("  outcomes       {} recorded by the last sync:", list.len());
                for (subject, code, detail) in list {
                    let who = if subject.is_empty() {
                        "the room"
                    } else {
                        subject
                    };
                    println!("    {code:<22} {who:<24} {detail}");
                }
            }
        }
        let Some(backend) = &backend else { continue };
        let Some(room_id) = &chat_id else {
            println!("  live           no chat room to compare with");
            continue;
        };
        let desired = moodle
            .desired_members(r, chrono::Utc::now().timestamp())
            .await?;
        let mut want: HashMap<String, bool> = HashMap::new();
        let mut unmappable = 0;
        for d in &desired {
            match mapping.map(&d.username) {
                Ok(u) => {
                    want.insert(u, d.moderator);
                }
                Err(_) => unmappable += 1,
            }
        }
        let have: HashMap<String, (bool, bool)> = match backend.list_members(room_id).await {
            Ok(list) => list
                .into_iter()
                .map(|m| (m.username.to_lowercase(), (m.moderator, m.owner)))
                .collect(),
            // one room the chat server cannot show must not hide the others
            Err(e) => {
                println!("  live           cannot list the chat room's members: {e}");
                continue;
            }
        };
        let mut missing: Vec<&String> = want.keys().filter(|u| !have.contains_key(*u)).collect();
        // the owner (the account that created the room: the bot) is never removed: say so
        let mut extra: Vec<String> = have
            .iter()
            .filter(|(u, _)| !want.contains_key(*u))
            .map(|(u, (_, owner))| {
                if *owner {
                    format!("{u} (owner)")
                } else {
                    u.clone()
                }
            })
            .collect();
        let mut standing: Vec<String> = want
            .iter()
            .filter_map(|(u, m)| match have.get(u) {
                Some((hm, owner)) if hm != m && !owner => Some(format!(
                    "{u} ({})",
                    if *m {
                        "should moderate"
                    } else {
                        "should not moderate"
                    }
                )),
                _ => None,
            })
            .collect();
        missing.sort();
        extra.sort();
        standing.sort();
        println!(
            "  live           Moodle wants {} member(s){}, the chat room has {}",
            want.len(),
            if unmappable > 0 {
                format!(" ({unmappable} username(s) not mappable)")
            } else {
                String::new()
            },
            have.len()
        );
        let join = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        println!(
            "    in Moodle only       {}",
            if missing.is_empty() {
                "-".into()
            } else {
                join(&missing)
            }
        );
        println!(
            "    on the chat only     {}",
            if extra.is_empty() {
                "-".into()
            } else {
                extra.join(", ")
            }
        );
        println!(
            "    moderator differs    {}",
            if standing.is_empty() {
                "-".into()
            } else {
                standing.join(", ")
            }
        );
    }
    Ok(())
}
