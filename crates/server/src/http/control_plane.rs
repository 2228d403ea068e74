//! The AppSync control plane over HTTP (`/v2/apis…`, `/v1/apis…`): reads the request, checks
//! its SigV4 signature, and answers with the `control` module's JSON or its AWS error
//! (`x-amzn-ErrorType` and `{"message": …}`, where botocore and the AWS SDKs read them).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::request::read_body;
use super::response::{Body, json};
use crate::control::{ControlError, operation};
use crate::state::State;

/// Largest control-plane request body read (a namespace's code is at most 32 KiB).
const MAX_BODY_BYTES: usize = 256 * 1024;

pub use crate::control::operation::is_control_path;

/// Answers one control-plane request.
pub async fn serve(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let live = state.live();
    let Some(control) = live.control.as_ref() else {
        return reply_error(&ControlError::Off);
    };
    let (parts, body) = req.into_parts();
    // The signature covers the body, so it is read whole first.
    let body = match read_body(state, body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    if let Err(e) = control.authenticate(&parts, &body, SystemTime::now()) {
        state.metrics.unauthorized.inc();
        return reply_error(&e);
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| state.fixed.listen.to_string());
    let op = match operation::route(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
    ) {
        Ok(op) => op,
        Err(e) => return reply_error(&e),
    };
    let answer = if op.is_write() {
        write(state, &parts, body).await
    } else {
        control.answer(op, &host)
    };
    match answer {
        Ok(reply) => json(StatusCode::OK, Bytes::from(reply)),
        Err(e) => reply_error(&e),
    }
}

/// Applies a write and answers from the settings it built.
async fn write(
    state: &Arc<State>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<Vec<u8>, ControlError> {
    if state.fixed.cluster.enabled() {
        // Each node keeps its own data directory: a write on one would not reach the others.
        return Err(ControlError::Unsupported {
            operation: "A write",
            why: "in cluster mode the control plane is read-only (change the configuration file and reload every node)",
        });
    }
    let (method, path, query) = (
        parts.method.to_string(),
        parts.uri.path().to_owned(),
        parts.uri.query().unwrap_or("").to_owned(),
    );
    let applied = crate::reload::apply_record(state.clone(), move |live| {
        let control = live.control.as_ref().ok_or(ControlError::Off)?;
        let op = operation::route(&method, &path, &query)?;
        control.change(&op, &body, &live.record)
    })
    .await?;
    let (live, written) = applied.ok_or(ControlError::Internal)?;
    live.control
        .as_ref()
        .ok_or(ControlError::Off)?
        .written(&written)
}

fn reply_error(error: &ControlError) -> Response<Body> {
    tracing::debug!(%error, "control plane error");
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json(status, Bytes::from(error.body()));
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_static(error.error_type()),
    );
    r
}
