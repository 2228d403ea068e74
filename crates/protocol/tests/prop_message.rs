//! Property tests of `ClientMessage::parse`, the decoder of every WebSocket frame a client sends:
//! arbitrary text and mutated frames never panic, a well-formed subscribe, publish or unsubscribe
//! decodes to exactly the parts it was built from, and an error names the frame's operation and
//! id whenever the frame carried them (so the reply can use that operation's own envelope).

use std::collections::BTreeMap;
use std::fmt;

use herald_protocol::message::{Operation, valid_id};
use herald_protocol::{ClientMessage, EventLimits, Resume};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, json};

/// The server's default limits, and tight ones so that frames also hit the count and size checks.
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

/// Fields the parser reads; anything else is ignored.
const KNOWN: [&str; 6] = ["type", "id", "channel", "events", "authorization", "resume"];

// ---- Generators -------------------------------------------------------------------------------

/// Any JSON value, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "(?s).{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("(?s).{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_id_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_+-]{1,128}"
}

fn invalid_id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{129,140}",
        "[a-z]{0,4}[^a-zA-Z0-9_+-][a-z]{0,4}",
    ]
}

/// Any text: the parser takes channels as strings and leaves checking them to the caller.
fn channel_text() -> impl Strategy<Value = String> {
    "(?s).{0,40}"
}

/// The text of one event: any JSON document.
fn event_text() -> impl Strategy<Value = String> {
    (json_value(), any::<bool>()).prop_map(|(v, pretty)| {
        if pretty {
            serde_json::to_string_pretty(&v)
        } else {
            serde_json::to_string(&v)
        }
        .expect("a JSON value encodes")
    })
}

/// An `authorization` object: header names to values; non-string values are ignored.
fn authorization() -> impl Strategy<Value = BTreeMap<String, Value>> {
    let value = prop_oneof![
        3 => "(?s).{0,20}".prop_map(Value::String),
        1 => json_value(),
    ];
    prop::collection::btree_map("[A-Za-z0-9-]{1,16}", value, 0..8)
}

/// A resume point, as parsed, and whether its epochs are sent as strings (as documented, since
/// JavaScript cannot hold a 64-bit number) or as numbers (also accepted).
fn resume() -> impl Strategy<Value = (Resume, bool)> {
    (
        prop::option::of((any::<u64>(), any::<u64>())),
        prop::collection::btree_map(channel_text(), (any::<u64>(), any::<u64>()), 0..5),
        prop::option::of(any::<u64>()),
        any::<bool>(),
    )
        .prop_map(|(after, positions, since_ms, epoch_as_text)| {
            let positions: Vec<_> = positions.into_iter().map(|(c, (e, o))| (c, e, o)).collect();
            // A resume must say where to start.
            let since_ms = if after.is_none() && positions.is_empty() {
                since_ms.or(Some(0))
            } else {
                since_ms
            };
            let resume = Resume {
                after,
                positions,
                since_ms,
            };
            (resume, epoch_as_text)
        })
}

fn resume_json(resume: &Resume, epoch_as_text: bool) -> Value {
    let epoch = |e: u64| {
        if epoch_as_text {
            Value::String(e.to_string())
        } else {
            Value::from(e)
        }
    };
    let mut m = Map::new();
    if let Some((e, o)) = resume.after {
        m.insert("epoch".into(), epoch(e));
        m.insert("offset".into(), Value::from(o));
    }
    if !resume.positions.is_empty() {
        let positions: Map<String, Value> = resume
            .positions
            .iter()
            .map(|(c, e, o)| (c.clone(), json!({"epoch": epoch(*e), "offset": o})))
            .collect();
        m.insert("positions".into(), Value::Object(positions));
    }
    if let Some(t) = resume.since_ms {
        m.insert("since_ms".into(), Value::from(t));
    }
    Value::Object(m)
}

/// Fields a client may add that the parser must ignore (legacy `payload`, `extensions`, …).
fn extra_fields() -> impl Strategy<Value = Vec<(String, Value)>> {
    let name = prop_oneof![
        Just("payload".to_owned()),
        Just("extensions".to_owned()),
        "[a-z_]{1,10}",
    ]
    .prop_filter("not a field the parser reads", |n| {
        !KNOWN.contains(&n.as_str())
    });
    prop::collection::vec((name, json_value()), 0..3)
}

