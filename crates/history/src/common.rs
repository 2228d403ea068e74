//! Logic shared by the store implementations: epochs, validation, retention settings, the read
//! planner that decides between events and [`ReadOutcome::Unrecoverable`], and the maintenance
//! thread that runs periodic pruning.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::types::{HistoryError, Position, Retention, Since, UnrecoverableReason};

/// Largest single event the stores accept (16 MiB). AppSync itself caps events at 240 KB; this
/// only guards the storage format.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// A fresh epoch: random (from the OS-seeded std hasher keys) mixed with the clock, never 0.
pub(crate) fn new_epoch() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    match h.finish() {
        0 => 1,
        e => e,
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Checks what an append may store: the channel belongs to the namespace, events fit.
pub(crate) fn validate_append(
    namespace: &str,
    channel: &str,
    events: &[Bytes],
) -> Result<(), HistoryError> {
    let ok = !namespace.is_empty()
        && channel
            .strip_prefix('/')
            .and_then(|rest| rest.strip_prefix(namespace))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !ok {
        return Err(HistoryError::InvalidChannel {
            namespace: namespace.to_owned(),
            channel: channel.to_owned(),
        });
    }
    if let Some(big) = events.iter().find(|e| e.len() > MAX_EVENT_BYTES) {
        return Err(HistoryError::EventTooLarge {
            size: big.len(),
            limit: MAX_EVENT_BYTES,
        });
    }
    Ok(())
}

/// The bounds of `channels_under(prefix)`: every key starting with `prefix/`.
pub(crate) fn under_bounds(prefix: &str) -> (String, String) {
    let prefix = prefix.trim_end_matches('/');
    // '0' is the byte after '/', so [p/, p0) is exactly "starts with p/".
    (format!("{prefix}/"), format!("{prefix}0"))
}

/// Per-namespace retention with a store-wide default.
#[derive(Debug, Default)]
pub(crate) struct RetentionMap {
    default: Retention,
    by_namespace: RwLock<HashMap<String, Retention>>,
}

impl RetentionMap {
    pub(crate) fn new(default: Retention) -> Self {
        Self {
            default,
            by_namespace: RwLock::default(),
        }
    }

    pub(crate) fn get(&self, namespace: &str) -> Retention {
        match self.by_namespace.read() {
            Ok(map) => map.get(namespace).copied().unwrap_or(self.default),
            Err(poisoned) => poisoned
                .get_ref()
                .get(namespace)
                .copied()
                .unwrap_or(self.default),
        }
    }

    /// Whether any namespace (or the default) limits anything: prune passes are skipped if not.
    pub(crate) fn any_limit(&self) -> bool {
        let limits = |r: &Retention| r.max_age.is_some() || r.max_count.is_some();
        limits(&self.default)
            || match self.by_namespace.read() {
                Ok(map) => map.values().any(limits),
                Err(_) => true,
            }
    }

    pub(crate) fn set(&self, namespace: &str, retention: Retention) {
        let mut map = self
            .by_namespace
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert(namespace.to_owned(), retention);
    }
}

/// The read-relevant state of one channel at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelView {
    pub(crate) epoch: u64,
    /// Lowest retained offset; `top + 1` when nothing is retained.
    pub(crate) first: u64,
    /// Newest offset ever stored in this epoch (0 if none).
    pub(crate) top: u64,
    /// `time_ms` of the newest removed event, if any was removed.
    pub(crate) removed_time_ms: Option<u64>,
    /// `time_ms` of the newest stored event (or removed, if none retained); appends clamp to it.
    pub(crate) last_time_ms: u64,
}

impl ChannelView {
    /// The view of a channel that has never stored anything, under the store's current epoch.
    pub(crate) fn empty(epoch: u64) -> Self {
        Self {
            epoch,
            first: 1,
            top: 0,
            removed_time_ms: None,
            last_time_ms: 0,
        }
    }

    pub(crate) fn top_position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.top,
        }
    }

    pub(crate) fn retained(&self) -> u64 {
        (self.top + 1).saturating_sub(self.first)
    }
}

/// What a read must do after looking at the channel's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Return offsets `start..=end` (empty when `start > end`).
    Range { start: u64, end: u64 },
    /// Nothing can be returned without a gap.
    Unrecoverable(UnrecoverableReason),
}

