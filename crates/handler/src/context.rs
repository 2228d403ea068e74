//! What a handler sees: [`PublishContext`] / [`SubscribeContext`], serialized to the JSON shape of
//! AppSync's handler context (spec §6), which is also the body POSTed to HTTP handlers.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::Operation;

/// HTTP request facts exposed as `ctx.request`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RequestInfo {
    /// Request headers, lower-case names. `cookie` is never exposed (as in AppSync).
    pub headers: BTreeMap<String, HeaderValue>,
    /// Custom domain the client used, or `None` (serialized `null`).
    #[serde(rename = "domainName")]
    pub domain_name: Option<String>,
}

impl RequestInfo {
    /// Builds the header map from `(name, value)` pairs: names are lower-cased, repeated names
    /// become arrays, and `cookie` is left out.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        domain_name: Option<String>,
    ) -> Self {
        let mut headers: BTreeMap<String, HeaderValue> = BTreeMap::new();
        for (name, value) in pairs {
            let name = name.to_ascii_lowercase();
            if name == "cookie" {
                continue;
            }
            let value = value.to_owned();
            match headers.get_mut(&name) {
                None => {
                    headers.insert(name, HeaderValue::One(value));
                }
                Some(HeaderValue::Many(values)) => values.push(value),
                Some(existing @ HeaderValue::One(_)) => {
                    let first = std::mem::replace(existing, HeaderValue::Many(Vec::new()));
                    if let (HeaderValue::One(first), HeaderValue::Many(values)) = (first, existing)
                    {
                        values.push(first);
                        values.push(value);
                    }
                }
            }
        }
        Self {
            headers,
            domain_name,
        }
    }
}

/// One header's value: a string, or an array when the header was repeated.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum HeaderValue {
    /// Sent once.
    One(String),
    /// Sent several times, in order.
    Many(Vec<String>),
}

/// One published event as the handler receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    /// Identifier the handler must use to return (or drop) this event.
    pub id: String,
    /// The event as JSON text (the string the client published). It reaches the handler parsed.
    pub payload: String,
}

/// Input of `onPublish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishContext {
    /// Channel path, with or without the leading `/` (`/chat/room1`).
    pub channel: String,
    /// `ctx.identity`: whatever the auth layer produced; `None` for API-key auth.
    pub identity: Option<serde_json::Value>,
    /// `ctx.request`.
    pub request: RequestInfo,
    /// The events, in publish order. Outcomes come back in this order.
    pub events: Vec<IncomingEvent>,
}

/// Input of `onSubscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeContext {
    /// Channel path as subscribed, possibly ending in `/*`.
    pub channel: String,
    /// `ctx.identity`; `None` for API-key auth.
    pub identity: Option<serde_json::Value>,
    /// `ctx.request`.
    pub request: RequestInfo,
    /// Herald presence: the `presence.info` the subscriber sent (a JSON object), for the handler
    /// to check; `ctx.presence.info`, and `ctx.presence` is absent without it.
    pub presence_info: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    identity: &'a Option<serde_json::Value>,
    result: (),
    request: &'a RequestInfo,
    info: Info<'a>,
    error: (),
    prev: (),
    stash: Empty,
    out_errors: [(); 0],
    events: Option<Vec<WireEvent<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence: Option<WirePresence<'a>>,
}

#[derive(Serialize)]
struct WirePresence<'a> {
    info: &'a RawValue,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info<'a> {
    channel: WireChannel<'a>,
    channel_namespace: NamespaceName<'a>,
    operation: &'static str,
}

#[derive(Serialize)]
struct WireChannel<'a> {
    path: String,
    segments: Vec<&'a str>,
}

#[derive(Serialize)]
struct NamespaceName<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct WireEvent<'a> {
    id: &'a str,
    payload: &'a RawValue,
}

fn channel(path: &str) -> WireChannel<'_> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    WireChannel {
        path: format!("/{}", segments.join("/")),
        segments,
    }
}