/// `authorization` as a frame may carry it: absent, `null`, or an object.
type AuthPart = Option<Option<BTreeMap<String, Value>>>;

fn auth_part() -> impl Strategy<Value = AuthPart> {
    prop::option::of(prop::option::of(authorization()))
}

/// The parts of a well-formed frame.
#[derive(Debug, Clone)]
enum Frame {
    Subscribe {
        id: String,
        channel: String,
        authorization: AuthPart,
        resume: Option<(Resume, bool)>,
    },
    Publish {
        id: String,
        channel: String,
        events: Vec<String>,
        authorization: AuthPart,
    },
    Unsubscribe {
        id: String,
    },
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            valid_id_text(),
            channel_text(),
            auth_part(),
            prop::option::of(resume())
        )
            .prop_map(|(id, channel, authorization, resume)| Frame::Subscribe {
                id,
                channel,
                authorization,
                resume,
            }),
        (
            valid_id_text(),
            channel_text(),
            prop::collection::vec(event_text(), 1..=5),
            auth_part(),
        )
            .prop_map(|(id, channel, events, authorization)| Frame::Publish {
                id,
                channel,
                events,
                authorization,
            }),
        valid_id_text().prop_map(|id| Frame::Unsubscribe { id }),
    ]
}

impl Frame {
    fn fields(&self) -> Vec<(String, Value)> {
        let auth = |a: &AuthPart| {
            a.as_ref().map(|a| {
                let v = a.as_ref().map_or(Value::Null, |m| {
                    Value::Object(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                });
                ("authorization".to_owned(), v)
            })
        };
        let mut f = Vec::new();
        match self {
            Frame::Subscribe {
                id,
                channel,
                authorization,
                resume,
            } => {
                f.push(("type".to_owned(), json!("subscribe")));
                f.push(("id".to_owned(), json!(id)));
                f.push(("channel".to_owned(), json!(channel)));
                f.extend(auth(authorization));
                if let Some((r, as_text)) = resume {
                    f.push(("resume".to_owned(), resume_json(r, *as_text)));
                }
            }
            Frame::Publish {
                id,
                channel,
                events,
                authorization,
            } => {
                f.push(("type".to_owned(), json!("publish")));
                f.push(("id".to_owned(), json!(id)));
                f.push(("channel".to_owned(), json!(channel)));
                f.push(("events".to_owned(), json!(events)));
                f.extend(auth(authorization));
            }
            Frame::Unsubscribe { id } => {
                f.push(("type".to_owned(), json!("unsubscribe")));
                f.push(("id".to_owned(), json!(id)));
            }
        }
        f
    }
}

/// A JSON object with these fields in this order (a `Map` would sort or dedupe them).
fn encode(fields: &[(String, Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), v))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A well-formed frame plus ignored fields, in any order.
fn well_formed() -> impl Strategy<Value = (Frame, String)> {
    (frame(), extra_fields())
        .prop_flat_map(|(frame, extra)| {
            let mut fields = frame.fields();
            fields.extend(extra);
            (Just(frame), Just(fields).prop_shuffle())
        })
        .prop_map(|(frame, fields)| (frame, encode(&fields)))
}

/// A frame object whose every field may be right, wrong, or missing.
fn messy_frame() -> impl Strategy<Value = String> {
    let ty = prop_oneof![
        4 => prop::sample::select(vec!["subscribe", "publish", "unsubscribe", "connection_init"])
            .prop_map(|t| json!(t)),
        1 => "(?s).{0,10}".prop_map(Value::String),
        1 => json_value(),
    ];
    let id = prop_oneof![
        3 => valid_id_text().prop_map(Value::String),
        1 => invalid_id_text().prop_map(Value::String),
        1 => json_value(),
    ];
    let channel = prop_oneof![
        3 => channel_text().prop_map(Value::String),
        1 => json_value(),
    ];
    let events = prop_oneof![
        3 => prop::collection::vec(event_text(), 0..7).prop_map(|e| json!(e)),
        1 => prop::collection::vec("(?s).{0,6}", 1..3).prop_map(|e| json!(e)),
        1 => prop::collection::vec(json_value(), 0..3).prop_map(Value::Array),
        1 => json_value(),
    ];
    let auth = prop_oneof![
        2 => authorization().prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => json_value(),
    ];
    let resume = prop_oneof![
        2 => resume().prop_map(|(r, t)| resume_json(&r, t)),
        1 => prop::collection::btree_map(
            prop::sample::select(vec!["epoch", "offset", "since_ms", "positions"]),
            json_value(),
            0..4
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        1 => json_value(),
    ];
    let field = |name: &'static str, s: BoxedStrategy<Value>| {
        prop::option::weighted(0.85, s).prop_map(move |v| v.map(|v| (name.to_owned(), v)))
    };
    (
        field("type", ty.boxed()),
        field("id", id.boxed()),
        field("channel", channel.boxed()),
        field("events", events.boxed()),
        field("authorization", auth.boxed()),
        field("resume", resume.boxed()),
        extra_fields(),
    )
        .prop_flat_map(|(a, b, c, d, e, f, extra)| {
            let mut fields: Vec<_> = [a, b, c, d, e, f].into_iter().flatten().collect();
            fields.extend(extra);
            Just(fields).prop_shuffle()
        })
        .prop_map(|fields| encode(&fields))
}

/// One edit of a frame's text, at a position picked by `Index`.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Delete(Index, usize),
    Insert(Index, String),
    Duplicate(Index, usize),
    Replace(Index, char),
}

