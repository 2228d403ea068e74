//! Server-Sent Events (Herald extension, `docs/extensions.md`):
//!
//! - `GET /event/stream?channel=/ns/a&channel=/ns/b/*` opens a `text/event-stream` of those
//!   channels, authorized like a WebSocket subscribe to each (the credential in the request's
//!   headers, as for `POST /event`; with IAM, the GET itself is signed), resuming from
//!   `Last-Event-ID` (or a `lastEventId` parameter) on history namespaces. The stream runs in
//!   its own task (`connection::sse`).
//! - `POST /event/stream/token` with `{"channels":[…]}`, authorized the same way, answers a
//!   short-lived, single-use token (`stream_token`) for `GET /event/stream?token=…`: the way
//!   for a browser's `EventSource`, which cannot set headers.
//!
//! The query of these requests is never logged: it may hold a token.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use herald_protocol::{ErrorType, Pattern, WireError};

use super::request::{admit_connect, header_fields, read_body, source_ip};
use super::response::{Body, bad_request, error, json};
use crate::auth::{Identity, Presented};
use crate::connection::sse::{self, Admitted, LastSeen, Opening};
use crate::connection::{Caller, admit};
use crate::state::State;
use crate::stream_token::{Grant, TokenError};

/// The body of an event stream: chunks written by its task, one at a time.
pub type StreamingBody = StreamBody<Chunks>;

/// The chunks of an event stream, as the response body reads them.
pub struct Chunks(mpsc::Receiver<Bytes>);

impl futures_util::Stream for Chunks {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// Largest `POST /event/stream/token` body.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// What `GET /event/stream` asks for.
#[derive(Debug, Default)]
struct Query {
    channels: Vec<String>,
    token: Option<String>,
    last_event_id: Option<String>,
}

fn parse_query(query: &str) -> Query {
    let mut q = Query::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "channel" => q.channels.push(v.into_owned()),
            "token" => q.token = Some(v.into_owned()),
            "lastEventId" if !v.is_empty() => q.last_event_id = Some(v.into_owned()),
            _ => {}
        }
    }
    q
}

/// Checks the number of channels of a stream.
fn check_count(state: &State, n: usize) -> Result<(), WireError> {
    let max = state.fixed.limits.max_subscriptions_per_connection;
    if n == 0 {
        return Err(bad_request(
            "name at least one channel: /event/stream?channel=/namespace/channel",
        ));
    }
    if n > max {
        return Err(WireError::new(
            ErrorType::MaxSubscriptions,
            format!("a stream may hold at most {max} channels"),
        ));
    }
    Ok(())
}

fn parse_pattern(raw: &str) -> Result<Pattern, WireError> {
    Pattern::parse(raw).map_err(|e| bad_request(e.to_string()))
}

