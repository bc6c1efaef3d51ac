//! The start-up permission check (issue 18 §4) against the simulator's permission table: a
//! bot without `create-user` (account creation on) and without `unarchive-room` is told
//! exactly those two, each with what it is needed for; with account creation off, only
//! `unarchive-room`; once granted, nothing; with retention handling on,
//! `edit-room-retention-policy`. The log line itself is checked through the real
//! `rcjobs worker` binary in `tests/worker_preflight.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{creating_accounts, small_site, Env};
use rcjobs_chat::Capability;
use rcjobs_rocketchat::{Auth, RocketChatBackend, RocketChatClient, RocketChatConfig, Secret};
use rcjobs_sim::SimConfig;
use rcjobs_worker::preflight::{
    check_capabilities, missing_permissions, needed_capabilities, Finding,
};

async fn backend(env: &Env) -> RocketChatBackend {
    let rc = RocketChatConfig::new(
        url::Url::parse(&env.sim.base_url()).unwrap(),
        Auth::Token {
            user_id: env.sim.bot_user_id().to_owned(),
            token: Secret::new(env.sim.bot_token().to_owned()),
        },
    );
    RocketChatBackend::connect(RocketChatClient::builder(rc).build().unwrap())
        .await
        .unwrap()
}

fn permissions(f: &[Finding]) -> Vec<&str> {
    let mut v: Vec<&str> = f.iter().map(|f| f.permission.as_str()).collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_lacking_permissions_is_told_exactly_which() {
    // Fault-free: the check is one read at start-up; a failed read says "not checked".
    let env = Env::new(small_site(31), SimConfig::default(), creating_accounts()).await;
    // Env grants what docs/handlers.md asks for; take both away again (the stock `bot` role).
    env.sim.revoke_permission("bot", "create-user");
    env.sim.revoke_permission("bot", "unarchive-room");

    // The worker's own check (account creation on in this engine's settings).
    let found = check_capabilities(&env.engine).await;
    assert_eq!(
        permissions(&found),
        ["create-user", "unarchive-room"],
        "{found:?}"
    );
    for f in &found {
        let m = f.message();
        assert!(m.contains(&format!("`{}`", f.permission)), "{m}");
        assert!(m.contains(f.capability.purpose()), "{m}");
    }
    assert!(found
        .iter()
        .any(|f| f.capability == Capability::CreateUsers && f.permission == "create-user"));

    // Account creation off: creating users is not needed, so not reported.
    let b = backend(&env).await;
    let off = missing_permissions(&b, &needed_capabilities(false, false))
        .await
        .unwrap();
    assert_eq!(permissions(&off), ["unarchive-room"], "{off:?}");

    // Granted (as an admin would): nothing left to say.
    env.sim.grant_permission("bot", "create-user");
    env.sim.grant_permission("bot", "unarchive-room");
    assert!(check_capabilities(&env.engine).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_handling_on_needs_the_retention_permission() {
    let cfg = rcjobs_worker::WorkerConfig {
        retention_feature: true,
        ..creating_accounts()
    };
    let env = Env::new(small_site(32), SimConfig::default(), cfg).await;
    // Env grants `create-user` and `unarchive-room`; the stock `bot` role lacks retention.
    let found = check_capabilities(&env.engine).await;
    assert_eq!(
        permissions(&found),
        ["edit-room-retention-policy"],
        "{found:?}"
    );
    assert_eq!(found[0].capability, Capability::EditRetention);
    assert!(found[0]
        .message()
        .contains(Capability::EditRetention.purpose()));
}
