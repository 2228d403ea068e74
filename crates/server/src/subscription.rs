//! A subscription going live. [`activate`] is the one place that does it: it queues the reply
//! (`subscribe_success`, with the resume report when the client asked to resume), then any
//! replayed events, then registers the subscription with the broker — all through the
//! connection's one ordered outbox, so the reply precedes every event and a replay ends exactly
//! where live delivery begins (the caller makes sure nothing is delivered in between).

use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::Pattern;
use herald_protocol::reply::{self, ResumeReport, SuccessKind};

use crate::broker::{Broker, Subscriber};
use crate::connection::outbox::Out;

/// Queues the reply and the replay, then registers `subscriber` for live events.
pub fn activate(
    broker: &dyn Broker,
    id: &str,
    pattern: &Pattern,
    subscriber: Arc<Subscriber>,
    resumed: Option<&ResumeReport>,
    replay: Vec<Bytes>,
) {
    let answer = match resumed {
        None => reply::success(SuccessKind::Subscribe, id),
        Some(report) => reply::subscribe_resumed(id, report),
    };
    // A refused push means the connection is closing; its subscriptions are dropped with it.
    let _ = subscriber.outbox.push(Out::Text(answer));
    for body in replay {
        let out = Out::Data {
            prefix: subscriber.prefix.clone(),
            body,
        };
        if subscriber.outbox.push(out).is_err() {
            break;
        }
    }
    broker.subscribe(pattern, subscriber);
}
