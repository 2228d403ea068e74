//! Client → server messages (spec §2.2) and the HTTP publish body (spec §3), decoded without
//! copying event payloads: each event stays the exact JSON string token the client sent, so it can
//! be forwarded as the `event` field of every `data` frame without re-encoding.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::auth::AuthFields;
use crate::error::{ErrorType, WireError};

/// Limits that parsing enforces. Values come from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Largest event, in bytes of its JSON text (AppSync: 240 KB).
    pub max_event_bytes: usize,
    /// Most events in one publish (AppSync: 5).
    pub max_events: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_event_bytes: 240 * 1024,
            max_events: 5,
        }
    }
}

/// Deepest nesting of arrays and objects an event may have. Not configurable: it protects every
/// subscriber and handler that parses events recursively (browsers, SDKs, `JSON.parse` in
/// handlers), so it is part of the protocol Herald speaks (`docs/protocol.md`).
pub const MAX_EVENT_DEPTH: usize = 64;

/// Which operation a frame asked for; used to pick the right error envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Subscribe,
    Unsubscribe,
    Publish,
    /// Herald extension: read a channel's presence.
    Presence,
}

/// What a subscribe asks of presence (Herald extension `presence`, on namespaces with presence
/// on): the member's info, and whether joins and leaves are delivered to this subscription.
#[derive(Debug, Clone, Copy, Default)]
pub struct PresenceAsk<'a> {
    /// A JSON object, as sent (its size is checked by the server against the namespace's bound).
    pub info: Option<&'a RawValue>,
    pub events: bool,
}

/// A decoded client frame.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    ConnectionInit,
    Subscribe {
        id: Cow<'a, str>,
        channel: Cow<'a, str>,
        authorization: Option<AuthFields>,
        /// Herald extension: replay what was missed since this point, then go live.
        resume: Option<Resume>,
        /// Herald extension `withChannel`: each `data` frame names the channel its event was
        /// published to.
        with_channel: bool,
        /// Herald extension `presence`: member info, and whether to receive joins and leaves.
        presence: PresenceAsk<'a>,
    },
    /// Herald extension: who is subscribed to a channel (`presence_result`).
    Presence {
        id: Cow<'a, str>,
        channel: Cow<'a, str>,
        authorization: Option<AuthFields>,
        /// Only the count, not the members.
        count_only: bool,
        /// Members listed after this connection id (paging).
        after: Option<Cow<'a, str>>,
        /// Most members listed (the server caps it).
        limit: Option<usize>,
    },
    Unsubscribe {
        id: Cow<'a, str>,
    },
    Publish {
        id: Cow<'a, str>,
        channel: Cow<'a, str>,
        events: Vec<Event<'a>>,
        authorization: Option<AuthFields>,
        /// Herald extension `idempotencyKey`: a retry with the same key is not published twice.
        idempotency_key: Option<Cow<'a, str>>,
    },
}

/// A frame that could not be decoded, with what is known of it so the reply can use the
/// operation's own error envelope (`subscribe_error` with its `id`, …) when possible.
#[derive(Debug)]
pub struct FrameError {
    pub operation: Option<Operation>,
    /// The frame's `id`, when it was present and valid.
    pub id: Option<String>,
    pub error: WireError,
}

/// One event of a publish: the JSON string token exactly as received (quotes included).
#[derive(Debug, Clone, Copy)]
pub struct Event<'a>(&'a RawValue);

impl<'a> Event<'a> {
    /// The string token as sent, ready to splice into a `data` frame.
    pub fn token(&self) -> &'a str {
        self.0.get()
    }
}

/// Why one event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event {index} is not a string: each event must be a string that holds JSON")]
    NotAString { index: usize },
    #[error("event {index} is not valid JSON: each event must be a string that holds JSON")]
    NotJson { index: usize },
    #[error("event {index} is larger than {limit} bytes")]
    TooLarge { index: usize, limit: usize },
    #[error("event {index} nests arrays and objects deeper than {limit} levels")]
    TooDeep { index: usize, limit: usize },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    events: Option<&'a RawValue>,
    #[serde(borrow, default)]
    authorization: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resume: Option<&'a RawValue>,
    #[serde(rename = "idempotencyKey", borrow, default)]
    idempotency_key: Option<&'a RawValue>,
    #[serde(rename = "withChannel", borrow, default)]
    with_channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence: Option<&'a RawValue>,
    #[serde(rename = "countOnly", borrow, default)]
    count_only: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default)]
    limit: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawPresenceAsk<'a> {
    #[serde(borrow, default)]
    info: Option<&'a RawValue>,
    #[serde(default)]
    events: Option<bool>,
}

