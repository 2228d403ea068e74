//! The index of this node's subscriptions, and fan-out to them: the [`Broker`] of a single node.
//!
//! Subscriptions are indexed by key in two maps: exact channels (`/ns/a/b`) and wildcard prefixes
//! (`/ns/a` for `/ns/a/*`). An event on `/ns/a/b` is delivered by looking up the exact key and
//! each proper prefix (`/ns`, `/ns/a`): at most five lookups, whatever the number of
//! subscriptions. Each map is split into shards by key hash, each behind its own read-write lock,
//! so publishes on different channels never contend and publishes on one channel share a read lock.
//! The hash is keyed from the OS random source ([`Keyed`]), so clients cannot pick colliding
//! channel names in advance.
//!
//! Delivery pushes `(subscription prefix, event body)` into each subscriber's outbox: two
//! reference-count increments, no copy of the event, no JSON work per subscriber.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::os::fd::RawFd;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use herald_protocol::{Channel, Pattern};

use super::{Broker, PublishFuture, Routed, Subscriber};
use crate::connection::outbox::{Frames, Sent};
use crate::metrics::Outbound;
use crate::transport::uring;

const SHARDS: usize = 64;

/// The index's hash: Fx-style word-at-a-time mixing, fast on the short keys channel names are,
/// but keyed with random values from the OS, because the keys are chosen by clients. Unkeyed, a
/// client could compute offline names that all land in one shard and one probe chain, turning
/// every lookup there into a scan. Each word is folded in with a 64×64→128-bit multiply by the
/// secret key, high half XORed into low (as foldhash does), because Fx's plain multiply only
/// carries upward: names differing in a word's high bits would collide in the low bits
/// whatever the key. Not a cryptographic hash; it denies precomputed collisions.
#[derive(Debug, Clone, Copy)]
struct Keyed {
    seed: u64,
    key: u64,
}

impl Keyed {
    /// Fresh keys: std's `RandomState` is seeded from the OS random source once per thread,
    /// and hashing two constants with it gives two unpredictable words, with no failure path.
    fn random() -> Keyed {
        let s = RandomState::new();
        Keyed {
            seed: s.hash_one(0u8),
            key: s.hash_one(1u8) | 1,
        }
    }
}

impl BuildHasher for Keyed {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            state: self.seed,
            key: self.key,
        }
    }
}

struct KeyedHasher {
    state: u64,
    key: u64,
}

impl KeyedHasher {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(self.key);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for KeyedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.mix(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        // The tail, zero-padded, assembled by shifts: a short copy into a buffer would cost a
        // memcpy call, more than the rest of the hash.
        let tail = words.remainder();
        if !tail.is_empty() {
            let word = tail
                .iter()
                .enumerate()
                .fold(0u64, |w, (i, b)| w | (u64::from(*b) << (8 * i)));
            self.mix(word);
        }
    }
    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }
    fn finish(&self) -> u64 {
        self.state
    }
}

type Map = HashMap<Box<str>, Vec<Arc<Subscriber>>, Keyed>;

struct Index {
    hash: Keyed,
    shards: Box<[RwLock<Map>]>,
}

impl Index {
    fn new() -> Index {
        let hash = Keyed::random();
        Index {
            hash,
            shards: (0..SHARDS)
                .map(|_| RwLock::new(Map::with_hasher(hash)))
                .collect(),
        }
    }

