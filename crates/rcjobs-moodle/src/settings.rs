//! mod_rocketchat's site settings as a Moodle admin sets them (`{prefix}config_plugins`,
//! plugin `mod_rocketchat`, mod_rocketchat.md §4.2), plus the site names the room-name
//! template refers to (the front-page course).
//!
//! Every value is `None` when Moodle has no row for it: PHP's `get_config` then answers
//! `false`, and the worker falls back to its own default rather than guess. A value Moodle
//! holds but that does not parse (a checkbox that is neither `0` nor `1`, a max age that is not
//! a whole number) is left `None` too, with a warning in [`PluginSettings::warnings`]: an
//! admin's typo must not stop room syncs.

use crate::{MoodleDb, Result};
use sqlx::Row;

/// The component name of the plugin's settings.
pub const PLUGIN: &str = "mod_rocketchat";

/// The plugin's room-name template when none is set (`groupnametoformat`, §5.7).
pub const DEFAULT_GROUP_NAME_FORMAT: &str = "{$a->moodleid}_{$a->courseshortname}_{$a->moduleid}";

/// Defaults for new activities' retention (the Moodle form's; each row keeps its own values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionDefaults {
    /// `retentionenabled`.
    pub enabled: Option<bool>,
    /// `maxage` (days; 0 = the chat server's global value).
    pub max_age_days: Option<i64>,
    /// `filesonly`.
    pub files_only: Option<bool>,
    /// `excludepinned`.
    pub exclude_pinned: Option<bool>,
}

/// What the worker reads of the plugin's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSettings {
    /// `groupnametoformat`: the room-name template with `{$a->key}` placeholders.
    pub group_name_format: Option<String>,
    /// `create_user_account_if_not_exists`.
    pub create_accounts: Option<bool>,
    /// `retentionfeature`: retention is pushed to the chat server at all.
    pub retention_feature: Option<bool>,
    /// `retentionenabled`, `maxage`, `filesonly`, `excludepinned`.
    pub retention_defaults: RetentionDefaults,
    /// The front page course's `shortname` (`{$a->moodleshortname}`).
    pub site_shortname: Option<String>,
    /// The front page course's `fullname` (`{$a->moodlefullnamename}`).
    pub site_fullname: Option<String>,
    /// Values Moodle holds that could not be read, each said once per read.
    pub warnings: Vec<String>,
}

impl PluginSettings {
    /// Reads `(name, value)` rows of plugin `mod_rocketchat`. Unknown names are ignored
    /// (most settings concern the PHP side only).
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str)>) -> PluginSettings {
        let mut s = PluginSettings::default();
        for (name, value) in rows {
            match name {
                "groupnametoformat" => {
                    if value.trim().is_empty() {
                        s.warnings
                            .push("mod_rocketchat groupnametoformat is empty: not used".to_owned());
                    } else {
                        s.group_name_format = Some(value.to_owned());
                    }
                }
                "create_user_account_if_not_exists" => {
                    s.create_accounts = s.flag(name, value);
                }
                "retentionfeature" => s.retention_feature = s.flag(name, value),
                "retentionenabled" => s.retention_defaults.enabled = s.flag(name, value),
                "filesonly" => s.retention_defaults.files_only = s.flag(name, value),
                "excludepinned" => s.retention_defaults.exclude_pinned = s.flag(name, value),
                "maxage" => match value.trim().parse::<i64>() {
                    Ok(days) if days >= 0 => s.retention_defaults.max_age_days = Some(days),
                    _ => s.warnings.push(format!(
                        "mod_rocketchat maxage = {value:?} is not a number of days: not used"
                    )),
                },
                _ => {}
            }
        }
        s
    }

    /// A Moodle checkbox: `1`/`0` (blank is how Moodle stores an unticked box).
    fn flag(&mut self, name: &str, value: &str) -> Option<bool> {
        match value.trim() {
            "1" => Some(true),
            "0" | "" => Some(false),
            other => {
                self.warnings.push(format!(
                    "mod_rocketchat {name} = {other:?} is not a checkbox value (0 or 1): not used"
                ));
                None
            }
        }
    }
}

impl MoodleDb {
    /// The plugin's settings and the site names. A site without `config_plugins` (or without
    /// the plugin's rows) answers every value `None`.
    pub async fn plugin_settings(&self) -> Result<PluginSettings> {
        let p = self.prefix();
        let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(format!("{p}config_plugins"))
            .fetch_one(self.pool())
            .await?;
        let mut s = if table.is_some() {
            let rows = sqlx::query(sqlx::AssertSqlSafe(p.apply(
                "SELECT name, value FROM {prefix}config_plugins WHERE plugin = $1 ORDER BY name",
            )))
            .bind(PLUGIN)
            .fetch_all(self.pool())
            .await?;
            let pairs: Vec<(String, String)> = rows
                .iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("value")?)))
                .collect::<std::result::Result<_, sqlx::Error>>()?;
            PluginSettings::from_rows(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        } else {
            PluginSettings::default()
        };
        // The front page is the course in no category (Moodle's SITEID).
        let site = sqlx::query(sqlx::AssertSqlSafe(p.apply(
            "SELECT shortname, fullname FROM {prefix}course WHERE category = 0 ORDER BY id LIMIT 1",
        )))
        .fetch_optional(self.pool())
        .await?;
        if let Some(row) = site {
            let short: String = row.try_get("shortname")?;
            let full: String = row.try_get("fullname")?;
            s.site_shortname = Some(short).filter(|v| !v.is_empty());
            s.site_fullname = Some(full).filter(|v| !v.is_empty());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_plugins_values_and_warns_about_bad_ones() {
        let s = PluginSettings::from_rows([
            ("groupnametoformat", "{$a->courseshortname}_{$a->moduleid}"),
            ("create_user_account_if_not_exists", "0"),
            ("retentionfeature", "1"),
            ("retentionenabled", ""),
            ("maxage", "thirty"),
            ("filesonly", "yes"),
            ("excludepinned", "1"),
            ("apitoken", "secret"),
        ]);
        assert_eq!(
            s.group_name_format.as_deref(),
            Some("{$a->courseshortname}_{$a->moduleid}")
        );
        assert_eq!(s.create_accounts, Some(false));
        assert_eq!(s.retention_feature, Some(true));
        assert_eq!(
            s.retention_defaults,
            RetentionDefaults {
                enabled: Some(false),
                max_age_days: None,
                files_only: None,
                exclude_pinned: Some(true),
            }
        );
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings.iter().all(|w| !w.contains("secret")));
    }

    #[test]
    fn no_rows_no_values() {
        let s = PluginSettings::from_rows([("groupnametoformat", "  ")]);
        assert_eq!(s.group_name_format, None);
        assert_eq!(s.create_accounts, None);
        assert_eq!(s.warnings.len(), 1);
    }
}
