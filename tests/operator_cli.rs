//! Issue 16's verbs through the real binary, as an operator types them: pause a kind (shown
//! by `status`, `queue list`, `jobs list`), a bulk cancel on a payload filter that asks for
//! `--yes` first, run-now, reschedule, delete, resume. Checked in the database.
#![allow(clippy::unwrap_used)]

use rcjobs_testkit::TestDb;
use std::process::{Command, Stdio};

/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn rcjobs(db: &TestDb, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_rcjobs"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("USER", "carol")
        .env_remove("SUDO_USER")
        .env_remove("ROCKETCHAT_URL")
        .env_remove("RCJOBS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run the rcjobs binary");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    let o = rcjobs(db, args);
    assert!(o.ok, "rcjobs {args:?}: {}{}", o.stdout, o.stderr);
    o.stdout
}

async fn scalar<T>(db: &TestDb, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn pause_filter_bulk_and_single_job_verbs() {
    let db = TestDb::new().await;
    ok(&db, &["migrate"]);
    let id = |s: String| s.trim().parse::<i64>().unwrap();
    let a = id(ok(
        &db,
        &[
            "enqueue",
            "synchronize_group",
            "--payload",
            r#"{"cmid": 42, "courseid": 3}"#,
        ],
    ));
    let b = id(ok(
        &db,
        &[
            "enqueue",
            "synchronize_group",
            "--payload",
            r#"{"cmid": 43, "courseid": 3}"#,
        ],
    ));

    let out = ok(
        &db,
        &[
            "queue",
            "pause",
            "--kind",
            "synchronize_group",
            "--reason",
            "chat upgrade",
        ],
    );
    assert!(out.contains("paused"), "{out}");
    let by: String = scalar(&db, "SELECT paused_by FROM rcjobs.pause").await;
    assert_eq!(by, "carol (cli)");
    assert!(ok(&db, &["status"]).contains("paused:                   kind synchronize_group"));
    let list = ok(&db, &["queue", "list"]);
    assert!(list.contains("chat upgrade"), "{list}");
    let jobs = ok(&db, &["jobs", "list", "--payload", "cmid=42"]);
    assert!(jobs.contains("ready (paused)"), "{jobs}");
    assert_eq!(jobs.lines().count(), 2, "header and one job: {jobs}");

    // a bulk action without --yes and without a terminal asks for --yes and does nothing
    let no = rcjobs(&db, &["jobs", "cancel", "--payload", "cmid=42"]);
    assert!(!no.ok);
    assert!(no.stdout.contains("1 job(s) match"), "{}", no.stdout);
    assert!(no.stderr.contains("--yes"), "{}", no.stderr);
    let pending: i64 = scalar(&db, "SELECT count(*) FROM rcjobs.job").await;
    assert_eq!(pending, 2);
    let refused = rcjobs(&db, &["jobs", "cancel"]);
    assert!(!refused.ok && refused.stderr.contains("give a job id or a filter"));
    let done = ok(&db, &["jobs", "cancel", "--payload", "cmid=42", "--yes"]);
    assert!(done.contains("1 job(s) done"), "{done}");
    let cancelled: String = scalar(
        &db,
        &format!("SELECT state FROM rcjobs.job_history WHERE id = {a}"),
    )
    .await;
    assert_eq!(cancelled, "cancelled");

    ok(
        &db,
        &["jobs", "reschedule", &b.to_string(), "--run-at", "+3h"],
    );
    let later: bool = scalar(
        &db,
        &format!("SELECT run_at > now() + interval '2 hours' FROM rcjobs.job WHERE id = {b}"),
    )
    .await;
    assert!(later);
    ok(&db, &["jobs", "run-now", &b.to_string()]);
    let due: bool = scalar(
        &db,
        &format!("SELECT run_at <= now() FROM rcjobs.job WHERE id = {b}"),
    )
    .await;
    assert!(due);
    let show = ok(&db, &["jobs", "show", &b.to_string()]);
    assert!(
        show.contains("lane          room:43 (this job is its head"),
        "{show}"
    );

    ok(&db, &["queue", "resume", "--kind", "synchronize_group"]);
    let pauses: i64 = scalar(&db, "SELECT count(*) FROM rcjobs.pause").await;
    assert_eq!(pauses, 0);
    ok(&db, &["jobs", "delete", &b.to_string()]);
    let left: i64 = scalar(&db, "SELECT count(*) FROM rcjobs.job").await;
    assert_eq!(left, 0);
    let again = rcjobs(&db, &["jobs", "delete", &b.to_string()]);
    assert!(
        !again.ok && again.stderr.contains("not found"),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn rooms_show_tells_the_last_sync_and_its_outcomes() {
    let db = TestDb::new().await;
    let moodle = TestDb::new().await;
    let with_moodle = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rcjobs"))
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("MOODLE_DATABASE_URL", &moodle.url)
            .env("RUST_LOG", "warn")
            .env_remove("ROCKETCHAT_URL")
            .env_remove("RCJOBS_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "rcjobs {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    with_moodle(&["migrate"]);
    with_moodle(&["moodle", "schema"]);
    with_moodle(&["moodle", "fixture", "--users", "20", "--courses", "1"]);
    let cmid: i64 = sqlx::query_scalar("SELECT min(id) FROM mdl_course_modules")
        .fetch_one(&moodle.pool)
        .await
        .unwrap();
    let never = with_moodle(&["rooms", "show", "--cmid", &cmid.to_string()]);
    assert!(never.contains("last sync      never"), "{never}");
    sqlx::query(
        "INSERT INTO rcjobs_sync.room (cmid, courseid, room_id, room_name, state, last_sync_at, last_result, member_count)
         VALUES ($1, 2, 'ROOM1', 'x', 'active', now(), 'partial', 19)",
    )
    .bind(cmid)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rcjobs_sync.outcome (cmid, subject, userid, code, detail)
         VALUES ($1, 'student7', 7, 'user_missing', 'no chat account')",
    )
    .bind(cmid)
    .execute(&db.pool)
    .await
    .unwrap();
    let shown = with_moodle(&["rooms", "show", "--cmid", &cmid.to_string()]);
    assert!(shown.contains("chat room      ROOM1"), "{shown}");
    assert!(shown.contains("(active, partial)"), "{shown}");
    assert!(shown.contains("19 on the chat server"), "{shown}");
    assert!(
        shown.contains("user_missing") && shown.contains("student7"),
        "{shown}"
    );
    let no_chat = Command::new(env!("CARGO_BIN_EXE_rcjobs"))
        .args(["rooms", "show", "--cmid", &cmid.to_string(), "--live"])
        .env("DATABASE_URL", &db.url)
        .env("MOODLE_DATABASE_URL", &moodle.url)
        .env_remove("ROCKETCHAT_URL")
        .env_remove("RCJOBS_CONFIG")
        .output()
        .unwrap();
    assert!(!no_chat.status.success());
    assert!(String::from_utf8_lossy(&no_chat.stderr).contains("--live needs ROCKETCHAT_URL"));
}

#[tokio::test]
async fn rooms_show_live_compares_moodle_with_the_chat_room() {
    let db = TestDb::new().await;
    let moodle = TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chat = format!("http://127.0.0.1:{port}");
    let cmd = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rcjobs"));
        c.args(args)
            .env("DATABASE_URL", &db.url)
            .env("MOODLE_DATABASE_URL", &moodle.url)
            .env("ROCKETCHAT_URL", &chat)
            .env("ROCKETCHAT_USER_ID", "livebot01")
            .env("ROCKETCHAT_TOKEN", "live-bot-token-0123456789")
            .env("RUST_LOG", "warn")
            .env_remove("RCJOBS_CONFIG")
            .stdin(Stdio::null());
        c
    };
    let run = |args: &[&str]| {
        let out = cmd(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "rcjobs {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    run(&["migrate"]);
    run(&["moodle", "schema"]);
    run(&["moodle", "fixture", "--users", "20", "--courses", "1"]);
    // the fixture's room ids name rooms the plugin made on a server we do not have: let the
    // worker create them
    sqlx::query("UPDATE mdl_rocketchat SET rocketchatid = ''")
        .execute(&moodle.pool)
        .await
        .unwrap();
    let (cmid, course): (i64, i64) = sqlx::query_as(
        "SELECT cm.id, cm.course FROM mdl_course_modules cm JOIN mdl_modules m ON m.id = cm.module
          WHERE m.name = 'rocketchat' ORDER BY cm.id LIMIT 1",
    )
    .fetch_one(&moodle.pool)
    .await
    .unwrap();
    let _sim = Killed(
        cmd(&[
            "sim",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--bot-user-id",
            "livebot01",
            "--bot-token",
            "live-bot-token-0123456789",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let worker = Killed(
        cmd(&["worker", "--create-accounts"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    run(&[
        "enqueue",
        "restore",
        "--payload",
        &format!(r#"{{"cmid": {cmid}, "courseid": {course}}}"#),
    ]);
    let synced = rcjobs_testkit::wait_for(
        "the room's first sync",
        std::time::Duration::from_secs(60),
        || async {
            let r: Option<String> = sqlx::query_scalar(
                "SELECT last_result FROM rcjobs_sync.room WHERE cmid = $1 AND room_id IS NOT NULL",
            )
            .bind(cmid)
            .fetch_optional(&db.pool)
            .await
            .ok()
            .flatten();
            r.filter(|r| r == "converged")
        },
    )
    .await;
    assert_eq!(synced, "converged");
    drop(worker);

    let same = run(&["rooms", "show", "--cmid", &cmid.to_string(), "--live"]);
    assert!(same.contains("in Moodle only       -"), "{same}");
    // a member Moodle no longer wants (suspended) is still in the chat room: the live diff says so
    let member: String = sqlx::query_scalar(
        "SELECT username FROM rcjobs_sync.member WHERE cmid = $1 AND NOT moderator ORDER BY username LIMIT 1",
    )
    .bind(cmid)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE mdl_user SET suspended = 1 WHERE lower(username) = $1")
        .bind(&member)
        .execute(&moodle.pool)
        .await
        .unwrap();
    let diff = run(&["rooms", "show", "--cmid", &cmid.to_string(), "--live"]);
    let line = diff
        .lines()
        .find(|l| l.contains("on the chat only"))
        .unwrap_or_default();
    assert!(line.contains(&member), "{diff}");
}