/// `GET /event/stream`.
pub async fn stream(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<StreamingBody>, WireError> {
    if !admit_connect(&state, req.extensions()) {
        state.metrics.rate_limited.inc();
        return Err(WireError::new(
            ErrorType::LimitExceeded,
            "too many connections per second from this address; retry with backoff",
        ));
    }
    let (parts, _) = req.into_parts();
    let query = parse_query(parts.uri.query().unwrap_or_default());
    let fields = header_fields(&parts.headers);
    let source = source_ip(&parts.extensions);
    let (subscriptions, identity) = match &query.token {
        Some(token) => {
            let grant = state.stream_tokens.take(token).ok_or_else(|| {
                WireError::new(
                    ErrorType::Unauthorized,
                    "the stream token is unknown, expired or already used: ask POST /event/stream/token for a new one",
                )
            })?;
            if !query.channels.is_empty() && query.channels != grant.channels {
                return Err(bad_request(
                    "a token opens the channels it was issued for: leave out channel, or name the same ones",
                ));
            }
            let subscriptions = grant
                .channels
                .iter()
                .map(|c| {
                    Ok(Admitted {
                        pattern: parse_pattern(c)?,
                        identity: grant.identity.clone(),
                    })
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            (subscriptions, grant.identity)
        }
        None => {
            check_count(&state, query.channels.len())?;
            let credential = || Presented::Http {
                parts: &parts,
                body: &[],
                fields: &fields,
            };
            let admitted = admit_all(&state, &query.channels, credential, &fields, &source).await?;
            let identity = admitted
                .first()
                .map(|a| a.identity.clone())
                .ok_or_else(|| bad_request("name at least one channel"))?;
            (admitted, identity)
        }
    };
    let last_event_id = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    let last_seen = match last_event_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(id) => Some(LastSeen::parse(id).ok_or_else(|| {
            bad_request("Last-Event-ID: expected an id of this stream, <channel> <epoch>:<offset> <time_ms>")
        })?),
    };
    let opening = Opening {
        subscriptions,
        identity,
        last_seen,
        headers: fields,
        source_ip: source,
    };
    let (opened, is_open) = oneshot::channel();
    // One chunk in flight: the outbox is the stream's queue, bounded as a socket's.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(sse::run(state, opening, opened, tx));
    match is_open.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(WireError::new(ErrorType::Internal, "the stream failed")),
    }
    let mut r = Response::new(StreamBody::new(Chunks(rx)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer responses (nginx) would hold events back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// Admits every channel as a subscribe, in order; the first refusal is the answer.
async fn admit_all<'a>(
    state: &State,
    channels: &[String],
    credential: impl Fn() -> Presented<'a>,
    headers: &herald_protocol::AuthFields,
    source_ip: &[String],
) -> Result<Vec<Admitted>, WireError> {
    let caller = Caller {
        headers,
        source_ip,
        presence_info: None,
    };
    let mut admitted = Vec::with_capacity(channels.len());
    for raw in channels {
        let pattern = parse_pattern(raw)?;
        let identity = admit(state, &pattern, raw, credential(), &caller)
            .await
            .inspect_err(|_| {
                state
                    .metrics
                    .ns(pattern.namespace())
                    .subscribe_client_error
                    .inc();
            })?;
        admitted.push(Admitted { pattern, identity });
    }
    Ok(admitted)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    channels: Vec<String>,
}

/// `POST /event/stream/token`.
pub async fn token(state: &State, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match read_body(state, body, MAX_TOKEN_BODY).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    match issue(state, &parts, &body).await {
        Ok(answer) => json(StatusCode::OK, answer),
        Err(e) => error(e),
    }
}

async fn issue(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<Bytes, WireError> {
    let request: TokenRequest = serde_json::from_slice(body)
        .map_err(|_| bad_request(r#"the body must be {"channels":["/namespace/channel", …]}"#))?;
    check_count(state, request.channels.len())?;
    let fields = header_fields(&parts.headers);
    let source = source_ip(&parts.extensions);
    // SigV4 clients sign this request, body included.
    let credential = || Presented::Http {
        parts,
        body,
        fields: &fields,
    };
    let admitted = admit_all(state, &request.channels, credential, &fields, &source).await?;
    let identity: Identity = admitted
        .first()
        .map(|a| a.identity.clone())
        .ok_or_else(|| bad_request("name at least one channel"))?;
    let token = state
        .stream_tokens
        .issue(Grant {
            identity,
            channels: request.channels,
        })
        .map_err(|e| match e {
            TokenError::Full => WireError::new(ErrorType::LimitExceeded, e.to_string()),
            TokenError::Random(_) => WireError::new(ErrorType::Internal, e.to_string()),
        })?;
    let answer = serde_json::json!({
        "token": token,
        "expiresInMs": state.stream_tokens.ttl().as_millis() as u64,
    });
    Ok(Bytes::from(answer.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_list_channels_in_order() {
        let q = parse_query("channel=%2Fa%2Fb&channel=/a/*&lastEventId=%2Fa%2Fb+1%3A2+3&x=y");
        assert_eq!(q.channels, ["/a/b", "/a/*"]);
        assert_eq!(q.last_event_id.as_deref(), Some("/a/b 1:2 3"));
        assert_eq!(q.token, None);
    }
}
