//! Server → client messages (spec §2.2) and the HTTP publish response (spec §3), encoded to bytes.
//!
//! `data` frames are the hot path: a frame is `prefix(subscription) + body(event)`. The prefix is
//! built once per subscription, the body once per event and shared by every subscriber.

use bytes::Bytes;
use serde::Serialize;

use crate::error::WireError;

/// `{"type":"ka"}`
pub const KA: &str = r#"{"type":"ka"}"#;

#[derive(Serialize)]
struct Typed<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(flatten)]
    rest: T,
}

#[derive(Serialize)]
struct Nothing {}

#[derive(Serialize)]
struct Errors<'a> {
    errors: &'a [WireError],
}

fn encode<T: Serialize>(kind: &str, id: Option<&str>, rest: T) -> Bytes {
    // Serializing these plain structs cannot fail; an empty object is a safe fallback anyway.
    serde_json::to_vec(&Typed { kind, id, rest })
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{}"))
}

/// `{"type":"connection_ack","connectionTimeoutMs":N}`
pub fn connection_ack(timeout_ms: u64) -> Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Ack {
        connection_timeout_ms: u64,
    }
    encode(
        "connection_ack",
        None,
        Ack {
            connection_timeout_ms: timeout_ms,
        },
    )
}

/// `connection_error` with the given errors.
pub fn connection_error(errors: &[WireError]) -> Bytes {
    encode("connection_error", None, Errors { errors })
}

/// `subscribe_success` / `unsubscribe_success`.
pub fn success(kind: SuccessKind, id: &str) -> Bytes {
    let kind = match kind {
        SuccessKind::Subscribe => "subscribe_success",
        SuccessKind::Unsubscribe => "unsubscribe_success",
    };
    encode(kind, Some(id), Nothing {})
}

/// Which success reply.
#[derive(Debug, Clone, Copy)]
pub enum SuccessKind {
    Subscribe,
    Unsubscribe,
}

/// The error envelope for an operation, or the generic `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Subscribe,
    Unsubscribe,
    Publish,
    Broadcast,
    /// Herald extension: a presence read.
    Presence,
    Generic,
}

/// `{"type":"<op>_error","id":..,"errors":[..]}` (or `error` with an optional id).
pub fn error(kind: ErrorKind, id: Option<&str>, errors: &[WireError]) -> Bytes {
    let kind = match kind {
        ErrorKind::Subscribe => "subscribe_error",
        ErrorKind::Unsubscribe => "unsubscribe_error",
        ErrorKind::Publish => "publish_error",
        ErrorKind::Broadcast => "broadcast_error",
        ErrorKind::Presence => "presence_error",
        ErrorKind::Generic => "error",
    };
    encode(kind, id, Errors { errors })
}

/// An event accepted by a publish.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub identifier: String,
    pub index: usize,
    /// Herald extension (delivery feedback): how many subscriptions the event was delivered to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<usize>,
    /// Herald extension: where the event was stored, when its namespace keeps history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<StreamPosition>,
}

/// A position in a channel's history, as sent to clients. The epoch is a string because it is a
/// 64-bit value that JavaScript numbers cannot hold exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamPosition {
    #[serde(serialize_with = "as_string")]
    pub epoch: u64,
    pub offset: u64,
}

fn as_string<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// An event refused by a publish (the request as a whole succeeded).
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub identifier: String,
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// The outcome of a publish, sent as the HTTP 200 body or inside `publish_success`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishResult {
    pub successful: Vec<Accepted>,
    pub failed: Vec<Refused>,
}

impl PublishResult {
    /// The HTTP response body.
    pub fn to_http_body(&self) -> Bytes {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from_static(b"{}"))
    }
}

/// `{"type":"publish_success","id":..,"successful":[..],"failed":[..]}`
pub fn publish_success(id: &str, result: &PublishResult) -> Bytes {
    encode("publish_success", Some(id), result)
}

