//! `AMAZON_EVENTBRIDGE`: `PutEvents` on the JSON 1.1 API (`X-Amz-Target: AWSEvents.PutEvents`).
//!
//! Request object (AppSync): `{operation: 'PutEvents', events: [{source, detail, detailType,
//! resources?, time?}]}`; `ctx.result` is `{Entries, FailedEntryCount}` as EventBridge answers.

use serde_json::{Map, Value, json};

use super::sigv4::Signer;
use super::{CallError, DataSource, aws_error, json_body};

pub(super) async fn call(
    source: &DataSource,
    url: &reqwest::Url,
    bus: Option<&str>,
    signer: &Signer,
    request: Value,
) -> Result<Value, CallError> {
    if request.get("operation").and_then(Value::as_str) != Some("PutEvents") {
        return Err(CallError::Invalid(
            "an EventBridge request needs operation 'PutEvents'".into(),
        ));
    }
    let Some(events) = request.get("events").and_then(Value::as_array) else {
        return Err(CallError::Invalid(
            "an EventBridge request needs an events array".into(),
        ));
    };
    let mut entries = Vec::with_capacity(events.len());
    for event in events {
        let mut entry = Map::new();
        let field = |name: &str| event.get(name).filter(|v| !v.is_null());
        if let Some(v) = field("source") {
            entry.insert("Source".into(), v.clone());
        }
        if let Some(v) = field("detailType") {
            entry.insert("DetailType".into(), v.clone());
        }
        if let Some(v) = field("detail") {
            // EventBridge takes the detail as a JSON string.
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            entry.insert("Detail".into(), Value::String(text));
        }
        if let Some(v) = field("resources") {
            entry.insert("Resources".into(), v.clone());
        }
        if let Some(v) = field("time") {
            entry.insert("Time".into(), v.clone());
        }
        if let Some(bus) = bus {
            entry.insert("EventBusName".into(), Value::String(bus.to_owned()));
        }
        entries.push(Value::Object(entry));
    }
    let body = json!({ "Entries": entries }).to_string().into_bytes();
    let answer = source
        .post_aws(
            url,
            signer,
            "application/x-amz-json-1.1",
            &[("x-amz-target", "AWSEvents.PutEvents")],
            body,
        )
        .await?;
    if !(200..300).contains(&answer.status) {
        return Err(aws_error("EventBridge", &answer));
    }
    json_body("EventBridge", &answer)
}
