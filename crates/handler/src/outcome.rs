//! Turning a handler's returned events into one [`EventOutcome`] per incoming event.
//!
//! Shared by JavaScript and HTTP handlers, so both follow the same rules (spec §6): items are
//! matched to incoming events by `id`; omitted events are dropped; `null` items are ignored; an
//! item with `error` fails its event; unknown or duplicate ids fail the whole publish.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Largest event delivered after transformation, in bytes (AppSync's 240 KB, as KiB).
pub const MAX_EVENT_BYTES: usize = 240 * 1024;

/// `failed[].code` for an event whose transformed payload is too large.
pub const CODE_TOO_LARGE: &str = "EventTooLargeException";
/// `failed[].message` for an event whose transformed payload is too large (AppSync's text).
pub const MESSAGE_TOO_LARGE: &str = "Transformed event is larger than 240KB";
/// `failed[].code` for an event the handler returned with an `error` property.
pub const CODE_HANDLER_ERROR: &str = "EventHandlerError";

/// What happens to one incoming event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Broadcast this payload (JSON text; the original when the handler left it unchanged).
    Deliver(String),
    /// The handler omitted the event: not broadcast, and not an error. Herald reports dropped
    /// events in `successful` (see `docs/handlers.md`).
    Dropped,
    /// Not broadcast; report in `failed` with this code and message.
    Failed {
        /// `failed[].code`, e.g. [`CODE_TOO_LARGE`].
        code: &'static str,
        /// `failed[].message`.
        message: String,
    },
}

impl EventOutcome {
    /// Applies the size limit (`max_bytes`) to a payload about to be delivered.
    pub(crate) fn deliver(payload: String, max_bytes: usize) -> Self {
        if payload.len() > max_bytes {
            EventOutcome::Failed {
                code: CODE_TOO_LARGE,
                message: if max_bytes == MAX_EVENT_BYTES {
                    MESSAGE_TOO_LARGE.to_owned()
                } else {
                    format!("Transformed event is larger than {max_bytes} bytes")
                },
            }
        } else {
            EventOutcome::Deliver(payload)
        }
    }
}

/// One element of the returned array.
#[derive(Deserialize)]
struct Returned<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    /// `Some("null")` for an explicit `null` payload, `None` when the key is absent.
    #[serde(default, borrow, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Matches `returned` (JSON text of an array, or `null`) to `incoming` ids. `Err` is a message
/// for [`HandlerError::Invalid`](crate::HandlerError::Invalid).
///
/// `null` (JavaScript `null`/`undefined`) drops every event: see `docs/handlers.md` for why.
pub(crate) fn match_events(
    incoming: &[&str],
    returned: &str,
    max_bytes: usize,
) -> Result<Vec<EventOutcome>, String> {
    // Items stay raw until checked to be objects: serde would also accept `["id", payload]`.
    let items: Option<Vec<&RawValue>> = serde_json::from_str(returned)
        .map_err(|e| format!("expected an array of {{id, payload}} objects or null: {e}"))?;
    let mut outcomes = vec![EventOutcome::Dropped; incoming.len()];
    let mut seen = vec![false; incoming.len()];
    for raw in items.into_iter().flatten() {
        let raw = raw.get();
        if raw == "null" {
            continue;
        }
        if !raw.starts_with('{') {
            return Err(format!(
                "expected each returned event to be an object or null, got {raw:.60}"
            ));
        }
        let item: Returned<'_> =
            serde_json::from_str(raw).map_err(|e| format!("invalid returned event: {e}"))?;
        // Linear search: a publish carries at most a handful of events.
        let Some(index) = incoming.iter().position(|id| *id == item.id) else {
            return Err(format!("returned an event with unknown id {:?}", item.id));
        };
        if std::mem::replace(&mut seen[index], true) {
            return Err(format!("returned event id {:?} twice", item.id));
        }
        outcomes[index] = match (item.error, item.payload) {
            (Some(error), _) if !error.is_null() => EventOutcome::Failed {
                code: CODE_HANDLER_ERROR,
                message: match error {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                },
            },
            (_, Some(payload)) => EventOutcome::deliver(payload.get().to_owned(), max_bytes),
            (_, None) => EventOutcome::Failed {
                code: CODE_HANDLER_ERROR,
                message: "the handler returned this event without a payload".to_owned(),
            },
        };
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> EventOutcome {
        EventOutcome::Failed {
            code: CODE_HANDLER_ERROR,
            message: message.to_owned(),
        }
    }

    #[test]
    fn matches_by_id_in_any_order() {
        let out = match_events(
            &["a", "b", "c"],
            r#"[{"id":"c","payload":3},null,{"id":"a","payload":{"x":1},"extra":true}]"#,
            MAX_EVENT_BYTES,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                EventOutcome::Deliver(r#"{"x":1}"#.into()),
                EventOutcome::Dropped,
                EventOutcome::Deliver("3".into()),
            ]
        );
    }

    #[test]
    fn error_items_fail_and_null_payload_is_delivered() {
        let out = match_events(
            &["a", "b", "c"],
            r#"[{"id":"a","error":"nope"},{"id":"b","payload":null},{"id":"c"}]"#,
            MAX_EVENT_BYTES,
        )
        .unwrap();
        assert_eq!(out[0], failed("nope"));
        assert_eq!(out[1], EventOutcome::Deliver("null".into()));
        assert_eq!(
            out[2],
            failed("the handler returned this event without a payload")
        );
    }

    #[test]
    fn empty_array_and_null_drop_everything() {
        assert_eq!(
            match_events(&["a"], "[]", MAX_EVENT_BYTES).unwrap(),
            vec![EventOutcome::Dropped]
        );
        assert_eq!(
            match_events(&["a"], "null", MAX_EVENT_BYTES).unwrap(),
            vec![EventOutcome::Dropped]
        );
    }

    #[test]
    fn unknown_duplicate_and_malformed_are_errors() {
        assert!(
            match_events(&["a"], r#"[{"id":"z","payload":1}]"#, MAX_EVENT_BYTES)
                .unwrap_err()
                .contains("unknown id")
        );
        let dup = r#"[{"id":"a","payload":1},{"id":"a","payload":2}]"#;
        assert!(
            match_events(&["a"], dup, MAX_EVENT_BYTES)
                .unwrap_err()
                .contains("twice")
        );
        assert!(match_events(&["a"], r#"{"id":"a"}"#, MAX_EVENT_BYTES).is_err());
        assert!(match_events(&["a"], r#"[{"id":5}]"#, MAX_EVENT_BYTES).is_err());
    }

    #[test]
    fn oversized_transformed_event_fails() {
        let big = format!(
            r#"[{{"id":"a","payload":"{}"}}]"#,
            "x".repeat(MAX_EVENT_BYTES)
        );
        assert_eq!(
            match_events(&["a"], &big, MAX_EVENT_BYTES).unwrap(),
            vec![EventOutcome::Failed {
                code: CODE_TOO_LARGE,
                message: MESSAGE_TOO_LARGE.into()
            }]
        );
    }
}