const PRESENCE_HELP: &str =
    "'presence' must be {\"info\":{..an object..},\"events\":true|false}, both optional";

fn parse_presence_ask(raw: Option<&RawValue>) -> Result<PresenceAsk<'_>, WireError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(PresenceAsk::default());
    };
    let r: RawPresenceAsk<'_> = serde_json::from_str(raw.get()).map_err(|_| bad(PRESENCE_HELP))?;
    let info = r.info.filter(|i| i.get() != "null");
    if let Some(info) = info {
        if !info.get().starts_with('{') {
            return Err(bad("'presence.info' must be a JSON object"));
        }
        if !depth_within(info.get(), MAX_EVENT_DEPTH) {
            return Err(bad(format!(
                "'presence.info' nests arrays and objects deeper than {MAX_EVENT_DEPTH} levels"
            )));
        }
    }
    Ok(PresenceAsk {
        info,
        events: r.events.unwrap_or(false),
    })
}

fn parse_flag(raw: Option<&RawValue>, name: &str) -> Result<bool, WireError> {
    match raw.map(RawValue::get) {
        None | Some("null" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(bad(format!("'{name}' must be true or false"))),
    }
}

/// Where a resumed subscription starts (Herald extension, see `docs/extensions.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// For an exact channel: the last position the client saw (`epoch`, `offset`).
    pub after: Option<(u64, u64)>,
    /// For a wildcard: the last position seen per channel.
    pub positions: Vec<(String, u64, u64)>,
    /// Events stored at or after this time (ms since the Unix epoch), for channels without a
    /// position.
    pub since_ms: Option<u64>,
}

/// Most per-channel positions one resume may carry.
pub const MAX_RESUME_POSITIONS: usize = 1000;

#[derive(Deserialize)]
struct RawPosition {
    epoch: EpochValue,
    offset: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EpochValue {
    Text(String),
    Number(u64),
}

impl EpochValue {
    fn get(&self) -> Option<u64> {
        match self {
            EpochValue::Text(s) => s.parse().ok(),
            EpochValue::Number(n) => Some(*n),
        }
    }
}

#[derive(Deserialize)]
struct RawResume {
    #[serde(default)]
    epoch: Option<EpochValue>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    since_ms: Option<u64>,
    #[serde(default)]
    positions: Option<std::collections::BTreeMap<String, RawPosition>>,
}

const RESUME_HELP: &str = "'resume' must be {\"epoch\":\"<epoch>\",\"offset\":<n>}, {\"since_ms\":<ms>}, or {\"positions\":{\"<channel>\":{\"epoch\":..,\"offset\":..}},\"since_ms\":<ms>}";

fn parse_resume(raw: Option<&RawValue>) -> Result<Option<Resume>, WireError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(None);
    };
    let r: RawResume = serde_json::from_str(raw.get()).map_err(|_| bad(RESUME_HELP))?;
    let after = match (r.epoch, r.offset) {
        (Some(e), Some(o)) => Some((e.get().ok_or_else(|| bad(RESUME_HELP))?, o)),
        (None, None) => None,
        _ => return Err(bad(RESUME_HELP)),
    };
    let mut positions = Vec::new();
    for (channel, p) in r.positions.unwrap_or_default() {
        if positions.len() >= MAX_RESUME_POSITIONS {
            return Err(bad(format!(
                "'resume.positions' may list at most {MAX_RESUME_POSITIONS} channels"
            )));
        }
        let epoch = p.epoch.get().ok_or_else(|| bad(RESUME_HELP))?;
        positions.push((channel, epoch, p.offset));
    }
    if after.is_none() && positions.is_empty() && r.since_ms.is_none() {
        return Err(bad(RESUME_HELP));
    }
    Ok(Some(Resume {
        after,
        positions,
        since_ms: r.since_ms,
    }))
}