/// JSON's punctuation and a few awkward tokens, for snippets that break or bend a frame.
const JSON_BITS: [&str; 13] = [
    "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u0000", "\\ud800", "null", "1e999", "-0",
];

/// `bits`, or up to `n` arbitrary characters.
fn token(bits: Vec<&'static str>, n: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(bits).prop_map(str::to_owned),
        proptest::string::string_regex(&format!("(?s).{{0,{n}}}")).expect("a valid regex"),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let mut bits = JSON_BITS.to_vec();
    bits.extend([
        "\"id\":\"x\",",
        "\"type\":\"publish\",",
        "\"events\":[\"1\"],",
    ]);
    let snippet = token(bits, 4);
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..8usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), snippet).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<Index>(), 1..16usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (any::<Index>(), any::<char>()).prop_map(|(i, c)| Mutation::Replace(i, c)),
    ]
}

/// Applies edits on characters, so the text stays UTF-8 as a WebSocket text frame must be.
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in mutations {
        let at = |i: &Index, len: usize| i.index(len + 1);
        match m {
            Mutation::Truncate(i) => chars.truncate(at(i, chars.len())),
            Mutation::Delete(i, n) => {
                let from = at(i, chars.len());
                let to = (from + n).min(chars.len());
                chars.drain(from..to);
            }
            Mutation::Insert(i, s) => {
                let from = at(i, chars.len());
                chars.splice(from..from, s.chars());
            }
            Mutation::Duplicate(i, n) => {
                let from = at(i, chars.len());
                let to = (from + n).min(chars.len());
                let copy: Vec<char> = chars[from..to].to_vec();
                chars.splice(to..to, copy);
            }
            Mutation::Replace(i, c) => {
                if !chars.is_empty() {
                    let k = i.index(chars.len());
                    chars[k] = *c;
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// Text shaped like JSON, to reach further into the parser than random characters do.
fn json_soup() -> impl Strategy<Value = String> {
    let mut bits = JSON_BITS.to_vec();
    bits.extend([
        "\"type\"",
        "\"id\"",
        "\"channel\"",
        "\"events\"",
        "\"authorization\"",
        "\"resume\"",
        "\"subscribe\"",
        "\"publish\"",
        "\"unsubscribe\"",
        "\"connection_init\"",
        "\"a-1\"",
        "true",
        " ",
    ]);
    let token = token(bits, 3);
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

// ---- The oracle -------------------------------------------------------------------------------

/// The top-level fields of a JSON object in order, duplicates kept.
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// What a frame carried, read independently of the parser.
#[derive(Debug, PartialEq)]
enum Carried {
    ConnectionInit,
    /// A known operation and, if it was a valid id string, its `id`.
    Operation(Operation, Option<String>),
    /// No known operation: an error can name none.
    Nothing,
}

/// `None` when the text is not one JSON object whose fields the parser reads appear once: what
/// it carried is then not well defined, and only "no panic" is checked.
fn carried(text: &str) -> Option<Carried> {
    let Fields(fields) = serde_json::from_str(text).ok()?;
    for name in KNOWN {
        if fields.iter().filter(|(k, _)| k == name).count() > 1 {
            return None;
        }
    }
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let operation = match get("type") {
        Some(Value::String(t)) => match t.as_str() {
            "connection_init" => return Some(Carried::ConnectionInit),
            "subscribe" => Operation::Subscribe,
            "unsubscribe" => Operation::Unsubscribe,
            "publish" => Operation::Publish,
            "presence" => Operation::Presence,
            _ => return Some(Carried::Nothing),
        },
        _ => return Some(Carried::Nothing),
    };
    let id = match get("id") {
        Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
        _ => None,
    };
    Some(Carried::Operation(operation, id))
}

/// Parses `text` under `limits` (which must not panic) and checks the result against what the
/// frame carried: the decoded variant and id, or an error naming the operation and id.
fn check_against_oracle(text: &str, limits: &EventLimits) -> Result<(), TestCaseError> {
    let parsed = ClientMessage::parse(text, limits);
    let Some(carried) = carried(text) else {
        return Ok(());
    };
    match (&carried, parsed) {
        (Carried::ConnectionInit, Ok(ClientMessage::ConnectionInit)) => {}
        (Carried::Operation(op, Some(want)), Ok(message)) => {
            let (got_op, got_id) = match &message {
                ClientMessage::Subscribe { id, .. } => (Operation::Subscribe, id),
                ClientMessage::Unsubscribe { id } => (Operation::Unsubscribe, id),
                ClientMessage::Publish { id, .. } => (Operation::Publish, id),
                ClientMessage::Presence { id, .. } => (Operation::Presence, id),
                ClientMessage::ConnectionInit => {
                    return Err(TestCaseError::fail(format!(
                        "{text:?} read as connection_init"
                    )));
                }
            };
            prop_assert_eq!(got_op, *op, "{:?}", text);
            prop_assert_eq!(&**got_id, want.as_str());
        }
        (Carried::Operation(op, id), Err(e)) => {
            prop_assert_eq!(e.operation, Some(*op), "{:?}: {}", text, e.error.message);
            prop_assert_eq!(&e.id, id, "{:?}: {}", text, e.error.message);
        }
        (Carried::Nothing, Err(e)) => {
            prop_assert_eq!((e.operation, e.id), (None, None), "{:?}", text);
        }
        (carried, Ok(message)) => {
            return Err(TestCaseError::fail(format!(
                "{text:?} carried {carried:?} but parsed as {message:?}"
            )));
        }
        (Carried::ConnectionInit, Err(e)) => {
            return Err(TestCaseError::fail(format!(
                "connection_init refused: {}",
                e.error.message
            )));
        }
    }
    Ok(())
}

// ---- Round trip -------------------------------------------------------------------------------

/// The authorization fields the parser should keep: string values, keys lower-cased.
fn expected_auth(a: &AuthPart) -> Option<Vec<(String, String)>> {
    let map = a.as_ref()?.as_ref()?;
    let mut fields: Vec<(String, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned())))
        .collect();
    fields.sort();
    Some(fields)
}

fn got_auth(a: Option<&herald_protocol::AuthFields>) -> Option<Vec<(String, String)>> {
    let mut fields: Vec<(String, String)> = a?
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    fields.sort();
    Some(fields)
}

/// Limits that `frame` exactly fits: its events are as many and as large as allowed.
fn exact_limits(frame: &Frame) -> EventLimits {
    match frame {
        Frame::Publish { events, .. } => EventLimits {
            max_event_bytes: events.iter().map(String::len).max().unwrap_or(0),
            max_events: events.len(),
        },
        _ => LIMITS[0],
    }
}

/// Operation, id, channel and authorization of a decoded frame, in comparable form.
type Common = (
    Operation,
    String,
    Option<String>,
    Option<Vec<(String, String)>>,
);

fn decoded_common(m: &ClientMessage<'_>) -> Option<Common> {
    Some(match m {
        ClientMessage::ConnectionInit => return None,
        ClientMessage::Subscribe {
            id,
            channel,
            authorization,
            ..
        } => (
            Operation::Subscribe,
            id.to_string(),
            Some(channel.to_string()),
            got_auth(authorization.as_ref()),
        ),
        ClientMessage::Publish {
            id,
            channel,
            authorization,
            ..
        } => (
            Operation::Publish,
            id.to_string(),
            Some(channel.to_string()),
            got_auth(authorization.as_ref()),
        ),
        ClientMessage::Unsubscribe { id } => (Operation::Unsubscribe, id.to_string(), None, None),
        ClientMessage::Presence {
            id,
            channel,
            authorization,
            ..
        } => (
            Operation::Presence,
            id.to_string(),
            Some(channel.to_string()),
            got_auth(authorization.as_ref()),
        ),
    })
}

impl Frame {
    fn common(&self) -> Common {
        match self {
            Frame::Subscribe {
                id,
                channel,
                authorization,
                ..
            } => (
                Operation::Subscribe,
                id.clone(),
                Some(channel.clone()),
                expected_auth(authorization),
            ),
            Frame::Publish {
                id,
                channel,
                authorization,
                ..
            } => (
                Operation::Publish,
                id.clone(),
                Some(channel.clone()),
                expected_auth(authorization),
            ),
            Frame::Unsubscribe { id } => (Operation::Unsubscribe, id.clone(), None, None),
        }
    }
}

fn check_round_trip(frame: &Frame, text: &str) -> Result<(), TestCaseError> {
    let message = match ClientMessage::parse(text, &exact_limits(frame)) {
        Ok(m) => m,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "{frame:?} as {text:?} refused: {}",
                e.error.message
            )));
        }
    };
    prop_assert_eq!(decoded_common(&message), Some(frame.common()), "{:?}", text);
    match (frame, message) {
        (
            Frame::Subscribe { resume, .. },
            ClientMessage::Subscribe {
                resume: got_resume, ..
            },
        ) => {
            prop_assert_eq!(got_resume, resume.as_ref().map(|(r, _)| r.clone()));
        }
        (
            Frame::Publish { events, .. },
            ClientMessage::Publish {
                events: got_events, ..
            },
        ) => {
            // Each event is kept as the string token sent, which decodes to the event's text.
            let texts: Vec<String> = got_events
                .iter()
                .map(|e| serde_json::from_str(e.token()).expect("a JSON string token"))
                .collect();
            prop_assert_eq!(&texts, events);
        }
        _ => {}
    }
    Ok(())
}

