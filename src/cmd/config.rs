//! Layered configuration: built-in defaults < TOML file < environment < flags.
//!
//! The file holds the global keys at the top level and the worker's under `[worker]`; every
//! flag of `rcjobs worker` has a key there (see `WorkerFileSettings`). Durations, in flags,
//! environment and file alike, are a bare number of seconds or a humantime string.

use clap::{Args, ValueEnum};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// The chat server kind the workers talk to (`--chat-backend`, `CHAT_BACKEND`,
/// `[worker] chat_backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatBackendKind {
    /// Rocket.Chat (`CHAT_URL`, `CHAT_USER_ID`, `CHAT_TOKEN`; `ROCKETCHAT_*` alike).
    #[default]
    Rocketchat,
    /// A Matrix homeserver, Synapse (`MATRIX_HOMESERVER_URL`, then `MATRIX_ACCESS_TOKEN` or
    /// `MATRIX_USER` + `MATRIX_PASSWORD`).
    Matrix,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Optional TOML config file: global keys at the top level (`database_url = "..."`),
    /// worker flags under `[worker]` (`concurrency = 8`, `lease_ttl = "30s"`); see README.
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
    /// Chat server base URL (e.g. https://chat.example.edu; `--rocketchat-url` is the same).
    #[arg(long, global = true, alias = "rocketchat-url")]
    pub chat_url: Option<String>,
    /// Log format (default: text; the file key is `log_format`).
    #[arg(long, global = true, value_enum, env = "RCJOBS_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl GlobalArgs {
    /// The log format: flag or `RCJOBS_LOG_FORMAT`, else the file's `log_format`, else text.
    /// Logging starts before the file is fully checked, so a broken file is ignored here and
    /// reported by `Settings::load` right after.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
            .or_else(|| {
                let path = self.config.as_deref()?;
                Figment::from(Toml::file(path))
                    .extract_inner::<LogFormat>("log_format")
                    .ok()
            })
            .unwrap_or_default()
    }
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

