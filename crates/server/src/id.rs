//! Generated API keys and API ids, from the operating system's random source; event UUIDs come from
//! [`herald_protocol::id`] (a fast per-thread generator: ids need uniqueness, not secrecy).

pub use herald_protocol::id::uuid_v4;

/// Why no key could be generated.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(String);

/// A new API key in AppSync's shape: `da2-` and 26 lower-case letters and digits, each drawn
/// uniformly from the OS random source (bytes at or above 252 = 7 × 36 are redrawn, so no
/// character is likelier than another).
pub fn api_key() -> Result<String, RandomError> {
    random_chars(String::from("da2-"), 26)
}

/// A new API id in AppSync's shape: 26 lower-case letters and digits.
pub fn api_id() -> Result<String, RandomError> {
    random_chars(String::new(), 26)
}

fn random_chars(mut out: String, n: usize) -> Result<String, RandomError> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let end = out.len() + n;
    let mut buf = [0u8; 64];
    while out.len() < end {
        getrandom::getrandom(&mut buf).map_err(|e| RandomError(e.to_string()))?;
        for b in buf.iter().filter(|b| **b < 252) {
            if out.len() == end {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b) % 36]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_appsync_shape() {
        let k = api_key().unwrap();
        assert!(k.starts_with("da2-") && k.len() == 30);
        assert!(
            k[4..]
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(k, api_key().unwrap());
        let id = api_id().unwrap();
        assert!(id.len() == 26 && id.bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
