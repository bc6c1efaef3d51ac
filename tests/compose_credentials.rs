//! `docker compose up` logs the worker in to its own simulator: the `sim` service's bot is the
//! account the `worker` service uses (same user id and token, taken from docker-compose.yml
//! with its defaults), and the bot has the permissions docs/handlers.md asks for. Runs the
//! built `rcjobs sim` with the service's command and environment (no Docker needed) and
//! connects the real Rocket.Chat client with the worker's credentials.
#![allow(clippy::unwrap_used)]

use rcjobs_chat::ChatBackend;
use rcjobs_rocketchat::{Auth, RocketChatBackend, RocketChatClient, RocketChatConfig, Secret};
use serde_yaml::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `${NAME:-default}` as compose resolves it with NAME unset.
fn with_defaults(v: &str) -> String {
    let mut out = v.to_string();
    while let Some(start) = out.find("${") {
        let end = start + out[start..].find('}').unwrap();
        let inner = &out[start + 2..end];
        let default = inner.split_once(":-").map_or("", |(_, d)| d).to_string();
        out.replace_range(start..=end, &default);
    }
    out
}

fn env_of(node: &Value) -> Vec<(String, String)> {
    node.as_mapping()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), with_defaults(v.as_str()?))))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_worker_logs_in_to_the_compose_simulator() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/docker-compose.yml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let worker_env = env_of(&doc["x-rcjobs-env"]);
    let get = |k: &str| {
        worker_env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let sim = &doc["services"]["sim"];
    let mut args: Vec<String> = sim["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = args.iter().position(|a| a == "--addr").unwrap() + 1;
    args[addr] = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcjobs"))
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env_of(&sim["environment"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "simulator did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cfg = RocketChatConfig::new(
        url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        Auth::Token {
            user_id: get("ROCKETCHAT_USER_ID"),
            token: Secret::new(get("ROCKETCHAT_TOKEN")),
        },
    );
    let connected = RocketChatBackend::connect(RocketChatClient::new(cfg).unwrap()).await;
    let _ = child.kill();
    let _ = child.wait();
    let backend = connected.expect("the worker's credentials are the simulator's bot");
    assert_eq!(backend.bot_username(), "rcjobs.bot");
}
