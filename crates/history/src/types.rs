//! Value types shared by every [`HistoryStore`](crate::HistoryStore) implementation.

use std::time::Duration;

use bytes::Bytes;

/// Where an event sits in one channel's history.
///
/// `offset` starts at 1 for the first event ever stored on a channel and grows by exactly 1 per
/// stored event, with no gaps and no reuse within one `epoch`. Offset 0 means "before the first
/// event", so the position of a channel that never stored anything is `{ epoch, offset: 0 }`.
///
/// `epoch` names one continuous life of the channel's history. It changes whenever the store can
/// no longer vouch for the offsets it handed out before (the directory was wiped, the store is
/// in-memory and restarted, or a crash may have lost acknowledged writes). Two different store
/// lifetimes pick their epochs at random, so they never collide in practice. A position is only
/// meaningful together with its epoch: offsets from different epochs are unrelated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// Identity of the channel history this offset belongs to. Never 0.
    pub epoch: u64,
    /// 1-based sequence number of the event in its channel; 0 means "no event yet".
    pub offset: u64,
}

/// How much history a namespace keeps. `None` means "no limit" on that axis; both limits apply
/// when both are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this (by their stored `time_ms`) are removed by the store's pruner,
    /// within about one prune interval after they expire.
    pub max_age: Option<Duration>,
    /// At most this many newest events are kept per channel; older ones are removed by the
    /// append that pushes them out. `Some(0)` keeps nothing (offsets still advance).
    pub max_count: Option<u64>,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// The oldest event still retained. Never unrecoverable: the caller asked for "whatever is
    /// there", and [`ReadOutcome::Events`]' first position tells it where that starts.
    Start,
    /// Events with `offset > position.offset`, provided `position.epoch` is the channel's current
    /// epoch and event `position.offset + 1` has not been removed yet. Otherwise the read is
    /// [`ReadOutcome::Unrecoverable`].
    After(Position),
    /// Events with `time_ms >= t` (milliseconds since the Unix epoch). Unrecoverable if an event
    /// with `time_ms >= t` was already removed by retention.
    TimeMs(u64),
}

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its position in the channel.
    pub position: Position,
    /// The time it was stored under (milliseconds since the Unix epoch). Clamped by the store to
    /// be non-decreasing along a channel, so age retention and [`Since::TimeMs`] can rely on order.
    pub time_ms: u64,
    /// The event exactly as appended.
    pub payload: Bytes,
}

/// Why a read cannot continue from the requested point without skipping events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnrecoverableReason {
    /// The position came from another epoch: the history it referred to is gone.
    EpochMismatch,
    /// Retention already removed events the caller has not seen.
    Expired,
    /// The position is ahead of the channel's newest offset in the same epoch. A well-behaved
    /// client cannot hold such a position; treat it like a lost history.
    AheadOfTop,
}

/// The answer to [`HistoryStore::read`](crate::HistoryStore::read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Contiguous events in offset order (possibly none), at most `limit` of them. If the last
    /// returned offset (or the requested start) is below `top.offset`, more events exist: read
    /// again after the last returned position.
    Events {
        /// The events, offsets strictly consecutive.
        events: Vec<StoredEvent>,
        /// The channel's newest position at the time of the read.
        top: Position,
    },
    /// The store cannot deliver a gapless continuation. The caller must tell its client that
    /// history was lost (and may restart from `top` or from [`Since::Start`]). A store never
    /// silently skips events instead.
    Unrecoverable {
        /// What went wrong.
        reason: UnrecoverableReason,
        /// The channel's newest position, to restart from.
        top: Position,
    },
}

/// When an acknowledged append is on stable storage. Only meaningful for durable stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// `append` returns only after its events were fsynced. Concurrent appends share one fsync
    /// (group commit). Survives power loss.
    #[default]
    Always,
    /// `append` returns once the events are written to the OS; a background thread fsyncs every
    /// that many milliseconds. A process crash loses nothing; a power loss may lose up to the
    /// interval. After an unclean shutdown the store assigns new epochs to every channel.
    IntervalMs(u64),
    /// Never fsync explicitly (the OS writes back on its own). Like `IntervalMs` on crashes.
    Never,
}

/// Errors from a [`HistoryStore`](crate::HistoryStore).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    /// The channel string is not a channel of the given namespace (`/namespace[/segment...]`).
    #[error(
        "invalid channel {channel:?} for namespace {namespace:?}: expected \"/{namespace}\" or \"/{namespace}/...\""
    )]
    InvalidChannel {
        /// The namespace the caller passed.
        namespace: String,
        /// The channel the caller passed.
        channel: String,
    },
    /// One event exceeds [`MAX_EVENT_BYTES`](crate::MAX_EVENT_BYTES).
    #[error("event of {size} bytes exceeds the history limit of {limit} bytes")]
    EventTooLarge {
        /// Size of the offending event.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The storage engine failed (I/O error, corrupt data, or a poisoned database after a failed
    /// fsync). The store may refuse all further writes: restart the process and let it recover.
    #[error("history storage failed: {0}; check disk space and permissions, then restart")]
    Storage(String),
    /// The store's backing service (NATS JetStream) did not answer or refused for now; the
    /// request may succeed when retried.
    #[error("history is unavailable: {0}; retry shortly")]
    Unavailable(String),
    /// The store cannot be set up as configured (e.g. NATS refuses a stream with more replicas
    /// than it has servers): retrying will not help until the configuration or NATS changes.
    #[error("history cannot start: {0}")]
    Setup(String),
    /// The store is shutting down or its writer thread is gone.
    #[error("history store is closed")]
    Closed,
}
