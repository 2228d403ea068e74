//! The authorization object clients send (spec §4.1): in the `header-<base64url>` subprotocol,
//! as real headers on the upgrade request, or as the `authorization` field of an operation.

/// Authorization fields, keys lower-cased (clients send `Authorization`, `X-Api-Key`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFields(Vec<(String, String)>);

/// Most fields kept from one object; more are ignored (a client has no reason to send dozens).
const MAX_FIELDS: usize = 32;

impl AuthFields {
    pub fn new() -> Self {
        AuthFields(Vec::new())
    }

    /// Adds a field; the key is matched case-insensitively later.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        if self.0.len() < MAX_FIELDS {
            self.0.push((key.to_ascii_lowercase(), value.into()));
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