/// Resolved settings. Secrets (`chat_token`, `matrix_access_token`, `matrix_password`) come
/// from the environment or the file and are never printed: `Debug` redacts them. Unknown keys in the config file are an error
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
    /// Chat server base URL (`CHAT_URL`); `None` means "use the built-in simulator" where
    /// that makes sense. For Matrix, `matrix_homeserver_url` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_url: Option<String>,
    /// The bot's user id on Rocket.Chat (`CHAT_USER_ID`, the personal access token's owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_user_id: Option<String>,
    /// The bot's token (`CHAT_TOKEN`: Rocket.Chat's personal access token; for Matrix,
    /// `matrix_access_token` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_token: Option<String>,
    /// Alias of `chat_url` (`ROCKETCHAT_URL`); after loading, the same value as `chat_url`.
    pub rocketchat_url: Option<String>,
    /// Alias of `chat_user_id` (`ROCKETCHAT_USER_ID`); after loading, the same value.
    pub rocketchat_user_id: Option<String>,
    /// Alias of `chat_token` (`ROCKETCHAT_TOKEN`); after loading, the same value.
    pub rocketchat_token: Option<String>,
    /// Matrix Client-Server API root (`MATRIX_HOMESERVER_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_homeserver_url: Option<String>,
    /// The Matrix bot's access token (`MATRIX_ACCESS_TOKEN`); the bot must be a server admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_access_token: Option<String>,
    /// The Matrix bot's localpart or user id, to log in with `matrix_password`
    /// (`MATRIX_USER`), when there is no access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_user: Option<String>,
    /// The Matrix bot's password (`MATRIX_PASSWORD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_password: Option<String>,
    /// Log format (`--log-format` and `RCJOBS_LOG_FORMAT` win; read by `GlobalArgs::log_format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// The `[worker]` section: a key for every `rcjobs worker` flag.
    #[serde(default)]
    pub worker: WorkerFileSettings,
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
            .field("chat_url", &self.chat_url)
            .field("chat_user_id", &self.chat_user_id)
            .field(
                "chat_token",
                &self.chat_token.as_ref().map(|_| "<redacted>"),
            )
            .field("matrix_homeserver_url", &self.matrix_homeserver_url)
            .field(
                "matrix_access_token",
                &self.matrix_access_token.as_ref().map(|_| "<redacted>"),
            )
            .field("matrix_user", &self.matrix_user)
            .field(
                "matrix_password",
                &self.matrix_password.as_ref().map(|_| "<redacted>"),
            )
            .field("log_format", &self.log_format)
            .field("worker", &self.worker)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "postgres://postgres@127.0.0.1:5432/rcjobs".into(),
            moodle_database_url: None,
            moodle_prefix: "mdl_".into(),
            chat_url: None,
            chat_user_id: None,
            chat_token: None,
            rocketchat_url: None,
            rocketchat_user_id: None,
            rocketchat_token: None,
            matrix_homeserver_url: None,
            matrix_access_token: None,
            matrix_user: None,
            matrix_password: None,
            log_format: None,
            worker: WorkerFileSettings::default(),
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
    /// `MOODLE_PREFIX`, `CHAT_URL`, `CHAT_USER_ID`, `CHAT_TOKEN` or their `ROCKETCHAT_*`
    /// aliases, `MATRIX_HOMESERVER_URL`, `MATRIX_ACCESS_TOKEN`, `MATRIX_USER`,
    /// `MATRIX_PASSWORD`) and flags. A `CHAT_*` name wins over its alias.
    pub fn load(global: &GlobalArgs) -> anyhow::Result<Settings> {
        let mut fig = match &global.config {
            Some(path) => file_figment(path)?,
            None => Figment::from(Serialized::defaults(Settings::default())),
        };
        fig = fig.merge(
            Env::raw()
                .only(&[
                    "DATABASE_URL",
                    "MOODLE_DATABASE_URL",
                    "MOODLE_PREFIX",
                    "ROCKETCHAT_URL",
                    "ROCKETCHAT_USER_ID",
                    "ROCKETCHAT_TOKEN",
                    "MATRIX_HOMESERVER_URL",
                    "MATRIX_ACCESS_TOKEN",
                    "MATRIX_USER",
                    "MATRIX_PASSWORD",
                ])
                // An alias in the environment still beats the file's neutral key.
                .map(|k| {
                    let k = k.as_str().to_ascii_lowercase();
                    k.strip_prefix("rocket")
                        .map_or(k.clone(), str::to_owned)
                        .into()
                }),
        );
        fig = fig.merge(
            Env::raw()
                .only(&["CHAT_URL", "CHAT_USER_ID", "CHAT_TOKEN"])
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
        if let Some(v) = &global.chat_url {
            s.chat_url = Some(v.clone());
        }
        // Rocket.Chat's names are aliases: the neutral one wins, and both read the same after.
        s.chat_url = s.chat_url.take().or(s.rocketchat_url.take());
        s.chat_user_id = s.chat_user_id.take().or(s.rocketchat_user_id.take());
        s.chat_token = s.chat_token.take().or(s.rocketchat_token.take());
        s.rocketchat_url.clone_from(&s.chat_url);
        s.rocketchat_user_id.clone_from(&s.chat_user_id);
        s.rocketchat_token.clone_from(&s.chat_token);
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

    /// The chat backend when no `--chat-backend` flag says: `CHAT_BACKEND`, else the file's
    /// `[worker] chat_backend`, else Rocket.Chat.
    pub fn chat_backend(&self) -> anyhow::Result<ChatBackendKind> {
        match std::env::var("CHAT_BACKEND") {
            Ok(v) if !v.trim().is_empty() => ChatBackendKind::from_str(v.trim(), true)
                .map_err(|_| anyhow::anyhow!("CHAT_BACKEND={v:?}: expected rocketchat or matrix")),
            _ => Ok(self.worker.chat_backend.unwrap_or_default()),
        }
    }

    /// Whether the settings name a chat server of kind `backend` (else the demo and the
    /// bench start the simulator, where there is one).
    pub fn has_chat_server(&self, backend: ChatBackendKind) -> bool {
        match backend {
            ChatBackendKind::Rocketchat => self.chat_url.is_some(),
            ChatBackendKind::Matrix => {
                self.matrix_homeserver_url.is_some() || self.chat_url.is_some()
            }
        }
    }

    /// How to reach the chat server of kind `backend`: its URL and the bot's credentials,
    /// each missing one named. `bot_username` (Rocket.Chat: default asked from the server)
    /// and `timeout` (per request) come from the worker's settings.
    pub fn chat_connection(
        &self,
        backend: ChatBackendKind,
        bot_username: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<rcjobs_worker::wiring::ChatConnection> {
        use anyhow::Context;
        use rcjobs_worker::wiring::{matrix, ChatConnection};
        match backend {
            ChatBackendKind::Rocketchat => {
                let url = self
                    .chat_url
                    .as_deref()
                    .context("CHAT_URL (or ROCKETCHAT_URL) is not set")?;
                let user_id = self
                    .chat_user_id
                    .clone()
                    .context("CHAT_USER_ID (or ROCKETCHAT_USER_ID) is not set")?;
                let token = self
                    .chat_token
                    .clone()
                    .context("CHAT_TOKEN (or ROCKETCHAT_TOKEN) is not set")?;
                let mut rc = rcjobs_rocketchat::RocketChatConfig::new(
                    url::Url::parse(url).context("CHAT_URL is not a URL")?,
                    rcjobs_rocketchat::Auth::Token {
                        user_id,
                        token: rcjobs_rocketchat::Secret::new(token),
                    },
                );
                rc.bot_username = bot_username;
                rc.request_timeout = timeout;
                Ok(ChatConnection::RocketChat(rc))
            }
            ChatBackendKind::Matrix => {
                let url = self
                    .matrix_homeserver_url
                    .as_deref()
                    .or(self.chat_url.as_deref())
                    .context("MATRIX_HOMESERVER_URL is not set (the Synapse homeserver's URL; scripts/ensure-synapse.sh starts one for tests)")?;
                let auth = match (
                    self.matrix_access_token.as_ref().or(self.chat_token.as_ref()),
                    &self.matrix_user,
                    &self.matrix_password,
                ) {
                    (Some(token), _, _) => {
                        matrix::Auth::Token(matrix::Secret::new(token.clone()))
                    }
                    (None, Some(user), Some(password)) => matrix::Auth::Password {
                        user: user.clone(),
                        password: matrix::Secret::new(password.clone()),
                    },
                    _ => anyhow::bail!(
                        "MATRIX_ACCESS_TOKEN is not set, nor MATRIX_USER and MATRIX_PASSWORD (the bot, a Synapse server admin)"
                    ),
                };
                anyhow::ensure!(
                    bot_username.is_none(),
                    "--bot-username is for Rocket.Chat: on Matrix the bot is whoever the access token or MATRIX_USER is"
                );
                let mut cfg = matrix::MatrixConfig::new(
                    url::Url::parse(url).context("MATRIX_HOMESERVER_URL is not a URL")?,
                    auth,
                );
                cfg.request_timeout = timeout;
                Ok(ChatConnection::Matrix(cfg))
            }
        }
    }

    /// The Moodle database URL, falling back to the queue database.
    pub fn moodle_url(&self) -> &str {
        self.moodle_database_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }
}

/// The `[worker]` section of the config file: one key per `rcjobs worker` flag, same name
/// with `_` for `-`. Flags and their environment variables win over these; unset keys fall
/// back to the built-in defaults. Unknown keys are an error, as at the top level.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerFileSettings {
    /// `--chat-backend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_backend: Option<ChatBackendKind>,
    /// `--concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// `--metrics-addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,
    /// `--queues`, as a TOML array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
    /// `--handlers-config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers_config: Option<PathBuf>,
    /// `--create-accounts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_accounts: Option<bool>,
    /// `--reconcile-interval` (0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_interval: Option<DurationSetting>,
    /// `--bot-username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_username: Option<String>,
    /// `--lease-ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<DurationSetting>,
    /// `--sweep-interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_interval: Option<DurationSetting>,
    /// `--drain-timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<DurationSetting>,
    /// `--retry-base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base: Option<DurationSetting>,
    /// `--chat-timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_timeout: Option<DurationSetting>,
    /// `--listen-database-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_database_url: Option<String>,
}

impl std::fmt::Debug for WorkerFileSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerFileSettings")
            .field("chat_backend", &self.chat_backend)
            .field("concurrency", &self.concurrency)
            .field("metrics_addr", &self.metrics_addr)
            .field("queues", &self.queues)
            .field("handlers_config", &self.handlers_config)
            .field("create_accounts", &self.create_accounts)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("bot_username", &self.bot_username)
            .field("lease_ttl", &self.lease_ttl)
            .field("sweep_interval", &self.sweep_interval)
            .field("drain_timeout", &self.drain_timeout)
            .field("retry_base", &self.retry_base)
            .field("chat_timeout", &self.chat_timeout)
            .field(
                "listen_database_url",
                &self.listen_database_url.as_deref().map(redact_url),
            )
            .finish()
    }
}

