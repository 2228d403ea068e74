//! What every route reads from a request: the client's address and its credentials.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::Response;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};

use herald_protocol::{AuthFields, ErrorType, WireError};

use super::response::{Body, bad_request, closing, error};
use crate::state::State;

/// Who sent the request, attached by the listener: the client's address (the peer, or what a
/// trusted proxy forwarded; see `admission`). Handlers see it as `ctx.identity.sourceIp`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub client: std::net::IpAddr,
    /// Whether the client is the TCP peer itself (no proxy named it), so the listener could
    /// block it in the kernel.
    pub direct: bool,
}

/// The client's address, when the listener attached it.
pub fn client(extensions: &hyper::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<Peer>().map(|p| p.client)
}

/// Takes a WebSocket or event-stream connect from the client's per-address budget (true when
/// granted, or when the listener named no client).
pub fn admit_connect(state: &State, extensions: &hyper::http::Extensions) -> bool {
    extensions
        .get::<Peer>()
        .is_none_or(|p| state.admission.connect(p.client, p.direct))
}

/// `sourceIp` for handlers: the client's address.
pub fn source_ip(extensions: &hyper::http::Extensions) -> Vec<String> {
    client(extensions)
        .map(|ip| vec![ip.to_string()])
        .unwrap_or_default()
}

/// Credentials from request headers, names lower-cased (so `X-Api-Key` and `x-api-key` agree).
pub fn header_fields(headers: &HeaderMap) -> AuthFields {
    let mut fields = AuthFields::new();
    for (name, value) in headers {
        if name == header::COOKIE {
            continue;
        }
        if let Ok(v) = value.to_str() {
            fields.insert(name.as_str(), v);
        }
    }
    fields
}

/// Reads a request body whole, at most `limit` bytes, within `limits.request_body_timeout_ms`;
/// or the response that refuses it (413, 408 closing the connection, 400).
pub async fn read_body(
    state: &State,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, Response<Body>> {
    let deadline = Duration::from_millis(state.fixed.limits.request_body_timeout_ms);
    let read = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await;
    match read {
        Err(_) => {
            state.metrics.timeouts.inc();
            Err(closing(error(WireError::custom(
                ErrorType::BadRequest,
                "RequestTimeoutException",
                408,
                format!(
                    "the request body did not arrive within {} ms",
                    deadline.as_millis()
                ),
            ))))
        }
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(error(WireError::new(
            ErrorType::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        ))),
        Ok(Err(_)) => Err(error(bad_request("could not read the request body"))),
    }
}
