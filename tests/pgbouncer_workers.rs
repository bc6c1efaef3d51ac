//! Workers through PgBouncer (Debian's package, installed with apt when missing) in
//! transaction pooling mode: migrations go direct, every queue statement of two
//! `rcjobs worker` processes (claims, acknowledgements, heartbeats, follow-up enqueues, the
//! sync state, Moodle reads) and the test's own enqueues go through PgBouncer, and a few
//! thousand jobs run to completion with chat equal to Moodle at the end. Only each worker's
//! LISTEN connection goes direct (`DATABASE_LISTEN_URL`).
//!
//! The server is the shared test server (nothing here restarts it); PgBouncer runs on a free
//! loopback port with a small server pool, so many client connections really share few
//! server connections. Bounded: about 1-2 minutes (a 240 s drain deadline).
#![allow(clippy::unwrap_used)]

mod support;

use rcjobs_moodle::fixture::FixtureSpec;
use rcjobs_testkit::TestDb;
use std::time::{Duration, Instant};
use support::pgbouncer::PgBouncer;
use support::procs::{WorkerProc, WorkerSpec};
use support::site;

const JOBS: i64 = 3000;

fn server_port() -> u16 {
    let url = rcjobs_testkit::server_url();
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(5432)
}

/// Whether this PgBouncer tracks protocol-level prepared statements (`max_prepared_statements`,
/// 1.21+): sqlx 0.9 names every statement (`sqlx_s_N`), with or without its statement cache.
fn supports_prepared_statements(version: &str) -> bool {
    let v: Vec<u32> = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .split('.')
        .filter_map(|x| x.parse().ok())
        .collect();
    (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
    ) >= (1, 21)
}

