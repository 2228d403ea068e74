//! Publishing, shared by `POST /event` and the WebSocket `publish` message: one identifier per
//! event, each accepted event encoded once, then handed to the broker.

use bytes::Bytes;
use herald_protocol::message::{Event, EventError};
use herald_protocol::reply::{self, Accepted, PublishResult, Refused};
use herald_protocol::{Channel, ErrorType, WireError};

use crate::state::State;

/// Publishes the accepted events of a request to `channel` (already authorized). Oversized
/// events are listed in `failed` with AppSync's `EventTooLargeException`.
pub async fn publish(
    state: &State,
    channel: &Channel,
    events: &[Result<Event<'_>, EventError>],
) -> Result<PublishResult, WireError> {
    let mut result = PublishResult::default();
    let mut bodies = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let identifier = crate::id::uuid_v4();
        match event {
            Ok(event) => {
                bodies.push(event.token());
                result.successful.push(Accepted {
                    identifier,
                    index,
                    delivered: None,
                    position: None,
                });
            }
            Err(e) => result.failed.push(Refused {
                identifier,
                index,
                code: "EventTooLargeException".into(),
                message: e.to_string(),
            }),
        }
    }
    let m = state.metrics.ns(channel.namespace());
    m.failed_events.add(result.failed.len() as u64);
    if bodies.is_empty() {
        return Ok(result);
    }
    m.broadcast_events.add(bodies.len() as u64);
    m.broadcast_event_bytes
        .add(bodies.iter().map(|b| b.len() as u64).sum());
    if let Some(history) = state.history_of(channel.namespace()) {
        // Stored first: `successful` means durable, and positions go out with the events.
        let tokens = bodies
            .iter()
            .map(|t| Bytes::copy_from_slice(t.as_bytes()))
            .collect();
        let appended = history.append(channel, tokens).await.inspect_err(|_| {
            m.history_errors.inc();
        })?;
        m.history_appends.add(appended.positions.len() as u64);
        m.deliveries
            .add((appended.delivered * appended.positions.len()) as u64);
        for (accepted, position) in result.successful.iter_mut().zip(appended.positions) {
            accepted.delivered = Some(appended.delivered);
            accepted.position = Some(crate::history::wire(position));
        }
        return Ok(result);
    }
    let bodies: Vec<Bytes> = bodies.into_iter().map(reply::data_body).collect();
    let delivered = state
        .broker
        .publish(channel, &bodies)
        .await
        .map_err(|e| WireError::new(ErrorType::Internal, e.to_string()))?;
    m.deliveries.add((delivered * bodies.len()) as u64);
    for accepted in &mut result.successful {
        accepted.delivered = Some(delivered);
    }
    Ok(result)
}
