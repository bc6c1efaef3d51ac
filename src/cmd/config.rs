//! Layered configuration: built-in defaults < TOML file < environment < flags.

use clap::{Args, ValueEnum};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Optional TOML config file (keys as in `Settings`, e.g. `database_url = "..."`).
    #[arg(long, global = true, env = "RCJOBS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Queue database (Postgres URL).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Moodle database (read-only for workers; may equal the queue database).
    #[arg(long, global = true)]
    pub moodle_database_url: Option<String>,
    /// Moodle table prefix.
    #[arg(long, global = true)]
    pub moodle_prefix: Option<String>,
    /// Rocket.Chat base URL (e.g. https://chat.example.edu).
    #[arg(long, global = true)]
    pub rocketchat_url: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RCJOBS_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Resolved settings. Secrets (`rocketchat_token`) come from the environment or the file and
/// are never printed: `Debug` redacts them.
#[derive(Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Queue database URL.
    pub database_url: String,
    /// Moodle database URL (defaults to the queue database).
    pub moodle_database_url: Option<String>,
    /// Moodle table prefix.
    pub moodle_prefix: String,
    /// Rocket.Chat base URL; `None` means "use the built-in simulator" where that makes sense.
    pub rocketchat_url: Option<String>,
    /// Rocket.Chat bot user id (personal access token owner).
    pub rocketchat_user_id: Option<String>,
    /// Rocket.Chat personal access token.
    pub rocketchat_token: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &self.database_url)
            .field("moodle_database_url", &self.moodle_database_url)
            .field("moodle_prefix", &self.moodle_prefix)
            .field("rocketchat_url", &self.rocketchat_url)
            .field("rocketchat_user_id", &self.rocketchat_user_id)
            .field(
                "rocketchat_token",
                &self.rocketchat_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "postgres://postgres@127.0.0.1:5432/rcjobs".into(),
            moodle_database_url: None,
            moodle_prefix: "mdl_".into(),
            rocketchat_url: None,
            rocketchat_user_id: None,
            rocketchat_token: None,
        }
    }
}

impl Settings {
    /// Merges defaults, the TOML file, the environment (`DATABASE_URL`, `MOODLE_DATABASE_URL`,
    /// `MOODLE_PREFIX`, `ROCKETCHAT_URL`, `ROCKETCHAT_USER_ID`, `ROCKETCHAT_TOKEN`) and flags.
    pub fn load(global: &GlobalArgs) -> anyhow::Result<Settings> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &global.config {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(
            Env::raw()
                .only(&[
                    "DATABASE_URL",
                    "MOODLE_DATABASE_URL",
                    "MOODLE_PREFIX",
                    "ROCKETCHAT_URL",
                    "ROCKETCHAT_USER_ID",
                    "ROCKETCHAT_TOKEN",
                ])
                .map(|k| k.as_str().to_ascii_lowercase().into()),
        );
        let mut s: Settings = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        if let Some(v) = &global.database_url {
            s.database_url = v.clone();
        }
        if let Some(v) = &global.moodle_database_url {
            s.moodle_database_url = Some(v.clone());
        }
        if let Some(v) = &global.moodle_prefix {
            s.moodle_prefix = v.clone();
        }
        if let Some(v) = &global.rocketchat_url {
            s.rocketchat_url = Some(v.clone());
        }
        Ok(s)
    }

    /// The Moodle database URL, falling back to the queue database.
    pub fn moodle_url(&self) -> &str {
        self.moodle_database_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }
}
