//! Throughput sanity check (a benchmark, not a test): a 10,000-member group, then a mixed load
//! of member pages, user lookups and no-op invites from concurrent clients.
//!
//! `cargo bench -p rcjobs-sim --bench throughput` (add `--profile dev` to skip a release build).
#![allow(clippy::unwrap_used, missing_docs)]

use rcjobs_sim::{spawn, SeedUser, SimConfig};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MEMBERS: usize = 10_000;
const CLIENTS: usize = 64;
const RUN: Duration = Duration::from_secs(4);

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = spawn(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let (uid, token) = (sim.bot_user_id().to_string(), sim.bot_token().to_string());
    let post = |endpoint: &str, body: Value| {
        http.post(format!("{}/api/v1/{endpoint}", sim.base_url()))
            .header("X-User-Id", &uid)
            .header("X-Auth-Token", &token)
            .json(&body)
            .send()
    };

    let ids: Vec<String> = (0..MEMBERS)
        .map(|i| sim.add_user(SeedUser::new(&format!("member{i:05}"))))
        .collect();
    let created: Value = post("groups.create", json!({ "name": "huge" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rid = created["group"]["_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    for chunk in ids.chunks(500) {
        let r = post("groups.invite", json!({ "roomId": rid, "userIds": chunk }))
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    println!(
        "invite {MEMBERS} members in batches of 500: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    for _ in 0..10 {
        let r = http
            .get(format!("{}/api/v1/groups.members", sim.base_url()))
            .query(&[("roomId", rid.as_str()), ("count", "0")])
            .header("X-User-Id", &uid)
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["total"].as_u64(), Some(MEMBERS as u64 + 1));
    }
    println!(
        "groups.members count=0 on {} members: {:?} per call",
        MEMBERS + 1,
        started.elapsed() / 10
    );

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, base, uid, token, rid, ids, done) = (
            http.clone(),
            sim.base_url(),
            uid.clone(),
            token.clone(),
            rid.clone(),
            ids.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                let req = match i % 3 {
                    0 => http.get(format!("{base}/api/v1/groups.members")).query(&[
                        ("roomId", rid.clone()),
                        ("count", "100".into()),
                        ("offset", ((i * 37) % MEMBERS).to_string()),
                    ]),
                    1 => http
                        .get(format!("{base}/api/v1/users.info"))
                        .query(&[("userId", ids[(i * 7919) % MEMBERS].clone())]),
                    _ => http
                        .post(format!("{base}/api/v1/groups.invite"))
                        .json(&json!({ "roomId": rid, "userId": ids[(i * 104_729) % MEMBERS] })),
                };
                let r = req
                    .header("X-User-Id", &uid)
                    .header("X-Auth-Token", &token)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                let _ = r.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += CLIENTS;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "mixed load, {CLIENTS} clients for {RUN:?}: {n} requests, {:.0} req/s",
        n as f64 / RUN.as_secs_f64()
    );
    let started = Instant::now();
    let snap = sim.snapshot();
    println!(
        "snapshot with {} members: {:?}",
        snap.room("huge").unwrap().members.len(),
        started.elapsed()
    );
    sim.shutdown().await;
}