    fn shard(&self, key: &str) -> &RwLock<Map> {
        // Bits 32 and up: the maps inside a shard index buckets by the low bits and tag entries
        // with the top 7, so shard choice takes neither and keys of one shard still spread.
        // The modulo keeps the index in range, so this cannot panic.
        let h = self.hash.hash_one(key);
        &self.shards[((h >> 32) as usize) % SHARDS]
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

    /// Pushes every body to every subscriber under `key`; returns how many subscribers, and
    /// adds what was written directly to `sent`.
    fn deliver(
        &self,
        key: &str,
        bodies: &mut Routed<'_>,
        direct: Direct,
        sent: &mut Sent,
    ) -> usize {
        let map = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get(key) else { return 0 };
        // Few subscribers: write to each directly when it can take it. Many: queue, so each
        // connection's task coalesces many events into one write.
        let is_direct = list.len() <= direct.max_fanout;
        if is_direct && direct.io_uring && list.len() > 1 && uring::available() {
            deliver_batched(list, bodies, sent);
            return list.len();
        }
        for sub in list {
            // A full queue closes that subscriber (see Outbox); the rest carry on.
            let bodies = bodies.for_subscriber(sub);
            if let Ok(s) = sub.outbox.push_data(&sub.prefix, bodies, is_direct) {
                sent.frames += s.frames;
                sent.bytes += s.bytes;
            }
        }
        list.len()
    }
}

/// Direct writes of one fan-out sent together: one system call for every subscriber whose
/// socket can take a direct write now (io_uring), then the others the usual way. Each claimed
/// outbox stays locked until its send completed, so nothing interleaves with it, as with a
/// single direct write.
fn deliver_batched(list: &[Arc<Subscriber>], bodies: &mut Routed<'_>, sent: &mut Sent) {
    let mut claimed = Vec::with_capacity(list.len());
    let mut later = Vec::new();
    let events = bodies.len();
    for sub in list {
        match sub.outbox.claim_direct(events) {
            Some(c) => claimed.push((sub, c)),
            None => later.push(sub),
        }
    }
    if !claimed.is_empty() {
        // Every claimed subscriber's frames in one buffer, each send a contiguous part of it.
        let mut arena = Vec::new();
        let mut spans = Vec::with_capacity(claimed.len());
        for (sub, _) in &claimed {
            let bodies = bodies.for_subscriber(sub);
            let frames = Frames::new(&sub.prefix, bodies);
            let start = arena.len();
            for slice in frames
                .slices(&sub.prefix, bodies)
                .iter()
                .take(frames.used())
            {
                arena.extend_from_slice(slice);
            }
            spans.push(start..arena.len());
        }
        let bufs: Vec<&[u8]> = spans
            .into_iter()
            .map(|span| arena.get(span).unwrap_or_default())
            .collect();
        let fds: Vec<RawFd> = claimed.iter().map(|(_, c)| c.fd()).collect();
        let mut results = vec![-libc::EAGAIN; claimed.len()];
        // SAFETY: each fd is a claimed outbox's socket, which stays open while its outbox is
        // locked (the outbox holds a reference to it, dropped only under the lock).
        let done = unsafe { uring::send_all(&fds, &bufs, &mut results) };
        // io_uring failed part way (it was available when the batch began): the rest one
        // `write` each.
        for ((r, &fd), buf) in results.iter_mut().zip(&fds).zip(&bufs).skip(done) {
            // SAFETY: as above; `buf` is valid for its length.
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            *r = if n < 0 { -libc::EAGAIN } else { n as i32 };
        }
        // Every claimed subscriber was sent all of `bodies` (a claim refuses more events than
        // one direct write carries).
        for (((_, c), buf), r) in claimed.into_iter().zip(&bufs).zip(results) {
            if let Ok(s) = c.finish(buf, events, r) {
                sent.frames += s.frames;
                sent.bytes += s.bytes;
            }
        }
    }
    for sub in later {
        let bodies = bodies.for_subscriber(sub);
        if let Ok(s) = sub.outbox.push_data(&sub.prefix, bodies, true) {
            sent.frames += s.frames;
            sent.bytes += s.bytes;
        }
    }
}

/// How a fan-out may write directly (`websocket.direct_write_max_fanout`,
/// `websocket.direct_write_io_uring`).
#[derive(Debug, Clone, Copy)]
struct Direct {
    max_fanout: usize,
    io_uring: bool,
}

/// The local subscription index and fan-out.
pub struct Hub {
    exact: Index,
    below: Index,
    /// Counts the frames written directly (the connection tasks count the rest).
    outbound: Outbound,
    direct: Direct,
}

impl Hub {
    pub fn new(outbound: Outbound, direct_max: usize) -> Hub {
        Hub {
            exact: Index::new(),
            below: Index::new(),
            outbound,
            direct: Direct {
                max_fanout: direct_max,
                io_uring: false,
            },
        }
    }

