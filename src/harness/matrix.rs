//! The Matrix side of the harness (`rcjobs demo --chat-backend matrix`, `rcjobs bench e2e
//! --chat-backend matrix`): where the homeserver is, from the `MATRIX_*` settings or else the
//! file `scripts/ensure-synapse.sh` writes (`target/synapse/env`), and the harness's own
//! direct clients of it (the benchmark's baselines, account seeding).
//!
//! There is no Matrix simulator: without a homeserver the commands stop and say how to get
//! one.

use crate::cmd::config::{ChatBackendKind, Settings};
use anyhow::Context;
use rcjobs_worker::wiring::matrix::{Auth, MatrixBackend, MatrixClient, MatrixConfig};
use rcjobs_worker::wiring::{ChatConnection, ChatObserver};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to get a homeserver, for messages.
pub const SETUP_HINT: &str = "run `bash scripts/ensure-synapse.sh` (it installs a pinned Synapse into target/synapse, starts it on 127.0.0.1:18118 and writes target/synapse/env), or set MATRIX_HOMESERVER_URL and MATRIX_ACCESS_TOKEN (or MATRIX_USER and MATRIX_PASSWORD) for a Synapse whose bot is a server admin";

/// The request timeout of the harness's Matrix clients (the worker's default).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A Synapse homeserver to run against.
#[derive(Debug, Clone)]
pub struct Homeserver {
    /// How the workers and the harness reach it.
    pub config: MatrixConfig,
    /// Where it was found (`MATRIX_* settings` or the env file's path), for the summary.
    pub source: String,
    /// Synapse's version when the env file names it.
    pub synapse_version: Option<String>,
}

impl Homeserver {
    /// The homeserver named by the settings, else by `target/synapse/env`; an error saying
    /// how to get one when neither names one.
    pub fn find(settings: &Settings) -> anyhow::Result<Homeserver> {
        if settings.has_chat_server(ChatBackendKind::Matrix) {
            let c = settings.chat_connection(ChatBackendKind::Matrix, None, TIMEOUT)?;
            let ChatConnection::Matrix(config) = c else {
                anyhow::bail!("the MATRIX_* settings did not give a Matrix connection");
            };
            return Ok(Homeserver {
                config,
                source: "MATRIX_* settings".into(),
                synapse_version: None,
            });
        }
        let path = env_file();
        let vars = read_env_file(&path).with_context(|| {
            format!(
                "no Matrix homeserver: MATRIX_HOMESERVER_URL is not set and {} cannot be read; {SETUP_HINT}",
                path.display()
            )
        })?;
        let var = |k: &str| {
            vars.get(k)
                .filter(|v| !v.is_empty())
                .with_context(|| format!("{k} missing from {}; {SETUP_HINT}", path.display()))
        };
        let url = url::Url::parse(var("MATRIX_HOMESERVER_URL")?)
            .context("MATRIX_HOMESERVER_URL of the env file is not a URL")?;
        let mut config = MatrixConfig::new(
            url,
            Auth::Token(var("MATRIX_ACCESS_TOKEN")?.as_str().into()),
        );
        config.request_timeout = TIMEOUT;
        Ok(Homeserver {
            config,
            source: path.display().to_string(),
            synapse_version: vars.get("MATRIX_SYNAPSE_VERSION").cloned(),
        })
    }

    /// The workers' connection.
    pub fn connection(&self) -> ChatConnection {
        ChatConnection::Matrix(self.config.clone())
    }

    /// A backend of the harness's own on a fresh client reporting to `observer` (no shared
    /// rate gate: the baselines are not the workers). Fails with [`SETUP_HINT`] when the
    /// server does not answer or refuses the bot.
    pub async fn backend(&self, observer: Arc<dyn ChatObserver>) -> anyhow::Result<MatrixBackend> {
        let client = MatrixClient::builder(self.config.clone())
            .observer(Arc::new(Observer(observer)))
            .build()
            .context("building the Matrix client")?;
        MatrixBackend::connect(client).await.with_context(|| {
            format!(
                "the Matrix homeserver at {} (from {}) did not accept the bot; is it running? {SETUP_HINT}",
                self.config.homeserver_url, self.source
            )
        })
    }

    /// What to print as the server.
    pub fn describe(&self) -> String {
        format!(
            "Synapse {} at {} (from {})",
            self.synapse_version
                .as_deref()
                .unwrap_or("(version unknown)"),
            self.config.homeserver_url,
            self.source
        )
    }
}

/// `target/synapse/env` under the working directory if there is one, else under the
/// workspace the binary was built from (tests and `cargo run` from elsewhere).
pub fn env_file() -> PathBuf {
    let here = PathBuf::from("target/synapse/env");
    if here.exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/synapse/env")
}

fn read_env_file(path: &std::path::Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// A prefix unique to this run for the names of the rooms it creates: the homeserver keeps
/// rooms across runs, and a room found by name (its alias) would be adopted with the members
/// an earlier run left in it.
pub fn run_tag() -> String {
    let ms = chrono::Utc::now().timestamp_millis();
    format!("rcj{ms:x}")
}

/// A [`ChatObserver`] in the Matrix client's terms (status 0 = no answer).
struct Observer(Arc<dyn ChatObserver>);

impl rcjobs_worker::wiring::matrix::RequestObserver for Observer {
    fn on_response(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.0
            .on_response(route, (status != 0).then_some(status), elapsed);
    }
}
