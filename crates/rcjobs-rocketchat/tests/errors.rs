//! Every error class, produced by the simulator and classified by the client.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use rcjobs_chat::{ChatBackend, ChatError, NewChatUser, NewRoom};
use rcjobs_rocketchat::{
    Auth, ErrorClass, RocketChatClient, RocketChatError, RoomSel, TransportKind, UserSel,
};
use rcjobs_sim::SimConfig;

#[tokio::test]
async fn unauthorized_token_is_classified_and_never_printed() {
    let sim = sim(SimConfig::default()).await;
    let mut cfg = config(&sim);
    let secret = "WRONG-token-e3b0c44298fc1c149afbf4c8996fb92427ae41e4";
    cfg.auth = Auth::Token {
        user_id: sim.bot_user_id().to_owned(),
        token: secret.into(),
    };
    let client = RocketChatClient::new(cfg.clone()).unwrap();
    let err = client
        .users_info_by_username("rcjobs.bot")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unauthorized, "{err:?}");
    let chat: ChatError = err.clone().into();
    assert!(matches!(chat, ChatError::Unauthorized { .. }));
    let printed = format!("{err} {err:?} {chat} {chat:?} {client:?} {cfg:?}");
    assert!(!printed.contains(secret), "token leaked: {printed}");
    // The real token is not printed either.
    let good = common::client(&sim);
    let printed = format!("{good:?} {:?}", good.config());
    assert!(!printed.contains(sim.bot_token()), "{printed}");
}

