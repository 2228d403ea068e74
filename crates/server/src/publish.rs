//! Publishing, shared by `POST /event` and the WebSocket `publish` message: one identifier per
//! event, each accepted event encoded once, then handed to the broker.

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
                bodies.push(reply::data_body(event.token()));
                result.successful.push(Accepted { identifier, index });
            }
            Err(e) => result.failed.push(Refused {
                identifier,
                index,
                code: "EventTooLargeException".into(),
                message: e.to_string(),
            }),
        }
    }
    if !bodies.is_empty() {
        state
            .broker
            .publish(channel, &bodies)
            .await
            .map_err(|e| WireError::new(ErrorType::Internal, e.to_string()))?;
    }
    Ok(result)
}
