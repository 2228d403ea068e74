//! The index of this node's subscriptions, and fan-out to them: the [`Broker`] of a single node.
//!
//! Subscriptions are indexed by key in two maps: exact channels (`/ns/a/b`) and wildcard prefixes
//! (`/ns/a` for `/ns/a/*`). An event on `/ns/a/b` is delivered by looking up the exact key and
//! each proper prefix (`/ns`, `/ns/a`): at most five lookups, whatever the number of
//! subscriptions. Each map is split into shards by key hash, each behind its own read-write lock,
//! so publishes on different channels never contend and publishes on one channel share a read lock.
//!
//! Delivery pushes `(subscription prefix, event body)` into each subscriber's outbox: two
//! reference-count increments, no copy of the event, no JSON work per subscriber.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use herald_protocol::{Channel, Pattern};

use super::{Broker, PublishFuture, Subscriber};
use crate::connection::outbox::Out;

const SHARDS: usize = 64;

/// FxHash: a fast, non-cryptographic hash; keys are channel names, and a client that crafts
/// colliding names only slows its own shard.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<Box<str>, Vec<Arc<Subscriber>>, BuildHasherDefault<FxHasher>>;

struct Index {
    shards: Box<[RwLock<Map>]>,
}

impl Index {
    fn new() -> Index {
        Index {
            shards: (0..SHARDS).map(|_| RwLock::new(Map::default())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &RwLock<Map> {
        let mut h = FxHasher::default();
        h.write(key.as_bytes());
        // The modulo keeps the index in range, so this cannot panic.
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    fn insert(&self, key: &str, sub: Arc<Subscriber>) {
        let mut map = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        map.entry(key.into()).or_default().push(sub);
    }

    fn remove(&self, key: &str, sub: &Arc<Subscriber>) {
        let mut map = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(key) {
            if let Some(i) = list.iter().position(|s| Arc::ptr_eq(s, sub)) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Pushes every body to every subscriber under `key`; returns how many subscribers.
    fn deliver(&self, key: &str, bodies: &[Bytes]) -> usize {
        let map = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get(key) else { return 0 };
        for sub in list {
            for body in bodies {
                // A full queue closes that subscriber (see Outbox); the rest carry on.
                let out = Out::Data {
                    prefix: sub.prefix.clone(),
                    body: body.clone(),
                };
                if sub.outbox.push(out).is_err() {
                    break;
                }
            }
        }
        list.len()
    }
}

/// The local subscription index and fan-out.
pub struct Hub {
    exact: Index,
    below: Index,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            exact: Index::new(),
            below: Index::new(),
        }
    }

    fn index(&self, pattern: &Pattern) -> &Index {
        match pattern {
            Pattern::Exact(_) => &self.exact,
            Pattern::Below(_) => &self.below,
        }
    }

    /// Delivers to local subscriptions of exactly this channel.
    pub fn deliver_exact(&self, channel: &Channel, bodies: &[Bytes]) -> usize {
        self.exact.deliver(channel.as_str(), bodies)
    }

    /// Delivers to local wildcard subscriptions on `prefix` (which `channel` is below).
    pub fn deliver_below(&self, prefix: &str, channel: &Channel, bodies: &[Bytes]) -> usize {
        if channel.ancestors().any(|a| a == prefix) {
            self.below.deliver(prefix, bodies)
        } else {
            0
        }
    }

    /// Delivers synchronously to local subscribers; returns subscriptions reached.
    pub fn deliver(&self, channel: &Channel, bodies: &[Bytes]) -> usize {
        let mut reached = self.exact.deliver(channel.as_str(), bodies);
        for prefix in channel.ancestors() {
            reached += self.below.deliver(prefix, bodies);
        }
        reached
    }
}

impl Broker for Hub {
    fn publish<'a>(&'a self, channel: &'a Channel, bodies: &'a [Bytes]) -> PublishFuture<'a> {
        let reached = self.deliver(channel, bodies);
        Box::pin(std::future::ready(Ok(Some(reached))))
    }

    fn subscribe(&self, pattern: &Pattern, subscriber: Arc<Subscriber>) {
        self.index(pattern)
            .insert(pattern.key().as_str(), subscriber);
    }

    fn unsubscribe(&self, pattern: &Pattern, subscriber: &Arc<Subscriber>) {
        self.index(pattern)
            .remove(pattern.key().as_str(), subscriber);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::outbox::Outbox;
    use std::collections::VecDeque;

    fn sub(id: &str) -> Arc<Subscriber> {
        Arc::new(Subscriber {
            outbox: Arc::new(Outbox::new(1 << 20, 1000)),
            prefix: herald_protocol::reply::data_prefix(id),
        })
    }

    fn received(s: &Subscriber) -> usize {
        let mut q = VecDeque::new();
        s.outbox.drain(&mut q);
        q.len()
    }

    #[test]
    fn delivers_to_exact_and_wildcard_subscribers_only() {
        let hub = Hub::new();
        let exact = sub("a");
        let wild = sub("b");
        let other = sub("c");
        let p_exact = Pattern::parse("/ns/x/y").unwrap();
        let p_wild = Pattern::parse("/ns/*").unwrap();
        let p_other = Pattern::parse("/ns/x/y/*").unwrap();
        hub.subscribe(&p_exact, exact.clone());
        hub.subscribe(&p_wild, wild.clone());
        hub.subscribe(&p_other, other.clone());
        let ch = Channel::parse("/ns/x/y").unwrap();
        let bodies = [Bytes::from_static(b"1}"), Bytes::from_static(b"2}")];
        assert_eq!(hub.deliver(&ch, &bodies), 2);
        assert_eq!(
            (received(&exact), received(&wild), received(&other)),
            (2, 2, 0)
        );
        hub.unsubscribe(&p_wild, &wild);
        assert_eq!(hub.deliver(&ch, &bodies), 1);
        assert_eq!(received(&wild), 0);
    }
}
