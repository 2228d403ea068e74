//! `AWS_LAMBDA`: the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`).
//!
//! Request object (AppSync): `{operation: 'Invoke', payload, invocationType?: 'RequestResponse'
//! | 'Event'}`. `ctx.result` is the function's answer; a function error (the
//! `X-Amz-Function-Error` header) becomes `ctx.error` with type `Lambda:Unhandled` /
//! `Lambda:Handled` and the function's `errorMessage`.

use serde_json::Value;

use super::sigv4::Signer;
use super::{Answer, CallError, DataSource, aws_error, json_body};
use crate::config::InvokeType;

pub(super) async fn call(
    source: &DataSource,
    url: &reqwest::Url,
    signer: &Signer,
    request: Value,
) -> Result<Value, CallError> {
    let Value::Object(mut request) = request else {
        return Err(CallError::Invalid(
            "a Lambda request must be an object {operation: 'Invoke', payload}".into(),
        ));
    };
    match request.get("operation").and_then(Value::as_str) {
        Some("Invoke") => {}
        other => {
            return Err(CallError::Invalid(format!(
                "a Lambda request needs operation 'Invoke', got {other:?}"
            )));
        }
    }
    let invoke = match request.get("invocationType").and_then(Value::as_str) {
        None | Some("RequestResponse") => InvokeType::RequestResponse,
        Some("Event") => InvokeType::Event,
        Some(other) => {
            return Err(CallError::Invalid(format!(
                "invocationType must be 'RequestResponse' or 'Event', got {other:?}"
            )));
        }
    };
    let payload = request.remove("payload").unwrap_or(Value::Null);
    let answer = send(source, url, signer, payload.to_string(), invoke).await?;
    match invoke {
        InvokeType::Event => Ok(Value::Null),
        InvokeType::RequestResponse => json_body("Lambda", &answer),
    }
}

/// `DIRECT`: the payload is the handler context; returns the answer body (`None` for `EVENT`).
pub(super) async fn invoke(
    source: &DataSource,
    url: &reqwest::Url,
    signer: &Signer,
    payload: String,
    invoke: InvokeType,
) -> Result<Option<Vec<u8>>, CallError> {
    let answer = send(source, url, signer, payload, invoke).await?;
    Ok(match invoke {
        InvokeType::Event => None,
        InvokeType::RequestResponse => Some(answer.body),
    })
}

async fn send(
    source: &DataSource,
    url: &reqwest::Url,
    signer: &Signer,
    payload: String,
    invoke: InvokeType,
) -> Result<Answer, CallError> {
    let invocation_type = match invoke {
        InvokeType::RequestResponse => "RequestResponse",
        InvokeType::Event => "Event",
    };
    let answer = source
        .post_aws(
            url,
            signer,
            "application/json",
            &[("x-amz-invocation-type", invocation_type)],
            payload.into_bytes(),
        )
        .await?;
    if !(200..300).contains(&answer.status) {
        return Err(aws_error("Lambda", &answer));
    }
    if let Some(kind) = answer
        .headers
        .get("x-amz-function-error")
        .and_then(|v| v.to_str().ok())
    {
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let message = body
            .get("errorMessage")
            .and_then(Value::as_str)
            .unwrap_or("the function failed")
            .to_owned();
        return Err(CallError::Failed {
            message,
            error_type: format!("Lambda:{kind}"),
        });
    }
    Ok(answer)
}
