//! Membership: pagination, batch invite with unknown users, call counts, the fallback for
//! servers without batch invite, and roles in `list_members`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::*;
use rcjobs_chat::{ChatBackend, NewRoom};
use rcjobs_rocketchat::{Invitees, RocketChatBackend, RocketChatClient, UserSel};
use rcjobs_sim::SimConfig;

async fn new_room(backend: &RocketChatBackend, name: &str) -> String {
    backend
        .create_room(&NewRoom {
            name: name.into(),
            read_only: false,
            retention_days: None,
        })
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn members_over_several_pages_with_count_zero_and_with_paging() {
    let sim = sim(SimConfig::default()).await;
    let names = add_users(&sim, "pager", 260);
    let backend = backend(&sim).await;
    let room = new_room(&backend, "paged").await;
    backend.add_members(&room, &names).await.unwrap();

    // count=0 path: one call.
    sim.reset_counters();
    let all = backend.client().groups_members_all(&room).await.unwrap();
    assert_eq!(all.len(), 261); // + the bot
    assert_eq!(sim.snapshot().count("GET groups.members"), 1);

    // Forced paging: pages of 100 until total, no duplicates.
    let mut cfg = config(&sim);
    cfg.members_count_zero = Some(false);
    let pager = RocketChatClient::new(cfg).unwrap();
    sim.reset_counters();
    let paged = pager.groups_members_all(&room).await.unwrap();
    assert_eq!(sim.snapshot().count("GET groups.members"), 3);
    let ids: HashSet<_> = paged.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 261);
    assert_eq!(paged.len(), 261);
    let first: HashSet<_> = all.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, first);

    // A single page has the server's shape.
    let page = pager.groups_members_page(&room, 250, 100).await.unwrap();
    assert_eq!(page.members.len(), 11);
    assert_eq!(page.total, Some(261));
}

#[tokio::test]
async fn batch_invite_reports_unknown_users_and_not_deactivated_ones() {
    let sim = sim(SimConfig::default()).await;
    let mut names = add_users(&sim, "known", 40);
    add_users(&sim, "sleeper", 1);
    sim.set_user_active("sleeper00000", false);
    let backend = backend(&sim).await;
    let room = new_room(&backend, "mixed").await;

    let unknown: Vec<String> = (0..5).map(|i| format!("ghost{i}")).collect();
    names.extend(unknown.iter().cloned());
    names.push("sleeper00000".into());
    names.push("KNOWN00001".into()); // case-insensitive duplicate
    sim.reset_counters();
    let outcome = backend.add_members(&room, &names).await.unwrap();
    let mut got = outcome.unknown.clone();
    got.sort();
    assert_eq!(
        got, unknown,
        "deactivated users exist and must not be reported"
    );
    // 1 invite + 1 listing + users.info for the 6 not listed (5 ghosts + the sleeper).
    let snap = sim.snapshot();
    assert_eq!(snap.count("POST groups.invite"), 1);
    assert_eq!(snap.count("GET groups.members"), 1);
    assert_eq!(snap.count("GET users.info"), 6);
    assert_eq!(outcome.calls, 8);
    let room_snap = snap.rooms.iter().find(|r| r.id == room).unwrap();
    assert!(room_snap.member("known00039").is_some());
    assert!(room_snap.member("sleeper00000").is_some());

    // A batch in which nobody exists: error-empty-invite-list, no follow-up needed.
    sim.reset_counters();
    let only_ghosts: Vec<String> = vec!["nobody1".into(), "nobody2".into()];
    let outcome = backend.add_members(&room, &only_ghosts).await.unwrap();
    assert_eq!(outcome.unknown, only_ghosts);
    assert_eq!(outcome.calls, 1);

    // Raw batch by ids with unknown ids: 200, the unknown ones ignored.
    let id = sim.add_user(rcjobs_sim::SeedUser::new("byid"));
    backend
        .client()
        .groups_invite(&room, Invitees::UserIds(&[id, "NoSuchId12345678".into()]))
        .await
        .unwrap();
    assert!(sim
        .snapshot()
        .rooms
        .iter()
        .any(|r| r.id == room && r.member("byid").is_some()));
}

