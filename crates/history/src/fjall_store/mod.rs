//! [`FjallStore`]: durable history in a directory, on the fjall LSM engine.
//!
//! Threads: one writer (`writer.rs`) owns every mutation and group-commits concurrent appends;
//! one maintenance thread asks the writer to prune and, under [`SyncPolicy::IntervalMs`], fsyncs.
//! Async callers never touch the disk on a tokio worker: appends go through a bounded queue and a
//! oneshot reply, reads run in `spawn_blocking`. See `keys.rs` for the on-disk layout.

mod keys;
mod recovery;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ::fjall::{Database, Keyspace, Readable, Snapshot};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use self::keys::ChannelMeta;
use crate::common::{self, ChannelView, Maintenance, Plan, RetentionMap};
use crate::store::HistoryStore;
use crate::types::{
    HistoryError, Position, ReadOutcome, Retention, Since, StoredEvent, SyncPolicy,
};

/// Commands the writer thread accepts; bounded so publishers feel backpressure.
const QUEUE_DEPTH: usize = 4096;

/// Settings of a [`FjallStore`].
#[derive(Debug, Clone, Copy)]
pub struct FjallOptions {
    /// When appends are on stable storage. Default: [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Retention of namespaces without [`HistoryStore::set_retention`]. Default: unlimited.
    pub default_retention: Retention,
    /// How often the pruner removes events past their namespace's `max_age`. Default: 1 s.
    pub prune_interval: Duration,
    /// fjall block cache size. Default: 32 MiB.
    pub cache_bytes: u64,
}

impl Default for FjallOptions {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::Always,
            default_retention: Retention::default(),
            prune_interval: Duration::from_secs(1),
            cache_bytes: 32 << 20,
        }
    }
}

/// Durable [`HistoryStore`] in one directory.
///
/// * **Durability:** under [`SyncPolicy::Always`] an `append` returns only after its events were
///   fsynced; concurrent appends (from any number of tasks) share one batch and one fsync.
/// * **Epochs** persist across restarts. A wiped directory starts new epochs; an unclean shutdown
///   under a policy other than `Always` gives every channel a new epoch, since acknowledged
///   events may be lost.
/// * **Retention:** `max_count` is enforced inside the append batch; `max_age` by a prune pass
///   every `prune_interval`.
/// * **Shutdown:** dropping the store stops the threads and waits for them (the writer finishes
///   queued appends first), then closes the database. Drop it outside hot async paths. A read
///   still in flight keeps the database open until it finishes.
///
/// * **Channel bookkeeping** (id, epoch, removal mark: ~50 bytes on disk and ~150 in memory per
///   channel) is kept for the store's lifetime, even when retention removed every event, so
///   offsets never restart within an epoch.
///
/// Only one process may open a directory at a time (fjall holds a lock file).
pub struct FjallStore {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<writer::Cmd>>,
    maintenance: Option<Maintenance>,
    writer: Option<JoinHandle<()>>,
}

/// State shared by the async API, the writer and the maintenance thread.
pub(crate) struct Shared {
    pub(crate) db: Database,
    pub(crate) events: Keyspace,
    pub(crate) meta: Keyspace,
    /// Epoch given to channels created in this lifetime (and reported for unknown ones).
    pub(crate) new_channel_epoch: u64,
    /// Every channel with state; written only by the writer thread.
    pub(crate) channels: RwLock<BTreeMap<String, Arc<Chan>>>,
    pub(crate) retention: RetentionMap,
    pub(crate) sync: SyncPolicy,
    /// Counters behind [`FjallStore::stats`].
    pub(crate) appends: AtomicU64,
    pub(crate) batches: AtomicU64,
}

/// Counters of a [`FjallStore`] since it was opened, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FjallStats {
    /// Successful `append` calls.
    pub appends: u64,
    /// Write batches committed for them (one journal write, and under `SyncPolicy::Always` one
    /// fsync, each). `appends / batches` is the group-commit factor.
    pub batches: u64,
}

/// One known channel. `view` changes only in the writer thread, after the batch that justifies
/// the change was committed, so readers never see offsets that are not (durably) stored.
pub(crate) struct Chan {
    pub(crate) id: u64,
    pub(crate) namespace: String,
    pub(crate) view: Mutex<ChannelView>,
}

