//! Group behaviour: access rule, pagination, deactivated members, archived rooms, name rules,
//! the idempotency table (rocketchat-api.md §7), batch invite on/off, version differences.
#![allow(clippy::unwrap_used)]

mod common;

use common::{seed, Sim};
use rcjobs_sim::{SeedUser, SimConfig};
use serde_json::{json, Value};

fn usernames(v: &Value) -> Vec<String> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn non_members_cannot_see_or_change_a_group_even_as_admin() {
    let sim = Sim::start().await;
    let rid = sim.group("private-1", &["alice"]).await;
    let boss = sim.login("boss", "boss-pw").await;
    let alice = sim.login("alice", "alice-pw").await;
    let carol = sim.login("carol", "carol-pw").await;
    for who in [&boss, &carol] {
        sim.get(who, "groups.info", json!({ "roomId": rid }))
            .await
            .expect_error("error-room-not-found");
        sim.get(who, "groups.info", json!({ "roomName": "private-1" }))
            .await
            .expect_error("error-room-not-found");
        sim.get(who, "groups.members", json!({ "roomId": rid }))
            .await
            .expect_error("error-room-not-found");
        sim.get(who, "groups.moderators", json!({ "roomId": rid }))
            .await
            .expect_error("error-room-not-found");
        sim.post(
            who,
            "groups.addModerator",
            json!({ "roomId": rid, "username": "alice" }),
        )
        .await
        .expect_error("error-room-not-found");
        sim.post(who, "groups.delete", json!({ "roomId": rid }))
            .await
            .expect_error("error-room-not-found");
    }
    // 7.x kick: an admin passes `remove-user` and then fails the membership check;
    // a plain user fails `remove-user` first.
    sim.post(
        &boss,
        "groups.kick",
        json!({ "roomId": rid, "username": "alice" }),
    )
    .await
    .expect_error("error-room-not-found");
    sim.post(
        &carol,
        "groups.kick",
        json!({ "roomId": rid, "username": "alice" }),
    )
    .await
    .expect_error("error-not-allowed");
    // Invite: an admin who is not a member cannot invite (add-user-to-any-p-room: nobody).
    let r = sim
        .post(
            &boss,
            "groups.invite",
            json!({ "roomId": rid, "username": "bob" }),
        )
        .await;
    r.expect_error("error-not-allowed");
    assert_eq!(r.body["details"], json!({ "method": "addUsersToRoom" }));
    // A plain member sees the group but holds no room role: cannot invite or set moderators.
    sim.get(&alice, "groups.info", json!({ "roomId": rid }))
        .await
        .expect_ok();
    sim.post(
        &alice,
        "groups.invite",
        json!({ "roomId": rid, "username": "bob" }),
    )
    .await
    .expect_error("error-not-allowed");
    sim.post(
        &alice,
        "groups.addModerator",
        json!({ "roomId": rid, "username": "alice" }),
    )
    .await
    .expect_error("error-not-allowed");
    // Missing room parameters.
    let r = sim.get(&sim.bot, "groups.info", json!({})).await;
    r.expect_error("error-room-param-not-provided");
    assert_eq!(
        r.error(),
        "The parameter \"roomId\" or \"roomName\" is required [error-room-param-not-provided]"
    );
    let r = sim
        .post(&sim.bot, "groups.kick", json!({ "roomId": rid }))
        .await;
    r.expect_error("error-user-param-not-provided");
    sim.post(
        &sim.bot,
        "groups.kick",
        json!({ "roomId": rid, "userId": "nobody" }),
    )
    .await
    .expect_error("error-invalid-user");
}

