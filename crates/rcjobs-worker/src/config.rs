//! Worker settings (handlers, mapping, naming, limiter, periodic reconcile).

use crate::limiter::RateLimitConfig;
use crate::mapping::MappingRule;
use crate::naming::NamingConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Everything the handlers need to know besides connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Create chat accounts for Moodle users who have none (the plugin's
    /// `create_user_account_if_not_exists`). Off: such users are recorded as `user_missing`.
    pub create_accounts: bool,
    /// Username mapping rules, applied in order (empty = identity).
    pub username_rules: Vec<MappingRule>,
    /// Names of rooms the worker creates.
    pub naming: NamingConfig,
    /// Shared rate limiter.
    pub rate_limit: RateLimitConfig,
    /// Period of `reconcile_all` in seconds (0 = no periodic reconcile).
    pub reconcile_interval_secs: u64,
    /// Queue the worker's own follow-up jobs go to.
    pub queue: String,
    /// Priority of periodic syncs (event-driven syncs use 0; lower runs first).
    pub periodic_priority: i16,
    /// How long a course module that still carries another live module's room id (a
    /// duplicate or restore the plugin has not finished: it commits the source's id first and
    /// writes the new group's id after creating it) waits for Moodle's own id before the
    /// worker gives it a room of its own, in seconds.
    pub duplicate_wait_secs: u64,
    /// Store the id of a room the worker creates in Moodle's `rocketchat.rocketchatid`, so
    /// that Moodle's activity links to it (only where Moodle has no id; never overwritten).
    /// Off by default: the worker writes into Moodle's database only when told, and it needs
    /// `GRANT UPDATE (rocketchatid) ON <prefix>rocketchat` (docs/operations.md).
    pub write_room_ids: bool,
    /// Keep each room's message retention equal to its activity's four retention fields (the
    /// plugin's `retentionfeature`). Off by default, like the plugin's; needs the bot to hold
    /// `edit-room-retention-policy` (admin only by default).
    pub retention_feature: bool,
    /// How often the plugin's settings are re-read from Moodle's `config_plugins`, in
    /// seconds (an admin's edit takes effect within this, without a restart).
    pub moodle_settings_refresh_secs: u64,
    /// The keys of [`MOODLE_SETTINGS`] set explicitly (TOML file or flag): those win over
    /// Moodle's values. Filled by whoever reads the file; a default or a value set in code
    /// yields to Moodle's.
    #[serde(skip)]
    pub explicit: Explicit,
}

/// The settings Moodle can supply: (our key, where Moodle holds it).
pub const MOODLE_SETTINGS: &[(&str, &str)] = &[
    ("create_accounts", "create_user_account_if_not_exists"),
    ("naming.template", "groupnametoformat"),
    ("retention_feature", "retentionfeature"),
    ("naming.site_shortname", "the front page's shortname"),
    ("naming.site_fullname", "the front page's fullname"),
];

/// Which keys of [`MOODLE_SETTINGS`] were given explicitly (dotted, e.g. `naming.template`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explicit(BTreeSet<String>);

impl Explicit {
    /// Marks `key` as set explicitly.
    pub fn set(&mut self, key: &str) {
        self.0.insert(key.to_owned());
    }

    /// Whether `key` was set explicitly.
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(key)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            create_accounts: false,
            username_rules: Vec::new(),
            naming: NamingConfig::default(),
            rate_limit: RateLimitConfig::default(),
            reconcile_interval_secs: 3600,
            queue: "default".into(),
            periodic_priority: 10,
            duplicate_wait_secs: 600,
            write_room_ids: false,
            retention_feature: false,
            moodle_settings_refresh_secs: 60,
            explicit: Explicit::default(),
        }
    }
}

/// The settings Moodle can supply, resolved: explicit TOML/flag, else Moodle's, else ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// Create missing chat accounts.
    pub create_accounts: bool,
    /// Room names (template and site names).
    pub naming: NamingConfig,
    /// Converge rooms' retention.
    pub retention_feature: bool,
}

/// Where an effective setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The TOML file or a flag.
    Explicit,
    /// Moodle (`config_plugins` or the front page course).
    Moodle,
    /// The worker's built-in (or in-code) value: Moodle has none.
    Default,
}

