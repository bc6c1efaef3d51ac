//! Issue 18 §5: mod_rocketchat's settings in Moodle's `config_plugins` are the source (name
//! template, account creation, retention handling), an explicit TOML value wins, a Moodle
//! edit is picked up without a restart, and a retention edit on a `rocketchat` row converges
//! on the chat server (all four fields), also without the permission to set it (recorded,
//! membership converged all the same).
#![allow(clippy::unwrap_used)]

mod common;

use common::{small_site, sql, Env, TEST_RECONCILE_SECS};
use rcjobs_sim::{Retention, SimConfig};
use rcjobs_worker::WorkerConfig;
use std::time::Duration;

/// The real defaults, the periodic reconcile shortened (never off), Moodle's settings
/// re-read every second instead of every minute.
fn config() -> WorkerConfig {
    WorkerConfig {
        reconcile_interval_secs: TEST_RECONCILE_SECS,
        moodle_settings_refresh_secs: 1,
        ..WorkerConfig::default()
    }
}

async fn set_plugin(env: &Env, name: &str, value: &str) {
    sqlx::query(sql(
        "INSERT INTO {p}config_plugins (plugin, name, value) VALUES ('mod_rocketchat', $1, $2)
         ON CONFLICT (plugin, name) DO UPDATE SET value = EXCLUDED.value",
    ))
    .bind(name)
    .bind(value)
    .execute(env.pool())
    .await
    .unwrap();
}

