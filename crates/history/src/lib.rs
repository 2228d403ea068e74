//! Per-channel event history for Herald: the storage behind "resume after reconnect" and the
//! HTTP history endpoint.
//!
//! # Tour
//!
//! * [`HistoryStore`] (`store.rs`) is the contract every backend keeps: per-channel total order,
//!   atomic multi-event appends, gapless offsets, and epochs that make lost history detectable.
//!   Read its docs first.
//! * `types.rs` holds the values crossing the trait: [`Position`] (`epoch` + `offset`),
//!   [`Since`], [`ReadOutcome`], [`Retention`], [`SyncPolicy`], [`HistoryError`].
//! * [`MemoryStore`] (`memory.rs`) keeps history in process memory, bounded by retention.
//! * [`FjallStore`] (`fjall_store/`) keeps history durably in a directory using the fjall LSM engine:
//!   one writer thread group-commits concurrent appends into one batch and one fsync
//!   (`fjall_store/writer.rs`), a maintenance thread prunes by age and fsyncs on an interval, and
//!   `fjall_store/recovery.rs` rebuilds channel state and epochs on open.
//! * [`JetStreamStore`] (`jetstream.rs`) keeps history in NATS JetStream for cluster mode: one
//!   stream per namespace, gapless offsets across nodes by compare-and-set on each channel's
//!   newest batch, and a [`Follower`] that hands every node the stored batches in order.
//! * [`AnyStore`] (`any.rs`) holds whichever of the three the config chose (the trait returns
//!   `impl Future`, so it is not object-safe).
//! * `common.rs` is shared logic: the read planner that decides between events and
//!   [`ReadOutcome::Unrecoverable`], epochs, validation, the maintenance thread.
//!
//! # How a server uses it
//!
//! 1. On publish, `append(namespace, channel, events, now_ms)`; send each event to subscribers
//!    with its returned [`Position`] *after* `append` returned, so a client never holds a
//!    position the store could lose.
//! 2. On subscribe, give the client `top(channel)` as its starting position.
//! 3. On resume, `read(channel, Since::After(last_position), limit)` until the last event
//!    reaches `top`; on [`ReadOutcome::Unrecoverable`] tell the client it lost history.
//! 4. For wildcard subscriptions (`/ns/a/*`), replay each channel of `channels_under("/ns/a")`.
//!
//! # Choosing a sync policy
//!
//! `SyncPolicy::Always` costs one fsync per write batch, shared by every append queued at that
//! moment: throughput grows with the number of concurrent publishers (see
//! [`FjallStore::stats`] for appends per fsync, and `examples/append_bench.rs`). On the 2-core
//! development VM, with 100-byte events, one event per append, the machine otherwise busy:
//! `Always` ≈ 0.5–1.6 k events/s with 1 appender and ≈ 9–29 k/s with 64 (≈ 35 appends per
//! fsync); `Never` ≈ 50 k/s and 150–230 k/s; `MemoryStore` several million/s.
//!
//! # What a resuming client may assume
//!
//! Within one epoch, offsets of a channel are dense and never reused: events `p.offset + 1 ..=
//! top.offset` are exactly what was published after `p`. If the store cannot return them all
//! (retention removed some, or the epoch changed because history was lost), the read says so
//! with [`ReadOutcome::Unrecoverable`]; it never skips events silently.

mod any;
mod common;
mod fjall_store;
mod jetstream;
mod memory;
mod store;
mod types;

pub use any::AnyStore;
pub use common::MAX_EVENT_BYTES;
pub use fjall_store::{FjallOptions, FjallStats, FjallStore};
pub use jetstream::{Followed, Follower, JetStreamOptions, JetStreamStore};
pub use memory::{MemoryOptions, MemoryStore};
pub use store::HistoryStore;
pub use types::{
    HistoryError, Position, ReadOutcome, Retention, Since, StoredEvent, SyncPolicy,
    UnrecoverableReason,
};