#[tokio::test]
async fn members_paginate_over_hundreds_and_hide_deactivated_users() {
    let sim = Sim::start().await;
    let names: Vec<String> = (0..260).map(|i| format!("student{i:03}")).collect();
    for n in &names {
        sim.handle.add_user(SeedUser::new(n));
    }
    let rid = sim.group("big-course", &[]).await;
    // Batches of up to 100 ids, as the worker sends them.
    let ids: Vec<String> = names.iter().map(|n| sim.uid(n)).collect();
    for chunk in ids.chunks(100) {
        sim.post(
            &sim.bot,
            "groups.invite",
            json!({ "roomId": rid, "userIds": chunk }),
        )
        .await
        .expect_ok();
    }
    let total = 261;
    let default = sim
        .get(&sim.bot, "groups.members", json!({ "roomId": rid }))
        .await;
    assert_eq!(
        (
            default.body["count"].as_u64(),
            default.body["total"].as_u64()
        ),
        (Some(50), Some(total))
    );
    let capped = sim
        .get(
            &sim.bot,
            "groups.members",
            json!({ "roomId": rid, "count": "500" }),
        )
        .await;
    assert_eq!(capped.body["count"], 100);
    let all = sim
        .get(
            &sim.bot,
            "groups.members",
            json!({ "roomId": rid, "count": "0" }),
        )
        .await;
    assert_eq!(all.body["count"].as_u64(), Some(total));

    // Page through 100 at a time: every member exactly once, sorted by username.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = sim
            .get(
                &sim.bot,
                "groups.members",
                json!({ "roomId": rid, "count": "100", "offset": offset.to_string() }),
            )
            .await;
        let got = usernames(page.expect_ok());
        assert_eq!(page.body["offset"], offset);
        assert_eq!(page.body["total"].as_u64(), Some(total));
        if got.is_empty() {
            break;
        }
        offset += got.len();
        seen.extend(got);
    }
    let mut expected: Vec<String> = names.clone();
    expected.push("rcjobs.bot".into());
    expected.sort();
    assert_eq!(seen, expected);

    let desc = sim
        .get(
            &sim.bot,
            "groups.members",
            json!({ "roomId": rid, "count": "1", "sort": "{\"username\":-1}" }),
        )
        .await;
    assert_eq!(usernames(&desc.body), ["student259"]);
    let filtered = sim
        .get(
            &sim.bot,
            "groups.members",
            json!({ "roomId": rid, "filter": "STUDENT25", "count": "3", "offset": "2" }),
        )
        .await;
    assert_eq!(
        usernames(&filtered.body),
        ["student252", "student253", "student254"]
    );
    assert_eq!(filtered.body["total"], 10);

    // Deactivated users stay subscribed but vanish from groups.members (and from `total`).
    assert!(sim.handle.set_user_active("student007", false));
    let all = sim
        .get(
            &sim.bot,
            "groups.members",
            json!({ "roomId": rid, "count": "0" }),
        )
        .await;
    assert_eq!(all.body["total"].as_u64(), Some(total - 1));
    assert!(!usernames(&all.body).contains(&"student007".to_string()));
    let snap = sim.handle.snapshot();
    assert!(
        !snap
            .room("big-course")
            .unwrap()
            .member("student007")
            .unwrap()
            .active
    );
    let info = sim
        .get(&sim.bot, "groups.info", json!({ "roomId": rid }))
        .await;
    assert_eq!(info.body["group"]["usersCount"].as_u64(), Some(total));
    // Inviting the deactivated user again is still a 200 no-op.
    let r = sim
        .post(
            &sim.bot,
            "groups.invite",
            json!({ "roomId": rid, "username": "student007" }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["usersCount"].as_u64(), Some(total));
}

