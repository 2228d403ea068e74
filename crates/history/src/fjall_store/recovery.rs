//! Opening a [`FjallStore`](super::FjallStore) directory: rebuild every channel's view from the
//! meta and events keyspaces, decide whether epochs survive, and mark the lifetime as open.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use ::fjall::{Database, KeyspaceCreateOptions, PersistMode};

use super::keys::{self, ChannelMeta};
use super::{Chan, FjallOptions, Shared, storage};
use crate::common::{self, ChannelView, RetentionMap};
use crate::types::{HistoryError, SyncPolicy};

fn policy_tag(p: SyncPolicy) -> u8 {
    match p {
        SyncPolicy::Always => 0,
        SyncPolicy::IntervalMs(_) => 1,
        SyncPolicy::Never => 2,
    }
}

/// Opens the database and returns the shared state plus the next free channel id.
pub(crate) fn open(path: &Path, options: &FjallOptions) -> Result<(Shared, u64), HistoryError> {
    let db = Database::builder(path)
        .cache_size(options.cache_bytes)
        .open()
        .map_err(storage)?;
    let events = db
        .keyspace("events", KeyspaceCreateOptions::default)
        .map_err(storage)?;
    let meta = db
        .keyspace("meta", KeyspaceCreateOptions::default)
        .map_err(storage)?;

    // If the last lifetime did not close cleanly and did not fsync every append, acknowledged
    // events may be lost and their offsets reused: old positions must stop matching.
    let lost_tail = match meta.get(keys::LIFETIME_KEY).map_err(storage)? {
        Some(v) => matches!(&*v, [0, tag] if *tag != policy_tag(SyncPolicy::Always)),
        None => false,
    };
    let mut new_channel_epoch = match meta.get(keys::UNKNOWN_EPOCH_KEY).map_err(storage)? {
        Some(v) if !lost_tail => keys::u64_value(&v).unwrap_or_else(common::new_epoch),
        _ => common::new_epoch(),
    };
    if new_channel_epoch == 0 {
        new_channel_epoch = common::new_epoch();
    }

    let mut batch = db.batch();
    let mut channels = BTreeMap::new();
    let mut next_id = 1;
    for guard in meta.prefix(keys::CHANNEL_PREFIX) {
        let (key, value) = guard.into_inner().map_err(storage)?;
        let name = key
            .get(keys::CHANNEL_PREFIX.len()..)
            .and_then(|n| std::str::from_utf8(n).ok());
        let (Some(name), Some(mut cm)) = (name, ChannelMeta::decode(&value)) else {
            return Err(HistoryError::Storage(format!(
                "corrupt channel record {key:?} in {}",
                path.display()
            )));
        };
        next_id = next_id.max(cm.id + 1);
        if lost_tail {
            cm.epoch = common::new_epoch();
            batch.insert(&meta, &*key, cm.encode());
        }
        let view = recover_view(&events, &cm)?;
        channels.insert(
            name.to_owned(),
            Arc::new(Chan {
                id: cm.id,
                namespace: cm.namespace,
                view: Mutex::new(view),
            }),
        );
    }
    if lost_tail {
        tracing::warn!(
            path = %path.display(),
            channels = channels.len(),
            "history store was not closed cleanly and did not fsync every append; all channels get new epochs"
        );
    }
    batch.insert(
        &meta,
        keys::UNKNOWN_EPOCH_KEY,
        new_channel_epoch.to_be_bytes().to_vec(),
    );
    batch.insert(&meta, keys::LIFETIME_KEY, vec![0, policy_tag(options.sync)]);
    batch
        .durability(Some(PersistMode::SyncAll))
        .commit()
        .map_err(storage)?;

    tracing::info!(path = %path.display(), channels = channels.len(), "history store opened");
    Ok((
        Shared {
            db,
            events,
            meta,
            new_channel_epoch,
            channels: RwLock::new(channels),
            retention: RetentionMap::new(options.default_retention),
            sync: options.sync,
            appends: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        },
        next_id,
    ))
}

/// A channel's offsets and times from its meta record plus its newest stored event.
fn recover_view(events: &::fjall::Keyspace, cm: &ChannelMeta) -> Result<ChannelView, HistoryError> {
    let first = cm.removed_through + 1;
    let last = events
        .range(keys::event_key(cm.id, first)..=keys::event_key(cm.id, u64::MAX))
        .next_back();
    let (top, last_time_ms) = match last {
        Some(guard) => {
            let (key, value) = guard.into_inner().map_err(storage)?;
            let offset = keys::offset_of(&key);
            let time = keys::split_value(&value).map(|(t, _)| t);
            match (offset, time) {
                (Some(o), Some(t)) => (o, t),
                _ => {
                    return Err(HistoryError::Storage(format!(
                        "corrupt history record for channel id {}",
                        cm.id
                    )));
                }
            }
        }
        None => (cm.removed_through, cm.removed_time_ms.unwrap_or(0)),
    };
    Ok(ChannelView {
        epoch: cm.epoch,
        first,
        top,
        removed_time_ms: cm.removed_time_ms,
        last_time_ms,
    })
}

/// Marks the lifetime as cleanly closed (called by the writer as it exits).
pub(crate) fn mark_clean(shared: &Shared) -> Result<(), HistoryError> {
    shared
        .meta
        .insert(keys::LIFETIME_KEY, vec![1, policy_tag(shared.sync)])
        .map_err(storage)?;
    shared.db.persist(PersistMode::SyncAll).map_err(storage)
}