#[tokio::test]
async fn not_found_conflict_forbidden_and_permanent() {
    let sim = sim(SimConfig::default()).await;
    let backend = backend(&sim).await;
    let client = backend.client();

    // NotFound: raw error, and Ok(None) through the backend.
    let err = client
        .groups_info(RoomSel::Id("nosuchroomid12345"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert_eq!(err.error_type(), Some("error-room-not-found"));
    assert_eq!(backend.room_by_id("nosuchroomid12345").await.unwrap(), None);
    assert_eq!(backend.room_by_name("no-such-room").await.unwrap(), None);
    let chat: ChatError = client
        .groups_archive("nosuchroomid12345")
        .await
        .unwrap_err()
        .into();
    assert!(matches!(chat, ChatError::RoomNotFound { .. }), "{chat:?}");

    // Conflict: the second create of the same name.
    let room = backend
        .create_room(&NewRoom {
            name: "course-101".into(),
            read_only: false,
            retention_days: None,
        })
        .await
        .unwrap();
    assert_eq!(
        backend
            .room_by_name("course-101")
            .await
            .unwrap()
            .unwrap()
            .id,
        room.id
    );
    let again = backend
        .create_room(&NewRoom {
            name: "course-101".into(),
            read_only: false,
            retention_days: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&again, ChatError::Conflict { code, .. } if code == "error-duplicate-channel-name"),
        "{again:?}"
    );

    // Forbidden: the bot role has no `create-user`.
    let forbidden = backend
        .create_user(&NewChatUser {
            username: "newcomer".into(),
            name: "New Comer".into(),
            email: "newcomer@example.test".into(),
            password: "pw-0123456789".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(forbidden, ChatError::Forbidden { .. }),
        "{forbidden:?}"
    );

    // Permanent: an invalid room name.
    let bad = backend
        .create_room(&NewRoom {
            name: "bad name!".into(),
            read_only: false,
            retention_days: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, ChatError::Permanent { code, .. } if code == "error-invalid-room-name"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retryable_and_gets_are_retried() {
    let sim = sim(SimConfig::default()).await;
    let backend = backend(&sim).await;
    let room = backend
        .create_room(&NewRoom {
            name: "r5xx".into(),
            read_only: false,
            retention_days: None,
        })
        .await
        .unwrap();
    let client = backend.client();
    sim.reset_counters();
    sim.set_fail_rate(1.0);

    let err = client.groups_info(RoomSel::Id(&room.id)).await.unwrap_err();
    assert!(
        matches!(err, RocketChatError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(ChatError::from(err).is_transient());
    // One call plus `get_retries` (2) retries for a GET.
    assert_eq!(sim.snapshot().count("GET groups.info"), 3);

    // POSTs are not retried by the client.
    let err = client.groups_archive(&room.id).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(sim.snapshot().count("POST groups.archive"), 1);

    // And the fault passing, the same GET succeeds.
    sim.set_fail_rate(0.0);
    assert_eq!(
        client.groups_info(RoomSel::Id(&room.id)).await.unwrap().id,
        room.id
    );
}

#[tokio::test]
async fn dropped_connections_are_transient() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    sim.set_drop_rate(1.0);
    let err = client
        .users_info_by_username("rcjobs.bot")
        .await
        .unwrap_err();
    assert!(matches!(err, RocketChatError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(ChatError::from(err).is_transient());
}

#[tokio::test]
async fn request_timeout_against_a_slow_server() {
    let sim = sim(SimConfig {
        slow_delay: Duration::from_secs(20),
        ..SimConfig::default()
    })
    .await;
    let mut cfg = config(&sim);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.get_retries = 0;
    let client = RocketChatClient::new(cfg).unwrap();
    // Fine while the server is fast.
    client.users_info_by_username("rcjobs.bot").await.unwrap();
    sim.set_timeout_rate(1.0);
    let started = Instant::now();
    let err = client
        .users_info_by_username("rcjobs.bot")
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            RocketChatError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "timeout not enforced: {elapsed:?}"
    );
    assert!(ChatError::from(err).is_transient());
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let sim = sim(SimConfig::default()).await;
    let cfg = config(&sim);
    sim.shutdown().await;
    let client = RocketChatClient::new(cfg).unwrap();
    let err = client.users_info_by_username("x").await.unwrap_err();
    assert!(
        matches!(
            err,
            RocketChatError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn already_in_state_refusals_are_errors_raw_and_ok_through_the_backend() {
    let sim = admin_sim().await;
    add_users(&sim, "member", 2);
    let backend = backend(&sim).await;
    let client = backend.client();
    let room = backend
        .create_room(&NewRoom {
            name: "idem".into(),
            read_only: false,
            retention_days: None,
        })
        .await
        .unwrap();
    let id = room.id.as_str();
    backend
        .add_members(id, &["member00000".into()])
        .await
        .unwrap();

    // Raw: the server refuses, and the error says it is already in state.
    let raw = client
        .groups_kick(id, UserSel::Username("member00001"))
        .await
        .unwrap_err();
    assert_eq!(raw.error_type(), Some("error-user-not-in-room"));
    assert!(raw.is_already_in_state());
    client
        .groups_add_moderator(id, UserSel::Username("member00000"))
        .await
        .unwrap();
    let raw = client
        .groups_add_moderator(id, UserSel::Username("member00000"))
        .await
        .unwrap_err();
    assert_eq!(raw.error_type(), Some("error-user-already-moderator"));
    assert!(raw.is_already_in_state());
    let raw = client.groups_set_read_only(id, false).await.unwrap_err();
    assert!(raw.is_already_in_state(), "{raw:?}");

    // Backend: every repeat converges to Ok.
    backend
        .set_moderator(id, "member00000", true)
        .await
        .unwrap();
    backend
        .set_moderator(id, "member00000", false)
        .await
        .unwrap();
    backend
        .set_moderator(id, "member00000", false)
        .await
        .unwrap();
    backend
        .set_moderator(id, "member00001", false)
        .await
        .unwrap(); // not a member
    backend.remove_member(id, "member00001").await.unwrap(); // not a member
    backend.remove_member(id, "nobody-at-all").await.unwrap(); // not a user
    backend.remove_member(id, "member00000").await.unwrap();
    backend.remove_member(id, "member00000").await.unwrap();
    backend.set_read_only(id, true).await.unwrap();
    backend.set_read_only(id, true).await.unwrap();
    backend.set_read_only(id, false).await.unwrap();
    backend.unarchive_room(id).await.unwrap(); // active room
    backend.archive_room(id).await.unwrap();
    backend.archive_room(id).await.unwrap();
    assert!(backend.room_by_id(id).await.unwrap().unwrap().archived);
    backend.unarchive_room(id).await.unwrap();
    assert!(!backend.room_by_id(id).await.unwrap().unwrap().archived);
    backend.delete_room(id).await.unwrap();
    backend.delete_room(id).await.unwrap();
    assert_eq!(backend.room_by_id(id).await.unwrap(), None);
    // The bot is never removed.
    let snap_before = sim.snapshot().count("POST groups.kick");
    backend.remove_member(id, "RCJOBS.BOT").await.unwrap();
    assert_eq!(sim.snapshot().count("POST groups.kick"), snap_before);
}
