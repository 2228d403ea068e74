//! `AMAZON_OPENSEARCH_SERVICE`: AppSync's OpenSearch request object, `{operation, path, params:
//! {headers, queryString, body}}`, sent to the domain's endpoint and signed for the service `es`.
//! `ctx.result` is the JSON answer; an error status becomes `ctx.error` typed
//! `OpenSearch:<error.type>`.

use serde_json::Value;

use super::sigv4::Signer;
use super::{CallError, DataSource, json_body, text};

pub(super) async fn call(
    source: &DataSource,
    endpoint: &reqwest::Url,
    signer: &Signer,
    request: Value,
) -> Result<Value, CallError> {
    let operation = request
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_uppercase();
    if !matches!(
        operation.as_str(),
        "GET" | "POST" | "PUT" | "DELETE" | "HEAD"
    ) {
        return Err(CallError::Invalid(
            "an OpenSearch request needs operation GET, POST, PUT, DELETE or HEAD".into(),
        ));
    }
    let Some(path) = request.get("path").and_then(Value::as_str) else {
        return Err(CallError::Invalid(
            "an OpenSearch request needs a path (e.g. '/posts/_search')".into(),
        ));
    };
    // The endpoint's own path is kept: `path` is relative to it.
    let mut url = endpoint
        .join(path.trim_start_matches('/'))
        .map_err(|e| CallError::Invalid(format!("invalid path {path:?}: {e}")))?;
    let params = request.get("params");
    if let Some(Value::Object(query)) = params.and_then(|p| p.get("queryString")) {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, &text(v));
        }
    }
    let own: Vec<(String, String)> = match params.and_then(|p| p.get("headers")) {
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), text(v)))
            .collect(),
        _ => Vec::new(),
    };
    let body = match params.and_then(|p| p.get("body")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    let mut headers: Vec<(&str, &str)> =
        own.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if !body.is_empty() && !own.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type", "application/json"));
    }
    let answer = source
        .signed(&operation, &url, signer, &headers, body)
        .await?;
    if !(200..300).contains(&answer.status) {
        let parsed: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let error = parsed.get("error");
        let kind = error
            .and_then(|e| e.get("type"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("HTTP{}", answer.status), str::to_owned);
        let reason = error
            .and_then(|e| {
                e.get("reason")
                    .and_then(Value::as_str)
                    .or_else(|| e.as_str())
            })
            .map_or_else(|| format!("HTTP {}", answer.status), str::to_owned);
        return Err(CallError::Failed {
            message: reason,
            error_type: format!("OpenSearch:{kind}"),
        });
    }
    json_body("OpenSearch", &answer)
}