fn bad(message: impl Into<String>) -> WireError {
    WireError::new(ErrorType::BadRequest, message)
}

/// Most characters of the JSON parser's own message quoted in a reply: serde_json quotes an
/// offending string whole, and a client must not make the server echo its input back at length.
const MAX_JSON_ERROR_CHARS: usize = 160;

/// `<what> is not a valid JSON object: <parser message, shortened>`.
fn not_an_object(what: &str, e: &serde_json::Error) -> WireError {
    let mut detail = e.to_string();
    if let Some((cut, _)) = detail.char_indices().nth(MAX_JSON_ERROR_CHARS) {
        detail.truncate(cut);
        detail.push_str(&format!("… at line {} column {}", e.line(), e.column()));
    }
    bad(format!("{what} is not a valid JSON object: {detail}"))
}

/// `id`: `^[a-zA-Z0-9-_+]{1,128}$` (spec §2.2).
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+'))
}

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// An idempotency key (the `Idempotency-Key` header or a publish frame's `idempotencyKey`) is 1
/// to 128 visible ASCII characters.
pub fn check_idempotency_key(key: &str) -> Result<(), WireError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad(format!(
            "an idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(())
}

fn string_field<'a>(raw: Option<&'a RawValue>, name: &str) -> Result<Cow<'a, str>, WireError> {
    let raw = raw.ok_or_else(|| bad(format!("'{name}' is required")))?;
    serde_json::from_str::<Cow<'a, str>>(raw.get())
        .map_err(|_| bad(format!("'{name}' must be a string")))
}

fn parse_auth(raw: Option<&RawValue>) -> Result<Option<AuthFields>, WireError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => AuthFields::from_json(raw.get())
            .map(Some)
            .ok_or_else(|| bad("'authorization' must be an object")),
    }
}

/// Checks the events of a publish (count, type, JSON, size) and returns them undecoded.
/// Per-event problems other than size are request errors, as the whole publish is malformed;
/// oversized events are reported by index so the caller can list them in `failed`.
pub fn parse_events<'a>(
    raw: Option<&'a RawValue>,
    limits: &EventLimits,
) -> Result<Vec<Result<Event<'a>, EventError>>, WireError> {
    let raw = raw.ok_or_else(|| bad("'events' is required: an array of 1 to 5 strings"))?;
    let list: Vec<&'a RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| bad("'events' must be an array of strings that hold JSON"))?;
    if list.is_empty() || list.len() > limits.max_events {
        return Err(bad(format!(
            "a publish carries 1 to {} events, this one has {}",
            limits.max_events,
            list.len()
        )));
    }
    list.into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let text: Cow<'_, str> = serde_json::from_str(raw.get())
                .map_err(|_| bad(EventError::NotAString { index }.to_string()))?;
            if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() {
                return Err(bad(EventError::NotJson { index }.to_string()));
            }
            if !depth_within(&text, MAX_EVENT_DEPTH) {
                let limit = MAX_EVENT_DEPTH;
                return Err(bad(EventError::TooDeep { index, limit }.to_string()));
            }
            if text.len() > limits.max_event_bytes {
                return Ok(Err(EventError::TooLarge {
                    index,
                    limit: limits.max_event_bytes,
                }));
            }
            Ok(Ok(Event(raw)))
        })
        .collect()
}