impl PublishContext {
    /// The context JSON. Fails when an event payload is not valid JSON.
    pub(crate) fn to_json(&self, namespace: &str) -> Result<String, String> {
        let mut events = Vec::with_capacity(self.events.len());
        for (index, event) in self.events.iter().enumerate() {
            // Borrowed RawValue: validates without building a tree or copying.
            let payload: &RawValue = serde_json::from_str(&event.payload)
                .map_err(|e| format!("event {index} payload is not valid JSON: {e}"))?;
            events.push(WireEvent {
                id: &event.id,
                payload,
            });
        }
        let wire = Wire {
            identity: &self.identity,
            result: (),
            request: &self.request,
            info: Info {
                channel: channel(&self.channel),
                channel_namespace: NamespaceName { name: namespace },
                operation: "PUBLISH",
            },
            error: (),
            prev: (),
            stash: Empty {},
            out_errors: [],
            events: Some(events),
            presence: None,
        };
        serde_json::to_string(&wire).map_err(|e| e.to_string())
    }
}

impl SubscribeContext {
    /// The context JSON (`events` is `null`).
    pub(crate) fn to_json(&self, namespace: &str) -> Result<String, String> {
        let wire = Wire {
            identity: &self.identity,
            result: (),
            request: &self.request,
            info: Info {
                channel: channel(&self.channel),
                channel_namespace: NamespaceName { name: namespace },
                operation: "SUBSCRIBE",
            },
            error: (),
            prev: (),
            stash: Empty {},
            out_errors: [],
            events: None,
            presence: match &self.presence_info {
                Some(info) => Some(WirePresence {
                    info: serde_json::from_str(info)
                        .map_err(|e| format!("presence info is not valid JSON: {e}"))?,
                }),
                None => None,
            },
        };
        serde_json::to_string(&wire).map_err(|e| e.to_string())
    }
}

/// The error for a context that cannot be serialized (a payload that is not JSON).
pub(crate) fn invalid_input(
    namespace: &str,
    operation: Operation,
    reason: String,
) -> crate::HandlerError {
    crate::HandlerError::Invalid {
        namespace: namespace.to_owned(),
        operation,
        reason: format!("cannot build the handler context: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_context_has_the_spec_shape() {
        let ctx = PublishContext {
            channel: "default/channel".into(),
            identity: None,
            request: RequestInfo::from_pairs(
                [
                    ("X-Forwarded-For", "1.1.1.1"),
                    ("Cookie", "secret"),
                    ("x-forwarded-for", "2.2.2.2"),
                ],
                None,
            ),
            events: vec![IncomingEvent {
                id: "1".into(),
                payload: r#"{"data":"data_1"}"#.into(),
            }],
        };
        let json: serde_json::Value =
            serde_json::from_str(&ctx.to_json("default").unwrap()).unwrap();
        let expected: serde_json::Value = serde_json::from_str(
            r#"{"identity":null,"result":null,
                "request":{"headers":{"x-forwarded-for":["1.1.1.1","2.2.2.2"]},"domainName":null},
                "info":{"channel":{"path":"/default/channel","segments":["default","channel"]},
                        "channelNamespace":{"name":"default"},"operation":"PUBLISH"},
                "error":null,"prev":null,"stash":{},"outErrors":[],
                "events":[{"id":"1","payload":{"data":"data_1"}}]}"#,
        )
        .unwrap();
        assert_eq!(json, expected);
    }

    #[test]
    fn subscribe_context_has_null_events() {
        let ctx = SubscribeContext {
            presence_info: None,
            channel: "/chat/*".into(),
            identity: Some(serde_json::json!({"sub":"u1"})),
            request: RequestInfo::default(),
        };
        let json: serde_json::Value = serde_json::from_str(&ctx.to_json("chat").unwrap()).unwrap();
        assert_eq!(json["events"], serde_json::Value::Null);
        assert_eq!(json["info"]["operation"], "SUBSCRIBE");
        assert_eq!(
            json["info"]["channel"]["segments"],
            serde_json::json!(["chat", "*"])
        );
        assert_eq!(json["identity"]["sub"], "u1");
    }

    #[test]
    fn invalid_payload_is_an_error_not_a_panic() {
        let ctx = PublishContext {
            channel: "/a".into(),
            identity: None,
            request: RequestInfo::default(),
            events: vec![IncomingEvent {
                id: "1".into(),
                payload: "{not json".into(),
            }],
        };
        assert!(ctx.to_json("a").unwrap_err().contains("event 0"));
    }
}
