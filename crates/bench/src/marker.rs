//! The bench's own event payload: who published it, on which channel, in which order, and when.
//!
//! Every event is a JSON object `{"b":"HB1-<publisher>-<channel>-<seq>-<micros>","x":"xxx…"}`.
//! The marker holds only letters, digits and dashes, so it reads the same whether a server
//! delivers the event raw (NATS), as a JSON string inside a JSON frame (AppSync `event`, Pusher
//! `data`), or escaped twice: subscribers find it by scanning bytes, never parsing JSON.

/// Identity and publish time of one event, as carried in its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub publisher: u32,
    pub channel: u32,
    pub seq: u64,
    /// Microseconds since the bench's clock origin at the moment of publishing.
    pub sent_us: u64,
}

const TAG: &[u8] = b"HB1-";

/// Builds the event JSON (unescaped) padded with `x` so it is about `size` bytes long.
pub fn event_json(m: &Marker, size: usize) -> String {
    let mut s = format!(
        "{{\"b\":\"HB1-{}-{}-{}-{}\",\"x\":\"",
        m.publisher, m.channel, m.seq, m.sent_us
    );
    let pad = size.saturating_sub(s.len() + 2);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

/// The event JSON escaped for embedding as a JSON string value (without the outer quotes).
/// The payload has no backslashes or control characters, so quotes are all there is to escape.
pub fn escaped(event: &str) -> String {
    event.replace('"', "\\\"")
}

/// Calls `f` for every marker found in `bytes`.
pub fn scan(bytes: &[u8], mut f: impl FnMut(Marker)) {
    let mut i = 0;
    while i + TAG.len() <= bytes.len() {
        let Some(off) = bytes[i..].iter().position(|&b| b == b'H') else {
            return;
        };
        i += off;
        if bytes[i..].starts_with(TAG) {
            i += TAG.len();
            if let Some((m, used)) = parse_fields(&bytes[i..]) {
                f(m);
                i += used;
            }
        } else {
            i += 1;
        }
    }
}

fn parse_fields(b: &[u8]) -> Option<(Marker, usize)> {
    let mut vals = [0u64; 4];
    let mut pos = 0;
    for (k, v) in vals.iter_mut().enumerate() {
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            *v = v.checked_mul(10)?.checked_add(u64::from(b[pos] - b'0'))?;
            pos += 1;
        }
        if pos == start {
            return None;
        }
        if k < 3 {
            if b.get(pos) != Some(&b'-') {
                return None;
            }
            pos += 1;
        }
    }
    let m = Marker {
        publisher: u32::try_from(vals[0]).ok()?,
        channel: u32::try_from(vals[1]).ok()?,
        seq: vals[2],
        sent_us: vals[3],
    };
    Some((m, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_raw_and_escaped() {
        let m = Marker {
            publisher: 3,
            channel: 17,
            seq: 123_456,
            sent_us: 9_876_543,
        };
        let ev = event_json(&m, 100);
        assert_eq!(ev.len(), 100);
        let v: serde_json::Value = serde_json::from_str(&ev).unwrap();
        assert!(v["b"].as_str().unwrap().starts_with("HB1-3-17-"));
        let frame = format!(r#"{{"type":"data","id":"s1","event":"{}"}}"#, escaped(&ev));
        let parsed: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(parsed["event"].as_str().unwrap(), ev);
        let mut got = Vec::new();
        scan(frame.as_bytes(), |m| got.push(m));
        assert_eq!(got, vec![m]);
    }

    #[test]
    fn scans_several_and_skips_noise() {
        let a = Marker {
            publisher: 0,
            channel: 0,
            seq: 0,
            sent_us: 1,
        };
        let b = Marker {
            publisher: 1,
            channel: 2,
            seq: 3,
            sent_us: 4,
        };
        let text = format!(
            "HB1-x H {} HB1-9-9 {}",
            event_json(&a, 0),
            event_json(&b, 0)
        );
        let mut got = Vec::new();
        scan(text.as_bytes(), |m| got.push(m));
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn small_size_still_valid() {
        let m = Marker {
            publisher: 1,
            channel: 1,
            seq: 1,
            sent_us: 1,
        };
        let ev = event_json(&m, 0);
        serde_json::from_str::<serde_json::Value>(&ev).unwrap();
    }
}
