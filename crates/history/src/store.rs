//! The [`HistoryStore`] trait: the contract every history backend keeps.

use std::future::Future;

use bytes::Bytes;

use crate::types::{HistoryError, Position, ReadOutcome, Retention, Since};

/// Durable (or in-memory) per-channel event history.
///
/// # Contract
///
/// * **Ordering.** Each channel has one total order. Offsets are assigned at append time, start
///   at 1, grow by exactly 1 per event and are never reused within an epoch. Concurrent appends
///   to one channel are serialized; the order between them is the order the store received them.
/// * **Atomicity.** One `append` call stores all its events or none, and they get consecutive
///   offsets with no other append's events interleaved.
/// * **Visibility.** `read` and `top` only ever show events whose `append` has completed (or is
///   completing) under the store's [`SyncPolicy`](crate::SyncPolicy): with `SyncPolicy::Always`
///   a reader can never observe an event that a crash could still lose.
/// * **No silent gaps.** A read after a [`Position`] either returns the events directly after it,
///   contiguously, or says [`ReadOutcome::Unrecoverable`]. The epoch changes whenever the history
///   behind old positions may be gone, so a stale position is always detected.
/// * **What a resuming client may assume.** If it holds position `p` (the last event it saw, or
///   the `top` it was given when it subscribed) and `read(channel, Since::After(p), ..)` returns
///   events, it has missed exactly those events and nothing else; `Unrecoverable` means it
///   missed something it can no longer get.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends `events` to `channel` (which must belong to `namespace`) atomically and in order,
    /// all stamped `time_ms` (clamped to be non-decreasing along the channel), and returns their
    /// positions. When it returns `Ok`, the events are stored under the store's `SyncPolicy`
    /// (default: durable, i.e. fsynced). An empty `events` stores nothing and returns no positions.
    /// Count retention for the namespace is enforced by the same call.
    ///
    /// Cancellation: dropping the future after the store accepted the request does not undo it;
    /// the events may still be stored (the caller just never learns their positions).
    fn append(
        &self,
        namespace: &str,
        channel: &str,
        events: Vec<Bytes>,
        time_ms: u64,
    ) -> impl Future<Output = Result<Vec<Position>, HistoryError>> + Send;

    /// Reads at most `limit` contiguous events of `channel` starting as `since` says. Unknown
    /// channels read as empty under the store's current epoch. The whole answer is held in memory, so
    /// callers should page with a modest `limit` and [`Since::After`] the last event.
    fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> impl Future<Output = Result<ReadOutcome, HistoryError>> + Send;

    /// The channel's newest position: `{ epoch, offset: 0 }` if it never stored anything.
    fn top(&self, channel: &str) -> impl Future<Output = Result<Position, HistoryError>> + Send;

    /// Channels that currently retain at least one event and lie strictly under `prefix`
    /// (`"/ns/a"` matches `"/ns/a/b"` and deeper, not `"/ns/a"` itself), sorted. For wildcard
    /// replay.
    fn channels_under(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, HistoryError>> + Send;

    /// Sets the retention of every channel in `namespace`, replacing the store's default. Applies
    /// to the next append of each channel (count) and the next prune pass (age and count).
    fn set_retention(&self, namespace: &str, retention: Retention);
}
