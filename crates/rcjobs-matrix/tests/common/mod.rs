//! The real Synapse the tests run against: found through `target/synapse/env`, which
//! `scripts/ensure-synapse.sh` writes. Without it the tests fail and say so.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rcjobs_matrix::{Auth, MatrixBackend, MatrixClient, MatrixConfig};
use url::Url;

/// The homeservers' URLs and the bot's tokens.
pub struct Synapse {
    vars: HashMap<String, String>,
}

fn env_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/synapse/env")
}

impl Synapse {
    /// Reads the env file, or fails naming the script to run.
    pub fn get() -> Synapse {
        let path = env_file();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the Matrix tests need a real Synapse: run `bash scripts/ensure-synapse.sh` \
                 first (it writes {}): {e}",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Synapse { vars }
    }

    fn var(&self, key: &str) -> &str {
        self.vars.get(key).unwrap_or_else(|| {
            panic!(
                "{key} missing from {}: re-run scripts/ensure-synapse.sh",
                env_file().display()
            )
        })
    }

    /// The configuration of the generous-limits server.
    pub fn config(&self) -> MatrixConfig {
        self.config_for("MATRIX_HOMESERVER_URL", "MATRIX_ACCESS_TOKEN")
    }

    /// The configuration of the server with Synapse's default rate limits; 429s are handed
    /// back at once instead of waited out.
    pub fn strict_config(&self) -> MatrixConfig {
        let mut c = self.config_for("MATRIX_STRICT_HOMESERVER_URL", "MATRIX_STRICT_ACCESS_TOKEN");
        c.rate_limit_max_wait = Duration::ZERO;
        c
    }

    /// The generous-limits server with the bot's password instead of its token.
    pub fn password_config(&self) -> MatrixConfig {
        let mut c = self.config();
        c.auth = Auth::Password {
            user: self.var("MATRIX_BOT_USER").to_owned(),
            password: self.var("MATRIX_BOT_PASSWORD").into(),
        };
        c
    }

    fn config_for(&self, url: &str, token: &str) -> MatrixConfig {
        let mut c = MatrixConfig::new(
            Url::parse(self.var(url)).unwrap(),
            Auth::Token(self.var(token).into()),
        );
        c.request_timeout = Duration::from_secs(20);
        c
    }
}

/// A connected backend, with a message naming the script when Synapse does not answer.
pub async fn connect(config: MatrixConfig) -> MatrixBackend {
    let client = MatrixClient::new(config).unwrap();
    MatrixBackend::connect(client).await.unwrap_or_else(|e| {
        panic!("Synapse did not answer whoami ({e}): run `bash scripts/ensure-synapse.sh`")
    })
}

/// Creates accounts out of band (admin PUT, no password) and returns their usernames.
pub async fn seed(backend: &MatrixBackend, names: Vec<String>) -> Vec<String> {
    for name in &names {
        let id = backend.user_id_of(name).unwrap();
        backend.client().put_user(&id, name, "").await.unwrap();
    }
    names
}
