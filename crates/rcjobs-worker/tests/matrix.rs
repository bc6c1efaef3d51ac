//! The worker on a real Synapse, put together by `rcjobs_worker::wiring` exactly as
//! `rcjobs worker --chat-backend matrix` does: a course's room is created, filled with
//! Moodle's members (accounts created through the admin API) and moderators, a member whose
//! username Matrix cannot take (all digits, as student numbers are) is recorded
//! `invalid_username`, and the requests are counted under the Matrix routes. Needs `scripts/ensure-synapse.sh` (run by
//! `scripts/test.sh`), which writes `target/synapse/env`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{small_site, sql, Env};
use rcjobs_chat::ChatBackend;
use rcjobs_producer::{Job, SynchronizeGroup};
use rcjobs_sim::SimConfig;
use rcjobs_testkit::wait_for;
use rcjobs_worker::wiring::matrix::{Auth, MatrixBackend, MatrixClient, MatrixConfig, Secret};
use rcjobs_worker::wiring::{build_engine, metrics_for, ChatConnection, EngineParts};
use rcjobs_worker::WorkerConfig;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The generous-limits homeserver of `scripts/ensure-synapse.sh`.
fn synapse() -> MatrixConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/synapse/env");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("the Matrix tests need a real Synapse: run `bash scripts/ensure-synapse.sh` (it writes {path}): {e}")
    });
    let vars: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let mut cfg = MatrixConfig::new(
        url::Url::parse(vars["MATRIX_HOMESERVER_URL"]).unwrap(),
        Auth::Token(Secret::new(vars["MATRIX_ACCESS_TOKEN"])),
    );
    cfg.request_timeout = Duration::from_secs(20);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_converges_on_synapse_through_the_wiring() {
    let env = Env::new(
        small_site(51),
        SimConfig::default(),
        WorkerConfig::default(),
    )
    .await;
    let (cmid, _) = *env
        .live_cmids()
        .await
        .iter()
        .find(|(_, visible)| *visible)
        .unwrap();
    // A student number as username: fine on Rocket.Chat, reserved for guests on Matrix.
    let renamed = env
        .truth(cmid)
        .await
        .into_iter()
        .find(|(_, m)| !m)
        .unwrap()
        .0;
    let numeric = "20231234";
    sqlx::query(sql("UPDATE {p}user SET username = $2 WHERE username = $1"))
        .bind(&renamed)
        .bind(numeric)
        .execute(env.pool())
        .await
        .unwrap();
    // Two more moderators than Moodle had: the grants go out as one power-level write.
    let students: Vec<String> = env
        .truth(cmid)
        .await
        .into_iter()
        .filter(|(u, m)| !m && u != numeric)
        .map(|(u, _)| u)
        .take(2)
        .collect();
    for u in &students {
        sqlx::query(sql(
            "INSERT INTO {p}role_assignments (roleid, contextid, userid)
             SELECT r.id, ctx.id, u.id FROM {p}role r, {p}context ctx, {p}user u
              WHERE r.shortname = 'editingteacher' AND ctx.contextlevel = 70 AND ctx.instanceid = $1
                AND u.username = $2",
        ))
        .bind(cmid)
        .bind(u)
        .execute(env.pool())
        .await
        .unwrap();
    }
    let mut cfg = WorkerConfig {
        create_accounts: true,
        ..WorkerConfig::default()
    };
    // Synapse outlives the test database: a name of this run's own, so no earlier run's
    // room (an alias on the server) is in the way.
    cfg.naming.template = "{$a->moodleid}_{$a->moduleid}".into();
    cfg.naming.site_id = format!("wt{}", chrono::Utc::now().timestamp_micros());
    cfg.explicit.set("naming.template");
    let chat = ChatConnection::Matrix(synapse());
    let metrics = metrics_for(&chat).unwrap();
    let engine = build_engine(EngineParts {
        pool: env.pool().clone(),
        moodle: env.moodle.clone(),
        chat,
        config: cfg,
        metrics: metrics.clone(),
        observer: None,
    })
    .await
    .unwrap();
    let worker = env.start_worker_on(engine, 4).await;
    env.enqueue(&Job::SynchronizeGroup(SynchronizeGroup {
        v: 1,
        cmid: Some(cmid),
        rocketchatid: None,
        coursecontextid: None,
        courseid: None,
        periodic: false,
    }))
    .await;
    let pool = env.pool().clone();
    let room: String = wait_for("room synced on Synapse", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar(
                "SELECT room_id FROM rcjobs_sync.room
                  WHERE cmid = $1 AND backend = 'matrix' AND last_result IS NOT NULL",
            )
            .bind(cmid)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
        }
    })
    .await;
    worker.stop().await;
    assert!(
        env.dead_jobs().await.is_empty(),
        "{:?}",
        env.dead_jobs().await
    );

    let server = MatrixBackend::connect(MatrixClient::new(synapse()).unwrap())
        .await
        .unwrap();
    let members: BTreeMap<String, bool> = server
        .list_members(&room)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.username != server.bot_username())
        .map(|m| (m.username, m.moderator))
        .collect();
    let mut truth = env.truth(cmid).await;
    assert!(truth.remove(numeric).is_some());
    assert!(!truth.is_empty());
    assert_eq!(members, truth, "Matrix room {room} of cm {cmid}");
    let outcomes: Vec<(String, String)> =
        sqlx::query_as("SELECT subject, code FROM rcjobs_sync.outcome WHERE cmid = $1")
            .bind(cmid)
            .fetch_all(env.pool())
            .await
            .unwrap();
    assert_eq!(
        outcomes,
        [(numeric.to_owned(), "invalid_username".to_owned())]
    );
    let text = metrics.encode().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("rcjobs_chat_requests_total{")
                && l.contains("backend=\"matrix\"")
                && l.contains("endpoint=\"createRoom\"")),
        "the wiring's observer counts Matrix routes"
    );
    assert!(truth.values().filter(|m| **m).count() >= 3, "{truth:?}");
    let power_level_writes: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("rcjobs_chat_requests_total{")
                && l.contains("endpoint=\"state.power_levels.put\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        power_level_writes, 1.0,
        "a room's moderator grants are one power-level write on Matrix"
    );
}
