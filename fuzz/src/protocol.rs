//! Fuzz checks for `herald-protocol`: WebSocket client frames, the HTTP publish body, the
//! `header-<base64url>` subprotocol, and channel paths and subscription patterns.

use herald_protocol::auth::{base64_decode, base64_encode};
use herald_protocol::message::{EventError, MAX_RESUME_POSITIONS, valid_id};
use herald_protocol::{AuthFields, Channel, ClientMessage, EventLimits, HttpPublish, Pattern};

/// The default limits, and tight ones so that the size and count checks are reached too.
const LIMITS: [EventLimits; 2] = [
    EventLimits {
        max_event_bytes: 240 * 1024,
        max_events: 5,
    },
    EventLimits {
        max_event_bytes: 16,
        max_events: 2,
    },
];

/// Longest error message a reply may carry: a client must not be able to make the server echo
/// its own input back at length.
const MAX_ERROR_MESSAGE: usize = 512;

/// What an `AuthFields` keeps at most: the credential headers, and a bounded number of others.
const MAX_AUTH_FIELDS: usize =
    herald_protocol::auth::CREDENTIALS.len() + herald_protocol::auth::MAX_OTHER_FIELDS;

/// `client_message`: one WebSocket text frame through `ClientMessage::parse`.
pub fn client_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for limits in &LIMITS {
        match ClientMessage::parse(text, limits) {
            Ok(ClientMessage::ConnectionInit) => {}
            Ok(ClientMessage::Unsubscribe { id }) => assert!(valid_id(&id)),
            Ok(ClientMessage::Subscribe {
                id,
                authorization,
                resume,
                presence,
                ..
            }) => {
                assert!(valid_id(&id));
                check_auth(authorization.as_ref());
                if let Some(info) = presence.info {
                    assert!(info.get().starts_with('{'), "presence.info is an object");
                }
                if let Some(r) = resume {
                    assert!(r.positions.len() <= MAX_RESUME_POSITIONS);
                    assert!(r.after.is_some() || !r.positions.is_empty() || r.since_ms.is_some());
                }
            }
            Ok(ClientMessage::Presence {
                id, authorization, ..
            }) => {
                assert!(valid_id(&id));
                check_auth(authorization.as_ref());
            }
            Ok(ClientMessage::Publish {
                id,
                events,
                authorization,
                ..
            }) => {
                assert!(valid_id(&id));
                check_auth(authorization.as_ref());
                assert!((1..=limits.max_events).contains(&events.len()));
                for e in &events {
                    check_event(e.token(), limits);
                }
            }
            Err(e) => {
                if let Some(id) = &e.id {
                    assert!(valid_id(id), "error carries an invalid id {id:?}");
                    assert!(e.operation.is_some());
                }
                assert!(
                    e.error.message.len() <= MAX_ERROR_MESSAGE,
                    "{}",
                    e.error.message
                );
            }
        }
    }
}

/// `http_publish`: one `POST /event` body through `HttpPublish::parse`.
pub fn http_publish(data: &[u8]) {
    for limits in &LIMITS {
        match HttpPublish::parse(data, limits) {
            Ok(p) => {
                assert!((1..=limits.max_events).contains(&p.events.len()));
                for (i, e) in p.events.iter().enumerate() {
                    match e {
                        Ok(e) => check_event(e.token(), limits),
                        Err(EventError::TooLarge { index, limit }) => {
                            assert_eq!((*index, *limit), (i, limits.max_event_bytes));
                        }
                        Err(other) => panic!("event {i} kept as {other:?}"),
                    }
                }
            }
            Err(e) => assert!(e.message.len() <= MAX_ERROR_MESSAGE, "{}", e.message),
        }
    }
}

/// An accepted event is a JSON string token whose text is itself JSON, within the size limit.
fn check_event(token: &str, limits: &EventLimits) {
    let text: String = match serde_json::from_str(token) {
        Ok(t) => t,
        Err(e) => panic!("accepted event {token:?} is not a JSON string: {e}"),
    };
    assert!(text.len() <= limits.max_event_bytes);
    assert!(serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok());
}

