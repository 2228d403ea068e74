//! Channel history in the server: storing events before they are acknowledged, stamping data
//! frames with positions, replaying missed events to a resuming subscription, and reads for the
//! HTTP history endpoint.
//!
//! Every namespace with history has an *appender* that takes publishes in rounds (group commit:
//! the appends of all channels in a round are in flight together, so the store shares one fsync
//! among them), and a *deliverer* that hands stored events to subscribers in offset order.
//!
//! Reads never hold up that path: a resume reads what it missed beside the deliverer, in the
//! resuming connection's own task, and only its last short step — what was stored since, then
//! registering the subscription — runs in the deliverer between two deliveries, so the replay
//! ends exactly where live delivery starts: no gap, no duplicate ([`replay`]). Reads are bounded:
//! a resume in events and bytes (`too_many` past them), an HTTP page in bytes, and each
//! namespace in reads at once (`LimitExceededError` past it).
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
mod pace;
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::namespace::NamespaceHistory;
use crate::subscription::Pending;
use config::HistoryConfig;
use pace::Pace;
use replay::{Bounds, FinishJob, Gone};

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

/// One history namespace: where its jobs go, and who may read it.
struct Queues {
    append: mpsc::Sender<AppendJob>,
    /// Resumes' second step, for the deliverer.
    finish: mpsc::Sender<FinishJob>,
    /// Reads in progress (resumes and HTTP pages), at most `history.max_concurrent_reads`.
    reads: Arc<Semaphore>,
    /// Events those reads may replay, `history.max_replay_events_per_second`.
    pace: Pace,
    /// Where a resume's first step reads.
    beside: Beside,
}

/// Where a resume reads what it missed, beside the deliverer.
enum Beside {
    /// The store (embedded): everything stored is delivered by the time the second step runs.
    Store,
    /// The stream up to what this node's follower has passed (cluster).
    Stream(cluster::Progress),
}

/// The bounds on reading history back, from `[history]`.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub replay: Bounds,
    /// `history.max_page_bytes`.
    pub page_bytes: usize,
    /// `history.max_concurrent_reads`.
    pub concurrent: usize,
    /// `history.max_replay_events_per_second`.
    pub replay_per_second: u64,
    /// `history.max_replay_bytes_per_second`.
    pub replay_bytes_per_second: u64,
}

impl ReadLimits {
    /// `largest_event` is `limits.max_event_bytes`.
    pub fn new(config: &HistoryConfig, largest_event: usize) -> ReadLimits {
        ReadLimits {
            replay: Bounds {
                events: config.max_replay_events,
                bytes: config.max_replay_bytes,
                largest_event,
            },
            page_bytes: config.max_page_bytes,
            concurrent: config.max_concurrent_reads,
            replay_per_second: config.max_replay_events_per_second,
            replay_bytes_per_second: config.max_replay_bytes_per_second,
        }
    }
}

/// Leave to read history in one namespace, held for the read's duration.
pub struct ReadPermit {
    _held: OwnedSemaphorePermit,
}

/// History for every namespace that keeps it.
pub struct History {
    store: Arc<AnyStore>,
    queues: HashMap<String, Queues>,
    limits: ReadLimits,
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

    /// Leave to read `namespace`'s history, or `LimitExceededError` while
    /// `history.max_concurrent_reads` reads are in progress there.
    pub fn admit(&self, namespace: &str) -> Result<ReadPermit, WireError> {
        let queues = self.queues_of(namespace)?;
        queues
            .reads
            .clone()
            .try_acquire_owned()
            .map(|held| ReadPermit { _held: held })
            .map_err(|_| {
                WireError::new(
                    ErrorType::LimitExceeded,
                    format!(
                        "{} history reads are in progress in namespace {namespace}; retry shortly",
                        self.limits.concurrent
                    ),
                )
            })
    }

