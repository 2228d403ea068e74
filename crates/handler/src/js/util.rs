//! Rust side of `console.*` and the `util` helpers that JavaScript cannot do by itself.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Longest console line kept; a handler logging megabytes must not flood the logs.
const MAX_LOG_CHARS: usize = 4096;

/// `console.<level>(...)` → tracing, tagged with the namespace.
pub(crate) fn log(namespace: &str, level: &str, message: &str) {
    let message = match message.char_indices().nth(MAX_LOG_CHARS) {
        Some((cut, _)) => &message[..cut],
        None => message,
    };
    match level {
        "debug" => tracing::debug!(target: "herald_handler::console", namespace, "{message}"),
        "warn" => tracing::warn!(target: "herald_handler::console", namespace, "{message}"),
        "error" => tracing::error!(target: "herald_handler::console", namespace, "{message}"),
        _ => tracing::info!(target: "herald_handler::console", namespace, "{message}"),
    }
}

thread_local! {
    /// splitmix64 state, seeded from std's per-process random hasher keys.
    static ID_STATE: Cell<u64> = Cell::new({
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        h.finish()
    });
}

fn next_u64() -> u64 {
    ID_STATE.with(|state| {
        let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// `util.autoId()`: a random-looking UUID v4 string. Unique, not secret: do not use as a token.
pub(crate) fn auto_id() -> String {
    let bits = (u128::from(next_u64()) << 64) | u128::from(next_u64());
    // Version 4 and RFC 4122 variant bits.
    let bits = (bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `util.base64Encode(string)`: standard base64 of the UTF-8 bytes.
pub(crate) fn base64_encode(input: String) -> String {
    STANDARD.encode(input.as_bytes())
}

/// `util.base64Decode(string)`: the decoded bytes as UTF-8 (invalid sequences replaced).
pub(crate) fn base64_decode(input: &str) -> Result<String, String> {
    STANDARD
        .decode(input.trim().as_bytes())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("util.base64Decode: invalid base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_id_is_a_v4_uuid_and_unique() {
        let a = auto_id();
        let b = auto_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64_encode("héllo".into()), "aMOpbGxv");
        assert_eq!(base64_decode("aMOpbGxv").unwrap(), "héllo");
        assert!(base64_decode("***").is_err());
    }
}