/// Whether the JSON text nests arrays and objects at most `max` deep: one pass over the bytes,
/// counting brackets outside strings, with no tree built and no recursion.
fn depth_within(json: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

impl<'a> ClientMessage<'a> {
    /// Decodes one text frame. Unknown fields are ignored, as clients send extra legacy ones.
    /// Events are checked for count, type and JSON validity; an oversized event fails the frame.
    pub fn parse(text: &'a str, limits: &EventLimits) -> Result<ClientMessage<'a>, FrameError> {
        let env: Envelope<'a> = serde_json::from_str(text).map_err(|e| FrameError {
            operation: None,
            id: None,
            error: not_an_object("the message", &e),
        })?;
        let kind = env.kind.as_deref().unwrap_or_default();
        let operation = match kind {
            "connection_init" => return Ok(ClientMessage::ConnectionInit),
            "subscribe" => Operation::Subscribe,
            "unsubscribe" => Operation::Unsubscribe,
            "publish" => Operation::Publish,
            "presence" => Operation::Presence,
            _ => {
                let shown: String = kind.chars().take(40).collect();
                return Err(FrameError {
                    operation: None,
                    id: None,
                    error: WireError::new(
                        ErrorType::UnsupportedOperation,
                        format!(
                            "unknown message type {shown:?}: expected connection_init, subscribe, unsubscribe, publish or presence"
                        ),
                    ),
                });
            }
        };
        let fail = |id: Option<String>, error| FrameError {
            operation: Some(operation),
            id,
            error,
        };
        let id = string_field(env.id, "id").map_err(|e| fail(None, e))?;
        if !valid_id(&id) {
            return Err(fail(
                None,
                bad("'id' must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_' and '+'"),
            ));
        }
        let with_id = |e| fail(Some(id.to_string()), e);
        match operation {
            Operation::Unsubscribe => Ok(ClientMessage::Unsubscribe { id }),
            Operation::Subscribe => {
                let channel = string_field(env.channel, "channel").map_err(with_id)?;
                let authorization = parse_auth(env.authorization).map_err(with_id)?;
                let resume = parse_resume(env.resume).map_err(with_id)?;
                let with_channel = parse_flag(env.with_channel, "withChannel").map_err(with_id)?;
                let presence = parse_presence_ask(env.presence).map_err(with_id)?;
                Ok(ClientMessage::Subscribe {
                    id,
                    channel,
                    authorization,
                    resume,
                    with_channel,
                    presence,
                })
            }
            Operation::Presence => {
                let channel = string_field(env.channel, "channel").map_err(with_id)?;
                let authorization = parse_auth(env.authorization).map_err(with_id)?;
                let count_only = parse_flag(env.count_only, "countOnly").map_err(with_id)?;
                let after = match env.after.filter(|r| r.get() != "null") {
                    None => None,
                    Some(raw) => Some(string_field(Some(raw), "after").map_err(with_id)?),
                };
                let limit = match env.limit.filter(|r| r.get() != "null") {
                    None => None,
                    Some(raw) => Some(
                        serde_json::from_str::<usize>(raw.get())
                            .map_err(|_| with_id(bad("'limit' must be a positive integer")))?,
                    ),
                };
                Ok(ClientMessage::Presence {
                    id,
                    channel,
                    authorization,
                    count_only,
                    after,
                    limit,
                })
            }
            Operation::Publish => {
                let channel = string_field(env.channel, "channel").map_err(with_id)?;
                let authorization = parse_auth(env.authorization).map_err(with_id)?;
                let events = parse_events(env.events, limits)
                    .map_err(with_id)?
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| with_id(WireError::new(ErrorType::BadRequest, e.to_string())))?;
                let idempotency_key = match env.idempotency_key {
                    None => None,
                    Some(raw) => {
                        let key = string_field(Some(raw), "idempotencyKey").map_err(with_id)?;
                        check_idempotency_key(&key).map_err(with_id)?;
                        Some(key)
                    }
                };
                Ok(ClientMessage::Publish {
                    id,
                    channel,
                    events,
                    authorization,
                    idempotency_key,
                })
            }
        }
    }
}

/// The body of `POST /event`.
#[derive(Debug)]
pub struct HttpPublish<'a> {
    pub channel: Cow<'a, str>,
    /// Every event, in order; oversized ones as errors so they can be listed in `failed`.
    pub events: Vec<Result<Event<'a>, EventError>>,
}

#[derive(Deserialize)]
struct HttpBody<'a> {
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    events: Option<&'a RawValue>,
}

