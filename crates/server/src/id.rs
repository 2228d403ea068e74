//! Generated API keys; event UUIDs come from [`herald_protocol::id`].

use herald_protocol::id::{next_u64, seed};

pub use herald_protocol::id::uuid_v4;

/// A new API key in AppSync's shape: `da2-` and 26 lower-case letters and digits. Mixes a fresh
/// `RandomState` seed into every character, so keys do not follow from the event-id generator.
pub fn api_key() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut key = String::from("da2-");
    for _ in 0..26 {
        let r = seed() ^ next_u64();
        key.push(char::from(ALPHABET[(r % 36) as usize]));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_appsync_shape() {
        let k = api_key();
        assert!(k.starts_with("da2-") && k.len() == 30);
        assert_ne!(k, api_key());
    }
}
