//! Issue 14, "first run that works, nothing destroyed by default", through the real binary:
//!
//! - a database rcjobs did not create is never dropped by `rcjobs demo` without
//!   `--replace-database`, and with it the demo runs and marks the database as its own;
//! - `rcjobs moodle fixture` / `mass-enrol` refuse a Moodle database that is not marked
//!   synthetic, unless `--allow-real-moodle`;
//! - a wrong port, a full server or a `mysql://` URL fail within seconds with the reason;
//! - on a private cluster with a stock `max_connections = 100` the default demo (4 workers x
//!   16) fits, peaking at no more than 50 connections, and a server with too few free
//!   connections is refused before any work, naming the numbers.
//!
//! Shared server: the test server (`RCJOBS_TEST_PG`); the private cluster is started on a
//! free port and removed at the end. Bounded: about one to two minutes.
#![allow(clippy::unwrap_used)]

mod support;

use rcjobs_testkit::TestDb;
use sqlx::{Connection, PgConnection};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::pg_cluster::{free_port, PgCluster};

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `rcjobs ARGS` with exactly the given database variables.
fn rcjobs(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rcjobs"));
    c.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("MOODLE_DATABASE_URL")
        .env_remove("ROCKETCHAT_URL")
        .env_remove("RCJOBS_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    let t = Instant::now();
    let out = c.output().expect("run the rcjobs binary");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t.elapsed(),
    }
}

/// A small demo (the pools stay at the defaults unless `extra` changes them).
fn demo_args<'a>(db: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "demo",
        "--users",
        "300",
        "--courses",
        "6",
        "--enrolments-per-user",
        "2",
        "--enrol",
        "150",
        "--latency-ms",
        "1",
        "--database",
        db,
        "--deadline-secs",
        "180",
        "--drain-secs",
        "60",
        "--json",
    ];
    v.extend_from_slice(extra);
    v
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rcjobs_fr_{tag}_{}_{nanos}", std::process::id())
}

fn server_db_url(db: &str) -> String {
    format!(
        "{}/{db}",
        rcjobs_testkit::server_url().trim_end_matches('/')
    )
}

async fn admin() -> PgConnection {
    PgConnection::connect(&server_db_url("postgres"))
        .await
        .unwrap()
}

