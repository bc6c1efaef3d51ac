//! Room names for rooms the worker creates, after mod_rocketchat §5.7 (`groupnametoformat`),
//! without the plugin's defects: placeholders are substituted as documented (including
//! `{$a->moodlefullname}`), and sanitising works per character, not per UTF-8 byte.

use serde::{Deserialize, Serialize};

/// What the name template can refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameParts {
    /// Site short name (`moodleshortname`).
    pub site_shortname: String,
    /// Site full name (`moodlefullname`).
    pub site_fullname: String,
    /// The plugin's `moodleid` (it uses `sha1(wwwroot)`); configured, not computed.
    pub site_id: String,
    /// Course module id (`moduleid`).
    pub cmid: i64,
    /// Course id (`courseid`).
    pub courseid: i64,
    /// Course short name (`courseshortname`).
    pub course_shortname: String,
    /// Course full name (`coursefullname`).
    pub course_fullname: String,
}

/// Name template settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamingConfig {
    /// The template, with the plugin's `{$a->key}` placeholders.
    pub template: String,
    /// Site short name.
    pub site_shortname: String,
    /// Site full name.
    pub site_fullname: String,
    /// Value for `{$a->moodleid}` (the plugin: `sha1($CFG->wwwroot)`).
    pub site_id: String,
}

impl Default for NamingConfig {
    fn default() -> Self {
        NamingConfig {
            template: "{$a->moodleid}_{$a->courseshortname}_{$a->moduleid}".into(),
            site_shortname: "moodle".into(),
            site_fullname: "Moodle".into(),
            site_id: "moodle".into(),
        }
    }
}

/// Fills the template and sanitises the result to `[0-9A-Za-z_.-]+` (one `_` per
/// offending character). Never empty: falls back to `rcjobs_<cmid>`.
pub fn room_name(template: &str, p: &NameParts) -> String {
    let filled = template
        .replace("{$a->moodleshortname}", &p.site_shortname)
        .replace("{$a->moodlefullname}", &p.site_fullname)
        .replace("{$a->moodlefullnamename}", &p.site_fullname)
        .replace("{$a->moodleid}", &p.site_id)
        .replace(
            "{$a->modulemoodleid}",
            &format!("{}_{}", p.site_shortname, p.cmid),
        )
        .replace("{$a->moduleid}", &p.cmid.to_string())
        .replace("{$a->courseid}", &p.courseid.to_string())
        .replace("{$a->courseshortname}", &p.course_shortname)
        .replace("{$a->coursefullname}", &p.course_fullname);
    let clean: String = filled
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('_').is_empty() {
        format!("rcjobs_{}", p.cmid)
    } else {
        clean
    }
}

/// The `n`-th alternative when `base` is taken by a room that is not ours
/// (`base`, `base_2`, `base_3`, …): deterministic, so a retried creation finds the room it
/// made instead of making another (the plugin appended the current time).
pub fn candidate(base: &str, n: u32) -> String {
    if n <= 1 {
        base.to_owned()
    } else {
        format!("{base}_{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> NameParts {
        NameParts {
            site_shortname: "P1".into(),
            site_fullname: "Université Paris 1".into(),
            site_id: "abc".into(),
            cmid: 900,
            courseid: 42,
            course_shortname: "Einführung Recht".into(),
            course_fullname: "Einführung in das Recht".into(),
        }
    }

    #[test]
    fn default_template_like_the_plugin() {
        assert_eq!(
            room_name(&NamingConfig::default().template, &parts()),
            "abc_Einf_hrung_Recht_900"
        );
    }

    #[test]
    fn every_placeholder() {
        let t = "{$a->moodleshortname}-{$a->moodlefullname}-{$a->courseid}-{$a->coursefullname}-{$a->modulemoodleid}";
        assert_eq!(
            room_name(t, &parts()),
            "P1-Universit__Paris_1-42-Einf_hrung_in_das_Recht-P1_900"
        );
    }

    #[test]
    fn empty_falls_back_and_candidates_are_stable() {
        assert_eq!(room_name("  ", &parts()), "rcjobs_900");
        assert_eq!(candidate("x", 1), "x");
        assert_eq!(candidate("x", 3), "x_3");
    }
}