/// One resolved setting, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Our key (`naming.template`).
    pub key: &'static str,
    /// Where Moodle holds it.
    pub moodle_name: &'static str,
    /// Where the effective value came from.
    pub origin: Origin,
    /// The effective value, as text.
    pub value: String,
    /// Moodle's value, if it has one (also when overridden).
    pub moodle_value: Option<String>,
}

impl Resolved {
    /// The log line: only what Moodle supplied or what overrides Moodle is worth saying.
    pub fn describe(&self) -> Option<String> {
        match (self.origin, &self.moodle_value) {
            (Origin::Moodle, Some(m)) => Some(format!(
                "{} from Moodle's {} = {m}",
                self.key, self.moodle_name
            )),
            (Origin::Explicit, Some(m)) => Some(format!(
                "{} from TOML overrides Moodle's {} = {m} (using {})",
                self.key, self.moodle_name, self.value
            )),
            _ => None,
        }
    }
}

impl WorkerConfig {
    /// Resolves the settings Moodle can supply against `moodle`'s values: an explicit key
    /// wins, then Moodle's value, then this config's own. Also returns where each came from.
    pub fn resolve(&self, moodle: &rcjobs_moodle::PluginSettings) -> (Effective, Vec<Resolved>) {
        let mut report = Vec::new();
        let mut pick = |key: &'static str, ours: String, theirs: Option<String>| -> String {
            let moodle_name = MOODLE_SETTINGS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or("", |(_, m)| *m);
            let (origin, value) = if self.explicit.contains(key) {
                (Origin::Explicit, ours)
            } else if let Some(t) = &theirs {
                (Origin::Moodle, t.clone())
            } else {
                (Origin::Default, ours)
            };
            report.push(Resolved {
                key,
                moodle_name,
                origin,
                value: value.clone(),
                moodle_value: theirs,
            });
            value
        };
        let flag = |b: Option<bool>| b.map(|b| b.to_string());
        let create_accounts = pick(
            "create_accounts",
            self.create_accounts.to_string(),
            flag(moodle.create_accounts),
        ) == "true";
        let template = pick(
            "naming.template",
            self.naming.template.clone(),
            moodle.group_name_format.clone(),
        );
        let retention_feature = pick(
            "retention_feature",
            self.retention_feature.to_string(),
            flag(moodle.retention_feature),
        ) == "true";
        let site_shortname = pick(
            "naming.site_shortname",
            self.naming.site_shortname.clone(),
            moodle.site_shortname.clone(),
        );
        let site_fullname = pick(
            "naming.site_fullname",
            self.naming.site_fullname.clone(),
            moodle.site_fullname.clone(),
        );
        let effective = Effective {
            create_accounts,
            naming: NamingConfig {
                template,
                site_shortname,
                site_fullname,
                ..self.naming.clone()
            },
            retention_feature,
        };
        (effective, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcjobs_moodle::PluginSettings;

    #[test]
    fn explicit_beats_moodle_beats_ours() {
        let moodle = PluginSettings {
            group_name_format: Some("{$a->courseshortname}".into()),
            create_accounts: Some(true),
            site_shortname: Some("P1".into()),
            ..PluginSettings::default()
        };
        let mut cfg = WorkerConfig::default();
        let (e, report) = cfg.resolve(&moodle);
        assert!(e.create_accounts);
        assert_eq!(e.naming.template, "{$a->courseshortname}");
        assert_eq!(e.naming.site_shortname, "P1");
        assert_eq!(e.naming.site_fullname, "Moodle", "Moodle has none: ours");
        assert!(!e.retention_feature);
        assert_eq!(report.iter().filter_map(Resolved::describe).count(), 3);

        cfg.explicit.set("naming.template");
        cfg.explicit.set("create_accounts");
        let (e, report) = cfg.resolve(&moodle);
        assert!(!e.create_accounts);
        assert_eq!(e.naming.template, NamingConfig::default().template);
        let line = report
            .iter()
            .find(|r| r.key == "naming.template")
            .and_then(Resolved::describe)
            .unwrap_or_default();
        assert!(
            line.starts_with("naming.template from TOML overrides Moodle's groupnametoformat = {$a->courseshortname}"),
            "{line}"
        );
    }

    #[test]
    fn nothing_in_moodle_keeps_our_values_silently() {
        let cfg = WorkerConfig {
            create_accounts: true,
            ..WorkerConfig::default()
        };
        let (e, report) = cfg.resolve(&PluginSettings::default());
        assert!(e.create_accounts);
        assert!(report.iter().all(|r| r.describe().is_none()));
    }
}
