//! API keys: random, shown once, stored only as a SHA-256 hash with a short display prefix.

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random key: `wk_` and 64 hex digits (two v4 UUIDs' worth of randomness).
pub fn new_key() -> String {
    format!("wk_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// What lists and logs may show of a key.
pub fn prefix(key: &str) -> String {
    key.chars().take(7).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(prefix(&a), a[..7]);
    }
}
