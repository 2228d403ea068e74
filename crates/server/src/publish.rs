//! Publishing, shared by `POST /event` and the WebSocket `publish` message: one identifier per
//! event, each accepted event encoded once, then handed to the broker.

use bytes::Bytes;
use herald_protocol::message::{Event, EventError};
use herald_protocol::reply::{self, Accepted, PublishResult, Refused};
use herald_protocol::{Channel, ErrorType, WireError};

use std::borrow::Cow;

use herald_handler::{EventOutcome, IncomingEvent, PublishContext, RequestInfo};

use crate::auth::Identity;
use crate::broker::BrokerError;
use crate::idempotency::Begin;
use crate::state::State;

/// Who publishes: what the handler sees as `ctx.identity` and `ctx.request.headers`.
pub struct Caller<'a> {
    pub identity: &'a Identity,
    /// Request headers (HTTP) or connect headers (WebSocket); credentials are left out.
    pub headers: &'a herald_protocol::AuthFields,
    /// The client's address (`ctx.identity.sourceIp`).
    pub source_ip: &'a [String],
}

/// Headers shown to handlers: everything but credentials and cookies.
pub fn request_info(headers: &herald_protocol::AuthFields) -> RequestInfo {
    RequestInfo::from_pairs(
        headers
            .iter()
            .filter(|(k, _)| !matches!(*k, "x-api-key" | "authorization" | "x-amz-security-token")),
        None,
    )
}

/// Turns a handler failure into the client's error (`util.error` → 403 with its message,
/// `util.unauthorized` → 401).
pub fn handler_error(e: &herald_handler::HandlerError, op: herald_handler::Operation) -> WireError {
    let status = e.http_status();
    let kind = match status {
        401 => ErrorType::Unauthorized,
        403 => ErrorType::Forbidden,
        503 => ErrorType::LimitExceeded,
        _ => ErrorType::Internal,
    };
    WireError::custom(kind, e.error_type(op), status, e.client_message())
}

