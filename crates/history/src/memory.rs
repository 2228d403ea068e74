//! [`MemoryStore`]: history in process memory, bounded by retention. Lost on restart (a new store
//! picks a new epoch, so resuming clients are told).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::common::{self, ChannelView, Maintenance, Plan, RetentionMap};
use crate::store::HistoryStore;
use crate::types::{HistoryError, Position, ReadOutcome, Retention, Since, StoredEvent};

/// Settings of a [`MemoryStore`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryOptions {
    /// Retention of namespaces without [`HistoryStore::set_retention`]. Default: unlimited.
    pub default_retention: Retention,
    /// How often the pruner removes events past their namespace's `max_age`. Default: 1 s.
    pub prune_interval: Duration,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        Self {
            default_retention: Retention::default(),
            prune_interval: Duration::from_secs(1),
        }
    }
}

/// In-memory [`HistoryStore`]. Appends never block on I/O; each channel has its own lock, so
/// appends to different channels do not contend beyond a short map lookup.
///
/// Memory is bounded by retention: set a `max_count` (or `max_age`) for every namespace that
/// stores history, or a default one. Channel bookkeeping (name, epoch, offsets: ~100 bytes) is
/// kept for the store's lifetime so offsets never restart within an epoch.
pub struct MemoryStore {
    inner: Arc<MemInner>,
    // Declared after `inner` only for readability; it holds a Weak, so drop order is irrelevant.
    _pruner: Maintenance,
}

struct MemInner {
    epoch: u64,
    retention: RetentionMap,
    channels: RwLock<BTreeMap<String, Arc<Mutex<MemChannel>>>>,
}

struct MemChannel {
    namespace: String,
    view: ChannelView,
    /// Retained events: index `i` holds offset `view.first + i`, as `(time_ms, payload)`.
    events: VecDeque<(u64, Bytes)>,
}

impl MemChannel {
    fn pop_front(&mut self) {
        if let Some((time, _)) = self.events.pop_front() {
            self.view.first += 1;
            self.view.removed_time_ms = Some(time);
        }
    }

    fn trim(&mut self, retention: Retention, now_ms: Option<u64>) {
        if let Some(max) = retention.max_count {
            while self.view.retained() > max {
                self.pop_front();
            }
        }
        if let (Some(age), Some(now)) = (retention.max_age, now_ms) {
            let cutoff = now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            while self.events.front().is_some_and(|(t, _)| *t < cutoff) {
                self.pop_front();
            }
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with [`MemoryOptions::default`].
    ///
    /// # Panics
    /// If the OS refuses to start the pruner thread (out of threads at startup).
    pub fn new() -> Self {
        Self::with_options(MemoryOptions::default())
    }

    /// A store with the given options and a fresh random epoch.
    ///
    /// # Panics
    /// If the OS refuses to start the pruner thread (out of threads at startup).
    pub fn with_options(options: MemoryOptions) -> Self {
        let inner = Arc::new(MemInner {
            epoch: common::new_epoch(),
            retention: RetentionMap::new(options.default_retention),
            channels: RwLock::default(),
        });
        let weak: Weak<MemInner> = Arc::downgrade(&inner);
        #[expect(
            clippy::expect_used,
            reason = "startup only, documented under # Panics"
        )]
        let pruner = Maintenance::spawn("history-mem-prune", options.prune_interval, move || {
            if let Some(inner) = weak.upgrade() {
                inner.prune(common::now_ms());
            }
        })
        .expect("spawn history pruner thread");
        Self {
            inner,
            _pruner: pruner,
        }
    }

    /// The epoch channels of this store live in.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }
}

impl MemInner {
    fn channel(&self, channel: &str) -> Option<Arc<Mutex<MemChannel>>> {
        let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
        map.get(channel).cloned()
    }

    fn channel_or_create(&self, namespace: &str, channel: &str) -> Arc<Mutex<MemChannel>> {
        if let Some(c) = self.channel(channel) {
            return c;
        }
        let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
        map.entry(channel.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(MemChannel {
                    namespace: namespace.to_owned(),
                    view: ChannelView::empty(self.epoch),
                    events: VecDeque::new(),
                }))
            })
            .clone()
    }

    fn prune(&self, now_ms: u64) {
        if !self.retention.any_limit() {
            return;
        }
        let channels: Vec<_> = {
            let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
            map.values().cloned().collect()
        };
        for c in channels {
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            let retention = self.retention.get(&c.namespace);
            c.trim(retention, Some(now_ms));
        }
    }
}

impl HistoryStore for MemoryStore {
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
        let retention = self.inner.retention.get(namespace);
        let c = self.inner.channel_or_create(namespace, channel);
        let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
        let time = time_ms.max(c.view.last_time_ms);
        c.view.last_time_ms = time;
        let mut positions = Vec::with_capacity(events.len());
        for payload in events {
            c.view.top += 1;
            c.events.push_back((time, payload));
            positions.push(c.view.top_position());
        }
        c.trim(retention, None);
        Ok(positions)
    }

    async fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, HistoryError> {
        let Some(c) = self.inner.channel(channel) else {
            let view = ChannelView::empty(self.inner.epoch);
            let plan = common::plan(&view, since, limit, |_| Ok(view.first))?;
            return Ok(match plan {
                Plan::Unrecoverable(reason) => ReadOutcome::Unrecoverable {
                    reason,
                    top: view.top_position(),
                },
                Plan::Range { .. } => ReadOutcome::Events {
                    events: Vec::new(),
                    top: view.top_position(),
                },
            });
        };
        let c = c.lock().unwrap_or_else(|p| p.into_inner());
        let view = c.view;
        let top = view.top_position();
        let plan = common::plan(&view, since, limit, |t| {
            let idx = c.events.partition_point(|(time, _)| *time < t);
            Ok::<_, HistoryError>(view.first + idx as u64)
        })?;
        match plan {
            Plan::Unrecoverable(reason) => Ok(ReadOutcome::Unrecoverable { reason, top }),
            Plan::Range { start, end } => {
                let from = usize::try_from(start - view.first).unwrap_or(usize::MAX);
                let count = usize::try_from((end + 1).saturating_sub(start)).unwrap_or(0);
                let events = c
                    .events
                    .iter()
                    .skip(from)
                    .take(count)
                    .zip(start..)
                    .map(|((time_ms, payload), offset)| StoredEvent {
                        position: Position {
                            epoch: view.epoch,
                            offset,
                        },
                        time_ms: *time_ms,
                        payload: payload.clone(),
                    })
                    .collect();
                Ok(ReadOutcome::Events { events, top })
            }
        }
    }

    async fn top(&self, channel: &str) -> Result<Position, HistoryError> {
        Ok(match self.inner.channel(channel) {
            Some(c) => c
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .view
                .top_position(),
            None => ChannelView::empty(self.inner.epoch).top_position(),
        })
    }

    async fn channels_under(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        let (lo, hi) = common::under_bounds(prefix);
        let map = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        Ok(map
            .range(lo..hi)
            .filter(|(_, c)| {
                !c.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .events
                    .is_empty()
            })
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn set_retention(&self, namespace: &str, retention: Retention) {
        self.inner.retention.set(namespace, retention);
    }
}
