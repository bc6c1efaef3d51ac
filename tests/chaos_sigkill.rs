//! A SIGKILLed `rcjobs worker` process's leased jobs are run again by another worker within
//! lease TTL + sweep interval, with the worker's DEFAULT settings (10 s + 2 s; target ≤ 15 s).
//!
//! Real processes from the built binary, the shared test server (nothing here restarts it), the
//! simulator in-process with a 3 s latency per call so that room syncs are still running
//! when the worker dies. Bounded: about 30-40 s (setup, ≤ 20 s recovery wait, drain).
#![allow(clippy::unwrap_used)]

mod support;

use rcjobs_moodle::fixture::FixtureSpec;
use rcjobs_testkit::TestDb;
use std::time::{Duration, Instant};
use support::procs::{WorkerProc, WorkerSpec};
use support::site;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_jobs_rerun_within_lease_ttl_plus_sweep() {
    let db = TestDb::new().await;
    let pool = site::test_pool(&db.url, 4).await;
    site::migrate_all(&pool).await;
    site::install_job_audit(&pool).await;
    let spec = FixtureSpec {
        enrolments_per_user: 2,
        ..FixtureSpec::new(200, 8, 7)
    };
    let site = site::create(&pool, &spec).await;
    let sim = site::start_sim(&site, |c| c.latency = Duration::from_millis(3000)).await;
    let logs = support::log_dir("chaos-sigkill");
    let mut wspec = WorkerSpec::for_sim(&db.url, &sim, logs.clone());

    // A alone takes the room syncs; B starts once A holds leases, and takes them over.
    wspec.concurrency = 4;
    let mut a = WorkerProc::spawn(&wspec, "a");
    let a_id = a.wait_registered(&pool, Duration::from_secs(60)).await;
    site.sync_everything().await;
    let running_on_a = || async {
        let rows: Vec<(i64, i32)> = sqlx::query_as(
            "SELECT id, token FROM rcjobs.job WHERE worker_id = $1 AND state = 'running' AND kind = 'synchronize_group'",
        )
        .bind(a_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        rows
    };
    let t = Instant::now();
    while running_on_a().await.len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "worker A never held two running syncs:\n{}",
            a.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wspec.concurrency = 32;
    let mut b = WorkerProc::spawn(&wspec, "b");
    let b_id = b.wait_registered(&pool, Duration::from_secs(60)).await;
    let leased = running_on_a().await;
    assert!(
        !leased.is_empty(),
        "worker A finished its syncs before B was up; raise the simulator latency"
    );

    a.sigkill();
    let killed_at = Instant::now();
    let ids: Vec<i64> = leased.iter().map(|l| l.0).collect();
    let tokens: Vec<i32> = leased.iter().map(|l| l.1).collect();
    // "Re-run" = claimed again (token moved on) or finished.
    let recovered = loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM unnest($1::bigint[], $2::int[]) AS l(id, token)
              WHERE EXISTS (SELECT 1 FROM rcjobs.job j WHERE j.id = l.id AND j.token = l.token)",
        )
        .bind(&ids)
        .bind(&tokens)
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting == 0 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "{waiting} of {} leased jobs not re-run 20 s after SIGKILL:\n{}",
            ids.len(),
            b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_b: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM rcjobs.job WHERE id = ANY($1) AND worker_id = $2)
              + (SELECT count(*) FROM rcjobs.job_history WHERE id = ANY($1) AND worker_id = $2)",
    )
    .bind(&ids)
    .bind(b_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    println!(
        "chaos-sigkill: {} leased jobs of the killed worker re-run {:.2} s after SIGKILL \
         (default lease TTL 10 s + sweep 2 s; {by_b} taken over by worker B)",
        ids.len(),
        recovered.as_secs_f64()
    );
    assert!(
        recovered <= Duration::from_secs(15),
        "re-run took {recovered:?} (target ≤ 15 s)"
    );

    // And the run still converges: everything finishes, chat equals Moodle.
    sim.set_latency(Duration::ZERO);
    support::wait_drained(&pool, Duration::from_secs(60)).await;
    let m = support::compare::compare(
        &site.moodle,
        &rcjobs_worker::SyncState::new(pool.clone()),
        &sim,
        "rcjobs.bot",
    )
    .await;
    assert_eq!(m.total(), 0, "chat differs from Moodle: {m:?}");
    let f = site::fates(&pool).await;
    assert_eq!(f.lost, 0);
    assert!(f.dead.is_empty(), "dead jobs: {:?}", f.dead);
    assert_eq!(
        b.sigterm(Duration::from_secs(40)).map(|s| s.success()),
        Some(true),
        "{}",
        b.log_tail()
    );
    let _ = std::fs::remove_dir_all(&logs);
}
