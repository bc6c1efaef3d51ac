//! Meteor-style ids and tokens from the simulator's seeded random source.

use rand::rngs::StdRng;
use rand::Rng;

const ID_CHARS: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn pick(rng: &mut StdRng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A 17-character `Random.id()`.
pub(crate) fn random_id(rng: &mut StdRng) -> String {
    pick(rng, ID_CHARS, 17)
}

/// A 43-character `Random.secret()` (login and personal access tokens).
pub(crate) fn random_secret(rng: &mut StdRng) -> String {
    pick(rng, SECRET_CHARS, 43)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ids_are_meteor_shaped_and_repeatable() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let id = random_id(&mut a);
        assert_eq!(id, random_id(&mut b));
        assert_eq!(id.len(), 17);
        assert!(id.bytes().all(|c| ID_CHARS.contains(&c)));
        assert_eq!(random_secret(&mut a).len(), 43);
    }
}
