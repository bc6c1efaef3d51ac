//! The settings Moodle supplies (mod_rocketchat's `config_plugins` rows, the front page's
//! names), resolved against the worker's own ([`WorkerConfig::resolve`]) and cached: an
//! admin's edit in Moodle's UI reaches every replica within `moodle_settings_refresh_secs`,
//! at the cost of one small query per period, never one per room.

use crate::config::{Effective, Resolved, WorkerConfig};
use rcjobs_moodle::{MoodleDb, MoodleError, PluginSettings};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The cached resolution of the settings Moodle supplies.
#[derive(Debug)]
pub struct SettingsCache {
    ttl: Duration,
    // One replica reads at most once per period: concurrent jobs wait for the read in flight.
    state: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    at: Instant,
    moodle: PluginSettings,
    effective: Arc<Effective>,
}

impl SettingsCache {
    /// A cache re-reading Moodle every `cfg.moodle_settings_refresh_secs`.
    pub fn new(cfg: &WorkerConfig) -> SettingsCache {
        SettingsCache {
            ttl: Duration::from_secs(cfg.moodle_settings_refresh_secs),
            state: Mutex::new(None),
        }
    }

    /// The effective settings, re-read from Moodle when the cached ones are older than the
    /// period. The first read logs what came from Moodle and what the TOML overrides; later
    /// reads log what changed. A failed re-read keeps the previous settings (logged); a
    /// failed first read is the caller's error (a room named from the wrong template
    /// cannot be renamed later).
    pub async fn get(
        &self,
        cfg: &WorkerConfig,
        moodle: &MoodleDb,
    ) -> Result<Arc<Effective>, MoodleError> {
        let mut state = self.state.lock().await;
        if let Some(c) = state.as_ref().filter(|c| c.at.elapsed() < self.ttl) {
            return Ok(c.effective.clone());
        }
        let read = match moodle.plugin_settings().await {
            Ok(s) => s,
            Err(e) => match state.as_mut() {
                Some(c) => {
                    tracing::warn!(error = %e, "re-reading mod_rocketchat's settings failed; keeping the previous ones");
                    // Try again next period, not at every job.
                    c.at = Instant::now();
                    return Ok(c.effective.clone());
                }
                None => return Err(e),
            },
        };
        let (effective, report) = cfg.resolve(&read);
        let effective = Arc::new(effective);
        match state.as_ref() {
            None => log_first(&read, &report),
            Some(prev) if prev.moodle != read => {
                log_warnings(&read);
                if *prev.effective != *effective {
                    for r in report.iter().filter_map(Resolved::describe) {
                        tracing::info!("Moodle's settings changed: {r}");
                    }
                }
            }
            Some(_) => {}
        }
        *state = Some(Cached {
            at: Instant::now(),
            moodle: read,
            effective: effective.clone(),
        });
        Ok(effective)
    }
}

fn log_first(read: &PluginSettings, report: &[Resolved]) {
    log_warnings(read);
    for line in report.iter().filter_map(Resolved::describe) {
        tracing::info!("{line}");
    }
}

fn log_warnings(read: &PluginSettings) {
    for w in &read.warnings {
        tracing::warn!("{w}");
    }
}
