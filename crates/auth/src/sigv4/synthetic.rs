//! The bodies of the synthetic `POST /event` requests that WebSocket clients sign (spec §4.2).
//!
//! Clients build them with `JSON.stringify({channel, events})` (amplify-js), Swift's
//! `JSONEncoder` with `.withoutEscapingSlashes` or kotlinx.serialization: compact, key order
//! `channel` then `events`, `/` not escaped. We rebuild them byte for byte from the frame's
//! channel and the *decoded* event strings, re-escaping each string with serde_json.
//!
//! serde_json and `JSON.stringify` agree on ordinary input: both escape `"` `\` and control
//! characters (`\b \f \n \r \t`, others as lower-case `\u00xx`), and neither escapes `/`, DEL,
//! U+2028/U+2029 or other non-ASCII (written as UTF-8). Known differences:
//! * Lone surrogates: JS writes `\udXXX`; Rust strings cannot hold them, and serde_json refuses
//!   a frame that contains one, so such a publish never reaches the verifier.
//! * Encoders that escape non-ASCII (`\u00e9`) or `/` (`\/`) sign a different body and fail
//!   verification; none of the official clients do.
//! * Anything that pretty-prints or reorders keys fails verification.

/// The connect body: `{}`.
pub fn connect_body() -> &'static str {
    "{}"
}

/// The subscribe body: `{"channel":"<channel>"}`, channel exactly as sent in the frame.
pub fn subscribe_body(channel: &str) -> String {
    let mut out = String::with_capacity(channel.len() + 16);
    out.push_str("{\"channel\":");
    push_json_string(&mut out, channel);
    out.push('}');
    out
}

/// The publish body: `{"channel":"<channel>","events":["<event>",...]}`, where each event is the
/// decoded string from the frame's `events` array (itself JSON text, escaped again here).
pub fn publish_body<E: AsRef<str>>(channel: &str, events: &[E]) -> String {
    let len: usize = events.iter().map(|e| e.as_ref().len() + 8).sum();
    let mut out = String::with_capacity(channel.len() + len + 32);
    out.push_str("{\"channel\":");
    push_json_string(&mut out, channel);
    out.push_str(",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, e.as_ref());
    }
    out.push_str("]}");
    out
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a `&str` cannot fail; on the impossible error the body stays incomplete and
    // the signature check fails closed.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_compact_and_ordered() {
        assert_eq!(connect_body(), "{}");
        assert_eq!(subscribe_body("/default/*"), r#"{"channel":"/default/*"}"#);
        assert_eq!(
            publish_body("/default/a", &[r#"{"a":1}"#, "\"hi\"", "1"]),
            r#"{"channel":"/default/a","events":["{\"a\":1}","\"hi\"","1"]}"#
        );
        let none: [&str; 0] = [];
        assert_eq!(publish_body("x", &none), r#"{"channel":"x","events":[]}"#);
    }

    #[test]
    fn escaping_matches_json_stringify() {
        // Expected strings are what node's JSON.stringify produces for the same input.
        assert_eq!(
            publish_body(
                "/a/b",
                &["\u{1}\u{1f}\t\n\r\u{8}\u{c}\"\\/\u{7f}é\u{2028}😀"]
            ),
            "{\"channel\":\"/a/b\",\"events\":[\"\\u0001\\u001f\\t\\n\\r\\b\\f\\\"\\\\/\u{7f}é\u{2028}😀\"]}"
        );
    }
}
