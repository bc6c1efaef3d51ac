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

/// Where the queue database URL came from (printed so that no default is silent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlSource {
    /// The built-in `postgres://postgres@127.0.0.1:5432/rcjobs`.
    #[default]
    Default,
    /// The `--config` file.
    File,
    /// The `DATABASE_URL` environment variable.
    Env,
    /// The `--database-url` flag.
    Flag,
}

impl std::fmt::Display for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UrlSource::Default => "built-in default; set DATABASE_URL to change it",
            UrlSource::File => "from the config file",
            UrlSource::Env => "from DATABASE_URL",
            UrlSource::Flag => "from --database-url",
        })
    }
}

/// Resolved settings. Secrets (`rocketchat_token`) come from the environment or the file and
/// are never printed: `Debug` redacts them. Unknown keys in the config file are an error
/// (a misspelt `databse_url` must not silently fall back to the default).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Where `database_url` came from (not a configuration key).
    #[serde(skip)]
    pub database_url_source: UrlSource,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field(
                "moodle_database_url",
                &self.moodle_database_url.as_deref().map(redact_url),
            )
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
            database_url_source: UrlSource::Default,
        }
    }
}

/// Refuses a URL that is not `postgres://` or `postgresql://` (a `mysql://` Moodle URL would
/// otherwise be handed to the Postgres driver and fail obscurely).
pub fn check_postgres_url(what: &str, url: &str) -> anyhow::Result<()> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(()),
        Some(other) => anyhow::bail!(
            "{what} {} uses the {other:?} scheme, but rcjobs works only with PostgreSQL \
             (postgres://USER[:PASSWORD]@HOST:PORT/DATABASE)",
            redact_url(url)
        ),
        None => anyhow::bail!(
            "{what} {:?} is not a URL; expected postgres://USER[:PASSWORD]@HOST:PORT/DATABASE",
            redact_url(url)
        ),
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // set_password only fails for URLs that cannot have one, which this one has.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not parseable: still never echo what could be a password after the first ':'.
        Err(_) => match url.split_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
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
        s.database_url_source = if global.database_url.is_some() {
            UrlSource::Flag
        } else if std::env::var_os("DATABASE_URL").is_some() {
            UrlSource::Env
        } else if s.database_url != Settings::default().database_url {
            UrlSource::File
        } else {
            UrlSource::Default
        };
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
        check_postgres_url("DATABASE_URL", &s.database_url)?;
        if let Some(m) = &s.moodle_database_url {
            check_postgres_url("MOODLE_DATABASE_URL", m)?;
        }
        if s.database_url_source == UrlSource::Default {
            tracing::warn!(
                "DATABASE_URL is not set: using the built-in default {}",
                s.database_url
            );
        } else {
            tracing::debug!(
                "queue database {} ({})",
                redact_url(&s.database_url),
                s.database_url_source
            );
        }
        Ok(s)
    }

    /// The queue database URL without its password, and where it came from.
    pub fn describe_database(&self) -> String {
        format!(
            "{} ({})",
            redact_url(&self.database_url),
            self.database_url_source
        )
    }

    /// The Moodle database URL, falling back to the queue database.
    pub fn moodle_url(&self) -> &str {
        self.moodle_database_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_urls_are_accepted() {
        assert!(check_postgres_url("DATABASE_URL", "postgres://u@h/d").is_ok());
        assert!(check_postgres_url("DATABASE_URL", "PostgreSQL://u@h/d").is_ok());
        let e = check_postgres_url("MOODLE_DATABASE_URL", "mysql://moodle:secret@db/moodle")
            .expect_err("mysql is refused")
            .to_string();
        assert!(e.contains("\"mysql\"") && e.contains("PostgreSQL"), "{e}");
        assert!(!e.contains("secret"), "password leaked: {e}");
        assert!(check_postgres_url("DATABASE_URL", "127.0.0.1:5432").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://rc:hunter2@db:5432/rcjobs"),
            "postgres://rc:***@db:5432/rcjobs"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/rcjobs"),
            "postgres://postgres@127.0.0.1:5432/rcjobs"
        );
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let fig = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string("databse_url = \"postgres://x@y/z\""));
        let e = fig
            .extract::<Settings>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("databse_url"), "{e}");
    }
}
