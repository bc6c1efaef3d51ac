//! Matrix-specific behaviour on a real Synapse (`scripts/ensure-synapse.sh`): what the
//! conformance suite cannot see through the trait (the server's own enforcement of read-only
//! and archive, the whole-content power-level writes, invites, the shared gate, the bot's
//! admin right, the localpart grammar).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rcjobs_chat::{
    Capability, ChatBackend, ChatError, NewChatUser, NewRoom, RequestGate, INVALID_USERNAME,
};
use rcjobs_matrix::{Auth, MatrixBackend, MatrixClient, Membership, RequestObserver};
use serde_json::json;

use common::*;

static N: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}.{:x}.{}",
        Utc::now().timestamp_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn room(b: &MatrixBackend) -> String {
    b.create_room(&NewRoom {
        name: unique("mx.room"),
        ..NewRoom::default()
    })
    .await
    .unwrap()
    .id
}

/// Posts a message as `token`'s user; the HTTP status.
async fn post(config: &rcjobs_matrix::MatrixConfig, token: &str, room_id: &str) -> u16 {
    let mut url = config.homeserver_url.clone();
    let txn = unique(&format!("txn{}", Utc::now().timestamp_millis()));
    url.path_segments_mut().unwrap().pop_if_empty().extend([
        "_matrix",
        "client",
        "v3",
        "rooms",
        room_id,
        "send",
        "m.room.message",
        &txn,
    ]);
    reqwest::Client::new()
        .put(url)
        .bearer_auth(token)
        .json(&json!({"msgtype": "m.text", "body": txn}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn read_only_and_archive_are_enforced_by_the_server_and_reversible() {
    let synapse = Synapse::get();
    let config = synapse.config();
    let b = connect(config.clone()).await;
    let users = seed(&b, vec![unique("mx.student"), unique("mx.teacher")]).await;
    let r = room(&b).await;
    b.add_members(&r, &users).await.unwrap();
    b.set_moderator(&r, &users[1], true).await.unwrap();
    let token = |u: &str| {
        let id = b.user_id_of(u).unwrap();
        let client = b.client().clone();
        async move {
            client
                .login_as(&id, Duration::from_secs(300))
                .await
                .unwrap()
                .expose()
                .to_owned()
        }
    };
    let (student, teacher) = (token(&users[0]).await, token(&users[1]).await);
    assert_eq!(post(&config, &student, &r).await, 200);
    b.set_read_only(&r, true).await.unwrap();
    assert_eq!(
        post(&config, &student, &r).await,
        403,
        "read-only: students may not post"
    );
    assert_eq!(
        post(&config, &teacher, &r).await,
        200,
        "moderators still post"
    );

    let before = b.client().power_levels(&r).await.unwrap();
    b.archive_room(&r).await.unwrap();
    let archived = b.client().power_levels(&r).await.unwrap();
    assert_eq!(archived["events_default"], json!(100));
    assert_eq!(archived["kick"], json!(100));
    assert_eq!(
        post(&config, &teacher, &r).await,
        403,
        "archived: nobody but the bot posts"
    );
    b.unarchive_room(&r).await.unwrap();
    let after = b.client().power_levels(&r).await.unwrap();
    assert_eq!(
        after, before,
        "the unarchive restores the power levels exactly"
    );
    assert_eq!(post(&config, &teacher, &r).await, 200);
    assert_eq!(post(&config, &student, &r).await, 403, "still read-only");
}

#[tokio::test]
async fn one_power_level_write_per_batch_keeps_the_rest_of_the_document() {
    let synapse = Synapse::get();
    let b = connect(synapse.config()).await;
    let users = seed(&b, (0..3).map(|_| unique("mx.mod")).collect()).await;
    let r = room(&b).await;
    b.add_members(&r, &users).await.unwrap();
    let before = b.client().power_levels(&r).await.unwrap();
    let changes: Vec<(String, bool)> = users.iter().map(|u| (u.clone(), true)).collect();
    b.set_moderators(&r, &changes).await.unwrap();
    let after = b.client().power_levels(&r).await.unwrap();
    let mut expected = before.clone();
    for u in &users {
        expected["users"][b.user_id_of(u).unwrap()] = json!(50);
    }
    assert_eq!(
        after, expected,
        "only the users changed, everything else kept"
    );
    // The bot, creator of a v12 room, is never written into `users` (Synapse refuses that).
    assert!(after["users"].get(b.bot_user_id()).is_none());
    b.set_moderators(&r, &[(b.bot_username().to_owned(), false)])
        .await
        .unwrap();
    let bot = b
        .list_members(&r)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.username == b.bot_username())
        .unwrap();
    assert!(bot.owner);
}

#[tokio::test]
async fn invite_mode_checks_existence_and_leaves_invites() {
    let synapse = Synapse::get();
    let mut config = synapse.config();
    config.membership = Membership::Invite;
    let b = connect(config).await;
    let users = seed(&b, vec![unique("mx.inv")]).await;
    let ghost = unique("mx.ghost");
    let r = room(&b).await;
    let outcome = b
        .add_members(&r, &[users[0].clone(), ghost.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcome.unknown,
        vec![ghost],
        "Synapse's 200 for an unknown invitee is not trusted"
    );
    assert_eq!(outcome.calls, 4, "one lookup and one invite per user");
    let id = b.user_id_of(&users[0]).unwrap();
    assert_eq!(
        b.client().membership(&r, &id).await.unwrap().as_deref(),
        Some("invite")
    );
    let listed: Vec<String> = b
        .list_members(&r)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.username)
        .collect();
    assert!(
        !listed.contains(&users[0]),
        "an invitee is a member once they accept: {listed:?}"
    );
    b.add_members(&r, &users).await.unwrap();
    b.remove_member(&r, &users[0]).await.unwrap();
    assert_eq!(
        b.client().membership(&r, &id).await.unwrap().as_deref(),
        Some("leave")
    );
}

#[derive(Default)]
struct RecordingGate {
    acquired: AtomicUsize,
    paused: Mutex<Vec<(String, DateTime<Utc>)>>,
}

#[async_trait]
impl RequestGate for RecordingGate {
    async fn acquire(&self, _route: &str) {
        self.acquired.fetch_add(1, Ordering::SeqCst);
    }
    async fn pause(&self, route: &str, until: DateTime<Utc>) {
        self.paused.lock().unwrap().push((route.to_owned(), until));
    }
}

#[derive(Default)]
struct Counter(AtomicUsize);

impl RequestObserver for Counter {
    fn on_response(&self, _route: &'static str, _status: u16, _elapsed: Duration) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_429_pauses_the_shared_gate_and_the_next_call_waits_without_sending() {
    let synapse = Synapse::get();
    let gate = Arc::new(RecordingGate::default());
    let sent = Arc::new(Counter::default());
    let client = MatrixClient::builder(synapse.strict_config())
        .gate(gate.clone())
        .observer(sent.clone())
        .build()
        .unwrap();
    let b = MatrixBackend::connect(client).await.unwrap();
    let mut limited = None;
    for _ in 0..20 {
        match b
            .create_room(&NewRoom {
                name: unique("mx.rl"),
                ..NewRoom::default()
            })
            .await
        {
            Ok(_) => {}
            Err(ChatError::RateLimited { endpoint, retry_at }) => {
                limited = Some((endpoint, retry_at));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (endpoint, retry_at) =
        limited.expect("Synapse's default rc_room_creation refuses within 20");
    assert_eq!(endpoint, "createRoom");
    assert!(
        retry_at > Utc::now(),
        "the server's retry_after_ms is in the future"
    );
    assert_eq!(
        gate.paused.lock().unwrap().as_slice(),
        &[("createRoom".to_owned(), retry_at)],
        "the shared gate learnt the server's retry time"
    );
    assert_eq!(
        gate.acquired.load(Ordering::SeqCst),
        sent.0.load(Ordering::SeqCst),
        "every request went through the gate"
    );
    let sent_before = sent.0.load(Ordering::SeqCst);
    match b
        .create_room(&NewRoom {
            name: unique("mx.rl"),
            ..NewRoom::default()
        })
        .await
    {
        Err(ChatError::RateLimited {
            retry_at: again, ..
        }) => assert_eq!(again, retry_at),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sent.0.load(Ordering::SeqCst),
        sent_before,
        "nothing sent into a known refusal"
    );
}

#[tokio::test]
async fn usernames_outside_the_localpart_grammar_are_invalid_not_fatal() {
    let synapse = Synapse::get();
    let b = connect(synapse.config()).await;
    for bad in ["Bad Name", "_svc", "12345", "josé", "@x:elsewhere.org"] {
        match b.validate_username(bad) {
            Err(ChatError::Permanent { code, .. }) => assert_eq!(code, INVALID_USERNAME, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
        assert_eq!(b.find_user(bad).await.unwrap(), None, "{bad}");
    }
    b.validate_username("Alice.Smith-2").unwrap();
    let new = NewChatUser {
        username: "o'neil".into(),
        name: "O'Neil".into(),
        email: "oneil@example.edu".into(),
        password: "x".into(),
    };
    match b.create_user(&new).await {
        Err(ChatError::Permanent { code, .. }) => assert_eq!(code, INVALID_USERNAME),
        other => panic!("{other:?}"),
    }
    let r = room(&b).await;
    let outcome = b
        .add_members(&r, &["_svc".to_owned(), "12345".to_owned()])
        .await
        .unwrap();
    assert_eq!(outcome.unknown.len(), 2);
    assert_eq!(outcome.calls, 0);
    // The created account has no password: SSO sites sign users in through their IdP.
    let user = unique("mx.sso");
    b.create_user(&NewChatUser {
        username: user.clone(),
        name: "S S".into(),
        email: String::new(),
        password: "ignored".into(),
    })
    .await
    .unwrap();
    let found = b
        .find_user(&user.to_uppercase())
        .await
        .unwrap()
        .expect("case-folded");
    assert_eq!(found.id, format!("@{user}:{}", b.server_name()));
}

#[tokio::test]
async fn missing_capabilities_names_the_server_admin_right() {
    let synapse = Synapse::get();
    let admin = connect(synapse.config()).await;
    let needed = [Capability::CreateRooms, Capability::CreateUsers];
    assert!(admin
        .missing_capabilities(&needed)
        .await
        .unwrap()
        .is_empty());
    let user = seed(&admin, vec![unique("mx.plain")]).await;
    let token = admin
        .client()
        .login_as(
            &admin.user_id_of(&user[0]).unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let mut config = synapse.config();
    config.auth = Auth::Token(token);
    let plain = connect(config).await;
    let missing = plain.missing_capabilities(&needed).await.unwrap();
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing[0].1.contains("server admin"), "{missing:?}");
}

#[tokio::test]
async fn clean_history_purges_messages_up_to_the_reset() {
    let synapse = Synapse::get();
    let config = synapse.config();
    let b = connect(config.clone()).await;
    let users = seed(&b, vec![unique("mx.hist")]).await;
    let r = room(&b).await;
    b.add_members(&r, &users).await.unwrap();
    let token = b
        .client()
        .login_as(&b.user_id_of(&users[0]).unwrap(), Duration::from_secs(120))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(post(&config, token.expose(), &r).await, 200);
    }
    let messages = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| e["type"] == "m.room.message" && e["content"].get("body").is_some())
            .count()
    };
    assert_eq!(
        messages(&b.client().recent_events(&r, 50).await.unwrap()),
        3
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let reset = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        post(&config, token.expose(), &r).await,
        200,
        "after the reset"
    );
    b.clean_history(&r, reset).await.unwrap();
    let left = b.client().recent_events(&r, 50).await.unwrap();
    eprintln!(
        "reset {} left {:?}",
        reset.timestamp_millis(),
        left.iter()
            .map(|e| (
                e["type"].clone(),
                e["content"]["body"].clone(),
                e["origin_server_ts"].clone()
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        messages(&left),
        1,
        "only the message after the reset is left: {left:?}"
    );
}

#[tokio::test]
async fn password_login_once_and_a_bad_token_is_unauthorized() {
    let synapse = Synapse::get();
    let logins = Arc::new(LoginCounter::default());
    let client = MatrixClient::builder(synapse.password_config())
        .observer(logins.clone())
        .build()
        .unwrap();
    let b = MatrixBackend::connect(client).await.unwrap();
    assert_eq!(b.bot_username(), "rcbot");
    room(&b).await;
    b.find_user("nobody.here").await.unwrap();
    assert_eq!(
        logins.0.load(Ordering::SeqCst),
        1,
        "one login, the token kept"
    );

    let mut config = synapse.config();
    config.auth = Auth::Token("syt_not_a_real_token".into());
    let bad = MatrixClient::new(config).unwrap();
    let err = MatrixBackend::connect(bad).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("syt_not_a_real_token"), "{text}");
    match ChatError::from(err) {
        ChatError::Unauthorized { .. } => {}
        other => panic!("{other:?}"),
    }
}

#[derive(Default)]
struct LoginCounter(AtomicUsize);

impl RequestObserver for LoginCounter {
    fn on_response(&self, route: &'static str, _status: u16, _elapsed: Duration) {
        if route == "login" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