/// The longest duration any setting accepts. Far beyond any sensible value, and it keeps
/// every later `Instant + duration` or interval arithmetic clear of overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration setting: a bare non-negative integer is seconds (what the flags took
/// before, so existing scripts keep working), anything else a humantime string such as
/// `30s`, `5m`, `1h 30m` or `500ms`. Never panics; the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let hint = "use seconds (30) or a number with a unit (30s, 5m, 1h 30m, 500ms)";
    if t.is_empty() {
        return Err(format!("empty duration; {hint}"));
    }
    let d = if t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = t
            .parse()
            .map_err(|_| format!("{t:?} is too large a number of seconds"))?;
        Duration::from_secs(secs)
    } else {
        humantime::parse_duration(t).map_err(|e| format!("invalid duration {t:?} ({e}); {hint}"))?
    };
    if d > MAX_DURATION {
        return Err(format!(
            "duration {t:?} is longer than the maximum of 365 days"
        ));
    }
    Ok(d)
}

/// A duration from a flag, the environment or the config file (see `parse_duration`). In
/// TOML it may be an integer (seconds) or a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting(pub Duration);

impl std::str::FromStr for DurationSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(DurationSetting)
    }
}

impl std::fmt::Display for DurationSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for DurationSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationSetting;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of seconds or a duration string such as \"30s\" or \"5m\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("negative duration {v}"))),
                }
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(DurationSetting).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks a resolved duration setting against its lower bound, naming the setting (flag and
/// file key) in the refusal.
pub fn check_min_duration(
    name: &str,
    d: Duration,
    min: Duration,
    why: &str,
) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        d >= min,
        "{name} = {} is too short: it must be at least {} ({why})",
        humantime::format_duration(d),
        humantime::format_duration(min)
    );
    Ok(d)
}