// sqlx names its prepared statements (`sqlx_s_N`); PgBouncer carries them through transaction
// pooling from 1.21 on (`max_prepared_statements`). Debian 12 ships 1.18, so
// `scripts/ensure-pgbouncer.sh` builds Debian's newer source package when needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_run_through_pgbouncer_transaction_pooling() {
    let db = TestDb::new().await;
    // Migrations and the fixture: direct (migrations take a session advisory lock).
    let direct = site::test_pool(&db.url, 4).await;
    site::migrate_all(&direct).await;
    site::install_job_audit(&direct).await;
    let spec = FixtureSpec {
        enrolments_per_user: 2,
        ..FixtureSpec::new(500, 20, 11)
    };
    let site = site::create(&direct, &spec).await;
    let sim = site::start_sim(&site, |_| {}).await;

    let version = support::pgbouncer::version(&support::pgbouncer::ensure_installed());
    assert!(
        supports_prepared_statements(&version),
        "{version} cannot carry sqlx's named prepared statements in transaction pooling (needs 1.21+)"
    );
    let bouncer = tokio::task::spawn_blocking(|| {
        PgBouncer::start(server_port(), 6, "max_prepared_statements = 200")
    })
    .await
    .unwrap();
    let pooled_url = bouncer.url(&db.name);
    println!("pgbouncer: {version} on port {}", bouncer.port);

    let logs = support::log_dir("pgbouncer");
    let mut wspec = WorkerSpec::for_sim(&pooled_url, &sim, logs.clone());
    wspec.concurrency = 8;
    // LISTEN needs a session of its own: that one connection goes direct.
    wspec
        .env
        .push(("DATABASE_LISTEN_URL".to_owned(), db.url.clone()));
    // The workers find their sync schema missing and create it themselves: its migrator's
    // session lock must go over the direct URL, never through the pooler.
    sqlx::query("DROP SCHEMA rcjobs_sync CASCADE")
        .execute(&direct)
        .await
        .unwrap();
    let mut workers: Vec<WorkerProc> = (0..2)
        .map(|i| WorkerProc::spawn(&wspec, &format!("w{i}")))
        .collect();
    for w in &mut workers {
        w.wait_registered(&direct, Duration::from_secs(60)).await;
    }

    // The producer side through PgBouncer too: a first sync of every room, then jobs in
    // bulk through the SQL API, as a non-Rust producer would.
    let pooled = site::test_pool(&pooled_url, 4).await;
    let reconcile =
        rcjobs_producer::Job::parse("reconcile_all", &serde_json::json!({"period_secs": 0}))
            .unwrap();
    rcjobs_producer::enqueue(&pooled, &reconcile).await.unwrap();
    let (first, last) = (site.fixture.first_user_id, site.fixture.last_user_id);
    let courses = site.fixture.course_ids.clone();
    let t = Instant::now();
    let mut made = 0i64;
    while made < JOBS {
        let n = 250.min(JOBS - made);
        let users: Vec<i64> = (0..n)
            .map(|i| first + (made + i) % (last - first + 1))
            .collect();
        let cs: Vec<i64> = (0..n)
            .map(|i| courses[((made + i) as usize) % courses.len()])
            .collect();
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT rcjobs.enqueue(CASE WHEN u % 3 = 0 THEN 'synchronize_user_everywhere' ELSE 'enrolment' END,
                                   CASE WHEN u % 3 = 0 THEN jsonb_build_object('userid', u)
                                        ELSE jsonb_build_object('courseid', c, 'userid', u) END)
               FROM unnest($1::bigint[], $2::bigint[]) AS t(u, c)",
        )
        .bind(&users)
        .bind(&cs)
        .fetch_all(&pooled)
        .await
        .unwrap();
        made += ids.len() as i64;
    }
    let drained = support::wait_drained(&direct, Duration::from_secs(240)).await;
    let took = t.elapsed();

    let f = site::fates(&direct).await;
    let m = support::compare::compare(
        &site.moodle,
        &rcjobs_worker::SyncState::new(direct.clone()),
        &sim,
        "rcjobs.bot",
    )
    .await;
    println!(
        "pgbouncer: {} jobs ({} enqueued by the test) finished in {:.1} s through PgBouncer \
         (transaction pooling, 6 server connections, 2 workers x 8); {} completed, {} superseded, \
         {} dead; chat vs Moodle mismatches {}",
        f.enqueued,
        made,
        took.as_secs_f64(),
        f.completed,
        f.superseded,
        f.dead.len(),
        m.total()
    );
    let _ = drained;
    // No session advisory lock was left on a pooled server connection (a migrator's lock and
    // unlock through transaction pooling can land on different server connections).
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&direct)
    .await
    .unwrap();
    assert_eq!(leaked, 0, "advisory locks left behind through PgBouncer");
    // Transaction pooling really happened: server connections were handed from client to
    // client many times, and the named statements were carried by PgBouncer.
    let st = bouncer.stats(&db.name);
    let stat = |k: &str| st.get(k).copied().unwrap_or(0);
    println!("pgbouncer: SHOW STATS for {}: {st:?}", db.name);
    assert!(
        stat("total_server_assignment_count") > 100,
        "server connections were not shared between clients: {st:?}"
    );
    assert!(stat("total_xact_count") > JOBS / 100, "{st:?}");
    assert!(
        stat("total_client_parse_count") > 0 && stat("total_bind_count") > 0,
        "no prepared statements went through PgBouncer: {st:?}"
    );
    for w in &mut workers {
        let errors: Vec<String> = std::fs::read_to_string(&w.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("prepared statement") || l.contains("ERROR"))
            .take(5)
            .map(str::to_owned)
            .collect();
        assert!(
            errors.is_empty(),
            "worker {} logged errors through PgBouncer: {errors:#?}",
            w.name
        );
    }
    assert_eq!(f.lost, 0);
    assert_eq!(f.unfinished, 0);
    assert!(f.dead.is_empty(), "dead: {:?}", f.dead);
    assert_eq!(f.completed + f.superseded + f.scheduled, f.enqueued);
    assert_eq!(m.total(), 0, "chat differs from Moodle: {m:?}");
    for w in &mut workers {
        assert_eq!(
            w.sigterm(Duration::from_secs(40)).map(|s| s.success()),
            Some(true),
            "{}",
            w.log_tail()
        );
    }
    let _ = std::fs::remove_dir_all(&logs);
}
