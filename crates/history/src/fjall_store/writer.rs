//! The writer thread: the only code that mutates a [`FjallStore`](super::FjallStore).
//!
//! It blocks on the command queue, then drains whatever else is queued (up to a cap) into one
//! fjall write batch, so N concurrent appends cost one journal write and, under
//! `SyncPolicy::Always`, one fsync (group commit). Only after the batch is committed does it
//! publish the new channel views and answer the callers.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use ::fjall::{OwnedWriteBatch, PersistMode};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::keys::{self, ChannelMeta};
use super::{Chan, Shared, recovery, storage};
use crate::common::ChannelView;
use crate::types::{HistoryError, Position, Retention, SyncPolicy};

/// Most appends folded into one batch.
const MAX_BATCH_APPENDS: usize = 1024;
/// Payload bytes after which a batch stops taking more appends.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Most events one prune pass removes from one channel; the rest waits for the next pass.
const MAX_PRUNE_PER_CHANNEL: u64 = 100_000;

pub(crate) enum Cmd {
    Append(AppendReq),
    /// Remove what retention no longer allows, judging age against `now_ms`.
    Prune {
        now_ms: u64,
        done: Option<oneshot::Sender<()>>,
    },
}

pub(crate) struct AppendReq {
    pub(crate) namespace: String,
    pub(crate) channel: String,
    pub(crate) events: Vec<Bytes>,
    pub(crate) time_ms: u64,
    pub(crate) reply: oneshot::Sender<Result<Vec<Position>, HistoryError>>,
}

/// A channel as this batch will leave it.
struct Pending {
    chan: Option<Arc<Chan>>,
    id: u64,
    namespace: String,
    view: ChannelView,
    /// Offset of the first event this batch adds to the channel and the times of those events,
    /// so evicting one of them needs no read.
    batch_first: u64,
    batch_times: Vec<u64>,
    meta_dirty: bool,
}

impl Pending {
    fn meta(&self) -> ChannelMeta {
        ChannelMeta {
            id: self.id,
            epoch: self.view.epoch,
            removed_through: self.view.first - 1,
            removed_time_ms: self.view.removed_time_ms,
            namespace: self.namespace.clone(),
        }
    }
}