/// Reads a config file into `Settings` without the environment or flags (tests, and the
/// file half of `Settings::load`).
fn file_figment(path: &Path) -> anyhow::Result<Figment> {
    anyhow::ensure!(
        path.exists(),
        "config file {} does not exist",
        path.display()
    );
    Ok(Figment::from(Serialized::defaults(Settings::default())).merge(Toml::file(path)))
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

    #[test]
    fn durations_are_seconds_or_humantime() {
        let ok = |t: &str| parse_duration(t).expect(t);
        assert_eq!(ok("30"), Duration::from_secs(30));
        assert_eq!(ok(" 45 "), Duration::from_secs(45));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("365d"), MAX_DURATION);
    }

    #[test]
    fn bad_durations_are_errors_not_panics() {
        for bad in [
            "",
            "   ",
            "abc",
            "-5",
            "1.5",
            "5 parsecs",
            "30 s s",
            "366d",
            "300000000d",
            "99999999999999999999999",
            "18446744073709551616s",
            "213503982334602d",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(
                e.contains("seconds") || e.contains("maximum"),
                "{bad:?}: unclear error {e}"
            );
        }
        let e = parse_duration("5 parsecs").expect_err("unit");
        assert!(
            e.contains("30s, 5m"),
            "the error shows what is accepted: {e}"
        );
    }

    fn from_toml(text: &str) -> Result<Settings, String> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract::<Settings>()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn file_durations_take_integers_and_strings() {
        let s =
            from_toml("[worker]\nlease_ttl = 45\nsweep_interval = \"1m 30s\"\n").expect("parses");
        assert_eq!(
            s.worker.lease_ttl,
            Some(DurationSetting(Duration::from_secs(45)))
        );
        assert_eq!(
            s.worker.sweep_interval,
            Some(DurationSetting(Duration::from_secs(90)))
        );
        for bad in [
            "lease_ttl = -1",
            "lease_ttl = 1.5",
            "lease_ttl = \"soon\"",
            "lease_ttl = true",
        ] {
            let e = from_toml(&format!("[worker]\n{bad}\n")).expect_err(bad);
            assert!(e.contains("lease_ttl"), "{bad}: error names the key: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_in_every_section() {
        for (text, key) in [
            ("databse_url = \"postgres://x@y/z\"", "databse_url"),
            ("[worker]\nconcurency = 4", "concurency"),
            ("[wroker]\nconcurrency = 4", "wroker"),
            ("log_format = \"xml\"", "log_format"),
        ] {
            let e = from_toml(text).expect_err(text);
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn log_format_can_come_from_the_file() {
        use clap::Parser;
        let path = std::env::temp_dir().join(format!(
            "rcjobs-config-test-{}-logformat.toml",
            std::process::id()
        ));
        std::fs::write(&path, "log_format = \"json\"\n").expect("write");
        let cli = crate::cmd::Cli::try_parse_from([
            "rcjobs",
            "--config",
            path.to_str().expect("utf-8"),
            "status",
        ])
        .expect("parses");
        let flag = crate::cmd::Cli::try_parse_from([
            "rcjobs",
            "--config",
            path.to_str().expect("utf-8"),
            "--log-format",
            "text",
            "status",
        ])
        .expect("parses");
        let from_file = cli.global.log_format();
        let from_flag = flag.global.log_format();
        let _ = std::fs::remove_file(&path);
        if std::env::var_os("RCJOBS_LOG_FORMAT").is_none() {
            assert_eq!(from_file, LogFormat::Json);
        }
        assert_eq!(from_flag, LogFormat::Text);
    }

    /// Loads `rcjobs --config FILE [ARGS] status` the way `rcjobs` does.
    fn load_file(name: &str, toml: &str, args: &[&str]) -> anyhow::Result<Settings> {
        use clap::Parser;
        let path = std::env::temp_dir().join(format!(
            "rcjobs-config-test-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, toml)?;
        let mut argv = vec!["rcjobs", "--config", path.to_str().unwrap_or_default()];
        argv.extend_from_slice(args);
        argv.push("status");
        let loaded = crate::cmd::Cli::try_parse_from(argv)
            .map_err(anyhow::Error::from)
            .and_then(|cli| Settings::load(&cli.global));
        let _ = std::fs::remove_file(&path);
        loaded
    }

    fn chat_env_set() -> bool {
        [
            "CHAT_URL",
            "CHAT_USER_ID",
            "CHAT_TOKEN",
            "CHAT_BACKEND",
            "ROCKETCHAT_URL",
            "ROCKETCHAT_USER_ID",
            "ROCKETCHAT_TOKEN",
            "MATRIX_HOMESERVER_URL",
            "MATRIX_ACCESS_TOKEN",
            "MATRIX_USER",
            "MATRIX_PASSWORD",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    }

    #[test]
    fn rocketchat_names_are_aliases_of_the_chat_settings() {
        if chat_env_set() {
            return; // the environment would win over the file
        }
        let s = load_file(
            "alias",
            "rocketchat_url = \"https://rc.example.edu\"\nrocketchat_user_id = \"bot-id\"\nrocketchat_token = \"t0k\"\n",
            &[],
        )
        .expect("loads");
        assert_eq!(s.chat_url.as_deref(), Some("https://rc.example.edu"));
        assert_eq!(s.chat_user_id.as_deref(), Some("bot-id"));
        assert_eq!(s.rocketchat_token, s.chat_token);
        let s = load_file(
            "neutral-wins",
            "chat_url = \"https://chat.example.edu\"\nrocketchat_url = \"https://old.example.edu\"\n",
            &[],
        )
        .expect("loads");
        assert_eq!(s.chat_url.as_deref(), Some("https://chat.example.edu"));
        assert_eq!(
            s.rocketchat_url, s.chat_url,
            "old readers see the same server"
        );
        let s = load_file(
            "flag",
            "",
            &["--rocketchat-url", "https://flag.example.edu"],
        )
        .expect("loads");
        assert_eq!(s.chat_url.as_deref(), Some("https://flag.example.edu"));
        assert!(!format!("{s:?}").contains("t0k"));
    }

    #[test]
    fn the_backend_comes_from_the_worker_section_and_names_what_is_missing() {
        if chat_env_set() {
            return;
        }
        let s = load_file(
            "matrix",
            "matrix_homeserver_url = \"http://127.0.0.1:8008\"\n[worker]\nchat_backend = \"matrix\"\n",
            &[],
        )
        .expect("loads");
        assert_eq!(s.chat_backend().expect("valid"), ChatBackendKind::Matrix);
        let timeout = Duration::from_secs(5);
        let e = format!(
            "{:#}",
            s.chat_connection(ChatBackendKind::Matrix, None, timeout)
                .expect_err("no credentials")
        );
        assert!(
            e.contains("MATRIX_ACCESS_TOKEN") && e.contains("MATRIX_PASSWORD"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            s.chat_connection(ChatBackendKind::Rocketchat, None, timeout)
                .expect_err("no Rocket.Chat server")
        );
        assert!(e.contains("CHAT_URL"), "{e}");

        let s = load_file(
            "matrix-token",
            "matrix_homeserver_url = \"http://127.0.0.1:8008\"\nmatrix_access_token = \"syt_secret\"\n",
            &[],
        )
        .expect("loads");
        assert_eq!(
            s.chat_backend().expect("valid"),
            ChatBackendKind::Rocketchat
        );
        let c = s
            .chat_connection(ChatBackendKind::Matrix, None, timeout)
            .expect("a Matrix connection");
        assert_eq!(c.backend_name(), "matrix");
        assert!(!format!("{c:?} {s:?}").contains("syt_secret"));
        let e = load_file("bad-backend", "[worker]\nchat_backend = \"irc\"\n", &[])
            .expect_err("unknown backend");
        assert!(format!("{e:#}").contains("irc"), "{e:#}");
    }
}