/// Publishes the accepted events of a request to `channel` (already authorized), through the
/// namespace's `onPublish` handler when it has one, once per idempotency key (see
/// `idempotency`). Oversized events are listed in `failed` with AppSync's
/// `EventTooLargeException`; events a handler fails too, with its code.
pub async fn publish(
    state: &State,
    channel: &Channel,
    events: &[Result<Event<'_>, EventError>],
    caller: &Caller<'_>,
    idempotency_key: Option<&str>,
) -> Result<PublishResult, WireError> {
    let Some(key) = idempotency_key else {
        return publish_once(state, channel, events, caller).await;
    };
    // Boxed, as the handler call: only publishes with a key pay for its size.
    match Box::pin(state.idempotency.begin(channel.namespace(), key)).await {
        Begin::Replay(result) => Ok((*result).clone()),
        Begin::Refuse(e) => Err(e),
        Begin::Fresh(claim) => {
            let outcome = publish_once(state, channel, events, caller).await;
            Box::pin(claim.finish(&outcome)).await;
            outcome
        }
    }
}

async fn publish_once(
    state: &State,
    channel: &Channel,
    events: &[Result<Event<'_>, EventError>],
    caller: &Caller<'_>,
) -> Result<PublishResult, WireError> {
    let mut result = PublishResult::default();
    let mut bodies: Vec<Cow<'_, str>> = Vec::with_capacity(events.len());
    let identifiers: Vec<String> = events.iter().map(|_| crate::id::uuid_v4()).collect();
    let namespace = channel.namespace();
    let m = state.metrics.ns(namespace);
    let live = state.live();
    let outcomes = match live
        .handlers
        .as_ref()
        .filter(|h| h.has_on_publish(namespace))
    {
        Some(handlers) => {
            let ctx = PublishContext {
                channel: channel.as_str().to_owned(),
                identity: Some(caller.identity.to_context_value(caller.source_ip))
                    .filter(|v| !v.is_null()),
                request: request_info(caller.headers),
                events: events
                    .iter()
                    .zip(&identifiers)
                    .filter_map(|(e, id)| {
                        let e = e.as_ref().ok()?;
                        Some(IncomingEvent {
                            id: id.clone(),
                            payload: serde_json::from_str::<String>(e.token()).ok()?,
                        })
                    })
                    .collect(),
            };
            let started = std::time::Instant::now();
            // Boxed: a handler call is a large future (17 KB: JavaScript, HTTP, data sources),
            // which would otherwise size, and be copied with, every publish's future.
            let outcomes = Box::pin(handlers.on_publish(namespace, ctx)).await;
            m.on_publish_seconds.observe(started.elapsed());
            let outcomes =
                outcomes.map_err(|e| handler_error(&e, herald_handler::Operation::Publish))?;
            Some(outcomes.into_iter())
        }
        None => None,
    };
    let mut outcomes = outcomes;
    for ((index, event), identifier) in events.iter().enumerate().zip(identifiers) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                result.failed.push(Refused {
                    identifier,
                    index,
                    code: "EventTooLargeException".into(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let outcome = match outcomes.as_mut() {
            None => EventOutcome::Deliver(String::new()),
            Some(o) => o.next().unwrap_or(EventOutcome::Dropped),
        };
        match outcome {
            EventOutcome::Deliver(payload) => {
                bodies.push(if outcomes.is_none() {
                    Cow::Borrowed(event.token())
                } else {
                    // A transformed payload: encode it as the JSON string `event` carries.
                    Cow::Owned(serde_json::to_string(&payload).unwrap_or_else(|_| "null".into()))
                });
                result.successful.push(Accepted {
                    identifier,
                    index,
                    delivered: None,
                    position: None,
                });
            }
            // Dropped by the handler: its decision, not a failure (docs/handlers.md).
            EventOutcome::Dropped => result.successful.push(Accepted {
                identifier,
                index,
                delivered: Some(0),
                position: None,
            }),
            EventOutcome::Failed { code, message } => result.failed.push(Refused {
                identifier,
                index,
                code: code.into(),
                message,
            }),
        }
    }
    m.failed_events.inc_by(result.failed.len() as u64);
    if bodies.is_empty() {
        return Ok(result);
    }
    m.broadcast_events.inc_by(bodies.len() as u64);
    m.broadcast_event_bytes
        .inc_by(bodies.iter().map(|b| b.len() as u64).sum());
    let (delivered, positions) = match state.history_of(channel.namespace()) {
        Some(history) => {
            // Stored first: `successful` means durable, and positions go out with the events.
            let tokens = bodies
                .iter()
                .map(|t| Bytes::copy_from_slice(t.as_bytes()))
                .collect();
            let started = std::time::Instant::now();
            let appended = history.append(channel, tokens).await;
            m.history_append_seconds.observe(started.elapsed());
            let appended = appended.inspect_err(|_| {
                m.history_errors.inc();
            })?;
            m.history_appends.inc_by(appended.positions.len() as u64);
            let positions = appended.positions.into_iter().map(crate::history::wire);
            (appended.delivered, positions.map(Some).collect())
        }
        None => {
            let bodies: Vec<Bytes> = bodies.iter().map(|t| reply::data_body(t)).collect();
            let delivered = state
                .broker
                .publish(channel, &bodies)
                .await
                .map_err(|e| match e {
                    BrokerError::Unavailable(_) => {
                        WireError::new(ErrorType::Internal, e.to_string())
                    }
                    BrokerError::Uncertain(_) => WireError::new(
                        ErrorType::Internal,
                        format!(
                            "{}: {e}; retry with the same idempotency key",
                            crate::idempotency::MAY_BE_STORED
                        ),
                    ),
                })?;
            (delivered, vec![None; bodies.len()])
        }
    };
    if let Some(d) = delivered {
        m.deliveries.inc_by((d * positions.len()) as u64);
    }
    // Events a handler dropped already say `delivered: 0`; the rest were handed on, in order.
    let handed_on = result
        .successful
        .iter_mut()
        .filter(|a| a.delivered.is_none());
    for (accepted, position) in handed_on.zip(positions) {
        accepted.delivered = delivered;
        accepted.position = position;
    }
    Ok(result)
}
