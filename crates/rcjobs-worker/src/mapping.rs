//! Moodle username → chat username, by configurable rules (the plugin's `hooklib.php`
//! hook, as data instead of PHP).
//!
//! Rules apply in order; the result must then be a valid chat username
//! (`^[0-9A-Za-z_.\-]+$`, Rocket.Chat's default `UTF8_User_Names_Validation`).

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One rewrite step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MappingRule {
    /// Remove this suffix when present (case-insensitive), e.g. `@univ-paris1.fr`.
    StripSuffix {
        /// The suffix.
        suffix: String,
    },
    /// Replace every match of `pattern` with `replacement` (`$1` group references work).
    Replace {
        /// Regular expression (Rust `regex` syntax).
        pattern: String,
        /// Replacement text.
        replacement: String,
    },
    /// Lower-case the whole name.
    Lowercase,
}

/// A mapping rule set that failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("username mapping rule {index}: invalid pattern {pattern:?}: {message}")]
pub struct RuleError {
    /// Position of the rule (0-based).
    pub index: usize,
    /// The pattern.
    pub pattern: String,
    /// Compiler message.
    pub message: String,
}

/// A Moodle username that maps to no valid chat username.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Moodle username {moodle:?} maps to {mapped:?}, which is not a valid chat username")]
pub struct UnmappableUsername {
    /// The Moodle username.
    pub moodle: String,
    /// What the rules produced.
    pub mapped: String,
}

#[derive(Debug, Clone)]
enum Compiled {
    Strip(String),
    Replace(Regex, String),
    Lowercase,
}

/// Compiled, ordered username mapping rules. The default (no rules) is the identity, as
/// with the plugin's hook switched off.
#[derive(Debug, Clone)]
pub struct UsernameMapping {
    rules: Vec<Compiled>,
    valid: Regex,
}

fn valid_username_regex() -> Regex {
    // A constant pattern: compiling it cannot fail.
    Regex::new(r"^[0-9A-Za-z_.\-]+$").unwrap_or_else(|e| unreachable!("constant regex: {e}"))
}

impl Default for UsernameMapping {
    fn default() -> Self {
        UsernameMapping {
            rules: Vec::new(),
            valid: valid_username_regex(),
        }
    }
}

impl UsernameMapping {
    /// Compiles rules, reporting the first invalid pattern.
    pub fn new(rules: &[MappingRule]) -> Result<UsernameMapping, RuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, r) in rules.iter().enumerate() {
            compiled.push(match r {
                MappingRule::StripSuffix { suffix } => Compiled::Strip(suffix.to_lowercase()),
                MappingRule::Replace {
                    pattern,
                    replacement,
                } => Compiled::Replace(
                    Regex::new(pattern).map_err(|e| RuleError {
                        index,
                        pattern: pattern.clone(),
                        message: e.to_string(),
                    })?,
                    replacement.clone(),
                ),
                MappingRule::Lowercase => Compiled::Lowercase,
            });
        }
        Ok(UsernameMapping {
            rules: compiled,
            valid: valid_username_regex(),
        })
    }

    /// The rules of mod_rocketchat's `hooklib-example.php` (Paris 1): strip
    /// `@univ-paris1.fr`, then replace every character outside `[0-9a-zA-Z-_.]` with `__`.
    pub fn plugin_example_rules() -> Vec<MappingRule> {
        vec![
            MappingRule::StripSuffix {
                suffix: "@univ-paris1.fr".into(),
            },
            MappingRule::Replace {
                pattern: r"[^0-9a-zA-Z\-_.]".into(),
                replacement: "__".into(),
            },
        ]
    }

    /// Maps one Moodle username.
    pub fn map(&self, moodle: &str) -> Result<String, UnmappableUsername> {
        let mut s = moodle.to_owned();
        for r in &self.rules {
            match r {
                Compiled::Strip(suffix) => {
                    if s.len() >= suffix.len()
                        && s.is_char_boundary(s.len() - suffix.len())
                        && s[s.len() - suffix.len()..].to_lowercase() == *suffix
                    {
                        s.truncate(s.len() - suffix.len());
                    }
                }
                Compiled::Replace(re, with) => s = re.replace_all(&s, with.as_str()).into_owned(),
                Compiled::Lowercase => s = s.to_lowercase(),
            }
        }
        if self.valid.is_match(&s) {
            Ok(s)
        } else {
            Err(UnmappableUsername {
                moodle: moodle.to_owned(),
                mapped: s,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn identity_by_default() {
        let m = UsernameMapping::default();
        assert_eq!(m.map("student1").unwrap(), "student1");
        assert!(
            m.map("jean@x.fr").is_err(),
            "@ is not valid in a chat username"
        );
        assert!(m.map("").is_err());
    }

    #[test]
    fn plugin_example() {
        let m = UsernameMapping::new(&UsernameMapping::plugin_example_rules()).unwrap();
        assert_eq!(m.map("jdupont@univ-paris1.fr").unwrap(), "jdupont");
        assert_eq!(m.map("JDupont@UNIV-PARIS1.FR").unwrap(), "JDupont");
        assert_eq!(
            m.map("jean.dupont@etu.univ-paris1.fr").unwrap(),
            "jean.dupont__etu.univ-paris1.fr"
        );
        assert_eq!(m.map("élise").unwrap(), "__lise");
        assert_eq!(m.map("a b").unwrap(), "a__b");
        assert_eq!(m.map("ok-name_1.x").unwrap(), "ok-name_1.x");
    }

    #[test]
    fn rules_apply_in_order_and_bad_patterns_are_reported() {
        let m = UsernameMapping::new(&[
            MappingRule::Lowercase,
            MappingRule::Replace {
                pattern: r"^(\w+)\.(\w+)$".into(),
                replacement: "${2}_${1}".into(),
            },
        ])
        .unwrap();
        assert_eq!(m.map("Jean.Dupont").unwrap(), "dupont_jean");
        let e = UsernameMapping::new(&[MappingRule::Replace {
            pattern: "(".into(),
            replacement: String::new(),
        }])
        .unwrap_err();
        assert_eq!(e.index, 0);
    }

    #[test]
    fn rules_deserialize_from_config() {
        let rules: Vec<MappingRule> = serde_json::from_str(
            r#"[{"type":"strip_suffix","suffix":"@univ-paris1.fr"},
                {"type":"replace","pattern":"[^0-9a-zA-Z\\-_.]","replacement":"__"}]"#,
        )
        .unwrap();
        assert_eq!(rules, UsernameMapping::plugin_example_rules());
    }
}