pub(crate) fn run(shared: &Shared, mut rx: mpsc::Receiver<Cmd>, mut next_id: u64) {
    while let Some(cmd) = rx.blocking_recv() {
        let mut appends = Vec::new();
        let mut prunes = Vec::new();
        let mut bytes = 0;
        let mut next = Some(cmd);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Append(req) => {
                    bytes += req.events.iter().map(Bytes::len).sum::<usize>();
                    appends.push(req);
                }
                Cmd::Prune { now_ms, done } => prunes.push((now_ms, done)),
            }
            if appends.len() < MAX_BATCH_APPENDS && bytes < MAX_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !appends.is_empty() {
            commit_appends(shared, appends, &mut next_id);
        }
        if let Some(now_ms) = prunes.iter().map(|(now, _)| *now).max() {
            if let Err(e) = prune(shared, now_ms) {
                tracing::error!(error = %e, "history prune failed");
            }
            for (_, done) in prunes {
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
    if let Err(e) = recovery::mark_clean(shared) {
        tracing::error!(error = %e, "history store could not record a clean shutdown");
    }
}

fn retention_of(shared: &Shared, cache: &mut HashMap<String, Retention>, ns: &str) -> Retention {
    if let Some(r) = cache.get(ns) {
        return *r;
    }
    let r = shared.retention.get(ns);
    cache.insert(ns.to_owned(), r);
    r
}

fn commit_appends(shared: &Shared, appends: Vec<AppendReq>, next_id: &mut u64) {
    let mut batch = shared.db.batch();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut retention = HashMap::new();
    let mut replies = Vec::with_capacity(appends.len());
    let mut failure = None;

    for req in appends {
        let p = match pending.entry(req.channel) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let chan = shared
                    .channels
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(e.key())
                    .cloned();
                let fresh = chan.is_none();
                let (id, view) = match &chan {
                    Some(c) => (c.id, c.view()),
                    None => {
                        let id = *next_id;
                        *next_id += 1;
                        (id, ChannelView::empty(shared.new_channel_epoch))
                    }
                };
                e.insert(Pending {
                    chan,
                    id,
                    namespace: req.namespace.clone(),
                    view,
                    batch_first: view.top + 1,
                    batch_times: Vec::new(),
                    meta_dirty: fresh,
                })
            }
        };
        let time = req.time_ms.max(p.view.last_time_ms);
        p.view.last_time_ms = time;
        let mut positions = Vec::with_capacity(req.events.len());
        for payload in &req.events {
            p.view.top += 1;
            p.batch_times.push(time);
            batch.insert(
                &shared.events,
                keys::event_key(p.id, p.view.top),
                keys::event_value(time, payload),
            );
            positions.push(p.view.top_position());
        }
        if let Some(max) = retention_of(shared, &mut retention, &p.namespace).max_count {
            let new_first = (p.view.top + 1).saturating_sub(max).max(p.view.first);
            if let Err(e) = remove_until(shared, &mut batch, p, new_first) {
                failure = Some(e);
            }
        }
        replies.push((req.reply, positions));
    }

    let result = match failure {
        Some(e) => Err(e),
        None => {
            for (name, p) in pending.iter().filter(|(_, p)| p.meta_dirty) {
                batch.insert(&shared.meta, keys::channel_key(name), p.meta().encode());
            }
            batch
                .durability(Some(persist_mode(shared.sync)))
                .commit()
                .map_err(storage)
        }
    };
    match result {
        Ok(()) => {
            publish(shared, pending);
            shared.batches.fetch_add(1, Ordering::Relaxed);
            shared
                .appends
                .fetch_add(replies.len() as u64, Ordering::Relaxed);
            for (reply, positions) in replies {
                let _ = reply.send(Ok(positions));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "history append batch failed");
            for (reply, _) in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn persist_mode(sync: SyncPolicy) -> PersistMode {
    match sync {
        // fdatasync covers the journal's data and size; the journal is the only file written.
        SyncPolicy::Always => PersistMode::SyncData,
        // Hand the bytes to the OS so a process crash loses nothing.
        SyncPolicy::IntervalMs(_) | SyncPolicy::Never => PersistMode::Buffer,
    }
}

/// Adds tombstones for offsets `p.view.first..new_first` and advances the view.
fn remove_until(
    shared: &Shared,
    batch: &mut OwnedWriteBatch,
    p: &mut Pending,
    new_first: u64,
) -> Result<(), HistoryError> {
    if new_first <= p.view.first {
        return Ok(());
    }
    let last_removed = new_first - 1;
    // Times are monotonic, so the newest removed event's time is all TimeMs reads need.
    let time = if last_removed >= p.batch_first {
        usize::try_from(last_removed - p.batch_first)
            .ok()
            .and_then(|i| p.batch_times.get(i).copied())
    } else {
        shared.time_of(p.id, last_removed)?
    };
    for offset in p.view.first..new_first {
        batch.remove(&shared.events, keys::event_key(p.id, offset));
    }
    p.view.first = new_first;
    p.view.removed_time_ms = time.or(p.view.removed_time_ms);
    p.meta_dirty = true;
    Ok(())
}

/// Makes a committed batch visible: new views, new channels.
fn publish(shared: &Shared, pending: HashMap<String, Pending>) {
    let mut created = Vec::new();
    for (name, p) in pending {
        match p.chan {
            Some(chan) => *chan.view.lock().unwrap_or_else(|e| e.into_inner()) = p.view,
            None => created.push((
                name,
                Arc::new(Chan {
                    id: p.id,
                    namespace: p.namespace,
                    view: Mutex::new(p.view),
                }),
            )),
        }
    }
    if !created.is_empty() {
        let mut map = shared.channels.write().unwrap_or_else(|e| e.into_inner());
        map.extend(created);
    }
}

/// One retention pass over every channel whose namespace limits count or age.
fn prune(shared: &Shared, now_ms: u64) -> Result<(), HistoryError> {
    if !shared.retention.any_limit() {
        return Ok(());
    }
    let mut retention = HashMap::new();
    // Only channels whose namespace limits anything; the lock is held just for the copy.
    let channels: Vec<(String, Arc<Chan>, Retention)> = {
        let map = shared.channels.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter_map(|(name, chan)| {
                let r = retention_of(shared, &mut retention, &chan.namespace);
                let limited = r.max_age.is_some() || r.max_count.is_some();
                limited.then(|| (name.clone(), chan.clone(), r))
            })
            .collect()
    };
    let mut batch = shared.db.batch();
    let mut pending = HashMap::new();
    for (name, chan, r) in channels {
        let view = chan.view();
        let mut new_first = view.first;
        if let Some(max) = r.max_count {
            new_first = new_first.max((view.top + 1).saturating_sub(max));
        }
        if let Some(age) = r.max_age {
            let cutoff = now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            let scan_to = view
                .top
                .min(new_first.saturating_add(MAX_PRUNE_PER_CHANNEL));
            new_first = first_not_older(shared, chan.id, new_first, scan_to, cutoff)?;
        }
        new_first = new_first.min(view.first + MAX_PRUNE_PER_CHANNEL);
        if new_first <= view.first {
            continue;
        }
        let mut p = Pending {
            id: chan.id,
            namespace: chan.namespace.clone(),
            chan: Some(chan),
            view,
            batch_first: view.top + 1,
            batch_times: Vec::new(),
            meta_dirty: false,
        };
        remove_until(shared, &mut batch, &mut p, new_first)?;
        batch.insert(&shared.meta, keys::channel_key(&name), p.meta().encode());
        pending.insert(name, p);
    }
    if pending.is_empty() {
        return Ok(());
    }
    // Removals need no fsync of their own: losing them only brings back events that a later
    // pass removes again, and the meta record travels in the same atomic batch.
    batch
        .durability(Some(PersistMode::Buffer))
        .commit()
        .map_err(storage)?;
    publish(shared, pending);
    Ok(())
}

/// The first offset in `from..=top` whose time is `>= cutoff` (or `top + 1`).
fn first_not_older(
    shared: &Shared,
    id: u64,
    from: u64,
    top: u64,
    cutoff: u64,
) -> Result<u64, HistoryError> {
    if from > top {
        return Ok(from);
    }
    for guard in shared
        .events
        .range(keys::event_key(id, from)..=keys::event_key(id, top))
    {
        let (key, value) = guard.into_inner().map_err(storage)?;
        match (keys::offset_of(&key), keys::split_value(&value)) {
            (Some(offset), Some((time, _))) if time >= cutoff => return Ok(offset),
            (Some(_), Some(_)) => {}
            _ => {
                return Err(HistoryError::Storage(format!(
                    "corrupt history record for channel id {id}"
                )));
            }
        }
    }
    Ok(top + 1)
}
