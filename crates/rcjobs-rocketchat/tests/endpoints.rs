//! The remaining endpoints against the simulator: users, rename, retention by server
//! version, history cleaning, server info, and the request observer.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::*;
use rcjobs_chat::{ChatBackend, ChatError, NewChatUser, NewRoom};
use rcjobs_rocketchat::{RetentionSettings, RocketChatBackend, RocketChatClient, RoomSel};
use rcjobs_sim::SimConfig;

async fn admin_sim_version(version: &str) -> rcjobs_sim::SimHandle {
    let mut cfg = SimConfig {
        version: version.into(),
        ..SimConfig::default()
    };
    cfg.seed.bot.roles = vec!["bot".into(), "admin".into()];
    sim(cfg).await
}

#[tokio::test]
async fn users_create_find_and_deactivate() {
    let sim = admin_sim().await;
    let backend = backend(&sim).await;
    assert_eq!(backend.find_user("alice").await.unwrap(), None);
    let new = NewChatUser {
        username: "alice".into(),
        name: "Alice A".into(),
        email: "alice@example.test".into(),
        password: "Secret-pw-for-alice-123".into(),
    };
    let created = backend.create_user(&new).await.unwrap();
    assert_eq!(created.username, "alice");
    assert!(created.active);
    let found = backend.find_user("ALICE").await.unwrap().unwrap();
    assert_eq!(found.id, created.id);
    let dup = backend.create_user(&new).await.unwrap_err();
    assert!(
        matches!(&dup, ChatError::Conflict { code, .. } if code == "error-field-unavailable"),
        "{dup:?}"
    );
    assert!(!format!("{dup} {dup:?} {new:?}").contains("Secret-pw-for-alice-123"));

    let client = backend.client();
    client
        .users_set_active_status(&created.id, false, false)
        .await
        .unwrap();
    client
        .users_set_active_status(&created.id, false, false)
        .await
        .unwrap(); // idempotent
    assert!(!backend.find_user("alice").await.unwrap().unwrap().active);
    assert!(!client.users_info_by_id(&created.id).await.unwrap().active);
}

#[tokio::test]
async fn rename_read_only_and_info_by_name() {
    let sim = sim(SimConfig::default()).await;
    let backend = backend(&sim).await;
    let room = backend
        .create_room(&NewRoom {
            name: "before".into(),
            read_only: true,
            retention_days: None,
        })
        .await
        .unwrap();
    assert!(room.read_only);
    let client = backend.client();
    let renamed = client.groups_rename(&room.id, "after").await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("after"));
    assert_eq!(
        client.groups_info(RoomSel::Name("after")).await.unwrap().id,
        room.id
    );
    assert_eq!(backend.room_by_name("before").await.unwrap(), None);
    backend.set_read_only(&room.id, false).await.unwrap();
    assert!(
        !backend
            .room_by_id(&room.id)
            .await
            .unwrap()
            .unwrap()
            .read_only
    );
}

/// ≤6.x drops the retention values sent together with `retentionOverrideGlobal`: two calls.
#[tokio::test]
async fn retention_on_a_6x_server_takes_two_calls_and_sticks() {
    let sim = admin_sim_version("6.5.0").await;
    let backend = backend(&sim).await;
    sim.reset_counters();
    let room = backend
        .create_room(&NewRoom {
            name: "ret6".into(),
            read_only: false,
            retention_days: Some(30),
        })
        .await
        .unwrap();
    let snap = sim.snapshot();
    assert_eq!(snap.count("POST rooms.saveRoomSettings"), 2);
    let r = snap.room("ret6").unwrap().retention.clone().unwrap();
    assert_eq!(r.max_age, Some(30.0));
    assert_eq!(r.enabled, Some(true));
    assert_eq!(r.override_global, Some(true));
    let info = backend
        .client()
        .groups_info(RoomSel::Id(&room.id))
        .await
        .unwrap();
    assert_eq!(info.retention.unwrap().max_age, Some(30.0));

    // What the two calls avoid: one combined call on 6.x loses the max age.
    let client = backend.client();
    let mut combined = serde_json::Map::new();
    combined.insert("retentionEnabled".into(), true.into());
    combined.insert("retentionOverrideGlobal".into(), true.into());
    combined.insert("retentionMaxAge".into(), 90.into());
    client
        .rooms_save_room_settings(&room.id, combined)
        .await
        .unwrap();
    let r = sim
        .snapshot()
        .room("ret6")
        .unwrap()
        .retention
        .clone()
        .unwrap();
    assert_eq!(r.max_age, Some(30.0), "6.x dropped the combined max age");
}

