//! `HTTP`: AppSync's HTTP request object, `{method, resourcePath, params: {query, headers,
//! body}}`, sent to the data source's endpoint. `ctx.result` is `{statusCode, headers, body}`
//! whatever the status (as in AppSync: a 4xx or 5xx is a result, not an error).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{CallError, DataSource, text};

pub(super) async fn call(
    source: &DataSource,
    endpoint: &reqwest::Url,
    defaults: &BTreeMap<String, String>,
    request: Value,
) -> Result<Value, CallError> {
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET");
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| CallError::Invalid(format!("invalid HTTP method {method:?}")))?;
    let path = request
        .get("resourcePath")
        .and_then(Value::as_str)
        .unwrap_or("/");
    // The endpoint's own path is kept: `resourcePath` is relative to it.
    let mut url = endpoint
        .join(path.trim_start_matches('/'))
        .map_err(|e| CallError::Invalid(format!("invalid resourcePath {path:?}: {e}")))?;
    let params = request.get("params");
    if let Some(Value::Object(query)) = params.and_then(|p| p.get("query")) {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            match v {
                Value::Array(values) => {
                    for v in values {
                        pairs.append_pair(k, &text(v));
                    }
                }
                v => {
                    pairs.append_pair(k, &text(v));
                }
            }
        }
    }
    let mut builder = source.client().request(method, url);
    let mut headers: BTreeMap<String, String> = defaults
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    if let Some(Value::Object(own)) = params.and_then(|p| p.get("headers")) {
        for (k, v) in own {
            headers.insert(k.to_ascii_lowercase(), text(v));
        }
    }
    for (k, v) in &headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    match params.and_then(|p| p.get("body")) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => builder = builder.body(s.clone()),
        Some(other) => builder = builder.body(other.to_string()),
    }
    let answer = source.send(builder).await?;
    let mut out_headers = Map::new();
    for (name, value) in &answer.headers {
        if let Ok(v) = value.to_str() {
            out_headers.insert(name.as_str().to_owned(), Value::String(v.to_owned()));
        }
    }
    let mut result = Map::new();
    result.insert("statusCode".into(), Value::from(answer.status));
    result.insert("headers".into(), Value::Object(out_headers));
    result.insert(
        "body".into(),
        Value::String(String::from_utf8_lossy(&answer.body).into_owned()),
    );
    Ok(Value::Object(result))
}