async fn db_comment(admin: &mut PgConnection, name: &str) -> Option<Option<String>> {
    sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_optional(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_never_drops_a_database_it_did_not_create() {
    let name = unique("foreign");
    let mut adm = admin().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut adm)
        .await
        .unwrap();
    {
        let mut c = PgConnection::connect(&server_db_url(&name)).await.unwrap();
        sqlx::raw_sql("CREATE TABLE precious (x int); INSERT INTO precious VALUES (1)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let url = server_db_url("postgres");
    let env = [("DATABASE_URL", url.as_str())];

    // 1. Without the flag: refused at once, nothing touched.
    let o = rcjobs(&demo_args(&name, &[]), &env);
    assert!(!o.ok, "demo reused a foreign database: {}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("database {name} already exists"))
            && o.stderr.contains("not created by rcjobs")
            && o.stderr.contains("--replace-database"),
        "{}",
        o.stderr
    );
    assert!(o.took < Duration::from_secs(20), "took {:?}", o.took);
    let mut c = PgConnection::connect(&server_db_url(&name)).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM precious")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 1, "the foreign database was changed");
    c.close().await.unwrap();
    // `--drop-database` does not make it droppable either.
    let o = rcjobs(&demo_args(&name, &["--drop-database"]), &env);
    assert!(
        !o.ok && o.stderr.contains("not created by rcjobs"),
        "{}",
        o.stderr
    );
    assert!(db_comment(&mut adm, &name).await.is_some(), "dropped");

    // 2. With the flag: replaced, the demo runs, the database is marked as rcjobs's.
    let o = rcjobs(&demo_args(&name, &["--replace-database"]), &env);
    assert!(o.ok, "demo --replace-database failed: {}", o.stderr);
    let comment = db_comment(&mut adm, &name)
        .await
        .flatten()
        .unwrap_or_default();
    assert!(
        comment.starts_with("created by rcjobs demo"),
        "comment {comment:?}"
    );

    // 3. Its own database: re-running needs no flag, and --drop-database removes it.
    let o = rcjobs(&demo_args(&name, &["--drop-database"]), &env);
    assert!(
        o.ok,
        "re-run on the demo's own database failed: {}",
        o.stderr
    );
    assert!(db_comment(&mut adm, &name).await.is_none(), "not dropped");
    let _ = adm.close().await;
}

#[test]
fn system_database_names_are_refused() {
    let url = server_db_url("postgres");
    let o = rcjobs(
        &demo_args("postgres", &["--replace-database"]),
        &[("DATABASE_URL", url.as_str())],
    );
    assert!(
        !o.ok && o.stderr.contains("system database"),
        "{}",
        o.stderr
    );
}

#[test]
fn wrong_port_is_reported_at_once_with_the_os_reason() {
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    for args in [demo_args("rcjobs_fr_unused", &[]), vec!["moodle", "schema"]] {
        let o = rcjobs(&args, &[("DATABASE_URL", url.as_str())]);
        assert!(!o.ok, "{args:?} succeeded on a closed port");
        assert!(
            o.stderr.contains("Connection refused") && o.stderr.contains(&port.to_string()),
            "{args:?}: {}",
            o.stderr
        );
        assert!(
            o.took < Duration::from_secs(12),
            "{args:?} took {:?}",
            o.took
        );
        assert_eq!(
            o.stderr.matches("Connection refused").count(),
            1,
            "the reason is repeated: {}",
            o.stderr
        );
    }
}

#[test]
fn non_postgres_urls_are_refused() {
    let o = rcjobs(
        &["status"],
        &[("DATABASE_URL", "mysql://root:secret@127.0.0.1:3306/moodle")],
    );
    assert!(!o.ok);
    assert!(
        o.stderr.contains("\"mysql\"") && o.stderr.contains("PostgreSQL"),
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("secret"),
        "password printed: {}",
        o.stderr
    );
    assert!(o.took < Duration::from_secs(5), "took {:?}", o.took);
    let pg = server_db_url("postgres");
    let o = rcjobs(
        &["moodle", "schema"],
        &[
            ("DATABASE_URL", pg.as_str()),
            ("MOODLE_DATABASE_URL", "mysql://moodle@db/moodle"),
        ],
    );
    assert!(
        !o.ok && o.stderr.contains("MOODLE_DATABASE_URL"),
        "{}",
        o.stderr
    );
}

#[test]
fn the_built_in_default_url_is_announced() {
    // A command that stops right after loading the settings (it must not touch whatever
    // database the default points at), yet says which URL it fell back to.
    let o = rcjobs(&["demo", "--workers", "0"], &[]);
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains("DATABASE_URL is not set: using the built-in default postgres://"),
        "{}",
        o.stderr
    );
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_commands_refuse_a_moodle_that_is_not_marked_synthetic() {
    let fixture = [
        "moodle",
        "fixture",
        "--users",
        "40",
        "--courses",
        "2",
        "--enrolments-per-user",
        "1",
        "--empty-courses",
        "1",
    ];

    // A schema made by `rcjobs moodle schema` in an empty database is synthetic.
    let ours = TestDb::new().await;
    let env = [("DATABASE_URL", ours.url.as_str())];
    let o = rcjobs(&["moodle", "schema"], &env);
    assert!(o.ok, "{}", o.stderr);
    for _ in 0..2 {
        let o = rcjobs(&fixture, &env);
        assert!(o.ok, "fixture on our own schema: {}", o.stderr);
    }
    let course: i64 = sqlx::query_scalar("SELECT max(id) FROM mdl_course")
        .fetch_one(&ours.pool)
        .await
        .unwrap();
    let course = course.to_string();
    let o = rcjobs(
        &[
            "moodle",
            "mass-enrol",
            "--course",
            &course,
            "--first-user",
            "3",
            "--last-user",
            "10",
        ],
        &env,
    );
    assert!(o.ok, "mass-enrol on our own site: {}", o.stderr);

    // Users but no mark (as a Moodle restored into Postgres would look): refused.
    let real = TestDb::new().await;
    let prefix = rcjobs_moodle::Prefix::new("mdl_").unwrap();
    rcjobs_moodle::schema::create(&real.pool, &prefix)
        .await
        .unwrap();
    rcjobs_moodle::fixture::generate(
        &real.pool,
        &prefix,
        &rcjobs_moodle::fixture::FixtureSpec::new(30, 2, 3),
    )
    .await
    .unwrap();
    let users_before = count(&real.pool, "SELECT count(*) FROM mdl_user").await;
    let enrol_before = count(&real.pool, "SELECT count(*) FROM mdl_user_enrolments").await;
    let env = [("MOODLE_DATABASE_URL", real.url.as_str())];
    let o = rcjobs(&fixture, &env);
    assert!(!o.ok, "fixture wrote into an unmarked site");
    assert!(
        o.stderr.contains("looks like a real site")
            && o.stderr.contains("--allow-real-moodle")
            && o.stderr.contains("rcjobs_synthetic_site"),
        "{}",
        o.stderr
    );
    let o = rcjobs(
        &[
            "moodle",
            "mass-enrol",
            "--course",
            "1",
            "--first-user",
            "1",
            "--last-user",
            "30",
        ],
        &env,
    );
    assert!(
        !o.ok && o.stderr.contains("looks like a real site"),
        "{}",
        o.stderr
    );
    assert_eq!(
        count(&real.pool, "SELECT count(*) FROM mdl_user").await,
        users_before
    );
    assert_eq!(
        count(&real.pool, "SELECT count(*) FROM mdl_user_enrolments").await,
        enrol_before
    );
    // Told explicitly: it writes, and does not mark the site synthetic.
    let mut forced = fixture.to_vec();
    forced.push("--allow-real-moodle");
    let o = rcjobs(&forced, &env);
    assert!(o.ok, "{}", o.stderr);
    assert!(count(&real.pool, "SELECT count(*) FROM mdl_user").await > users_before);
    assert_eq!(
        count(
            &real.pool,
            "SELECT count(*) FROM mdl_config WHERE name = 'rcjobs_synthetic_site'"
        )
        .await,
        0
    );

    // Moodle tables rcjobs never creates (a real install has hundreds): refused even empty.
    let other = TestDb::new().await;
    rcjobs_moodle::schema::create(&other.pool, &prefix)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE mdl_forum (id bigserial primary key)")
        .execute(&other.pool)
        .await
        .unwrap();
    let o = rcjobs(&fixture, &[("MOODLE_DATABASE_URL", other.url.as_str())]);
    assert!(
        !o.ok && o.stderr.contains("mdl_forum"),
        "fixture on a site with mdl_forum: {}",
        o.stderr
    );
}

/// Opens connections to `url` until the server refuses one (or `limit` are open).
async fn hold(url: &str, limit: usize) -> (Vec<PgConnection>, Option<String>) {
    let mut held = Vec::new();
    while held.len() < limit {
        match PgConnection::connect(url).await {
            Ok(c) => held.push(c),
            Err(e) => return (held, Some(e.to_string())),
        }
    }
    (held, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_fits_a_stock_max_connections_of_100() {
    let cluster = PgCluster::start();
    let url = cluster.url("postgres");
    {
        let mut c = PgConnection::connect(&url).await.unwrap();
        sqlx::query("ALTER SYSTEM SET max_connections = 100")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    cluster.restart("fast");
    let env = [("DATABASE_URL", url.as_str())];

    // 1. Someone else holds 75: the default 4 workers cannot fit; refused before any work.
    let (held, err) = hold(&url, 75).await;
    assert!(err.is_none(), "could not open 75 connections: {err:?}");
    let o = rcjobs(&demo_args("rcjobs_fr_budget", &[]), &env);
    assert!(!o.ok, "demo ran with 75 of 100 connections taken");
    assert!(
        o.stderr.contains("not enough Postgres connections")
            && o.stderr.contains("max_connections 100")
            && o.stderr.contains("used by other clients"),
        "{}",
        o.stderr
    );
    assert!(o.took < Duration::from_secs(15), "took {:?}", o.took);

    // 2. The server full: "too many clients" from the server, at once (not a pool timeout).
    let (more, err) = hold(&url, 200).await;
    assert!(err.is_some(), "the server never refused a connection");
    let o = rcjobs(&demo_args("rcjobs_fr_budget", &[]), &env);
    assert!(!o.ok);
    assert!(
        o.stderr.contains("too many clients") && !o.stderr.contains("timed out"),
        "{}",
        o.stderr
    );
    assert!(o.took < Duration::from_secs(12), "took {:?}", o.took);
    drop(more);
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. A free server: the default 4 x 16 demo runs, within 50 connections.
    let poller = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let peak = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = {
        let (peak, stop, poller) = (peak.clone(), stop.clone(), poller.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
                )
                .fetch_one(&poller)
                .await
                {
                    peak.fetch_max(n - 1, Ordering::Relaxed); // not the poller itself
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let run_url = url.clone();
    let o = tokio::task::spawn_blocking(move || {
        rcjobs(
            &demo_args("rcjobs_fr_stock", &[]),
            &[("DATABASE_URL", run_url.as_str())],
        )
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    watch.await.unwrap();
    poller.close().await;
    assert!(
        o.ok,
        "demo failed on max_connections = 100: {}\n{}",
        o.stderr,
        cluster.log_tail()
    );
    let summary: serde_json::Value = o
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap();
    assert_eq!(summary["workers"], 4, "{summary}");
    assert_eq!(summary["concurrency"], 16, "{summary}");
    assert_eq!(
        summary["final_mismatches"]["missing_members"], 0,
        "{summary}"
    );
    let planned = summary["max_connections_used"].as_u64().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("first-run figures: planned {planned} connections, peak seen {peak}");
    assert!(planned <= 50, "planned {planned}");
    // The admin probes (one at a time) may briefly add one to the pools' total.
    assert!(peak <= 51, "peak {peak} connections");
}