#[tokio::test]
async fn the_idempotency_table_holds() {
    let sim = Sim::start().await;
    let bot = sim.bot.clone();
    let alice = sim.uid("alice");
    let rid = sim.group("idem", &["alice"]).await;

    // create twice → duplicate name, archived duplicate → archived-duplicate-name.
    let r = sim
        .post(&bot, "groups.create", json!({ "name": "idem" }))
        .await;
    r.expect_error("error-duplicate-channel-name");
    assert_eq!(
        r.error(),
        "A channel with name 'idem' exists [error-duplicate-channel-name]"
    );
    assert_eq!(
        r.body["details"],
        json!({ "function": "RocketChat.getValidRoomName", "channel_name": "idem" })
    );

    // invite of a member → 200, nothing changes (no system message).
    let before = sim
        .get(&bot, "groups.info", json!({ "roomId": rid }))
        .await
        .body["group"]["msgs"]
        .clone();
    let r = sim
        .post(
            &bot,
            "groups.invite",
            json!({ "roomId": rid, "userId": alice }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["msgs"], before);
    // all unknown → empty-invite-list (a single unknown userId too); some unknown → 200.
    sim.post(
        &bot,
        "groups.invite",
        json!({ "roomId": rid, "userId": "nobody" }),
    )
    .await
    .expect_error("error-empty-invite-list");
    sim.post(
        &bot,
        "groups.invite",
        json!({ "roomId": rid, "userIds": ["x", "y"] }),
    )
    .await
    .expect_error("error-empty-invite-list");
    let r = sim
        .post(
            &bot,
            "groups.invite",
            json!({ "roomId": rid, "usernames": ["ghost", "BOB"] }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["usersCount"], 3);
    sim.post(&bot, "groups.invite", json!({ "roomId": rid }))
        .await
        .expect_error("error-users-params-not-provided");

    // kick of a non-member → user-not-in-room.
    sim.post(
        &bot,
        "groups.kick",
        json!({ "roomId": rid, "username": "carol" }),
    )
    .await
    .expect_error("error-user-not-in-room");
    // add twice → already; remove on non-holder → not; remove on non-member → invalid-room.
    sim.post(
        &bot,
        "groups.addModerator",
        json!({ "roomId": rid, "userId": alice }),
    )
    .await
    .expect_ok();
    sim.post(
        &bot,
        "groups.addModerator",
        json!({ "roomId": rid, "userId": alice }),
    )
    .await
    .expect_error("error-user-already-moderator");
    sim.post(
        &bot,
        "groups.addOwner",
        json!({ "roomId": rid, "username": "bot" }),
    )
    .await
    .expect_error("error-invalid-user");
    sim.post(
        &bot,
        "groups.addOwner",
        json!({ "roomId": rid, "username": "rcjobs.bot" }),
    )
    .await
    .expect_error("error-user-already-owner");
    sim.post(
        &bot,
        "groups.removeOwner",
        json!({ "roomId": rid, "userId": alice }),
    )
    .await
    .expect_error("error-user-not-owner");
    sim.post(
        &bot,
        "groups.removeModerator",
        json!({ "roomId": rid, "username": "carol" }),
    )
    .await
    .expect_error("error-invalid-room");
    sim.post(
        &bot,
        "groups.addModerator",
        json!({ "roomId": rid, "username": "carol" }),
    )
    .await
    .expect_error("error-user-not-in-room");
    // last owner: cannot be removed as owner, cannot be kicked.
    let r = sim
        .post(
            &bot,
            "groups.removeOwner",
            json!({ "roomId": rid, "username": "rcjobs.bot" }),
        )
        .await;
    r.expect_error("error-remove-last-owner");
    sim.post(
        &bot,
        "groups.kick",
        json!({ "roomId": rid, "username": "rcjobs.bot" }),
    )
    .await
    .expect_error("error-you-are-last-owner");

    // setReadOnly to the current value → plain 400.
    let r = sim
        .post(
            &bot,
            "groups.setReadOnly",
            json!({ "roomId": rid, "readOnly": false }),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.body.get("errorType").is_none());
    sim.post(&bot, "groups.setReadOnly", json!({ "roomId": rid }))
        .await;
    let r = sim
        .post(&bot, "groups.setReadOnly", json!({ "roomId": rid }))
        .await;
    assert_eq!(r.body["error"], "The bodyParam \"readOnly\" is required");

    // rename to the current name → 200 no-op (no message).
    let before = sim
        .get(&bot, "groups.info", json!({ "roomId": rid }))
        .await
        .body["group"]["msgs"]
        .as_u64()
        .unwrap();
    let r = sim
        .post(
            &bot,
            "groups.rename",
            json!({ "roomId": rid, "name": "idem" }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["msgs"].as_u64(), Some(before));
    let r = sim
        .post(
            &bot,
            "groups.rename",
            json!({ "roomId": rid, "name": "idem-2" }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["msgs"].as_u64(), Some(before + 1));
    // 7.x: a name taken by a user is a duplicate handle.
    sim.post(
        &bot,
        "groups.rename",
        json!({ "roomId": rid, "name": "alice" }),
    )
    .await
    .expect_error("error-duplicate-handle");

    // saveRoomSettings with the same values → 200 both times.
    sim.post(
        &bot,
        "rooms.saveRoomSettings",
        json!({ "rid": rid, "roomTopic": "t" }),
    )
    .await
    .expect_ok();
    sim.post(
        &bot,
        "rooms.saveRoomSettings",
        json!({ "rid": rid, "roomTopic": "t" }),
    )
    .await
    .expect_ok();

    // archive twice → room-archived; unarchive of an active room → 200 plus a message.
    sim.post(&bot, "groups.archive", json!({ "roomId": rid }))
        .await
        .expect_ok();
    let r = sim
        .post(&bot, "groups.archive", json!({ "roomId": rid }))
        .await;
    r.expect_error("error-room-archived");
    assert_eq!(
        r.error(),
        "The private group, idem-2, is archived [error-room-archived]"
    );
    let boss = sim.login("boss", "boss-pw").await;
    let other = sim
        .post(&boss, "groups.create", json!({ "name": "active-one" }))
        .await;
    let other_id = other.body["group"]["_id"].as_str().unwrap().to_string();
    let msgs = other.body["group"]["msgs"].as_u64().unwrap();
    sim.post(&boss, "groups.unarchive", json!({ "roomId": other_id }))
        .await
        .expect_ok();
    let info = sim
        .get(&boss, "groups.info", json!({ "roomId": other_id }))
        .await;
    assert_eq!(info.body["group"]["msgs"].as_u64(), Some(msgs + 1));
    // Creating a group named like the archived one → archived-duplicate-name.
    sim.post(&boss, "groups.create", json!({ "name": "idem-2" }))
        .await
        .expect_error("error-archived-duplicate-name");

    // delete twice → room-not-found, and info too.
    sim.post(&bot, "groups.delete", json!({ "roomId": rid }))
        .await
        .expect_ok();
    sim.post(&bot, "groups.delete", json!({ "roomId": rid }))
        .await
        .expect_error("error-room-not-found");
    sim.get(&bot, "groups.info", json!({ "roomId": rid }))
        .await
        .expect_error("error-room-not-found");
    // The name is free again.
    sim.post(&bot, "groups.create", json!({ "name": "idem-2" }))
        .await
        .expect_ok();
}

#[tokio::test]
async fn archived_groups_refuse_membership_reads_and_role_changes() {
    let sim = Sim::start().await;
    let bot = sim.bot.clone();
    let rid = sim.group("old-course", &["alice", "bob"]).await;
    sim.post(&bot, "groups.archive", json!({ "roomId": rid }))
        .await
        .expect_ok();
    let info = sim.get(&bot, "groups.info", json!({ "roomId": rid })).await;
    assert_eq!(info.expect_ok()["group"]["archived"], true);
    sim.get(&bot, "groups.members", json!({ "roomId": rid }))
        .await
        .expect_error("error-room-archived");
    sim.get(&bot, "groups.moderators", json!({ "roomId": rid }))
        .await
        .expect_error("error-room-archived");
    sim.post(
        &bot,
        "groups.addModerator",
        json!({ "roomId": rid, "username": "alice" }),
    )
    .await
    .expect_error("error-room-archived");
    sim.post(&bot, "groups.rename", json!({ "roomId": rid, "name": "x" }))
        .await
        .expect_error("error-room-archived");
    sim.post(
        &bot,
        "groups.setReadOnly",
        json!({ "roomId": rid, "readOnly": true }),
    )
    .await
    .expect_error("error-room-archived");
    // 7.x kick looks the room up without the archived check.
    sim.post(
        &bot,
        "groups.kick",
        json!({ "roomId": rid, "username": "bob" }),
    )
    .await
    .expect_ok();
    // Unarchive needs admin; delete works on archived groups.
    sim.post(&bot, "groups.unarchive", json!({ "roomId": rid }))
        .await
        .expect_error("error-not-authorized");
    sim.post(&bot, "groups.delete", json!({ "roomId": rid }))
        .await
        .expect_ok();
}

#[tokio::test]
async fn room_names_follow_the_rules_and_are_unique() {
    let sim = Sim::start().await;
    let bot = sim.bot.clone();
    for bad in ["with space", "caf\u{e9}", "#hash", "a@b", "Admin", "system"] {
        let r = sim
            .post(&bot, "groups.create", json!({ "name": bad }))
            .await;
        r.expect_error("error-invalid-room-name");
        assert_eq!(
            r.error(),
            format!("{bad} is not a valid room name. [error-invalid-room-name]")
        );
    }
    let r = sim
        .post(&bot, "groups.create", json!({ "name": "   " }))
        .await;
    r.expect_error("error-invalid-name");
    for missing in [json!({}), json!({ "name": "" })] {
        let r = sim.post(&bot, "groups.create", missing).await;
        assert_eq!(
            r.body,
            json!({ "success": false, "error": "Body param \"name\" is required" })
        );
    }
    let r = sim
        .post(
            &bot,
            "groups.create",
            json!({ "name": "x1", "members": "alice" }),
        )
        .await;
    assert_eq!(
        r.error(),
        "Body param \"members\" must be an array if provided"
    );
    // Case matters for room names; unknown members are skipped; readOnly is kept.
    sim.post(&bot, "groups.create", json!({ "name": "Course.A-1_b" }))
        .await
        .expect_ok();
    let r = sim
        .post(
            &bot,
            "groups.create",
            json!({ "name": "course.a-1_b", "members": ["alice", "ghost"], "readOnly": true }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["usersCount"], 2);
    assert_eq!(r.body["group"]["ro"], true);
    assert_eq!(r.body["group"]["u"]["username"], "rcjobs.bot");
    // A broadcast group is forced read-only.
    let r = sim
        .post(
            &bot,
            "groups.create",
            json!({ "name": "news", "extraData": { "broadcast": true } }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["ro"], true);
    // `excludeSelf` (6.4.1+) leaves the creator out.
    let r = sim
        .post(
            &bot,
            "groups.create",
            json!({ "name": "nobot", "members": ["alice"], "excludeSelf": true }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["usersCount"], 1);
    // Without `create-p` → 403 unauthorized.
    sim.handle.revoke_permission("bot", "create-p");
    let r = sim
        .post(&bot, "groups.create", json!({ "name": "denied" }))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (403, json!({ "success": false, "error": "unauthorized" }))
    );
}

#[tokio::test]
async fn batch_invite_off_behaves_like_an_old_server() {
    let sim = Sim::with(SimConfig {
        batch_invite: false,
        seed: seed(&["bot"]),
        ..SimConfig::default()
    })
    .await;
    let bot = sim.bot.clone();
    let rid = sim.group("legacy", &[]).await;
    let r = sim
        .post(
            &bot,
            "groups.invite",
            json!({ "roomId": rid, "userIds": [sim.uid("alice"), sim.uid("bob")] }),
        )
        .await;
    r.expect_error("error-user-param-not-provided");
    let r = sim
        .post(
            &bot,
            "groups.invite",
            json!({ "roomId": rid, "username": ["alice"] }),
        )
        .await;
    assert_eq!(
        r.body,
        json!({ "success": false, "error": "params.username.trim is not a function" })
    );
    sim.post(
        &bot,
        "groups.invite",
        json!({ "roomId": rid, "userId": "ghost" }),
    )
    .await
    .expect_error("error-invalid-user");
    let r = sim
        .post(
            &bot,
            "groups.invite",
            json!({ "roomId": rid, "userId": sim.uid("alice") }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["usersCount"], 2);
    let r = sim
        .post(
            &bot,
            "groups.invite",
            json!({ "roomName": "legacy", "username": "bob" }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["usersCount"], 3);
    let snap = sim.handle.snapshot();
    assert_eq!(snap.room("legacy").unwrap().members.len(), 3);
}

#[tokio::test]
async fn older_versions_differ_where_the_doc_says() {
    // ≤6.x kick: group lookup with access + archived checks first.
    let sim6 = Sim::with(SimConfig {
        version: "6.6.0".into(),
        seed: seed(&["bot"]),
        ..SimConfig::default()
    })
    .await;
    let rid = sim6.group("six", &["alice"]).await;
    let carol = sim6.login("carol", "carol-pw").await;
    sim6.post(
        &carol,
        "groups.kick",
        json!({ "roomId": rid, "username": "alice" }),
    )
    .await
    .expect_error("error-room-not-found");
    sim6.post(&sim6.bot, "groups.archive", json!({ "roomId": rid }))
        .await
        .expect_ok();
    sim6.post(
        &sim6.bot,
        "groups.kick",
        json!({ "roomId": rid, "username": "alice" }),
    )
    .await
    .expect_error("error-room-archived");
    // 6.x 401 body: {status, message} only.
    let r = sim6.raw(reqwest::Method::GET, "me", None, None).await;
    assert_eq!(
        r.body,
        json!({ "status": "error", "message": "You must be logged in to do this." })
    );

    // ≤3.x groups.members read subscriptions: deactivated users are listed.
    let sim3 = Sim::with(SimConfig {
        version: "3.18.0".into(),
        seed: seed(&["bot"]),
        ..SimConfig::default()
    })
    .await;
    let rid = sim3.group("three", &["alice", "bob"]).await;
    sim3.handle.set_user_active("bob", false);
    let r = sim3
        .get(&sim3.bot, "groups.members", json!({ "roomId": rid }))
        .await;
    assert_eq!(r.body["total"], 3);
    // ...and excludeSelf did not exist before 6.4.1.
    let r = sim3
        .post(
            &sim3.bot,
            "groups.create",
            json!({ "name": "selfish", "excludeSelf": true }),
        )
        .await;
    assert_eq!(r.expect_ok()["group"]["usersCount"], 1);

    // 8.x: slim 401 body.
    let sim8 = Sim::with(SimConfig {
        version: "8.1.0".into(),
        seed: seed(&["bot"]),
        ..SimConfig::default()
    })
    .await;
    let r = sim8.raw(reqwest::Method::GET, "me", None, None).await;
    assert_eq!(
        r.body,
        json!({ "success": false, "error": "You must be logged in to do this." })
    );
}

#[tokio::test]
async fn retention_override_global_quirk_depends_on_version() {
    for (version, keeps_values) in [("6.6.0", false), ("7.4.0", true)] {
        let sim = Sim::with(SimConfig {
            version: version.into(),
            seed: seed(&["bot", "admin"]),
            ..SimConfig::default()
        })
        .await;
        let rid = sim.group("ret", &[]).await;
        let body = json!({ "rid": rid, "retentionEnabled": true, "retentionOverrideGlobal": true, "retentionMaxAge": 14 });
        sim.post(&sim.bot, "rooms.saveRoomSettings", body)
            .await
            .expect_ok();
        let ret = sim
            .handle
            .snapshot()
            .room("ret")
            .unwrap()
            .retention
            .clone()
            .unwrap();
        assert_eq!(ret.enabled, Some(true));
        assert_eq!(ret.override_global, Some(true));
        assert_eq!(ret.max_age.is_some(), keeps_values, "{version}");
        // The safe two-call order works everywhere.
        sim.post(
            &sim.bot,
            "rooms.saveRoomSettings",
            json!({ "rid": rid, "retentionMaxAge": 14, "retentionFilesOnly": false }),
        )
        .await
        .expect_ok();
        let ret = sim
            .handle
            .snapshot()
            .room("ret")
            .unwrap()
            .retention
            .clone()
            .unwrap();
        assert_eq!((ret.max_age, ret.files_only), (Some(14.0), Some(false)));
        // overrideGlobal:false drops the values on every version.
        sim.post(
            &sim.bot,
            "rooms.saveRoomSettings",
            json!({ "rid": rid, "retentionOverrideGlobal": false, "retentionMaxAge": 99 }),
        )
        .await
        .expect_ok();
        let ret = sim
            .handle
            .snapshot()
            .room("ret")
            .unwrap()
            .retention
            .clone()
            .unwrap();
        assert_eq!(ret.max_age, Some(14.0));
        // Unknown keys: ajv invalid-params on 7.x, error-invalid-settings before.
        let r = sim
            .post(
                &sim.bot,
                "rooms.saveRoomSettings",
                json!({ "rid": rid, "bogus": 1 }),
            )
            .await;
        r.expect_error(if keeps_values {
            "invalid-params"
        } else {
            "error-invalid-settings"
        });
    }
    // Retention needs edit-room-retention-policy (admin only): a bot owner gets refused.
    let sim = Sim::start().await;
    let rid = sim.group("ret2", &[]).await;
    let r = sim
        .post(
            &sim.bot,
            "rooms.saveRoomSettings",
            json!({ "rid": rid, "retentionEnabled": true }),
        )
        .await;
    r.expect_error("error-action-not-allowed");
    assert_eq!(
        r.error(),
        "Editing room retention policy is not allowed [error-action-not-allowed]"
    );
    sim.post(
        &sim.bot,
        "rooms.saveRoomSettings",
        json!({ "rid": "nope", "roomTopic": "x" }),
    )
    .await
    .expect_error("error-invalid-room");
}

#[tokio::test]
async fn clean_history_removes_messages_in_range() {
    let sim = Sim::with(SimConfig {
        seed: seed(&["bot", "admin"]),
        ..SimConfig::default()
    })
    .await;
    let rid = sim.group("chatty", &[]).await;
    sim.post(
        &sim.bot,
        "groups.invite",
        json!({ "roomId": rid, "usernames": ["alice", "bob", "carol"] }),
    )
    .await
    .expect_ok();
    let body = json!({ "roomId": rid, "oldest": "1970-01-01T00:00:00.000000Z", "latest": "2999-01-01T00:00:00Z" });
    let r = sim.post(&sim.bot, "rooms.cleanHistory", body.clone()).await;
    assert_eq!(r.expect_ok()["count"], 3);
    assert_eq!(sim.handle.snapshot().room("chatty").unwrap().msgs, 0);
    let r = sim.post(&sim.bot, "rooms.cleanHistory", body).await;
    assert_eq!(r.expect_ok()["count"], 0);
    let r = sim
        .post(
            &sim.bot,
            "rooms.cleanHistory",
            json!({ "roomId": rid, "oldest": "1970-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(
        r.body,
        json!({ "success": false, "error": "Body parameter \"latest\" is required." })
    );
}