    /// A page of one channel's stored events (the HTTP history endpoint): at most `limit`
    /// events and `history.max_page_bytes` bytes of them, but at least one. Read in store calls
    /// that each fit the bytes left, so no more than the page is ever held; each draws on the
    /// namespace's replay budget first.
    pub async fn read(
        &self,
        _admitted: &ReadPermit,
        channel: &Channel,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, WireError> {
        let failed = |e| WireError::new(ErrorType::Internal, format!("history read failed: {e}"));
        let pace = &self.queues_of(channel.namespace())?.pace;
        let bounds = &self.limits.replay;
        let mut page: Vec<StoredEvent> = Vec::new();
        let mut bytes = 0;
        let mut at = since;
        loop {
            let left = self.limits.page_bytes.saturating_sub(bytes);
            let ask = bounds.page(limit.saturating_sub(page.len() + 1), left);
            // An HTTP request has no way to tell that its client left: dropping it stops the wait.
            let ticket = pace.take(ask, || false).await.map_err(|_| gone())?;
            let (events, top) = match self.store.read(channel.as_str(), at, ask).await {
                Ok(ReadOutcome::Events { events, top }) => {
                    ticket.used(&events);
                    (events, top)
                }
                // Past the first call, what was read stands; the next page reports the loss.
                Ok(lost @ ReadOutcome::Unrecoverable { .. }) if page.is_empty() => return Ok(lost),
                Ok(ReadOutcome::Unrecoverable { top, .. }) => {
                    return Ok(ReadOutcome::Events { events: page, top });
                }
                Err(e) => return Err(failed(e)),
            };
            let got = events.len();
            for event in events {
                let size = event.payload.len();
                if !page.is_empty() && bytes + size > self.limits.page_bytes {
                    return Ok(ReadOutcome::Events { events: page, top });
                }
                bytes += size;
                at = Since::After(event.position);
                page.push(event);
            }
            let at_top = page.last().is_none_or(|e| e.position.offset >= top.offset);
            if got < ask || at_top || page.len() >= limit {
                return Ok(ReadOutcome::Events { events: page, top });
            }
        }
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

    /// Replays what `pending` missed since `from` and makes it live (see
    /// `subscription::activate`). Returns once it is live, with what was recovered, handing the
    /// subscription back. Takes one of the namespace's reads for its duration, and draws on its
    /// replay budget before each read of the store (waiting while it is spent); stops early when
    /// the client is gone. Dropping the future at any point releases the subscription.
    pub async fn resume(
        &self,
        id: &str,
        pattern: &Pattern,
        from: Resume,
        pending: Pending,
    ) -> Result<(ResumeReport, Pending), WireError> {
        let queues = self.queues_of(pattern.namespace())?;
        let _reading = self.admit(pattern.namespace())?;
        let outbox = pending.subscriber().outbox.clone();
        let with_channel = pending.subscriber().with_channel;
        let bounds = &self.limits.replay;
        let (pace, store) = (&queues.pace, &*self.store);
        let replay = match &queues.beside {
            Beside::Store => {
                replay::read(store, pattern, &from, bounds, pace, &outbox, with_channel).await
            }
            Beside::Stream(progress) => {
                progress
                    .read(pattern, &from, bounds, pace, &outbox, with_channel)
                    .await
            }
        }
        .map_err(|Gone| gone())?;
        let (reply, done) = oneshot::channel();
        let job = FinishJob {
            id: id.to_owned(),
            pattern: pattern.clone(),
            from,
            replay,
            pending,
            reply,
        };
        queues
            .finish
            .send(job)
            .await
            .map_err(|_| unavailable("history deliverer stopped"))?;
        done.await.map_err(|_| {
            if outbox.is_closing() {
                gone()
            } else {
                unavailable("history deliverer stopped")
            }
        })
    }

    fn queues_of(&self, namespace: &str) -> Result<&Queues, WireError> {
        self.queues
            .get(namespace)
            .ok_or_else(|| unavailable("this namespace keeps no history"))
    }
}

/// A resume whose client left: nobody reads this error, it only ends the resume.
fn gone() -> WireError {
    WireError::new(
        ErrorType::Internal,
        "the connection closed during the resume",
    )
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
