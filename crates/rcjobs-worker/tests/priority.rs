//! Room syncs that fan-out jobs enqueue run ahead of the fan-out backlog: a mass enrolment
//! queues tens of thousands of user-scoped jobs, and the one room sync that converges the
//! room must not wait behind them (issue 7's 10,000-user case went from 36 s to 2.8 s).

#![allow(clippy::unwrap_used)]

mod common;

use common::{creating_accounts, faulty_chat, small_site, sql, Env};
use rcjobs_worker::engine::ROOM_SYNC_PRIORITY;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_enqueues_room_syncs_ahead_of_the_backlog() {
    let env = Env::new(small_site(11), faulty_chat(), creating_accounts()).await;
    let (cmid, _) = env.live_cmids().await[0];
    let course: i64 = sqlx::query_scalar(sql("SELECT course FROM {p}course_modules WHERE id = $1"))
        .bind(cmid)
        .fetch_one(env.pool())
        .await
        .unwrap();

    let worker = env.start_worker(2).await;
    env.enqueue_raw("enrolment", json!({ "courseid": course }))
        .await;
    env.drain().await;
    worker.stop().await;

    // event-driven syncs (the periodic reconcile's own carry `rsync:` keys and its priority)
    let priorities: Vec<i16> = sqlx::query_scalar(
        "SELECT priority FROM rcjobs.job_history WHERE kind = 'synchronize_group' \
         AND payload->>'cmid' = $1::text AND dedup_key NOT LIKE 'rsync:%'",
    )
    .bind(cmid)
    .fetch_all(env.pool())
    .await
    .unwrap();
    assert!(
        !priorities.is_empty(),
        "the enrolment fanned in to no room sync"
    );
    assert!(
        priorities.iter().all(|p| *p == ROOM_SYNC_PRIORITY),
        "room syncs must run ahead of fan-out work (priority {ROOM_SYNC_PRIORITY}), got {priorities:?}"
    );
    let fan_out: i16 =
        sqlx::query_scalar("SELECT priority FROM rcjobs.job_history WHERE kind = 'enrolment'")
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert!(
        ROOM_SYNC_PRIORITY < fan_out,
        "a room sync ({ROOM_SYNC_PRIORITY}) must be claimed before fan-out work ({fan_out})"
    );
    assert!(
        env.room_id(cmid).await.is_some(),
        "the sync created the room"
    );
}