#[tokio::test]
async fn retention_on_a_7x_server_takes_one_call() {
    let sim = admin_sim_version("7.4.0").await;
    let backend = backend(&sim).await;
    let room = backend
        .create_room(&NewRoom {
            name: "ret7".into(),
            read_only: false,
            retention_days: None,
        })
        .await
        .unwrap();
    sim.reset_counters();
    let calls = backend
        .client()
        .rooms_save_retention(&room.id, &RetentionSettings::days(14))
        .await
        .unwrap();
    assert_eq!(calls, 1);
    let r = sim
        .snapshot()
        .room("ret7")
        .unwrap()
        .retention
        .clone()
        .unwrap();
    assert_eq!(r.max_age, Some(14.0));
    assert_eq!(r.override_global, Some(true));
}

#[tokio::test]
async fn retention_without_permission_does_not_fail_creation() {
    let sim = sim(SimConfig::default()).await; // bot role only: no edit-room-retention-policy
    let backend = backend(&sim).await;
    let room = backend
        .create_room(&NewRoom {
            name: "noret".into(),
            read_only: false,
            retention_days: Some(7),
        })
        .await
        .unwrap();
    assert_eq!(
        backend.room_by_id(&room.id).await.unwrap().unwrap().name,
        "noret"
    );
    assert!(sim.snapshot().room("noret").unwrap().retention.is_none());
}

#[tokio::test]
async fn clean_history_and_server_info() {
    let sim = admin_sim_version("8.2.1").await;
    let backend = backend(&sim).await;
    let room = backend
        .create_room(&NewRoom {
            name: "history".into(),
            read_only: false,
            retention_days: None,
        })
        .await
        .unwrap();
    let client = backend.client();
    client
        .rooms_clean_history(
            &room.id,
            Utc::now() - ChronoDuration::days(3650),
            Utc::now(),
        )
        .await
        .unwrap();
    let v = client.server_info().await.unwrap();
    assert_eq!((v.major, v.minor, v.patch), (8, 2, 1));
    assert_eq!(v.batch_invite(), Some(true));
}

#[tokio::test]
async fn observer_sees_every_exchange() {
    let sim = sim(SimConfig::default()).await;
    let rec = Recorder::new();
    let client = RocketChatClient::builder(config(&sim))
        .observer(rec.clone())
        .build()
        .unwrap();
    let backend = RocketChatBackend::new(client, "rcjobs.bot");
    assert_eq!(backend.room_by_name("missing").await.unwrap(), None);
    backend.find_user("rcjobs.bot").await.unwrap();
    let responses = rec.responses.lock().unwrap().clone();
    let seen: Vec<(&str, u16)> = responses.iter().map(|(e, s, _)| (*e, *s)).collect();
    assert_eq!(seen, vec![("groups.info", 400), ("users.info", 200)]);
}

#[tokio::test]
async fn missing_capabilities_reads_the_servers_permission_table() {
    use rcjobs_chat::Capability;
    let sim = sim(rcjobs_sim::SimConfig::default()).await;
    let backend = backend(&sim).await;
    let all = [
        Capability::CreateRooms,
        Capability::CreateUsers,
        Capability::UnarchiveRooms,
    ];
    // a stock `bot` role may create private groups, not users, not unarchive
    let missing = backend.missing_capabilities(&all).await.unwrap();
    assert_eq!(
        missing,
        vec![
            (Capability::CreateUsers, "create-user".to_string()),
            (Capability::UnarchiveRooms, "unarchive-room".to_string()),
        ]
    );
    sim.grant_permission("bot", "create-user");
    sim.grant_permission("bot", "unarchive-room");
    assert!(backend.missing_capabilities(&all).await.unwrap().is_empty());
    sim.revoke_permission("bot", "create-p");
    assert_eq!(
        backend.missing_capabilities(&all).await.unwrap(),
        vec![(Capability::CreateRooms, "create-p".to_string())]
    );
}
