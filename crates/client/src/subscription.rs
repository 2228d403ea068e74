//! A subscription as an async [`Stream`] of events.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use crate::connection::Command;
use crate::error::Error;
use crate::message::{Event, ResumeOutcome};

/// The events of one subscription, in order, as a [`Stream`].
///
/// Items are `Ok(event)`, or an error. A fatal error (see [`Error::is_fatal`]) is the last item
/// before the stream ends; [`Error::Gap`] and [`Error::Broadcast`] are notices after which
/// events keep coming. The stream also ends when the connection is closed.
///
/// Events wait in a bounded queue ([`crate::ClientBuilder::subscription_buffer`]) until read:
/// while one subscription's queue is full, the connection reads nothing more, for any of its
/// subscriptions (and the server may then drop it as a slow consumer; with reconnecting on, it
/// resumes). Read every subscription, or drop it.
///
/// Dropping it unsubscribes.
pub struct Subscription {
    id: String,
    channel: String,
    events: mpsc::Receiver<Result<Event, Error>>,
    commands: mpsc::UnboundedSender<Command>,
    resumed: Option<ResumeOutcome>,
}

impl Subscription {
    pub(crate) fn new(
        id: String,
        channel: String,
        events: mpsc::Receiver<Result<Event, Error>>,
        commands: mpsc::UnboundedSender<Command>,
        resumed: Option<ResumeOutcome>,
    ) -> Subscription {
        Subscription {
            id,
            channel,
            events,
            commands,
            resumed,
        }
    }

    /// The channel or wildcard subscribed to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The subscription's id on the socket.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// For a subscription made with [`crate::Connection::subscribe_from`]: what the server said
    /// about replaying (how many events, or why it could not).
    pub fn resume_outcome(&self) -> Option<&ResumeOutcome> {
        self.resumed.as_ref()
    }

    /// The next item; `None` once the stream has ended. The same as `StreamExt::next`.
    pub async fn recv(&mut self) -> Option<Result<Event, Error>> {
        self.events.recv().await
    }
}

impl Stream for Subscription {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unsubscribe {
            id: std::mem::take(&mut self.id),
        });
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}