impl Chan {
    pub(crate) fn view(&self) -> ChannelView {
        *self.view.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Shared {
    fn chan(&self, channel: &str) -> Option<Arc<Chan>> {
        let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
        map.get(channel).cloned()
    }

    /// `time_ms` of one stored event, `None` if it is not (or no longer) stored.
    pub(crate) fn time_of(&self, id: u64, offset: u64) -> Result<Option<u64>, HistoryError> {
        let v = self
            .events
            .get(keys::event_key(id, offset))
            .map_err(storage)?;
        Ok(v.and_then(|v| keys::split_value(&v).map(|(t, _)| t)))
    }

    /// Lowest offset in `view` whose time is `>= t`, by binary search (times are monotonic).
    fn find_time(
        &self,
        snap: &Snapshot,
        id: u64,
        view: &ChannelView,
        t: u64,
    ) -> Result<u64, HistoryError> {
        let (mut lo, mut hi) = (view.first, view.top + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let time = snap
                .get(&self.events, keys::event_key(id, mid))
                .map_err(storage)?
                .and_then(|v| keys::split_value(&v).map(|(t, _)| t))
                .ok_or_else(|| corrupt(id))?;
            if time >= t {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// Reads from one fjall snapshot. The published view supplies the epoch and `top` (taken
    /// first, so every offset up to `top` is committed in the snapshot); the channel's meta
    /// record *in the snapshot* supplies what was removed, because removals and their meta
    /// update commit atomically. So the plan and the scan see the same history, with no retry
    /// loop and no window where a concurrent trim could open a hole.
    fn read_blocking(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, HistoryError> {
        let Some(chan) = self.chan(channel) else {
            let view = ChannelView::empty(self.new_channel_epoch);
            let top = view.top_position();
            return Ok(
                match common::plan(&view, since, limit, |_| Ok(view.first))? {
                    Plan::Unrecoverable(reason) => ReadOutcome::Unrecoverable { reason, top },
                    Plan::Range { .. } => ReadOutcome::Events {
                        events: Vec::new(),
                        top,
                    },
                },
            );
        };
        let published = chan.view();
        let snap = self.db.snapshot();
        let meta = snap
            .get(&self.meta, keys::channel_key(channel))
            .map_err(storage)?
            .and_then(|v| ChannelMeta::decode(&v))
            .ok_or_else(|| corrupt(chan.id))?;
        let view = ChannelView {
            first: meta.removed_through + 1,
            removed_time_ms: meta.removed_time_ms,
            ..published
        };
        let top = view.top_position();
        let plan = common::plan(&view, since, limit, |t| {
            self.find_time(&snap, chan.id, &view, t)
        })?;
        Ok(match plan {
            Plan::Unrecoverable(reason) => ReadOutcome::Unrecoverable { reason, top },
            Plan::Range { start, end } if start > end => ReadOutcome::Events {
                events: Vec::new(),
                top,
            },
            Plan::Range { start, end } => ReadOutcome::Events {
                events: self.scan(&snap, chan.id, view.epoch, start, end)?,
                top,
            },
        })
    }

    /// Events `start..=end`, all of which the snapshot must hold.
    fn scan(
        &self,
        snap: &Snapshot,
        id: u64,
        epoch: u64,
        start: u64,
        end: u64,
    ) -> Result<Vec<StoredEvent>, HistoryError> {
        let cap = usize::try_from(end - start + 1).unwrap_or(0).min(4096);
        let mut events = Vec::with_capacity(cap);
        let mut expected = start;
        let range = keys::event_key(id, start)..=keys::event_key(id, end);
        for guard in snap.range(&self.events, range) {
            let (key, value) = guard.into_inner().map_err(storage)?;
            let (Some(offset), Some((time_ms, payload))) =
                (keys::offset_of(&key), keys::split_value(&value))
            else {
                return Err(corrupt(id));
            };
            if offset != expected {
                return Err(corrupt(id));
            }
            expected += 1;
            events.push(StoredEvent {
                position: Position { epoch, offset },
                time_ms,
                payload: Bytes::copy_from_slice(payload),
            });
        }
        if expected != end + 1 {
            return Err(corrupt(id));
        }
        Ok(events)
    }
}

fn corrupt(id: u64) -> HistoryError {
    HistoryError::Storage(format!(
        "history of channel id {id} is missing records it should hold (corrupt store?)"
    ))
}

pub(crate) fn storage(e: ::fjall::Error) -> HistoryError {
    HistoryError::Storage(e.to_string())
}

impl FjallStore {
    /// Opens (or creates) the store in `path` with default options.
    ///
    /// # Errors
    /// [`HistoryError::Storage`] if the directory cannot be opened or recovered, or another
    /// process holds it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, HistoryError> {
        Self::open_with(path, FjallOptions::default())
    }

    /// Opens (or creates) the store in `path`: recovers every channel's offsets and epoch, then
    /// starts the writer and maintenance threads. Blocking: call it at startup or in
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// [`HistoryError::Storage`] if the directory cannot be opened or recovered, or another
    /// process holds it; also if the threads cannot be started.
    pub fn open_with(path: impl AsRef<Path>, options: FjallOptions) -> Result<Self, HistoryError> {
        let (shared, next_id) = recovery::open(path.as_ref(), &options)?;
        let shared = Arc::new(shared);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("history-writer".into())
                .spawn(move || writer::run(&shared, rx, next_id))
                .map_err(|e| HistoryError::Storage(format!("cannot start writer thread: {e}")))?
        };
        let maintenance = maintenance(&shared, &tx, &options)
            .map_err(|e| HistoryError::Storage(format!("cannot start pruner thread: {e}")))?;
        Ok(Self {
            shared,
            tx: Some(tx),
            maintenance: Some(maintenance),
            writer: Some(writer),
        })
    }

    /// The epoch channels created in this lifetime get (and unknown channels report).
    pub fn new_channel_epoch(&self) -> u64 {
        self.shared.new_channel_epoch
    }

    /// Asks the writer to run a prune pass now and waits for it. Useful in tests and before
    /// measuring disk use; the maintenance thread does the same every `prune_interval`.
    ///
    /// # Errors
    /// [`HistoryError::Closed`] if the store is shutting down.
    pub async fn prune_now(&self) -> Result<(), HistoryError> {
        let (done, wait) = oneshot::channel();
        self.sender()?
            .send(writer::Cmd::Prune {
                now_ms: common::now_ms(),
                done: Some(done),
            })
            .await
            .map_err(|_| HistoryError::Closed)?;
        wait.await.map_err(|_| HistoryError::Closed)
    }

    /// Counters since open.
    pub fn stats(&self) -> FjallStats {
        FjallStats {
            appends: self.shared.appends.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
        }
    }

    fn sender(&self) -> Result<&mpsc::Sender<writer::Cmd>, HistoryError> {
        self.tx.as_ref().ok_or(HistoryError::Closed)
    }
}

/// The maintenance thread: a prune request every `prune_interval` and, under
/// `SyncPolicy::IntervalMs`, an fsync every interval.
fn maintenance(
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<writer::Cmd>,
    options: &FjallOptions,
) -> std::io::Result<Maintenance> {
    let sync_every = match options.sync {
        SyncPolicy::IntervalMs(ms) => Some(Duration::from_millis(ms.max(1))),
        SyncPolicy::Always | SyncPolicy::Never => None,
    };
    let prune_every = options.prune_interval.max(Duration::from_millis(1));
    let tick = sync_every.map_or(prune_every, |s| s.min(prune_every));
    let (shared, tx) = (Arc::downgrade(shared), tx.clone());
    let (mut last_prune, mut last_sync) = (std::time::Instant::now(), std::time::Instant::now());
    Maintenance::spawn("history-maintenance", tick, move || {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if sync_every.is_some_and(|every| last_sync.elapsed() >= every) {
            last_sync = std::time::Instant::now();
            if let Err(e) = shared.db.persist(::fjall::PersistMode::SyncData) {
                tracing::error!(error = %e, "history fsync failed");
            }
        }
        if last_prune.elapsed() >= prune_every {
            last_prune = std::time::Instant::now();
            // Skip this pass if the writer is saturated; the next tick tries again.
            let _ = tx.try_send(writer::Cmd::Prune {
                now_ms: common::now_ms(),
                done: None,
            });
        }
    })
}

impl Drop for FjallStore {
    fn drop(&mut self) {
        // The maintenance thread holds a sender: stop it first so the writer sees the queue close.
        drop(self.maintenance.take());
        drop(self.tx.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("history writer thread panicked");
        }
    }
}

impl HistoryStore for FjallStore {
    async fn append(
        &self,
        namespace: &str,
        channel: &str,
        events: Vec<Bytes>,
        time_ms: u64,
    ) -> Result<Vec<Position>, HistoryError> {
        common::validate_append(namespace, channel, &events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, wait) = oneshot::channel();
        self.sender()?
            .send(writer::Cmd::Append(writer::AppendReq {
                namespace: namespace.to_owned(),
                channel: channel.to_owned(),
                events,
                time_ms,
                reply,
            }))
            .await
            .map_err(|_| HistoryError::Closed)?;
        wait.await.map_err(|_| HistoryError::Closed)?
    }

    async fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, HistoryError> {
        let shared = self.shared.clone();
        let channel = channel.to_owned();
        tokio::task::spawn_blocking(move || shared.read_blocking(&channel, since, limit))
            .await
            .map_err(|e| HistoryError::Storage(format!("history read task failed: {e}")))?
    }

    async fn top(&self, channel: &str) -> Result<Position, HistoryError> {
        Ok(match self.shared.chan(channel) {
            Some(c) => c.view().top_position(),
            None => ChannelView::empty(self.shared.new_channel_epoch).top_position(),
        })
    }

    async fn channels_under(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        let (lo, hi) = common::under_bounds(prefix);
        let map = self
            .shared
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        Ok(map
            .range(lo..hi)
            .filter(|(_, c)| c.view().retained() > 0)
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn set_retention(&self, namespace: &str, retention: Retention) {
        self.shared.retention.set(namespace, retention);
    }
}
