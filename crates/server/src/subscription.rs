//! A subscription going live. [`activate`] is the one place that does it: it queues the reply
//! (`subscribe_success`, with the resume report when the client asked to resume), then any
//! replayed events, then registers the subscription with the broker — all through the
//! connection's one ordered outbox, so the reply precedes every event and a replay ends exactly
//! where live delivery begins (the caller makes sure nothing is delivered in between).
//!
//! A resuming subscription goes live in another task than its connection's; until the session
//! holds it, it is a [`Pending`], which releases itself when dropped.

use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::Pattern;
use herald_protocol::reply::{self, ResumeReport, SuccessKind};

use crate::broker::{Broker, Subscriber};
use crate::connection::outbox::Out;

/// A subscription prepared (`Broker::prepare`) but not yet held by its session. Dropping it
/// releases it — unregistered if it already went live — so a resume abandoned at any point (its
/// client gone, its task aborted, the store failing) leaves nothing behind.
pub struct Pending {
    /// Releases it: the broker that prepared it.
    broker: Arc<dyn Broker>,
    pattern: Pattern,
    subscriber: Arc<Subscriber>,
    /// The session holds it: dropping this no longer releases it.
    held: bool,
}

impl Pending {
    pub fn new(broker: Arc<dyn Broker>, pattern: Pattern, subscriber: Arc<Subscriber>) -> Pending {
        Pending {
            broker,
            pattern,
            subscriber,
            held: false,
        }
    }

    pub fn subscriber(&self) -> &Arc<Subscriber> {
        &self.subscriber
    }

    /// [`activate`]s it, registering with `index` (the local index, in cluster mode).
    pub fn activate(
        &self,
        index: &dyn Broker,
        id: &str,
        resumed: Option<&ResumeReport>,
        replay: Vec<Bytes>,
    ) {
        activate(
            index,
            id,
            &self.pattern,
            self.subscriber.clone(),
            resumed,
            replay,
        );
    }

    /// The session takes it over (and releases it when done).
    pub fn hold(mut self) -> (Pattern, Arc<Subscriber>) {
        self.held = true;
        (self.pattern.clone(), self.subscriber.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.held {
            self.broker.unsubscribe(&self.pattern, &self.subscriber);
        }
    }
}

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