fn check_auth(fields: Option<&AuthFields>) {
    if let Some(f) = fields {
        assert!(f.iter().count() <= MAX_AUTH_FIELDS);
        for (k, _) in f.iter() {
            assert!(!k.bytes().any(|b| b.is_ascii_uppercase()), "key {k:?}");
        }
    }
}

/// `subprotocol`: the `Sec-WebSocket-Protocol` entry `header-<base64url(JSON)>`.
pub fn subprotocol(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_auth(AuthFields::from_subprotocol(text).as_ref());
    }
    // Any bytes survive encoding then decoding, in both alphabets, padded or not.
    let standard = base64_encode(data);
    assert_eq!(base64_decode(&standard).as_deref(), Some(data));
    let url = standard
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_");
    assert_eq!(base64_decode(&url).as_deref(), Some(data));
    // The subprotocol means exactly the JSON object it wraps.
    if let Ok(json) = std::str::from_utf8(data) {
        assert_eq!(
            AuthFields::from_subprotocol(&format!("header-{url}")),
            AuthFields::from_json(json)
        );
    }
}

/// `channel`: the input is `<pattern>\n<channel>` (or one text used as both). Each half goes
/// through `Channel::parse` and `Pattern::parse`; the parsed pattern is matched against the
/// parsed channel and compared with a naive model of matching on canonical paths.
pub fn channel(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, channel) = text.split_once('\n').unwrap_or((text, text));
    for input in [pattern, channel] {
        check_channel(input);
        check_pattern(input);
    }
    if let (Ok(p), Ok(c)) = (Pattern::parse(pattern), Channel::parse(channel)) {
        let model = match &p {
            Pattern::Exact(k) => c.as_str() == k.as_str(),
            Pattern::Below(k) => c
                .as_str()
                .strip_prefix(k.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
        };
        assert_eq!(p.matches(&c), model, "{p} against {c}");
        if model {
            assert_eq!(p.namespace(), c.namespace());
        }
    }
}

fn check_channel(input: &str) {
    match Channel::parse(input) {
        Ok(c) => {
            let path = c.as_str();
            assert!(path.starts_with('/') && !path.ends_with('/'), "{path}");
            let segments: Vec<&str> = c.segments().collect();
            assert_eq!(segments.len(), c.depth());
            assert!((1..=herald_protocol::channel::MAX_SEGMENTS).contains(&c.depth()));
            assert_eq!(segments.first().copied(), Some(c.namespace()));
            for s in &segments {
                assert!((1..=herald_protocol::channel::MAX_SEGMENT_LEN).contains(&s.len()));
            }
            let ancestors: Vec<&str> = c.ancestors().collect();
            assert_eq!(ancestors.len(), c.depth() - 1);
            for a in ancestors {
                assert!(path.starts_with(a) && path.as_bytes().get(a.len()) == Some(&b'/'));
            }
            // The canonical form is a fixed point, and a channel is also an exact pattern.
            assert_eq!(Channel::parse(path).as_ref(), Ok(&c));
            assert_eq!(Pattern::parse(path), Ok(Pattern::Exact(c.clone())));
        }
        Err(e) => assert!(e.to_string().len() <= MAX_ERROR_MESSAGE),
    }
}

fn check_pattern(input: &str) {
    match Pattern::parse(input) {
        Ok(p) => {
            assert_eq!(Pattern::parse(&p.to_string()).as_ref(), Ok(&p));
            if let Pattern::Below(k) = &p {
                // `/*` takes the place of the last segment.
                assert!(k.depth() < herald_protocol::channel::MAX_SEGMENTS);
            }
        }
        Err(e) => assert!(e.to_string().len() <= MAX_ERROR_MESSAGE),
    }
}
