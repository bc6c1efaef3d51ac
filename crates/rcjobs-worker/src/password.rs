//! Random initial passwords for chat accounts the worker creates.
//!
//! Users log in through SSO; nobody is ever told this password. It lives only in memory for
//! the duration of one `create_user` call and is never stored, logged or put in an error.

use rand::Rng;

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGIT: &[u8] = b"23456789";
const SYMBOL: &[u8] = b"!#%+-.:=?@_";

/// A fresh 32-character password with at least one lower-case letter, upper-case letter,
/// digit and symbol (so it passes a Rocket.Chat password policy if one is enabled).
pub fn random_password() -> String {
    let mut rng = rand::rng();
    let all: Vec<u8> = [LOWER, UPPER, DIGIT, SYMBOL].concat();
    let mut bytes: Vec<u8> = Vec::with_capacity(32);
    for class in [LOWER, UPPER, DIGIT, SYMBOL] {
        bytes.push(class[rng.random_range(0..class.len())]);
    }
    while bytes.len() < 32 {
        bytes.push(all[rng.random_range(0..all.len())]);
    }
    // Shuffle so the class-guaranteed characters are not always first.
    for i in (1..bytes.len()).rev() {
        let j = rng.random_range(0..=i);
        bytes.swap(i, j);
    }
    bytes.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_mixed_and_distinct() {
        let a = random_password();
        let b = random_password();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert!(p.bytes().any(|c| LOWER.contains(&c)));
            assert!(p.bytes().any(|c| UPPER.contains(&c)));
            assert!(p.bytes().any(|c| DIGIT.contains(&c)));
            assert!(p.bytes().any(|c| SYMBOL.contains(&c)));
        }
    }
}
