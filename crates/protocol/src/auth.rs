//! The authorization object clients send (spec §4.1): in the `header-<base64url>` subprotocol,
//! as real headers on the upgrade request, or as the `authorization` field of an operation.

/// Authorization fields, keys lower-cased (clients send `Authorization`, `X-Api-Key`, …).
///
/// Bounded, because a connection keeps its connect fields for its whole life: the
/// [`CREDENTIALS`] are kept once each (the first one sent) whatever their position, each up to
/// [`MAX_CREDENTIAL_BYTES`]; other fields (shown to handlers and the Lambda authorizer) are kept
/// up to [`MAX_OTHER_FIELDS`] and [`MAX_OTHER_BYTES`], in order; the rest are ignored. So one
/// object holds at most 38 fields and 104 KiB, and a flood of other headers can never push a
/// credential out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFields(Vec<(String, String)>);

/// The fields that carry or are signed with a credential (API key, token or SigV4).
pub const CREDENTIALS: [&str; 6] = [
    "x-api-key",
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "host",
    "x-amz-content-sha256",
];
/// Longest credential value kept: room for a JWT with many claims or an STS session token; a
/// longer one is ignored (and so refused as missing).
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;
/// Most fields other than credentials kept from one object (a client has no reason to send
/// dozens).
pub const MAX_OTHER_FIELDS: usize = 32;
/// Most bytes (names plus values) of fields other than credentials kept from one object.
pub const MAX_OTHER_BYTES: usize = 8 * 1024;

fn is_credential(key: &str) -> bool {
    CREDENTIALS.iter().any(|c| c.eq_ignore_ascii_case(key))
}

impl AuthFields {
    pub fn new() -> Self {
        AuthFields(Vec::new())
    }

    /// Adds a field within the bounds above; the key is matched case-insensitively later.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        let fits = if is_credential(key) {
            value.len() <= MAX_CREDENTIAL_BYTES && self.get(key).is_none()
        } else {
            let (count, bytes) = self
                .0
                .iter()
                .filter(|(k, _)| !is_credential(k))
                .fold((0, 0), |(n, b), (k, v)| (n + 1, b + k.len() + v.len()));
            count < MAX_OTHER_FIELDS && bytes + key.len() + value.len() <= MAX_OTHER_BYTES
        };
        if fits {
            self.0.push((key.to_ascii_lowercase(), value));
        }
    }

    /// The value of a field, matched case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Reads a JSON object; string values are kept, others ignored. `None` if not an object.
    pub fn from_json(text: &str) -> Option<AuthFields> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
        let mut fields = AuthFields::new();
        for (k, v) in map {
            if let serde_json::Value::String(s) = v {
                fields.insert(&k, s);
            }
        }
        Some(fields)
    }

    /// Decodes a `header-<base64url(JSON)>` subprotocol entry. `None` if it is not one.
    pub fn from_subprotocol(protocol: &str) -> Option<AuthFields> {
        let encoded = protocol.trim().strip_prefix("header-")?;
        let json = base64_decode(encoded)?;
        AuthFields::from_json(std::str::from_utf8(&json).ok()?)
    }
}

/// Decodes base64url or standard base64, with or without padding.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    }
    let input = input.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    for chunk in input.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

/// Encodes standard base64 with padding (the WebSocket accept key).
pub fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(ALPHABET[(i & 63) as usize]);
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = base64_encode(&data);
            assert_eq!(base64_decode(&enc).unwrap(), data);
            let url = enc.replace('+', "-").replace('/', "_");
            assert_eq!(base64_decode(url.trim_end_matches('=')).unwrap(), data);
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("a$bc").is_none());
    }

    #[test]
    fn credentials_are_kept_whatever_their_position_and_the_rest_is_bounded() {
        let mut f = AuthFields::new();
        for i in 0..1000 {
            f.insert(&format!("x-junk-{i}"), "v".repeat(100));
            // Repeats of a credential do not pile up: the first one stays.
            f.insert("Host", format!("host-{i}"));
        }
        f.insert("X-Api-Key", "da2-late");
        f.insert("x-api-key", "da2-later");
        f.insert("authorization", "x".repeat(MAX_CREDENTIAL_BYTES + 1));
        assert_eq!(f.get("x-api-key"), Some("da2-late"));
        assert_eq!(f.get("host"), Some("host-0"));
        assert_eq!(
            f.get("authorization"),
            None,
            "an oversized credential is ignored"
        );
        let others: Vec<_> = f.iter().filter(|(k, _)| k.starts_with("x-junk-")).collect();
        assert!(others.len() <= MAX_OTHER_FIELDS);
        assert!(others.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= MAX_OTHER_BYTES);
        assert_eq!(f.iter().count(), others.len() + 2);
        // Small fields: the count bound applies.
        let mut f = AuthFields::new();
        for i in 0..100 {
            f.insert(&format!("h{i}"), "1");
        }
        assert_eq!(f.iter().count(), MAX_OTHER_FIELDS);
    }

    #[test]
    fn reads_the_header_subprotocol() {
        let json = r#"{"host":"example.com","X-Api-Key":"da2-abc","n":1}"#;
        let proto = format!(
            "header-{}",
            base64_encode(json.as_bytes()).trim_end_matches('=')
        );
        let f = AuthFields::from_subprotocol(&proto).unwrap();
        assert_eq!(f.get("x-api-key"), Some("da2-abc"));
        assert_eq!(f.get("HOST"), Some("example.com"));
        assert_eq!(f.get("n"), None);
        assert!(AuthFields::from_subprotocol("aws-appsync-event-ws").is_none());
        assert!(AuthFields::from_subprotocol("header-!!!").is_none());
    }
}
