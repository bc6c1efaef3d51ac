//! Room and user name rules with Rocket.Chat's default settings.

/// `Accounts_SystemBlockedUsernameList` (hidden setting, default).
const SYSTEM_BLOCKED: &[&str] = &["admin", "administrator", "system", "user"];

/// `^[0-9a-zA-Z-_.]+$`, the default of `UTF8_Channel_Names_Validation` and `UTF8_User_Names_Validation`.
fn default_pattern(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `getValidRoomName` accepts `name` (pattern and blocked list; uniqueness is separate).
pub(crate) fn valid_room_name(name: &str) -> bool {
    default_pattern(name) && !SYSTEM_BLOCKED.iter().any(|b| b.eq_ignore_ascii_case(name))
}

/// Whether a username passes `UTF8_User_Names_Validation`.
pub(crate) fn valid_username(name: &str) -> bool {
    default_pattern(name)
}

/// Whether a username is blocked (`all`, `here` and the system list, case-insensitive).
pub(crate) fn blocked_username(name: &str) -> bool {
    ["all", "here"]
        .iter()
        .chain(SYSTEM_BLOCKED)
        .any(|b| b.eq_ignore_ascii_case(name))
}

/// A plausible e-mail address (Rocket.Chat's check is a loose regex too).
pub(crate) fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(' ')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_follow_the_default_pattern() {
        for ok in ["course-101", "a_b.c", "X", "0"] {
            assert!(valid_room_name(ok), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "caf\u{e9}",
            "#general",
            "a@b",
            "Admin",
            "USER",
            "system",
        ] {
            assert!(!valid_room_name(bad), "{bad}");
        }
    }

    #[test]
    fn usernames() {
        assert!(valid_username("j.doe-1_x"));
        assert!(!valid_username("j doe"));
        assert!(
            blocked_username("ALL")
                && blocked_username("administrator")
                && !blocked_username("alice")
        );
        assert!(valid_email("a@b.c") && !valid_email("a@b") && !valid_email("ab.c"));
    }
}