/// The HTTP body of a request-level failure: `{"errors":[..]}`.
pub fn http_errors(errors: &[WireError]) -> Bytes {
    serde_json::to_vec(&Errors { errors })
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{}"))
}

/// The per-subscription start of a `data` frame: `{"type":"data","id":"<id>","event":`.
/// `id` must already be valid ([`crate::message::valid_id`]), so it needs no escaping.
pub fn data_prefix(id: &str) -> Bytes {
    let mut v = Vec::with_capacity(34 + id.len());
    v.extend_from_slice(br#"{"type":"data","id":""#);
    v.extend_from_slice(id.as_bytes());
    v.extend_from_slice(br#"","event":"#);
    Bytes::from(v)
}

/// The per-subscription start of a `data` frame for a subscription that asked for the channel
/// (`withChannel`): `{"type":"data","id":"<id>",`, followed by a [`channel_body`].
pub fn data_head(id: &str) -> Bytes {
    let mut v = Vec::with_capacity(24 + id.len());
    v.extend_from_slice(br#"{"type":"data","id":""#);
    v.extend_from_slice(id.as_bytes());
    v.extend_from_slice(br#"","#);
    Bytes::from(v)
}

/// The shared end of a `data` frame for subscriptions that asked for the channel:
/// `"channel":"<channel>","event":` then `body` (a [`data_body`] or [`data_body_at`]). Built once
/// per event (not per subscriber) and shared by every such subscription, so the frames of
/// subscriptions that did not ask stay as they are.
pub fn channel_body(channel: &str, body: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(24 + channel.len() + body.len());
    v.extend_from_slice(br#""channel":""#);
    // Channel paths are [A-Za-z0-9/-] only: nothing to escape.
    v.extend_from_slice(channel.as_bytes());
    v.extend_from_slice(br#"","event":"#);
    v.extend_from_slice(body);
    Bytes::from(v)
}

/// The shared end of a `data` frame: the event's JSON string token and the closing brace.
pub fn data_body(event_token: &str) -> Bytes {
    let mut v = Vec::with_capacity(event_token.len() + 1);
    v.extend_from_slice(event_token.as_bytes());
    v.push(b'}');
    Bytes::from(v)
}

/// The shared end of a `data` frame on a namespace with history: the event, then the Herald
/// extension field `position` (which AppSync clients ignore).
pub fn data_body_at(
    event_token: &str,
    channel: &str,
    position: StreamPosition,
    time_ms: u64,
) -> Bytes {
    let mut v = Vec::with_capacity(event_token.len() + channel.len() + 96);
    v.extend_from_slice(event_token.as_bytes());
    v.extend_from_slice(br#","position":{"channel":""#);
    // Channel paths are [A-Za-z0-9/-] only: nothing to escape.
    v.extend_from_slice(channel.as_bytes());
    v.extend_from_slice(
        format!(
            r#"","epoch":"{}","offset":{},"time_ms":{}}}}}"#,
            position.epoch, position.offset, time_ms
        )
        .as_bytes(),
    );
    Bytes::from(v)
}

/// What a resumed subscription got, sent as the `resume` field of `subscribe_success`.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeReport {
    /// True when every missed event was replayed; false when some could not be (see `reason`).
    pub recovered: bool,
    /// Events replayed before live delivery began.
    pub replayed: usize,
    /// Why recovery is incomplete: `epoch_changed`, `expired`, `too_many` (use the HTTP history
    /// endpoint), or `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// `subscribe_success` with the Herald extension `resume`.
pub fn subscribe_resumed(id: &str, report: &ResumeReport) -> Bytes {
    #[derive(Serialize)]
    struct R<'a> {
        resume: &'a ResumeReport,
    }
    encode("subscribe_success", Some(id), R { resume: report })
}

/// One stored event in a `GET /event/history` page.
#[derive(Debug, Clone, Copy)]
pub struct HistoryItem<'a> {
    /// The event exactly as published: a JSON string token.
    pub event: &'a [u8],
    pub position: StreamPosition,
    pub time_ms: u64,
}

/// The body of `GET /event/history` (Herald extension, `docs/extensions.md`): the events as
/// stored (copied once, never parsed into a tree), or `recovered: false` with the reason.
pub fn history_page(
    channel: &str,
    outcome: Result<&[HistoryItem<'_>], &str>,
    top: StreamPosition,
) -> Bytes {
    #[derive(Serialize)]
    struct Item<'a> {
        /// `None` (null) only for a stored event that is not JSON, which publishing prevents.
        event: Option<&'a serde_json::value::RawValue>,
        position: StreamPosition,
        time_ms: u64,
    }
    #[derive(Serialize)]
    struct Page<'a> {
        channel: &'a str,
        recovered: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        events: Vec<Item<'a>>,
        top: StreamPosition,
    }
    let (events, reason) = match outcome {
        Ok(items) => (items, None),
        Err(reason) => (&[][..], Some(reason)),
    };
    let page = Page {
        channel,
        recovered: reason.is_none(),
        reason,
        events: events
            .iter()
            .map(|e| Item {
                event: std::str::from_utf8(e.event)
                    .ok()
                    .and_then(|t| serde_json::from_str(t).ok()),
                position: e.position,
                time_ms: e.time_ms,
            })
            .collect(),
        top,
    };
    serde_json::to_vec(&page)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorType;

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn envelopes_match_the_spec() {
        assert_eq!(
            json(&connection_ack(300000)),
            serde_json::json!({"type":"connection_ack","connectionTimeoutMs":300000})
        );
        assert_eq!(
            json(&success(SuccessKind::Subscribe, "s1")),
            serde_json::json!({"type":"subscribe_success","id":"s1"})
        );
        assert_eq!(
            json(&connection_error(&[WireError::unauthorized()])),
            serde_json::json!({"type":"connection_error","errors":[{"errorType":"UnauthorizedException","errorCode":401,"message":"You are not authorized to make this call."}]})
        );
        assert_eq!(
            json(&error(
                ErrorKind::Generic,
                None,
                &[WireError::new(ErrorType::BadRequest, "x")]
            )),
            serde_json::json!({"type":"error","errors":[{"errorType":"BadRequestException","message":"x"}]})
        );
        let result = PublishResult {
            successful: vec![Accepted {
                identifier: "u".into(),
                index: 0,
                delivered: None,
                position: None,
            }],
            failed: vec![],
        };
        assert_eq!(
            json(&publish_success("p", &result)),
            serde_json::json!({"type":"publish_success","id":"p","successful":[{"identifier":"u","index":0}],"failed":[]})
        );
    }

    #[test]
    fn data_frame_with_channel() {
        let mut frame = data_head("s").to_vec();
        frame.extend_from_slice(&channel_body("/ns/a/b", &data_body("\"{}\"")));
        assert_eq!(
            frame,
            br#"{"type":"data","id":"s","channel":"/ns/a/b","event":"{}"}"#
        );
    }

    #[test]
    fn data_frame_with_position() {
        let mut frame = data_prefix("s").to_vec();
        let pos = StreamPosition {
            epoch: u64::MAX,
            offset: 7,
        };
        frame.extend_from_slice(&data_body_at("\"1\"", "/ns/a", pos, 5));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&frame).unwrap(),
            serde_json::json!({"type":"data","id":"s","event":"1","position":{"channel":"/ns/a","epoch":"18446744073709551615","offset":7,"time_ms":5}})
        );
    }

    #[test]
    fn data_frame_is_prefix_plus_body() {
        let mut frame = data_prefix("sub-1").to_vec();
        frame.extend_from_slice(&data_body(r#""{\"a\":1}""#));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&frame).unwrap(),
            serde_json::json!({"type":"data","id":"sub-1","event":"{\"a\":1}"})
        );
    }
}