/// (cmid, course id) of every live chat activity.
async fn rooms(env: &Env) -> Vec<(i64, i64)> {
    sqlx::query_as(sql("SELECT cm.id, cm.course FROM {p}course_modules cm
           JOIN {p}modules m ON m.id = cm.module AND m.name = 'rocketchat'
          WHERE cm.deletioninprogress = 0 ORDER BY cm.id"))
    .fetch_all(env.pool())
    .await
    .unwrap()
}

async fn room_name(env: &Env, cmid: i64) -> String {
    sqlx::query_scalar("SELECT room_name FROM rcjobs_sync.room WHERE cmid = $1")
        .bind(cmid)
        .fetch_one(env.pool())
        .await
        .unwrap()
}

async fn room_outcome(env: &Env, cmid: i64) -> Option<(String, String)> {
    sqlx::query_as("SELECT code, detail FROM rcjobs_sync.outcome WHERE cmid = $1 AND subject = ''")
        .bind(cmid)
        .fetch_optional(env.pool())
        .await
        .unwrap()
}

async fn sync(env: &Env, cmid: i64) {
    env.enqueue_raw("synchronize_group", serde_json::json!({ "cmid": cmid }))
        .await;
    env.drain().await;
}

fn chat_retention(env: &Env, room_id: &str) -> Option<Retention> {
    env.sim
        .snapshot()
        .rooms
        .iter()
        .find(|r| r.id == room_id)
        .and_then(|r| r.retention.clone())
}

#[tokio::test]
async fn the_plugins_template_and_account_creation_are_honoured() {
    let env = Env::new(small_site(181), SimConfig::default(), config()).await;
    set_plugin(
        &env,
        "groupnametoformat",
        "{$a->moodleshortname}-{$a->courseid}-{$a->moduleid}",
    )
    .await;
    set_plugin(&env, "create_user_account_if_not_exists", "1").await;
    let w = env.start_worker(4).await;
    env.sync_all().await;
    env.drain().await;
    for (cmid, course) in rooms(&env).await {
        assert_eq!(room_name(&env, cmid).await, format!("site-{course}-{cmid}"));
    }
    // Every Moodle member is in: their accounts were created, as Moodle's setting asks.
    assert!(env.assert_converged().await > 0);
    assert!(
        env.dead_jobs().await.is_empty(),
        "{:?}",
        env.dead_jobs().await
    );
    w.stop().await;
}

#[tokio::test]
async fn an_explicit_toml_value_overrides_moodles() {
    let mut cfg = config();
    cfg.naming.template = "toml_{$a->moduleid}".into();
    cfg.explicit.set("naming.template");
    cfg.explicit.set("create_accounts"); // create_accounts = false in the file
    let env = Env::new(small_site(182), SimConfig::default(), cfg).await;
    set_plugin(
        &env,
        "groupnametoformat",
        "{$a->moodleshortname}_{$a->moduleid}",
    )
    .await;
    set_plugin(&env, "create_user_account_if_not_exists", "1").await;
    let users_before = env.sim.snapshot().users.len();
    let w = env.start_worker(4).await;
    env.sync_all().await;
    env.drain().await;
    let all = rooms(&env).await;
    assert!(!all.is_empty());
    for (cmid, _) in &all {
        assert_eq!(room_name(&env, *cmid).await, format!("toml_{cmid}"));
    }
    assert_eq!(
        env.sim.snapshot().users.len(),
        users_before,
        "no account created"
    );
    let missing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rcjobs_sync.outcome WHERE code = 'user_missing'")
            .fetch_one(env.pool())
            .await
            .unwrap();
    assert!(
        missing > 0,
        "Moodle users without accounts are recorded, not created"
    );
    w.stop().await;
}

/// Runs the retention scenario against a chat server of `version` (≤ 6.x drops the other
/// retention values whenever `retentionOverrideGlobal` is in a call; 7.x only when false).
async fn retention_converges(version: &str, seed: u64) {
    let sim = SimConfig {
        version: version.into(),
        ..SimConfig::default()
    };
    let env = Env::new(small_site(seed), sim, config()).await;
    env.sim
        .grant_permission("bot", "edit-room-retention-policy");
    let w = env.start_worker(4).await;
    env.sync_all().await;
    env.drain().await;
    let (cmid, _) = rooms(&env).await[0];
    let id = env.room_id(cmid).await.unwrap();
    assert_eq!(
        chat_retention(&env, &id),
        None,
        "retention handling is off by default"
    );

    // The admin ticks `retentionfeature`: picked up without a restart.
    set_plugin(&env, "retentionfeature", "1").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sqlx::query(sql(
        "UPDATE {p}rocketchat SET retentionenabled = 1, maxage = 30, filesonly = 1, excludepinned = 1
          WHERE id = (SELECT instance FROM {p}course_modules WHERE id = $1)",
    ))
    .bind(cmid)
    .execute(env.pool())
    .await
    .unwrap();
    sync(&env, cmid).await;
    let r = chat_retention(&env, &id).unwrap();
    assert_eq!(
        (
            r.enabled,
            r.override_global,
            r.max_age,
            r.files_only,
            r.exclude_pinned
        ),
        (Some(true), Some(true), Some(30.0), Some(true), Some(true)),
        "{version}"
    );

    // Converged: a sync reads the room's retention and writes nothing.
    env.sim.reset_counters();
    sync(&env, cmid).await;
    assert_eq!(env.sim.snapshot().count("POST rooms.saveRoomSettings"), 0);

    // Each field on its own, back to the defaults.
    for (set, check) in [
        (
            "excludepinned = 0",
            Retention {
                exclude_pinned: Some(false),
                ..r.clone()
            },
        ),
        (
            "filesonly = 0",
            Retention {
                exclude_pinned: Some(false),
                files_only: Some(false),
                ..r.clone()
            },
        ),
        (
            "maxage = 90",
            Retention {
                exclude_pinned: Some(false),
                files_only: Some(false),
                max_age: Some(90.0),
                ..r.clone()
            },
        ),
        (
            "retentionenabled = 0",
            Retention {
                exclude_pinned: Some(false),
                files_only: Some(false),
                max_age: Some(90.0),
                enabled: Some(false),
                override_global: Some(false),
                ..r.clone()
            },
        ),
    ] {
        sqlx::query(sql(&format!(
            "UPDATE {{p}}rocketchat SET {set} WHERE id = (SELECT instance FROM {{p}}course_modules WHERE id = $1)"
        )))
        .bind(cmid)
        .execute(env.pool())
        .await
        .unwrap();
        sync(&env, cmid).await;
        assert_eq!(chat_retention(&env, &id), Some(check), "{version}: {set}");
    }
    assert!(
        env.dead_jobs().await.is_empty(),
        "{:?}",
        env.dead_jobs().await
    );
    w.stop().await;
}

#[tokio::test]
async fn a_retention_edit_converges_on_7x() {
    retention_converges("7.4.0", 183).await;
}

#[tokio::test]
async fn a_retention_edit_converges_on_6x() {
    retention_converges("6.5.0", 184).await;
}

#[tokio::test]
async fn a_missing_retention_permission_is_recorded_and_membership_still_converges() {
    let mut cfg = config();
    cfg.create_accounts = true;
    let env = Env::new(small_site(185), SimConfig::default(), cfg).await;
    // Retention on in Moodle; the bot keeps the stock `bot` role, which may not set it.
    set_plugin(&env, "retentionfeature", "1").await;
    let w = env.start_worker(4).await;
    env.sync_all().await;
    env.drain().await;
    assert!(env.assert_converged().await > 0);
    let all = rooms(&env).await;
    for (cmid, _) in &all {
        let (code, detail) = room_outcome(&env, *cmid).await.unwrap();
        assert_eq!(code, "permission_missing");
        assert!(detail.contains("edit-room-retention-policy"), "{detail}");
    }
    assert!(
        env.dead_jobs().await.is_empty(),
        "{:?}",
        env.dead_jobs().await
    );

    // Granted: the next sync applies the rows' retention and clears the outcome.
    env.sim
        .grant_permission("bot", "edit-room-retention-policy");
    let (cmid, _) = all[0];
    sync(&env, cmid).await;
    assert_eq!(room_outcome(&env, cmid).await, None);
    let id = env.room_id(cmid).await.unwrap();
    let r = chat_retention(&env, &id).unwrap();
    assert_eq!(r.enabled, Some(false));
    assert_eq!(r.max_age, Some(90.0), "the row's default max age");
    w.stop().await;
}
