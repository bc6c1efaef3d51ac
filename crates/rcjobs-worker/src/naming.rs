//! Room names for rooms the worker creates, after mod_rocketchat §5.7 (`groupnametoformat`),
//! without the plugin's defects: placeholders are substituted as documented (including
//! `{$a->moodlefullname}`, besides the plugin's misspelt `{$a->moodlefullnamename}`), and
//! sanitising works per character, not per UTF-8 byte. `{$a->moodleid}` is `sha1(wwwroot)`
//! given `naming.wwwroot`, and `{$a->modulemoodleid}` is `sha1(<site shortname>_<cmid>)`,
//! as the plugin computes them.

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
    /// Value for `{$a->moodleid}` when `wwwroot` is not given (the plugin:
    /// `sha1($CFG->wwwroot)`).
    pub site_id: String,
    /// Moodle's `$CFG->wwwroot` (it is not in the database): `{$a->moodleid}` becomes its
    /// SHA-1, as the plugin names rooms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwwroot: Option<String>,
}

impl NamingConfig {
    /// The value of `{$a->moodleid}`.
    pub fn moodle_id(&self) -> String {
        match &self.wwwroot {
            Some(w) => sha1_hex(w),
            None => self.site_id.clone(),
        }
    }
}

/// Lower-case hex SHA-1, as PHP's `sha1()`.
pub fn sha1_hex(text: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Default for NamingConfig {
    fn default() -> Self {
        NamingConfig {
            template: "{$a->moodleid}_{$a->courseshortname}_{$a->moduleid}".into(),
            site_shortname: "moodle".into(),
            site_fullname: "Moodle".into(),
            site_id: "moodle".into(),
            wwwroot: None,
        }
    }
}

/// What `{$a->moduleid}` stands for: the cmid of an activity's room, `course<id>` for a
/// course's room declared in standalone mode (its key is minus the course id, and a `-`
/// followed by digits would read as a typo in a room list).
fn module_token(cmid: i64) -> String {
    if cmid < 0 {
        format!("course{}", cmid.unsigned_abs())
    } else {
        cmid.to_string()
    }
}

/// Fills the template and sanitises the result to `[0-9A-Za-z_.-]+` (one `_` per
/// offending character). Never empty: falls back to `rcjobs_<moduleid>`.
pub fn room_name(template: &str, p: &NameParts) -> String {
    let module = module_token(p.cmid);
    let filled = template
        .replace("{$a->moodleshortname}", &p.site_shortname)
        .replace("{$a->moodlefullname}", &p.site_fullname)
        .replace("{$a->moodlefullnamename}", &p.site_fullname)
        .replace("{$a->moodleid}", &p.site_id)
        .replace(
            "{$a->modulemoodleid}",
            &sha1_hex(&format!("{}_{}", p.site_shortname, module)),
        )
        .replace("{$a->moduleid}", &module)
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
        format!("rcjobs_{module}")
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
            format!(
                "P1-Universit__Paris_1-42-Einf_hrung_in_das_Recht-{}",
                sha1_hex("P1_900")
            )
        );
    }

    #[test]
    fn sha1_like_php() {
        assert_eq!(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let n = NamingConfig {
            wwwroot: Some("abc".into()),
            ..NamingConfig::default()
        };
        assert_eq!(n.moodle_id(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(NamingConfig::default().moodle_id(), "moodle");
    }

    #[test]
    fn empty_falls_back_and_candidates_are_stable() {
        assert_eq!(room_name("  ", &parts()), "rcjobs_900");
        assert_eq!(candidate("x", 1), "x");
        assert_eq!(candidate("x", 3), "x_3");
    }

    #[test]
    fn course_rooms_name_their_course() {
        let mut p = parts();
        p.cmid = -42;
        let n = room_name("{$a->moodleid}_{$a->courseshortname}_{$a->moduleid}", &p);
        assert!(n.ends_with("_course42"), "{n}");
        assert_eq!(room_name("{$a->moduleid}", &p), "course42");
        assert_eq!(room_name("///", &p), "rcjobs_course42");
    }
}
