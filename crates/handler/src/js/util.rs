//! Rust side of `console.*` and the `util` helpers that JavaScript cannot do by itself.

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

/// `util.autoId()`: a random-looking UUID v4 string. Unique, not secret: do not use as a token.
pub(crate) fn auto_id() -> String {
    herald_protocol::id::uuid_v4()
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
    fn base64_round_trip() {
        assert_eq!(base64_encode("héllo".into()), "aMOpbGxv");
        assert_eq!(base64_decode("aMOpbGxv").unwrap(), "héllo");
        assert!(base64_decode("***").is_err());
    }
}