    /// Sends a fan-out's direct writes together through io_uring (`websocket.direct_write_io_uring`).
    pub fn with_io_uring(mut self, on: bool) -> Hub {
        self.direct.io_uring = on;
        self
    }

    /// Adds one fan-out's direct writes to the metrics: two increments per fan-out, not per
    /// delivery.
    fn count(&self, sent: Sent) {
        if sent.frames > 0 {
            self.outbound.messages.inc_by(sent.frames);
            self.outbound.bytes.inc_by(sent.bytes);
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
        let mut sent = Sent::default();
        let mut bodies = Routed::new(channel, bodies);
        let reached = self
            .exact
            .deliver(channel.as_str(), &mut bodies, self.direct, &mut sent);
        self.count(sent);
        reached
    }

    /// Delivers to local wildcard subscriptions on `prefix` (which `channel` is below).
    pub fn deliver_below(&self, prefix: &str, channel: &Channel, bodies: &[Bytes]) -> usize {
        if channel.ancestors().any(|a| a == prefix) {
            let mut sent = Sent::default();
            let mut bodies = Routed::new(channel, bodies);
            let reached = self
                .below
                .deliver(prefix, &mut bodies, self.direct, &mut sent);
            self.count(sent);
            reached
        } else {
            0
        }
    }

    /// Delivers synchronously to local subscribers; returns subscriptions reached.
    pub fn deliver(&self, channel: &Channel, bodies: &[Bytes]) -> usize {
        let mut sent = Sent::default();
        // One set of channel bodies for the exact and every wildcard subscription of the fan-out.
        let mut bodies = Routed::new(channel, bodies);
        let mut reached = self
            .exact
            .deliver(channel.as_str(), &mut bodies, self.direct, &mut sent);
        for prefix in channel.ancestors() {
            reached += self
                .below
                .deliver(prefix, &mut bodies, self.direct, &mut sent);
        }
        self.count(sent);
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
            outbox: Arc::new(Outbox::new(1 << 20, 1000, None)),
            prefix: herald_protocol::reply::data_prefix(id),
            with_channel: false,
        })
    }

    fn received(s: &Subscriber) -> usize {
        let mut q = VecDeque::new();
        s.outbox.drain(&mut q);
        q.len()
    }

    /// The unkeyed FxHash this index once used: what an attacker can run offline.
    fn unkeyed_fx(key: &str) -> u64 {
        let mut h = 0u64;
        for chunk in key.as_bytes().chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        h
    }

    /// Channel names chosen offline to pile into one shard do not: the hash is keyed per
    /// process. Two families: names that share a shard under the old unkeyed hash, and names
    /// that differ only in the high byte of their last word, which Fx-style multiplication never
    /// carries into the low bits, whatever the key (so seeding Fx alone would not do).
    #[test]
    fn colliding_names_cannot_be_precomputed() {
        let index = Index::new();
        let shard_of = |key: &str| {
            let shard = index.shard(key);
            index
                .shards
                .iter()
                .position(|s| std::ptr::eq(s, shard))
                .unwrap()
        };
        let precomputed: Vec<String> = (0..)
            .map(|i| format!("/ns/room-{i}"))
            .filter(|k| unkeyed_fx(k).is_multiple_of(SHARDS as u64))
            .take(64)
            .collect();
        let high_byte: Vec<String> = ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .map(|c| format!("/ns/abc{c}"))
            .collect();
        for names in [precomputed, high_byte] {
            let shards: std::collections::HashSet<usize> =
                names.iter().map(|k| shard_of(k)).collect();
            // ~60 names over 64 shards spread over ~40 of them; 8 or fewer is odds of 1e-40.
            assert!(
                shards.len() > 8,
                "{} names in {} shards",
                names.len(),
                shards.len()
            );
        }
    }

    #[test]
    fn delivers_to_exact_and_wildcard_subscribers_only() {
        let hub = Hub::new(Outbound::default(), 64);
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
