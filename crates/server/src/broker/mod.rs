//! Fan-out: the [`Broker`] seam between publishing and the subscribers. Embedded Herald delivers
//! through the local subscription index ([`local`]); cluster mode publishes through NATS, and
//! every node delivers what NATS hands it to its own index ([`nats`]). The choice is made once,
//! in `deployment`.

pub mod local;
pub mod nats;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::{Channel, Pattern};

use crate::connection::outbox::Outbox;
use crate::idempotency::SharedKeys;

/// One subscription as the index sees it.
pub struct Subscriber {
    pub outbox: Arc<Outbox>,
    /// `{"type":"data","id":"<subscription id>","event":` for this subscription; with
    /// `with_channel`, `{"type":"data","id":"<subscription id>",` (`reply::data_head`).
    pub prefix: Bytes,
    /// The subscription asked for the channel on every event (`withChannel`): it is sent the
    /// fan-out's shared [`Routed`] bodies instead of the plain ones.
    pub with_channel: bool,
}

/// The bodies of one fan-out for subscriptions that asked for the channel
/// (`reply::channel_body`): built at most once per fan-out, on meeting the first such
/// subscription, and shared by all of them; a fan-out without one builds nothing.
pub struct Routed<'a> {
    channel: &'a Channel,
    plain: &'a [Bytes],
    built: Option<Vec<Bytes>>,
}

impl<'a> Routed<'a> {
    pub fn new(channel: &'a Channel, plain: &'a [Bytes]) -> Routed<'a> {
        Routed {
            channel,
            plain,
            built: None,
        }
    }

    /// Events in the fan-out.
    pub fn len(&self) -> usize {
        self.plain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty()
    }

    /// The bodies `subscriber` is sent.
    pub fn for_subscriber(&mut self, subscriber: &Subscriber) -> &[Bytes] {
        if !subscriber.with_channel {
            return self.plain;
        }
        let (channel, plain) = (self.channel, self.plain);
        self.built.get_or_insert_with(|| {
            plain
                .iter()
                .map(|b| herald_protocol::reply::channel_body(channel.as_str(), b))
                .collect()
        })
    }
}

/// Failure to hand an event to the fan-out layer.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Nothing was published.
    #[error("the cluster backplane is unavailable, the event was not published: {0}")]
    Unavailable(String),
    /// Some events may have reached subscribers.
    #[error("the cluster backplane failed midway: {0}")]
    Uncertain(String),
}

/// Future returned by [`Broker::publish`]: subscriptions reached per event, when known.
pub type PublishFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<usize>, BrokerError>> + Send + 'a>>;

/// Future returned by [`Broker::prepare`].
pub type ReadyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send + 'a>>;

/// Where events go to reach subscribers. A single node uses the local index
/// ([`local::Hub`]); cluster mode wraps it with NATS ([`nats::NatsBroker`]). Contract: events of one `publish` call are delivered to each
/// subscription in order, and one publisher's successive calls on a channel keep their order.
pub trait Broker: Send + Sync + 'static {
    /// Delivers each body to every matching subscription; resolves to the number of
    /// subscriptions reached per event when the broker can count them (a single node can; a
    /// cluster cannot see other nodes' subscribers).
    fn publish<'a>(&'a self, channel: &'a Channel, bodies: &'a [Bytes]) -> PublishFuture<'a>;
    /// Makes sure events for `pattern` will reach this node, before the client is told its
    /// subscription is live. A single node has nothing to do.
    fn prepare<'a>(&'a self, _pattern: &'a Pattern) -> ReadyFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// Registers a local subscription (after [`Broker::prepare`]).
    fn subscribe(&self, pattern: &Pattern, subscriber: Arc<Subscriber>);
    fn unsubscribe(&self, pattern: &Pattern, subscriber: &Arc<Subscriber>);
    /// The idempotency keys every node sees, when there are other nodes to see them (cluster
    /// mode); a single node's own table is enough.
    fn shared_keys(&self) -> Option<Arc<SharedKeys>> {
        None
    }
}