impl<'a> HttpPublish<'a> {
    pub fn parse(body: &'a [u8], limits: &EventLimits) -> Result<HttpPublish<'a>, WireError> {
        let text =
            std::str::from_utf8(body).map_err(|_| bad("the request body is not UTF-8 JSON"))?;
        let body: HttpBody<'a> =
            serde_json::from_str(text).map_err(|e| not_an_object("the request body", &e))?;
        let channel = string_field(body.channel, "channel")?;
        let events = parse_events(body.events, limits)?;
        Ok(HttpPublish { channel, events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientMessage<'_>, FrameError> {
        ClientMessage::parse(text, &EventLimits::default())
    }

    #[test]
    fn decodes_every_client_message() {
        assert!(matches!(
            parse(r#"{"type":"connection_init"}"#),
            Ok(ClientMessage::ConnectionInit)
        ));
        let Ok(ClientMessage::Subscribe {
            id,
            channel,
            authorization,
            resume: None,
            with_channel: false,
            presence:
                PresenceAsk {
                    info: None,
                    events: false,
                },
        }) = parse(
            r#"{"type":"subscribe","id":"a-1","channel":"/default/*","authorization":{"x-api-key":"k","host":"h"},"payload":{}}"#,
        )
        else {
            panic!("subscribe")
        };
        assert_eq!((&*id, &*channel), ("a-1", "/default/*"));
        assert_eq!(authorization.unwrap().get("X-Api-Key"), Some("k"));
        let Ok(ClientMessage::Publish { events, .. }) = parse(
            r#"{"type":"publish","id":"p","channel":"/default/x","events":["{\"a\":1}", "\"s\""]}"#,
        ) else {
            panic!("publish")
        };
        let tokens: Vec<&str> = events.iter().map(|e| e.token()).collect();
        assert_eq!(tokens, [r#""{\"a\":1}""#, r#""\"s\"""#]);
        assert!(matches!(
            parse(r#"{"type":"unsubscribe","id":"a-1"}"#),
            Ok(ClientMessage::Unsubscribe { .. })
        ));
    }

    #[test]
    fn resume_points() {
        let resume = |r: &str| {
            let text = format!(r#"{{"type":"subscribe","id":"s","channel":"/a/b","resume":{r}}}"#);
            match ClientMessage::parse(&text, &EventLimits::default()) {
                Ok(ClientMessage::Subscribe { resume, .. }) => Ok(resume),
                Ok(_) => panic!("not a subscribe"),
                Err(e) => Err(e.error.kind),
            }
        };
        assert_eq!(
            resume(r#"{"epoch":"18446744073709551615","offset":3}"#)
                .unwrap()
                .unwrap()
                .after,
            Some((u64::MAX, 3))
        );
        assert_eq!(
            resume(r#"{"since_ms":5}"#).unwrap().unwrap().since_ms,
            Some(5)
        );
        let w = resume(r#"{"positions":{"/a/b/c":{"epoch":7,"offset":1}},"since_ms":1}"#)
            .unwrap()
            .unwrap();
        assert_eq!(w.positions, vec![("/a/b/c".to_string(), 7, 1)]);
        assert_eq!(resume("null").unwrap(), None);
        for bad in [
            r#"{}"#,
            r#"{"epoch":"x","offset":1}"#,
            r#"{"offset":1}"#,
            "5",
        ] {
            assert_eq!(resume(bad), Err(ErrorType::BadRequest), "{bad}");
        }
    }

    #[test]
    fn errors_keep_operation_and_id_when_known() {
        let e = parse("{not json").unwrap_err();
        assert_eq!((e.operation, e.id), (None, None));
        let e = parse(r#"{"type":"nope","id":"x"}"#).unwrap_err();
        assert_eq!(e.error.kind, ErrorType::UnsupportedOperation);
        let e = parse(r#"{"type":"subscribe","id":"bad id!","channel":"/a"}"#).unwrap_err();
        assert_eq!((e.operation, e.id), (Some(Operation::Subscribe), None));
        let e = parse(r#"{"type":"subscribe","id":"ok","channel":5}"#).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("ok"));
        let e = parse(r#"{"type":"publish","id":"ok","channel":"/a","events":[]}"#).unwrap_err();
        assert_eq!(e.operation, Some(Operation::Publish));
        let e = parse(r#"{"type":"publish","id":"ok","channel":"/a","events":["{"]}"#).unwrap_err();
        assert!(e.error.message.contains("not valid JSON"));
        let e = parse(r#"{"type":"publish","id":"ok","channel":"/a","events":[{}]}"#).unwrap_err();
        assert!(e.error.message.contains("not a string"));
    }

    #[test]
    fn errors_do_not_echo_the_input() {
        // A frame or body that is one long JSON string: serde_json's message quotes it whole.
        let long = format!("\"{}\"", "x".repeat(10_000));
        let e = parse(&long).unwrap_err().error.message;
        assert!(e.starts_with("the message is not a valid JSON object: invalid type"));
        assert!(
            e.len() < 300 && e.ends_with("at line 1 column 10002"),
            "{e}"
        );
        let e = HttpPublish::parse(long.as_bytes(), &EventLimits::default()).unwrap_err();
        assert!(e.message.len() < 300, "{}", e.message);
        let e = parse("{\"type\":5}").unwrap_err().error.message;
        assert!(e.ends_with("expected a string at line 1 column 9"), "{e}");
    }

    #[test]
    fn nesting_depth_is_bounded_outside_strings_only() {
        let nested =
            |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
        assert!(depth_within(&nested("[", "]", 64), 64));
        assert!(!depth_within(&nested("[", "]", 65), 64));
        assert!(!depth_within(&nested("{\"a\":", "}", 65), 64));
        // Siblings do not add up; brackets and escaped quotes inside strings do not count.
        assert!(depth_within(
            &format!("[{}]", vec![nested("[", "]", 63); 100].join(",")),
            64
        ));
        assert!(depth_within(&format!("[\"\\\"{}\"]", "[".repeat(500)), 64));
        let publish = |event: &str| {
            let text = json_publish(event);
            match parse(&text) {
                Ok(_) => Ok(()),
                Err(e) => Err(e.error.message),
            }
        };
        assert!(publish(&nested("[", "]", 64)).is_ok());
        let e = publish(&nested("[", "]", 65)).unwrap_err();
        assert_eq!(
            e,
            EventError::TooDeep {
                index: 0,
                limit: 64
            }
            .to_string()
        );
    }

    fn json_publish(event: &str) -> String {
        let events = serde_json::to_string(&[event]).unwrap();
        format!(r#"{{"type":"publish","id":"p","channel":"/a/b","events":{events}}}"#)
    }

    #[test]
    fn http_body_reports_oversized_events_by_index() {
        let limits = EventLimits {
            max_event_bytes: 8,
            max_events: 5,
        };
        let body = br#"{"channel":"default/a","events":["1","\"0123456789\""]}"#;
        let p = HttpPublish::parse(body, &limits).unwrap();
        assert!(p.events[0].is_ok());
        assert_eq!(
            p.events[1].as_ref().unwrap_err(),
            &EventError::TooLarge { index: 1, limit: 8 }
        );
        assert!(HttpPublish::parse(b"[]", &limits).is_err());
        assert!(
            HttpPublish::parse(
                br#"{"channel":"/a","events":["1","1","1","1","1","1"]}"#,
                &limits
            )
            .is_err()
        );
    }

    #[test]
    fn decodes_presence_asks_and_reads() {
        let Ok(ClientMessage::Subscribe { presence, .. }) = parse(
            r#"{"type":"subscribe","id":"s","channel":"/r/a","presence":{"info":{"n":"A"},"events":true}}"#,
        ) else {
            panic!("subscribe with presence")
        };
        assert_eq!(presence.info.map(RawValue::get), Some(r#"{"n":"A"}"#));
        assert!(presence.events);
        for bad in [
            r#"{"type":"subscribe","id":"s","channel":"/r/a","presence":{"info":[1]}}"#,
            r#"{"type":"subscribe","id":"s","channel":"/r/a","presence":{"events":"yes"}}"#,
            r#"{"type":"subscribe","id":"s","channel":"/r/a","presence":7}"#,
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.id.as_deref(), Some("s"), "{bad}");
        }
        let Ok(ClientMessage::Presence {
            id,
            channel,
            count_only,
            after,
            limit,
            ..
        }) = parse(
            r#"{"type":"presence","id":"p","channel":"/r/a","countOnly":true,"after":"ab-1","limit":5}"#,
        )
        else {
            panic!("presence")
        };
        assert_eq!((&*id, &*channel, count_only), ("p", "/r/a", true));
        assert_eq!((after.as_deref(), limit), (Some("ab-1"), Some(5)));
        let e = parse(r#"{"type":"presence","id":"p","channel":"/r/a","limit":-1}"#).unwrap_err();
        assert_eq!(e.operation, Some(Operation::Presence));
    }
}