/// Decides where a read starts. `limit` caps the range length. `find_time(t)` must return the
/// lowest retained offset whose `time_ms >= t` (or `top + 1` if none).
pub(crate) fn plan<E>(
    view: &ChannelView,
    since: Since,
    limit: usize,
    find_time: impl FnOnce(u64) -> Result<u64, E>,
) -> Result<Plan, E> {
    let start = match since {
        Since::Start => view.first,
        Since::After(pos) => {
            if pos.epoch != view.epoch {
                return Ok(Plan::Unrecoverable(UnrecoverableReason::EpochMismatch));
            }
            if pos.offset > view.top {
                return Ok(Plan::Unrecoverable(UnrecoverableReason::AheadOfTop));
            }
            let start = pos.offset + 1;
            if start < view.first {
                return Ok(Plan::Unrecoverable(UnrecoverableReason::Expired));
            }
            start
        }
        Since::TimeMs(t) => {
            if view.removed_time_ms.is_some_and(|removed| removed >= t) {
                return Ok(Plan::Unrecoverable(UnrecoverableReason::Expired));
            }
            find_time(t)?.max(view.first)
        }
    };
    Ok(range_from(view, start, limit))
}

/// The range of at most `limit` offsets from `start` up to the top.
pub(crate) fn range_from(view: &ChannelView, start: u64, limit: usize) -> Plan {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let end = if limit == 0 {
        start.saturating_sub(1)
    } else {
        view.top.min(start.saturating_add(limit - 1))
    };
    Plan::Range { start, end }
}

/// A background thread that calls `tick` every `interval` until dropped; dropping stops and joins
/// it, so nothing the closure owns outlives the store.
pub(crate) struct Maintenance {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Maintenance {
    pub(crate) fn spawn(
        name: &str,
        interval: Duration,
        mut tick: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Only a timeout runs a tick; a message or a dropped sender means "stop".
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    tick();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("history maintenance thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(first: u64, top: u64) -> ChannelView {
        ChannelView {
            epoch: 7,
            first,
            top,
            removed_time_ms: None,
            last_time_ms: 0,
        }
    }

    #[test]
    fn plan_after_checks_epoch_expiry_and_top() {
        let v = view(5, 10);
        let after = |epoch, offset| Since::After(Position { epoch, offset });
        let plan = |v: &ChannelView, since, limit| {
            plan(v, since, limit, |_| Ok::<u64, ()>(v.first))
                .unwrap_or(Plan::Range { start: 0, end: 0 })
        };
        assert_eq!(
            plan(&v, after(8, 6), 100),
            Plan::Unrecoverable(UnrecoverableReason::EpochMismatch)
        );
        assert_eq!(
            plan(&v, after(7, 3), 100),
            Plan::Unrecoverable(UnrecoverableReason::Expired)
        );
        assert_eq!(
            plan(&v, after(7, 4), 100),
            Plan::Range { start: 5, end: 10 }
        );
        assert_eq!(
            plan(&v, after(7, 10), 100),
            Plan::Range { start: 11, end: 10 }
        );
        assert_eq!(
            plan(&v, after(7, 11), 100),
            Plan::Unrecoverable(UnrecoverableReason::AheadOfTop)
        );
        assert_eq!(plan(&v, after(7, 4), 2), Plan::Range { start: 5, end: 6 });
        assert_eq!(plan(&v, after(7, 4), 0), Plan::Range { start: 5, end: 4 });
    }

    #[test]
    fn channel_validation() {
        assert!(validate_append("ns", "/ns", &[]).is_ok());
        assert!(validate_append("ns", "/ns/a/b", &[]).is_ok());
        assert!(validate_append("ns", "/nsx/a", &[]).is_err());
        assert!(validate_append("ns", "ns/a", &[]).is_err());
        assert!(validate_append("", "/", &[]).is_err());
    }

    #[test]
    fn under_bounds_cover_exactly_descendants() {
        let (lo, hi) = under_bounds("/ns/a");
        for (c, inside) in [
            ("/ns/a", false),
            ("/ns/a/b", true),
            ("/ns/a/b/c", true),
            ("/ns/ab", false),
            ("/ns/a-", false),
            ("/ns/a0", false),
        ] {
            let s = c.to_owned();
            assert_eq!(s >= lo && s < hi, inside, "{c}");
        }
    }

    #[test]
    fn epochs_differ() {
        assert_ne!(new_epoch(), new_epoch());
    }
}