/// One byte less room, or one event fewer, than a publish needs: refused, naming it.
fn check_just_over_limits(frame: &Frame, text: &str) -> Result<(), TestCaseError> {
    let Frame::Publish { id, .. } = frame else {
        return Ok(());
    };
    let exact = exact_limits(frame);
    let tighter = [
        EventLimits {
            max_event_bytes: exact.max_event_bytes.saturating_sub(1),
            ..exact
        },
        EventLimits {
            max_events: exact.max_events - 1,
            ..exact
        },
    ];
    for limits in tighter {
        match ClientMessage::parse(text, &limits) {
            Err(e) => {
                prop_assert_eq!(e.operation, Some(Operation::Publish));
                prop_assert_eq!(e.id.as_deref(), Some(id.as_str()));
            }
            Ok(m) => {
                return Err(TestCaseError::fail(format!(
                    "accepted under {limits:?}: {m:?}"
                )));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        for limits in &LIMITS {
            check_against_oracle(&text, limits)?;
        }
    }

    #[test]
    fn json_shaped_text_never_panics(text in json_soup()) {
        for limits in &LIMITS {
            check_against_oracle(&text, limits)?;
        }
    }

    #[test]
    fn messy_frames_keep_operation_and_id_in_errors(text in messy_frame()) {
        for limits in &LIMITS {
            check_against_oracle(&text, limits)?;
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        text in prop_oneof![messy_frame(), well_formed().prop_map(|(_, t)| t)],
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let text = mutate(&text, &mutations);
        for limits in &LIMITS {
            check_against_oracle(&text, limits)?;
        }
    }

    #[test]
    fn well_formed_frames_parse_to_their_parts((frame, text) in well_formed()) {
        check_round_trip(&frame, &text)?;
        check_just_over_limits(&frame, &text)?;
        for limits in &LIMITS {
            check_against_oracle(&text, limits)?;
        }
    }
}
