//! Usernames to Matrix user ids, by the spec's user-id grammar as Synapse enforces it.
//!
//! The worker's mapping rules produce a username; on Matrix it is the *localpart* of
//! `@localpart:server_name`, with `server_name` taken from the bot's own id (not from the URL
//! host, which differs under `.well-known` delegation). Localparts are case-folded: Matrix ids
//! are case-sensitive but Synapse registers lower-case ones only, and the worker compares
//! usernames case-insensitively.

/// The longest whole user id Synapse accepts.
const MAX_USER_ID_LEN: usize = 255;

/// Why a username cannot be a Matrix user id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUsername {
    /// Empty after trimming.
    #[error("empty username")]
    Empty,
    /// A character outside `a-z 0-9 . _ = - / +`.
    #[error("{0:?} is not allowed in a Matrix localpart (only a-z, 0-9 and . _ = - / +)")]
    Character(char),
    /// Synapse reserves a leading `_` (application services).
    #[error("a Matrix localpart may not begin with _")]
    LeadingUnderscore,
    /// All digits: reserved for guest users.
    #[error("numeric Matrix localparts are reserved for guest users")]
    Numeric,
    /// The whole id is longer than 255 characters.
    #[error("the Matrix user id would be longer than 255 characters")]
    TooLong,
    /// A full user id on another homeserver.
    #[error("{0} is not on this homeserver")]
    Remote(String),
}

/// The localpart for `username`: a full id on `server_name` is accepted too; ASCII upper
/// case is folded.
pub fn localpart(username: &str, server_name: &str) -> Result<String, InvalidUsername> {
    let name = username.trim();
    let local = match name.strip_prefix('@') {
        Some(full) => match full.split_once(':') {
            Some((l, server)) if server == server_name => l,
            Some(_) => return Err(InvalidUsername::Remote(name.to_owned())),
            None => full,
        },
        None => name,
    };
    let local = local.to_ascii_lowercase();
    if local.is_empty() {
        return Err(InvalidUsername::Empty);
    }
    if let Some(c) = local.chars().find(|c| {
        !(c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '.' | '_' | '=' | '-' | '/' | '+'))
    }) {
        return Err(InvalidUsername::Character(c));
    }
    if local.starts_with('_') {
        return Err(InvalidUsername::LeadingUnderscore);
    }
    if local.chars().all(|c| c.is_ascii_digit()) {
        return Err(InvalidUsername::Numeric);
    }
    if local.len() + server_name.len() + 2 > MAX_USER_ID_LEN {
        return Err(InvalidUsername::TooLong);
    }
    Ok(local)
}

/// `@localpart:server_name` for `username`.
pub fn user_id(username: &str, server_name: &str) -> Result<String, InvalidUsername> {
    localpart(username, server_name).map(|l| format!("@{l}:{server_name}"))
}

/// The username the worker knows a member by: the localpart for a local user, the whole id
/// for a user of another homeserver (which the worker never manages).
pub fn username_of(user_id: &str, server_name: &str) -> String {
    match user_id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
    {
        Some((local, server)) if server == server_name => local.to_owned(),
        _ => user_id.to_owned(),
    }
}

/// `server_name` of a user id (`@rcbot:example.edu` → `example.edu`).
pub fn server_name_of(user_id: &str) -> Option<&str> {
    user_id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, server)| server)
        .filter(|s| !s.is_empty())
}

/// The alias localpart of a room name: aliases are the unique key (names are not), and
/// Synapse rejects whitespace and `:` in them, so those become `_`.
pub fn alias_localpart(room_name: &str) -> String {
    room_name
        .trim()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == ':' || c == '#' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const S: &str = "rcjobs.test";

    #[test]
    fn the_spec_grammar() {
        assert_eq!(user_id("alice", S).unwrap(), "@alice:rcjobs.test");
        assert_eq!(
            user_id("Alice.B-c_d=e/f+g", S).unwrap(),
            "@alice.b-c_d=e/f+g:rcjobs.test"
        );
        assert_eq!(user_id("@bob:rcjobs.test", S).unwrap(), "@bob:rcjobs.test");
        assert_eq!(user_id("", S), Err(InvalidUsername::Empty));
        assert_eq!(user_id("a b", S), Err(InvalidUsername::Character(' ')));
        assert_eq!(user_id("o'neil", S), Err(InvalidUsername::Character('\'')));
        assert_eq!(user_id("josé", S), Err(InvalidUsername::Character('é')));
        assert_eq!(user_id("a@b", S), Err(InvalidUsername::Character('@')));
        assert_eq!(user_id("_svc", S), Err(InvalidUsername::LeadingUnderscore));
        assert_eq!(user_id("12345", S), Err(InvalidUsername::Numeric));
        assert!(user_id("u12345", S).is_ok());
        assert!(matches!(
            user_id("@x:other.org", S),
            Err(InvalidUsername::Remote(_))
        ));
        assert_eq!(user_id(&"a".repeat(300), S), Err(InvalidUsername::TooLong));
        assert!(user_id(&"a".repeat(255 - S.len() - 2), S).is_ok());
        assert_eq!(
            user_id(&"a".repeat(256 - S.len() - 2), S),
            Err(InvalidUsername::TooLong)
        );
    }

    #[test]
    fn ids_back_to_usernames() {
        assert_eq!(username_of("@alice:rcjobs.test", S), "alice");
        assert_eq!(username_of("@alice:other.org", S), "@alice:other.org");
        assert_eq!(server_name_of("@rcbot:example.edu"), Some("example.edu"));
        assert_eq!(server_name_of("rcbot"), None);
        assert_eq!(alias_localpart(" Course 12: Maths "), "Course_12__Maths");
    }
}
