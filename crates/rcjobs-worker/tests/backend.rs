//! Room identity per backend (migration 0004): a room id is compared only with ids of the
//! same backend, Moodle's `rocketchatid` is trusted only on Rocket.Chat, and the handlers run
//! unchanged on another backend (the in-memory reference backend of the conformance suite).
#![allow(clippy::unwrap_used)]

mod common;

use common::{small_site, sql, Env};
use rcjobs_chat::ChatBackend;
use rcjobs_chat_conformance::MemoryBackend;
use rcjobs_producer::room_lock_key;
use rcjobs_sim::SimConfig;
use rcjobs_worker::{Engine, JobInfo, RoomRecord, RoomState, SyncState, WorkerConfig};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

fn mapping(cmid: i64, room: &str) -> RoomRecord {
    RoomRecord {
        cmid,
        courseid: Some(1),
        room_id: Some(room.into()),
        room_name: Some(format!("room-{cmid}")),
        created_by_worker: true,
        state: RoomState::Active,
        binid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_ids_are_per_backend() {
    let env = Env::new(
        small_site(41),
        SimConfig::default(),
        WorkerConfig::default(),
    )
    .await;
    let rc = SyncState::new(env.pool().clone());
    let mx = SyncState::for_backend(env.pool().clone(), "matrix");
    rc.put_room(&mapping(-1, "same-id")).await.unwrap();
    assert!(
        mx.room(-1).await.unwrap().is_none(),
        "another backend's row"
    );
    assert!(mx.room_by_room_id("same-id").await.unwrap().is_none());
    // The same id on another server is another room: both stay live.
    mx.put_room(&mapping(-2, "same-id")).await.unwrap();
    assert_eq!(
        rc.room_by_room_id("same-id").await.unwrap().unwrap().cmid,
        -1
    );
    assert_eq!(
        mx.room_by_room_id("same-id").await.unwrap().unwrap().cmid,
        -2
    );
    // The site moves cm -1 to Matrix: its mapping becomes Matrix's, the old room recorded.
    mx.put_room(&mapping(-1, "!new:matrix.example.edu"))
        .await
        .unwrap();
    assert!(rc.room(-1).await.unwrap().is_none());
    let (backend, previous): (String, Option<String>) =
        sqlx::query_as("SELECT backend, previous_room_id FROM rcjobs_sync.room WHERE cmid = -1")
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert_eq!(
        (backend.as_str(), previous.as_deref()),
        ("matrix", Some("same-id"))
    );
    // Rows from before the migration are Rocket.Chat's.
    let default: String = sqlx::query_scalar(
        "SELECT column_default FROM information_schema.columns
          WHERE table_schema = 'rcjobs_sync' AND table_name = 'room' AND column_name = 'backend'",
    )
    .fetch_one(env.pool())
    .await
    .unwrap();
    assert!(default.contains("rocketchat"), "{default}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_backend_ignores_moodles_rocketchat_ids() {
    let env = Env::new(
        small_site(42),
        SimConfig::default(),
        WorkerConfig::default(),
    )
    .await;
    let mut cmids = env.live_cmids().await.into_iter().filter(|(_, v)| *v);
    let (stale, blank) = (cmids.next().unwrap().0, cmids.next().unwrap().0);
    // What a site moving from Rocket.Chat still holds: the plugin's group id.
    sqlx::query(sql(
        "UPDATE {p}rocketchat SET rocketchatid = 'rc-group-1'
          WHERE id = (SELECT instance FROM {p}course_modules WHERE id = $1)",
    ))
    .bind(stale)
    .execute(env.pool())
    .await
    .unwrap();
    let memory = Arc::new(MemoryBackend::new(7));
    let cfg = WorkerConfig {
        create_accounts: true,
        write_room_ids: true,
        ..WorkerConfig::default()
    };
    let engine = Engine::new(
        env.pool().clone(),
        env.moodle.clone(),
        memory.clone(),
        cfg,
        None,
    )
    .unwrap();
    for (i, cmid) in [stale, blank].into_iter().enumerate() {
        let job = JobInfo {
            id: i64::try_from(i).unwrap() + 1,
            kind: "synchronize_group".into(),
            attempt: 1,
            exclusion_key: Some(room_lock_key(cmid)),
            enqueued_at: chrono::Utc::now(),
        };
        engine.handle(&job, &json!({ "cmid": cmid })).await.unwrap();
        let (backend, room): (String, String) = sqlx::query_as(
            "SELECT backend, room_id FROM rcjobs_sync.room WHERE cmid = $1 AND state = 'active'",
        )
        .bind(cmid)
        .fetch_one(env.pool())
        .await
        .unwrap();
        assert_eq!(backend, "memory");
        assert_ne!(
            room, "rc-group-1",
            "Moodle's Rocket.Chat id is not this backend's"
        );
        let members: BTreeMap<String, bool> = memory
            .list_members(&room)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.username != memory.bot_username())
            .map(|m| (m.username, m.moderator))
            .collect();
        assert_eq!(members, env.truth(cmid).await, "room of cm {cmid}");
    }
    // Nothing of the other backend is written where Moodle's plugin reads Rocket.Chat ids.
    let ids: Vec<String> = sqlx::query_scalar(sql(
        "SELECT r.rocketchatid FROM {p}rocketchat r JOIN {p}course_modules cm ON cm.instance = r.id
          JOIN {p}modules m ON m.id = cm.module AND m.name = 'rocketchat'
         WHERE cm.id IN ($1, $2) ORDER BY cm.id = $1 DESC",
    ))
    .bind(stale)
    .bind(blank)
    .fetch_all(env.pool())
    .await
    .unwrap();
    assert_eq!(ids, ["rc-group-1", ""]);
}
