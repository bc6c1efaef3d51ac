//! Authentication and `users.*` behaviour.
#![allow(clippy::unwrap_used)]

mod common;

use common::{seed, Creds, Sim};
use rcjobs_sim::{SeedBot, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;

const NOT_LOGGED_IN_7X: &str = r#"{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}"#;

#[tokio::test]
async fn pat_auth_needs_both_headers_and_a_matching_pair() {
    let sim = Sim::start().await;
    let expected: serde_json::Value = serde_json::from_str(NOT_LOGGED_IN_7X).unwrap();
    let alice = sim.uid("alice");
    let cases = [
        None,
        Some(Creds {
            user_id: sim.bot.user_id.clone(),
            token: "wrong".into(),
        }),
        Some(Creds {
            user_id: alice,
            token: sim.bot.token.clone(),
        }),
        Some(Creds {
            user_id: String::new(),
            token: String::new(),
        }),
    ];
    for who in &cases {
        let r = sim
            .raw(
                Method::GET,
                "groups.info",
                who.as_ref(),
                Some(json!({ "roomName": "x" })),
            )
            .await;
        assert_eq!(
            (r.status, &r.body),
            (StatusCode::UNAUTHORIZED, &expected),
            "{who:?}"
        );
    }
    // Only one header.
    let r = sim
        .http
        .get(sim.url("me"))
        .header("X-Auth-Token", &sim.bot.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Unknown endpoint.
    let r = sim
        .raw(Method::GET, "groups.nope", Some(&sim.bot), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // info needs no auth and carries the version.
    let r = sim.raw(Method::GET, "info", None, None).await;
    assert_eq!(r.body, json!({ "version": "7.4.0", "success": true }));
    let r = sim
        .http
        .get(format!("{}/api/info", sim.handle.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["version"],
        "7.4.0"
    );
}

#[tokio::test]
async fn login_logout_and_deactivation_revoke_tokens() {
    let sim = Sim::start().await;
    let a1 = sim.login("alice", "alice-pw").await;
    let a2 = sim.login("ALICE@example.test", "alice-pw").await;
    assert_ne!(a1.token, a2.token);
    assert_eq!(a1.token.len(), 43);
    for bad in [
        json!({ "user": "alice", "password": "nope" }),
        json!({ "user": "ghost", "password": "x" }),
        json!({ "resume": "bad" }),
        json!({}),
    ] {
        let r = sim.raw(Method::POST, "login", None, Some(bad)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.body,
            json!({ "status": "error", "error": "Unauthorized", "message": "Unauthorized", "success": false })
        );
    }
    let r = sim.raw(Method::POST, "logout", Some(&a1), None).await;
    assert_eq!(r.body["data"]["message"], "You've been logged out!");
    assert_eq!(
        sim.raw(Method::GET, "me", Some(&a1), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sim.raw(Method::GET, "me", Some(&a2), None).await.status,
        StatusCode::OK
    );

    // Deactivating drops every token; a deactivated user cannot log in.
    let boss = sim.login("boss", "boss-pw").await;
    sim.post(
        &boss,
        "users.setActiveStatus",
        json!({ "userId": a2.user_id, "activeStatus": false }),
    )
    .await
    .expect_ok();
    assert_eq!(
        sim.raw(Method::GET, "me", Some(&a2), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = sim
        .raw(
            Method::POST,
            "login",
            None,
            Some(json!({ "user": "alice", "password": "alice-pw" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A seeded bot with a password can log in too; its PAT keeps working.
    let sim = Sim::with(SimConfig {
        seed: rcjobs_sim::Seed {
            bot: SeedBot {
                password: Some("bot-pw".into()),
                ..SeedBot::default()
            },
            users: vec![],
        },
        ..SimConfig::default()
    })
    .await;
    let b = sim.login("rcjobs.bot", "bot-pw").await;
    assert_eq!(b.user_id, sim.bot.user_id);
    assert_eq!(
        sim.raw(Method::GET, "me", Some(&sim.bot), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn users_create_validates_like_the_server() {
    let sim = Sim::start().await;
    let boss = sim.login("boss", "boss-pw").await;
    let body =
        |u: &str, e: &str| json!({ "username": u, "email": e, "name": "N", "password": "p" });
    let r = sim
        .post(&sim.bot, "users.create", body("zed", "zed@x.test"))
        .await;
    r.expect_error("error-action-not-allowed");
    assert_eq!(
        r.error(),
        "Adding user is not allowed [error-action-not-allowed]"
    );
    sim.post(&boss, "users.create", body("zed", "zed@x.test"))
        .await
        .expect_ok();
    let r = sim
        .post(&boss, "users.create", body("ZED", "other@x.test"))
        .await;
    r.expect_error("error-field-unavailable");
    assert_eq!(
        r.error(),
        "ZED is already in use :( [error-field-unavailable]"
    );
    let r = sim
        .post(&boss, "users.create", body("zed2", "ZED@x.test"))
        .await;
    assert_eq!(
        r.error(),
        "ZED@x.test is already in use :( [error-field-unavailable]"
    );
    sim.post(&boss, "users.create", body("bad name", "b@x.test"))
        .await
        .expect_error("error-input-is-not-a-valid-field");
    sim.post(&boss, "users.create", body("here", "h@x.test"))
        .await
        .expect_error("error-blocked-username");
    sim.post(&boss, "users.create", body("mail", "not-an-email"))
        .await
        .expect_error("error-invalid-email");
    let r = sim
        .post(
            &boss,
            "users.create",
            json!({ "username": "x", "email": "x@x.test", "name": "X" }),
        )
        .await;
    r.expect_error("invalid-params");
    assert_eq!(
        r.error(),
        "must have required property 'password' [invalid-params]"
    );
    // The bot can create users once an admin grants it the permission.
    sim.handle.grant_permission("bot", "create-user");
    let r = sim
        .post(&sim.bot, "users.create", body("made.by.bot", "m@x.test"))
        .await;
    assert_eq!(r.expect_ok()["user"]["roles"], json!(["user"]));
    let r = sim
        .get(&sim.bot, "users.info", json!({ "username": "MADE.BY.BOT" }))
        .await;
    assert_eq!(r.expect_ok()["user"]["active"], true);
    let r = sim.get(&sim.bot, "users.info", json!({})).await;
    r.expect_error("invalid-params");
    let r = sim
        .get(&sim.bot, "users.info", json!({ "userId": "nope" }))
        .await;
    assert_eq!(
        r.body,
        json!({ "success": false, "error": "User not found." })
    );
}

#[tokio::test]
async fn set_active_status_rules() {
    let sim = Sim::start().await;
    let boss = sim.login("boss", "boss-pw").await;
    let alice = sim.uid("alice");
    // Without edit-other-user-active-status: 7.x `unauthorized()` is a 401 without `message`.
    let r = sim
        .post(
            &sim.bot,
            "users.setActiveStatus",
            json!({ "userId": alice, "activeStatus": false }),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            StatusCode::UNAUTHORIZED,
            json!({ "success": false, "error": "unauthorized" })
        )
    );
    // Idempotent.
    for _ in 0..2 {
        sim.post(
            &boss,
            "users.setActiveStatus",
            json!({ "userId": alice, "activeStatus": false }),
        )
        .await
        .expect_ok();
    }
    let r = sim
        .post(
            &boss,
            "users.setActiveStatus",
            json!({ "userId": "nope", "activeStatus": true }),
        )
        .await;
    assert_eq!(
        r.body,
        json!({ "success": false, "error": "User not found" })
    );
    sim.post(&boss, "users.setActiveStatus", json!({ "userId": alice }))
        .await
        .expect_error("invalid-params");
    // The last active admin stays.
    let r = sim
        .post(
            &boss,
            "users.setActiveStatus",
            json!({ "userId": boss.user_id, "activeStatus": false }),
        )
        .await;
    r.expect_error("error-action-not-allowed");
    // A last owner needs confirmRelinquish; ownership then passes to the oldest other member.
    let bob = sim.login("bob", "bob-pw").await;
    let made = sim
        .post(
            &bob,
            "groups.create",
            json!({ "name": "bobs", "members": ["carol", "dave"] }),
        )
        .await;
    made.expect_ok();
    let r = sim
        .post(
            &boss,
            "users.setActiveStatus",
            json!({ "userId": bob.user_id, "activeStatus": false }),
        )
        .await;
    r.expect_error("user-last-owner");
    assert_eq!(r.error(), "[user-last-owner]");
    assert!(r.body["details"].is_array());
    sim.post(
        &boss,
        "users.setActiveStatus",
        json!({ "userId": bob.user_id, "activeStatus": false, "confirmRelinquish": true }),
    )
    .await
    .expect_ok();
    let room = sim.handle.snapshot().room("bobs").unwrap().clone();
    let owners: Vec<&str> = room
        .members
        .iter()
        .filter(|m| m.roles.contains(&"owner".to_string()))
        .map(|m| m.username.as_str())
        .collect();
    assert_eq!(owners.len(), 2, "{room:?}");
    assert!(owners.contains(&"bob"));
}

#[tokio::test]
async fn users_list_paginates_and_needs_view_d_room() {
    let sim = Sim::with(SimConfig {
        seed: seed(&["bot"]),
        ..SimConfig::default()
    })
    .await;
    let r = sim
        .get(&sim.bot, "users.list", json!({ "count": "0" }))
        .await;
    let names: Vec<&str> = r.expect_ok()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["alice", "bob", "boss", "carol", "dave", "rcjobs.bot"]
    );
    assert_eq!(r.body["total"], 6);
    sim.handle.revoke_permission("bot", "view-d-room");
    let r = sim.get(&sim.bot, "users.list", json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ids_and_tokens_repeat_with_the_same_rng_seed() {
    let a = Sim::with(SimConfig {
        seed: seed(&["bot"]),
        rng_seed: 42,
        ..SimConfig::default()
    })
    .await;
    let b = Sim::with(SimConfig {
        seed: seed(&["bot"]),
        rng_seed: 42,
        ..SimConfig::default()
    })
    .await;
    let c = Sim::with(SimConfig {
        seed: seed(&["bot"]),
        rng_seed: 43,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(a.bot.user_id, b.bot.user_id);
    assert_eq!(a.bot.token, b.bot.token);
    assert_ne!(a.bot.user_id, c.bot.user_id);
    assert_eq!(a.uid("alice"), b.uid("alice"));
    assert_eq!(a.group("g", &[]).await, b.group("g", &[]).await);
    assert_eq!(a.bot.user_id.len(), 17);
}

#[tokio::test]
async fn inspection_endpoints_report_state_and_requests() {
    let sim = Sim::start().await;
    sim.group("inspected", &["alice"]).await;
    sim.post(
        &sim.bot,
        "groups.addModerator",
        json!({ "roomName": "inspected", "username": "alice" }),
    )
    .await
    .expect_ok();
    let state: serde_json::Value = sim
        .http
        .get(format!("{}/_sim/state", sim.handle.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = state["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "inspected")
        .unwrap();
    let alice = room["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["username"] == "alice")
        .unwrap();
    assert_eq!(alice["roles"], json!(["moderator"]));
    assert_eq!(state["requests"]["POST groups.create"], 1);
    let log: serde_json::Value = sim
        .http
        .get(format!("{}/_sim/requests", sim.handle.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["byEndpoint"]["POST groups.addModerator"], 1);
    let recent = log["recent"].as_array().unwrap();
    assert_eq!(recent.last().unwrap()["params"]["username"], "alice");
    assert_eq!(recent.last().unwrap()["status"], 200);
    // Passwords never land in the log.
    sim.login("alice", "alice-pw").await;
    let log: serde_json::Value = sim
        .http
        .get(format!("{}/_sim/requests", sim.handle.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!log.to_string().contains("alice-pw"));
    // The inspection is read-only and outside /api/v1.
    let r = sim
        .http
        .post(format!("{}/_sim/state", sim.handle.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    sim.handle.reset_counters();
    assert_eq!(sim.handle.snapshot().total_requests, 0);
}

#[tokio::test]
async fn spawn_rejects_bad_configuration() {
    use rcjobs_sim::{spawn, SeedUser, SimError};
    let bad_version = spawn(SimConfig {
        version: "seven".into(),
        ..SimConfig::default()
    })
    .await;
    assert!(matches!(bad_version, Err(SimError::Version(_))));
    let bad_rate = spawn(SimConfig {
        fail_rate: 1.5,
        ..SimConfig::default()
    })
    .await;
    assert!(matches!(bad_rate, Err(SimError::Probability("fail_rate"))));
    let mut dup = seed(&["bot"]);
    dup.users.push(SeedUser::new("Alice"));
    assert!(matches!(
        spawn(SimConfig {
            seed: dup,
            ..SimConfig::default()
        })
        .await,
        Err(SimError::Seed(_))
    ));
    let mut invalid = seed(&["bot"]);
    invalid.users.push(SeedUser::new("has space"));
    assert!(matches!(
        spawn(SimConfig {
            seed: invalid,
            ..SimConfig::default()
        })
        .await,
        Err(SimError::Seed(_))
    ));
    let first = spawn(SimConfig::default()).await.unwrap();
    let taken = spawn(SimConfig {
        addr: first.addr(),
        ..SimConfig::default()
    })
    .await;
    assert!(matches!(taken, Err(SimError::Bind { .. })));
    assert!(first.base_url().starts_with("http://127.0.0.1:"));
    first.shutdown().await;
}
