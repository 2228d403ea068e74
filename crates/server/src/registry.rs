//! Open WebSocket connections, so that keep-alives, the lifetime limit, reloads and shutdown
//! reach them all from one place instead of one timer per connection.
//!
//! Lock order: a registry shard, then an outbox (a shard is held while pushing into its
//! connections' outboxes). Nothing takes a registry shard while holding an outbox or a hub shard.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::connection::outbox::{Out, Outbox};

const REGISTRY_SHARDS: usize = 16;

struct Entry {
    outbox: Arc<Outbox>,
    opened: Instant,
}

/// The open connections, sharded by id.
pub struct Registry {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    next_id: AtomicU64,
    count: AtomicUsize,
}

/// Removes a connection from the registry when dropped.
pub struct Registration<'a> {
    registry: &'a Registry,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.lock(self.id).remove(&self.id);
        self.registry.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            shards: (0..REGISTRY_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            next_id: AtomicU64::new(1),
            count: AtomicUsize::new(0),
        }
    }

    fn lock(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // The modulo keeps the index in range.
        self.shards[(id as usize) % REGISTRY_SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; `None` when `max` connections are already open.
    pub fn register(&self, outbox: Arc<Outbox>, max: usize) -> Option<Registration<'_>> {
        if self.count.fetch_add(1, Ordering::Relaxed) >= max {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock(id).insert(
            id,
            Entry {
                outbox,
                opened: Instant::now(),
            },
        );
        Some(Registration { registry: self, id })
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Queues a keep-alive on every connection and closes those past their lifetime.
    pub fn tick(&self, ka: &bytes::Bytes, max_age: std::time::Duration) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for entry in map.values() {
                if now.duration_since(entry.opened) >= max_age {
                    entry.outbox.close(
                        crate::transport::ws::close::NORMAL,
                        "maximum connection lifetime reached",
                    );
                } else {
                    // A full queue closes the connection; nothing else to do here.
                    let _ = entry.outbox.push(Out::Text(ka.clone()));
                }
            }
        }
    }

    /// Bytes waiting in every outbound queue (for `/metrics`).
    pub fn queued_bytes(&self) -> u64 {
        let mut total = 0u64;
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            total += map
                .values()
                .map(|e| e.outbox.queued_bytes() as u64)
                .sum::<u64>();
        }
        total
    }

    /// Queues an item on every connection.
    pub fn broadcast(&self, item: Out) {
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for entry in map.values() {
                let _ = entry.outbox.push(item.clone());
            }
        }
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for entry in map.values() {
                entry.outbox.close(code, reason);
            }
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}
