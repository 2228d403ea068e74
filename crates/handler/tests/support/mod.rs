//! Helpers the data-source and documentation tests share.
#![allow(dead_code)] // each test file uses some of them

use herald_handler::{EventOutcome, IncomingEvent, PublishContext, RequestInfo};
use serde_json::{Value, json};

const DOC: &str = include_str!("../../../../docs/handlers.md");

/// The fenced block following `<!-- test: name -->` in docs/handlers.md.
pub fn block(name: &str) -> &'static str {
    let marker = format!("<!-- test: {name} -->");
    let after = &DOC[DOC.find(&marker).expect("marker in docs/handlers.md") + marker.len()..];
    let open = after.find("```").expect("opening fence");
    let body_start = open + after[open..].find('\n').expect("fence line") + 1;
    let len = after[body_start..].find("```").expect("closing fence");
    &after[body_start..body_start + len]
}

/// A publish of `events` (id, payload) to `channel` by the identity `{"sub": sub}`.
pub fn publish(channel: &str, events: &[(&str, Value)], sub: &str) -> PublishContext {
    PublishContext {
        channel: channel.into(),
        identity: Some(json!({ "sub": sub })),
        request: RequestInfo::default(),
        events: events
            .iter()
            .map(|(id, payload)| IncomingEvent {
                id: (*id).into(),
                payload: payload.to_string(),
            })
            .collect(),
    }
}

/// The payload a `Deliver` outcome carries.
pub fn delivered(outcome: &EventOutcome) -> Value {
    match outcome {
        EventOutcome::Deliver(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected Deliver, got {other:?}"),
    }
}
