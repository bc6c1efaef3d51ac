//! Password login, re-login after the token is revoked, and no secret in any output.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rcjobs_chat::{ChatBackend, ChatError};
use rcjobs_rocketchat::{Auth, ErrorClass, RocketChatBackend, RocketChatClient};
use rcjobs_sim::{SimConfig, SimHandle};

const PASSWORD: &str = "bot-Pa55word-9f8e7d";

async fn sim_with_password() -> SimHandle {
    let mut cfg = SimConfig::default();
    cfg.seed.bot.password = Some(PASSWORD.into());
    sim(cfg).await
}

fn password_client(sim: &SimHandle, password: &str) -> RocketChatClient {
    let mut cfg = config(sim);
    cfg.auth = Auth::Password {
        user: "rcjobs.bot".into(),
        password: password.into(),
    };
    RocketChatClient::new(cfg).unwrap()
}

#[tokio::test]
async fn password_login_once_then_token_reuse() {
    let sim = sim_with_password().await;
    let client = password_client(&sim, PASSWORD);
    assert_eq!(client.user_id(), None);
    let backend = RocketChatBackend::connect(client.clone()).await.unwrap();
    assert_eq!(backend.bot_username(), "rcjobs.bot");
    assert_eq!(client.user_id().as_deref(), Some(sim.bot_user_id()));
    for _ in 0..3 {
        backend.find_user("rcjobs.bot").await.unwrap().unwrap();
    }
    assert_eq!(sim.snapshot().count("POST login"), 1);
}

#[tokio::test]
async fn revoked_token_triggers_one_relogin() {
    let sim = sim_with_password().await;
    let client = password_client(&sim, PASSWORD);
    client.users_info_by_username("rcjobs.bot").await.unwrap();
    // Deactivating drops every login token; reactivating does not bring them back.
    sim.set_user_active("rcjobs.bot", false);
    sim.set_user_active("rcjobs.bot", true);
    client.users_info_by_username("rcjobs.bot").await.unwrap();
    let snap = sim.snapshot();
    assert_eq!(snap.count("POST login"), 2);
    assert_eq!(snap.count("GET users.info"), 3); // ok, 401, ok
}

#[tokio::test]
async fn wrong_password_is_unauthorized_and_not_printed() {
    let sim = sim_with_password().await;
    let wrong = "not-the-Pa55word-0000";
    let client = password_client(&sim, wrong);
    let err = client
        .users_info_by_username("rcjobs.bot")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unauthorized, "{err:?}");
    let chat: ChatError = err.clone().into();
    let printed = format!(
        "{err} {err:?} {chat} {chat:?} {client:?} {:?}",
        client.config()
    );
    assert!(!printed.contains(wrong), "{printed}");
    assert!(!printed.contains(PASSWORD), "{printed}");
    assert_eq!(sim.snapshot().count("POST login"), 1);
}

#[tokio::test]
async fn token_auth_never_logs_in() {
    let sim = sim_with_password().await;
    let client = client(&sim);
    sim.set_user_active("rcjobs.bot", false);
    sim.set_user_active("rcjobs.bot", true);
    let err = client
        .users_info_by_username("rcjobs.bot")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unauthorized);
    assert_eq!(sim.snapshot().count("POST login"), 0);
    let printed = format!("{err} {err:?} {client:?}");
    assert!(!printed.contains(sim.bot_token()), "{printed}");
}
