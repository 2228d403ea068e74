//! Channel history in the server: storing events before they are acknowledged, stamping data
//! frames with positions, replaying missed events to a resuming subscription, and reads for the
//! HTTP history endpoint.
//!
//! Every namespace with history has an *appender* that takes publishes in rounds (group commit:
//! the appends of all channels in a round are in flight together, so the store shares one fsync
//! among them), and a *deliverer* that hands stored events to subscribers in offset order and runs
//! resumes between deliveries — so nothing is delivered in its namespace while a resume reads
//! history and registers its subscription, and the replay ends exactly where live delivery
//! starts: no gap, no duplicate.
//!
//! - Embedded ([`lane`]): one task per namespace is both; it delivers each round right after
//!   storing it.
//! - Cluster ([`cluster`]): the store is JetStream. The appender only stores; every node follows
//!   each namespace's stream and delivers what any node stored, in stream order.
//!
//! Which of the two runs is decided in `deployment`; the rest of the server sees [`History`].

pub mod cluster;
pub mod config;
mod lane;
mod replay;
mod round;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use herald_history::{
    AnyStore, HistoryStore, Position, ReadOutcome, Retention, Since, StoredEvent,
    UnrecoverableReason,
};
use herald_protocol::reply::{self, ResumeReport, StreamPosition};
use herald_protocol::{Channel, ErrorType, Pattern, Resume, WireError};
use tokio::sync::{mpsc, oneshot};

use crate::broker::Subscriber;
use crate::namespace::NamespaceHistory;

/// Most jobs waiting in one namespace's queue; senders wait for room beyond it.
const QUEUE: usize = 4096;

/// What a publish got from history.
pub struct Appended {
    pub positions: Vec<Position>,
    pub time_ms: u64,
    /// Subscriptions each event was delivered to, when known (a single node knows).
    pub delivered: Option<usize>,
}

/// Store these events of one channel, then answer.
struct AppendJob {
    channel: Channel,
    tokens: Vec<Bytes>,
    reply: oneshot::Sender<Result<Appended, WireError>>,
}

/// Reply, replay what was missed, then register the subscription.
struct ResumeJob {
    id: String,
    pattern: Pattern,
    from: Resume,
    subscriber: Arc<Subscriber>,
    reply: oneshot::Sender<ResumeReport>,
}

/// Where one namespace's jobs go.
struct Queues {
    append: mpsc::Sender<AppendJob>,
    resume: mpsc::Sender<ResumeJob>,
}

/// History for every namespace that keeps it.
pub struct History {
    store: Arc<AnyStore>,
    queues: HashMap<String, Queues>,
}

/// A failure before the events reached the store: nothing was stored.
fn unavailable(e: impl std::fmt::Display) -> WireError {
    tracing::error!(error = %e, "history store failed");
    WireError::new(
        ErrorType::Internal,
        format!("the event was not stored: {e}; retry"),
    )
}

/// A failure once the events were handed to the store: they may be stored (and delivered), so
/// the error says so, and a retry should carry the same idempotency key.
fn uncertain(e: impl std::fmt::Display) -> WireError {
    tracing::error!(error = %e, "history store failed");
    WireError::new(
        ErrorType::Internal,
        format!(
            "{}: {e}; retry with the same idempotency key",
            crate::idempotency::MAY_BE_STORED
        ),
    )
}

impl History {
    /// Whether a namespace keeps history.
    pub fn keeps(&self, namespace: &str) -> bool {
        self.queues.contains_key(namespace)
    }

    /// Reads stored events of one channel (the HTTP history endpoint).
    pub async fn read(
        &self,
        channel: &Channel,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, WireError> {
        self.store
            .read(channel.as_str(), since, limit)
            .await
            .map_err(|e| WireError::new(ErrorType::Internal, format!("history read failed: {e}")))
    }

    /// Stores the events (durably, under the sync policy); they are delivered in channel order.
    pub async fn append(
        &self,
        channel: &Channel,
        tokens: Vec<Bytes>,
    ) -> Result<Appended, WireError> {
        let queues = self.queues_of(channel.namespace())?;
        let (reply, answer) = oneshot::channel();
        let job = AppendJob {
            channel: channel.clone(),
            tokens,
            reply,
        };
        queues
            .append
            .send(job)
            .await
            .map_err(|_| unavailable("history appender stopped"))?;
        answer
            .await
            .map_err(|_| uncertain("history appender stopped"))?
    }

    /// Replays what `subscriber` missed since `from` and makes the subscription live (see
    /// `subscription::activate`). Returns once it is live, with what was recovered.
    pub async fn resume(
        &self,
        id: &str,
        pattern: &Pattern,
        from: Resume,
        subscriber: Arc<Subscriber>,
    ) -> Result<ResumeReport, WireError> {
        let queues = self.queues_of(pattern.namespace())?;
        let (reply, done) = oneshot::channel();
        let job = ResumeJob {
            id: id.to_owned(),
            pattern: pattern.clone(),
            from,
            subscriber,
            reply,
        };
        queues
            .resume
            .send(job)
            .await
            .map_err(|_| unavailable("history deliverer stopped"))?;
        done.await
            .map_err(|_| unavailable("history deliverer stopped"))
    }

    fn queues_of(&self, namespace: &str) -> Result<&Queues, WireError> {
        self.queues
            .get(namespace)
            .ok_or_else(|| unavailable("this namespace keeps no history"))
    }
}

/// Converts a store position for the wire.
pub fn wire(p: Position) -> StreamPosition {
    StreamPosition {
        epoch: p.epoch,
        offset: p.offset,
    }
}

/// The data body of a stored event.
fn body(channel: &str, event: &StoredEvent) -> Bytes {
    let token = std::str::from_utf8(&event.payload).unwrap_or("null");
    reply::data_body_at(token, channel, wire(event.position), event.time_ms)
}

/// The wire name of a reason history cannot be recovered.
pub fn reason(r: UnrecoverableReason) -> &'static str {
    match r {
        UnrecoverableReason::EpochMismatch | UnrecoverableReason::AheadOfTop => "epoch_changed",
        UnrecoverableReason::Expired => "expired",
    }
}

/// A namespace's retention as the store takes it.
pub fn retention(h: &NamespaceHistory) -> Retention {
    Retention {
        max_age: h.max_age_secs.map(std::time::Duration::from_secs),
        max_count: h.max_count,
    }
}
