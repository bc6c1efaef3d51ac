//! The imitated server version and the behaviour switches that depend on it.

use std::fmt;

/// A `major.minor.patch` Rocket.Chat version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Parses `7.4.0` (missing parts are 0; a suffix like `-rc.1` is ignored).
    pub fn parse(s: &str) -> Option<Version> {
        let core = s.trim().split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        let patch = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        if parts.next().is_some() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    /// True from `major.minor.patch` on.
    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        *self
            >= Version {
                major,
                minor,
                patch,
            }
    }

    /// 7.x and later: Meteor 3 era (`forbidden()`, 7.x 401 body, new kick order, ajv params).
    pub fn modern(&self) -> bool {
        self.major >= 7
    }

    /// 8.x and later: `applyBreakingChanges` (slim 401 body, `forbidden` text).
    pub fn breaking8(&self) -> bool {
        self.major >= 8
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let v = Version::parse("6.4.1").unwrap();
        assert!(v.at_least(6, 4, 1) && !v.at_least(6, 4, 2) && !v.modern());
        assert_eq!(Version::parse("8").unwrap().to_string(), "8.0.0");
        assert!(Version::parse("8.5.0-rc.1").unwrap().breaking8());
        assert!(Version::parse("x.1").is_none() && Version::parse("1.2.3.4").is_none());
    }
}
