//! `POST /event` (spec §3): read the body within its limit, decode it once, authorize, publish.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use herald_protocol::channel::namespace_of;
use herald_protocol::message::check_idempotency_key;
use herald_protocol::{Channel, ErrorType, HttpPublish, WireError, reply};

use super::request::{client, header_fields, read_body, source_ip};
use super::response::{Body, bad_request, error, json};
use crate::auth::{Action, Presented};
use crate::metrics::Transport;
use crate::state::State;

pub async fn publish(state: &State, req: Request<Incoming>) -> Response<Body> {
    if let Some(client) = client(req.extensions())
        && !state.admission.publish(client)
    {
        state.metrics.rate_limited.inc();
        return error(WireError::new(
            ErrorType::LimitExceeded,
            "too many publishes per second from this address; retry with backoff",
        ));
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(state, body, state.fixed.limits.max_request_bytes).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let request = match HttpPublish::parse(&body, &state.event_limits) {
        Ok(r) => r,
        // Invalid bodies count under no namespace.
        Err(e) => return error(e),
    };
    let m = state.metrics.ns(namespace_of(&request.channel));
    let started = std::time::Instant::now();
    let outcome = admit_and_publish(state, &request, &parts, &body).await;
    m.publish_seconds(Transport::Http)
        .observe(started.elapsed());
    match outcome {
        Ok(result) => {
            m.publish_success.inc();
            json(StatusCode::OK, result.to_http_body())
        }
        Err(e) => {
            if e.http_status() >= 500 {
                m.publish_server_error.inc();
            } else {
                m.publish_client_error.inc();
            }
            error(e)
        }
    }
}

async fn admit_and_publish(
    state: &State,
    request: &HttpPublish<'_>,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<reply::PublishResult, WireError> {
    let fields = header_fields(&parts.headers);
    // SigV4 clients sign the real request: its head and exact body.
    let credential = Presented::Http {
        parts,
        body,
        fields: &fields,
    };
    let channel = Channel::parse(&request.channel).map_err(|e| bad_request(e.to_string()))?;
    let action = Action::Publish {
        channel: &channel,
        raw: &request.channel,
    };
    let identity = state
        .live()
        .access
        .authorize(action, credential, &state.metrics)
        .await?;
    if !state.admission.identity_publish(&identity) {
        state.metrics.rate_limited.inc();
        return Err(WireError::new(
            ErrorType::LimitExceeded,
            "too many publishes per second for this identity; retry with backoff",
        ));
    }
    let source = source_ip(&parts.extensions);
    let caller = crate::publish::Caller {
        identity: &identity,
        headers: &fields,
        source_ip: &source,
    };
    let key = match parts.headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| bad_request("Idempotency-Key must be visible ASCII"))?;
            check_idempotency_key(key)?;
            Some(key)
        }
    };
    crate::publish::publish(state, &channel, &request.events, &caller, key).await
}