#[tokio::test]
async fn ten_thousand_users_take_about_twenty_invites() {
    let sim = sim(SimConfig::default()).await;
    let names = add_users(&sim, "mass", 10_000);
    let backend = backend(&sim).await;
    let room = new_room(&backend, "mass-enrolment").await;
    sim.reset_counters();
    let started = Instant::now();
    let outcome = backend.add_members(&room, &names).await.unwrap();
    let elapsed = started.elapsed();
    assert!(outcome.unknown.is_empty());
    let snap = sim.snapshot();
    assert_eq!(snap.count("POST groups.invite"), 20);
    assert_eq!(snap.count("GET groups.members"), 1);
    assert_eq!(outcome.calls, 21);
    // Plus the one `info` call a client makes in its lifetime to learn the version.
    assert_eq!(snap.total_requests, 22);
    assert_eq!(
        snap.rooms
            .iter()
            .find(|r| r.id == room)
            .unwrap()
            .members
            .len(),
        10_001
    );
    eprintln!("10,000 users added in {} calls, {elapsed:?}", outcome.calls);

    let listed = backend.list_members(&room).await.unwrap();
    assert_eq!(listed.len(), 10_001);
}

#[tokio::test]
async fn old_server_without_batch_invite_falls_back_and_remembers() {
    let sim = sim(SimConfig {
        batch_invite: false,
        ..SimConfig::default()
    })
    .await;
    let names = add_users(&sim, "old", 6);
    let backend = backend(&sim).await;
    let room = new_room(&backend, "old-server").await;
    backend.add_members(&room, &names[..2]).await.unwrap();

    // The raw batch call is refused the way a ≤3.6 server refuses it.
    let raw = backend
        .client()
        .groups_invite(&room, Invitees::Usernames(&names[..2]))
        .await
        .unwrap_err();
    assert_eq!(
        raw.error_type(),
        Some("error-user-param-not-provided"),
        "{raw:?}"
    );

    // A fresh backend detects it once, falls back, and remembers.
    let backend = common::backend(&sim).await;
    let mut wanted = names.clone();
    wanted.push("ghost-old".into());
    sim.reset_counters();
    let outcome = backend.add_members(&room, &wanted).await.unwrap();
    assert_eq!(outcome.unknown, vec!["ghost-old".to_string()]);
    let snap = sim.snapshot();
    // 1 refused batch + 5 single invites (4 new + the ghost; the 2 members are skipped).
    assert_eq!(snap.count("POST groups.invite"), 6);
    // The refused batch, one listing, five single invites.
    assert_eq!(outcome.calls, 7);
    assert_eq!(snap.count("GET groups.members"), 1);
    let room_snap = snap.rooms.iter().find(|r| r.id == room).unwrap();
    for n in &names {
        assert!(room_snap.member(n).is_some(), "{n} missing");
    }

    let more = add_users(&sim, "later", 2);
    sim.reset_counters();
    backend.add_members(&room, &more).await.unwrap();
    assert_eq!(
        sim.snapshot().count("POST groups.invite"),
        2,
        "no second batch attempt"
    );
}

#[tokio::test]
async fn old_server_version_is_known_not_to_batch() {
    let sim = sim(SimConfig {
        batch_invite: false,
        version: "3.5.0".into(),
        ..SimConfig::default()
    })
    .await;
    let names = add_users(&sim, "v35", 3);
    let backend = backend(&sim).await;
    let room = new_room(&backend, "v35").await;
    sim.reset_counters();
    backend.add_members(&room, &names).await.unwrap();
    // Decided from the version: no batch attempt at all.
    assert_eq!(sim.snapshot().count("POST groups.invite"), 3);
    assert_eq!(
        backend.client().server_version().await.unwrap().to_string(),
        "3.5.0"
    );
}

#[tokio::test]
async fn list_members_carries_roles() {
    let sim = sim(SimConfig::default()).await;
    let names = add_users(&sim, "role", 3);
    let backend = backend(&sim).await;
    let room = new_room(&backend, "roles").await;
    backend.add_members(&room, &names).await.unwrap();
    backend
        .set_moderator(&room, "role00001", true)
        .await
        .unwrap();
    backend
        .client()
        .groups_add_owner(&room, UserSel::Username("role00002"))
        .await
        .unwrap();
    let mut members = backend.list_members(&room).await.unwrap();
    members.sort_by(|a, b| a.username.cmp(&b.username));
    let flags: Vec<(&str, bool, bool)> = members
        .iter()
        .map(|m| (m.username.as_str(), m.moderator, m.owner))
        .collect();
    assert_eq!(
        flags,
        vec![
            ("rcjobs.bot", false, true),
            ("role00000", false, false),
            ("role00001", true, false),
            ("role00002", false, true),
        ]
    );
    let mods = backend.client().groups_moderators(&room).await.unwrap();
    assert_eq!(mods.len(), 1);
    assert_eq!(mods[0].username.as_deref(), Some("role00001"));
}
