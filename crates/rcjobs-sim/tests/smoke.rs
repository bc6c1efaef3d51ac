//! The core path other crates rely on: spawn, PAT auth, users, groups and membership.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sim;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn core_membership_flow() {
    let sim = Sim::start().await;
    let bot = sim.bot.clone();

    let me = sim.raw(Method::GET, "me", Some(&bot), None).await;
    assert_eq!(me.expect_ok()["username"], "rcjobs.bot");
    assert_eq!(me.body["roles"], json!(["bot"]));

    let info = sim
        .get(&bot, "users.info", json!({ "username": "ALICE" }))
        .await;
    let alice = info.expect_ok()["user"]["_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(info.body["user"]["username"], "alice");
    assert_eq!(info.body["user"]["active"], true);

    let rid = sim.group("course-101", &["alice"]).await;
    let g = sim
        .get(&bot, "groups.info", json!({ "roomName": "course-101" }))
        .await;
    assert_eq!(g.expect_ok()["group"]["_id"], rid.as_str());
    assert_eq!(g.body["group"]["t"], "p");
    assert_eq!(g.body["group"]["usersCount"], 2);

    let inv = sim
        .post(
            &bot,
            "groups.invite",
            json!({ "roomId": rid, "usernames": ["bob", "carol"] }),
        )
        .await;
    assert_eq!(inv.expect_ok()["group"]["usersCount"], 4);
    assert_eq!(inv.body["group"]["msgs"], 2);

    sim.post(
        &bot,
        "groups.addModerator",
        json!({ "roomId": rid, "userId": alice }),
    )
    .await
    .expect_ok();
    let m = sim
        .get(&bot, "groups.members", json!({ "roomId": rid }))
        .await;
    let names: Vec<&str> = m.expect_ok()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol", "rcjobs.bot"]);
    assert_eq!(m.body["total"], 4);

    let k = sim
        .post(
            &bot,
            "groups.kick",
            json!({ "roomId": rid, "username": "bob" }),
        )
        .await;
    assert_eq!(k.expect_ok(), &json!({ "success": true }));
    sim.post(
        &bot,
        "groups.removeModerator",
        json!({ "roomId": rid, "userId": alice }),
    )
    .await
    .expect_ok();

    let snap = sim.handle.snapshot();
    let room = snap.room("course-101").unwrap();
    assert_eq!(room.members.len(), 3);
    assert_eq!(room.member("rcjobs.bot").unwrap().roles, vec!["owner"]);
    assert!(room.member("alice").unwrap().roles.is_empty());
    assert!(room.member("bob").is_none());
    assert_eq!(snap.count("POST groups.invite"), 1);

    let unauth = sim.raw(Method::GET, "me", None, None).await;
    assert_eq!(unauth.status, StatusCode::UNAUTHORIZED);
    sim.handle.shutdown().await;
}
