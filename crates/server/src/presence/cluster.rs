//! Presence across the nodes of a cluster, over core NATS (no JetStream): every node announces
//! its own members' joins and leaves, keeps the other nodes' members in its table (tagged with
//! their node), and forgets a node it has not heard from within the TTL.
//!
//! Subjects, under the deployment's `subject_prefix` `<p>`:
//! - `<p>._presence.delta`: `{"node","seq","op":"join"|"leave","channel","connection","member"}`,
//!   one per member-level change, numbered per node (1, 2, …).
//! - `<p>._presence.beat`: `{"node","seq"}` every `presence_heartbeat_ms`; `seq` is the last
//!   change the node numbered, so a receiver that is behind knows it missed some.
//! - `<p>._presence.sync.<node>`: a request; the node replies with its members in chunks of at
//!   most [`CHUNK_BYTES`], `{"node","seq","part","last","members":[{"channel","connection","member"}]}`.
//!
//! Deltas and beats travel on one subscription (`<p>._presence.*`), so a node's beat arrives
//! after the deltas it counts. A receiver applies a node's deltas in sequence; a gap (a delta
//! dropped by a full queue, a NATS hiccup) or an unknown node makes it fetch a snapshot, buffer
//! that node's deltas meanwhile, and then apply those after the snapshot's `seq`. The snapshot's
//! `seq` is read before its walk of the table, so every change up to it is in the snapshot; a
//! later change may be too, which is harmless because joins and leaves are idempotent by
//! (node, connection, channel).
//!
//! A node not heard from within `presence_ttl_ms` is dead: its members are removed on every
//! other node, with leaves to local watchers. Only the owner sends a member's notices (webhook,
//! `presence.channel`); a dead node's leave and disconnect notices are sent by the live node with
//! the smallest id, as each node sees the cluster.
//!
//! Nothing here blocks a subscribe: changes are numbered and queued under the room's shard (lock
//! order: shard, then [`Outgoing`]'s queue), and one task publishes them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Presence;
use crate::broker::nats::ClusterConfig;
use crate::metrics::Counter;

/// Largest snapshot chunk, well under NATS's default 1 MiB `max_payload`.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Changes waiting for NATS; past it they are dropped and counted, and the other nodes resync.
const QUEUE: usize = 10_000;
/// Changes of one node kept while its snapshot is on its way; past it the sync starts over.
const BUFFER: usize = 100_000;
/// How long a snapshot may take to arrive.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest member accepted from another node (`presence.info` is at most 64 KiB).
const MAX_MEMBER_BYTES: usize = 70 * 1024;

/// A member-level change of this node.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    Join,
    Leave,
}

/// This node's changes, numbered, on their way to NATS.
pub struct Outgoing {
    node: Arc<str>,
    queue: Mutex<Queue>,
    /// The last change the publisher handed to NATS, for [`drain`].
    published: Arc<AtomicU64>,
    client: async_nats::Client,
    /// `presence_deltas_dropped`.
    dropped: Counter,
}

struct Queue {
    /// The last number given to a change.
    seq: u64,
    tx: mpsc::Sender<(u64, Bytes)>,
}

impl Outgoing {
    /// Numbers and queues a change; called under the room's shard, so numbers follow the order
    /// in which each room changed. Never waits: a full queue drops the change (counted).
    pub(crate) fn changed(&self, change: Change, channel: &str, connection: &str, member: &str) {
        let op = match change {
            Change::Join => "join",
            Change::Leave => "leave",
        };
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.seq += 1;
        let seq = q.seq;
        // Channels are checked patterns and ids `<hex>-<digits>`: nothing to escape; the member
        // is JSON already.
        let body = format!(
            r#"{{"node":"{}","seq":{seq},"op":"{op}","channel":"{channel}","connection":"{connection}","member":{member}}}"#,
            self.node
        );
        if q.tx.try_send((seq, Bytes::from(body))).is_err() {
            self.dropped.inc();
        }
    }

    fn seq(&self) -> u64 {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).seq
    }
}

/// `[cluster]` timing of presence.
#[derive(Debug, Clone, Copy)]
struct Timing {
    beat: Duration,
    ttl: Duration,
}

#[derive(Debug, Clone)]
struct Subjects {
    delta: String,
    beat: String,
    /// Deltas and beats, on one subscription so they keep their order.
    feed: String,
    /// `<p>._presence.sync.`; a node's own is this plus its id.
    sync: String,
}

/// Starts replicating `presence` through NATS: the publisher of this node's changes and beats,
/// the snapshot server, and the follower of the other nodes. Nothing without presence on, or
/// outside a Tokio runtime.
pub fn start(
    presence: &Arc<Presence>,
    client: async_nats::Client,
    config: &ClusterConfig,
    dropped: Counter,
) {
    if !presence.any() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let node: Arc<str> = Arc::from(presence.node());
    let (tx, rx) = mpsc::channel(QUEUE);
    let published = Arc::new(AtomicU64::new(0));
    let outgoing = Outgoing {
        node: node.clone(),
        queue: Mutex::new(Queue { seq: 0, tx }),
        published: published.clone(),
        client: client.clone(),
        dropped,
    };
    if presence.cluster.set(outgoing).is_err() {
        return;
    }
    let p = config.prefix();
    let subjects = Subjects {
        delta: format!("{p}._presence.delta"),
        beat: format!("{p}._presence.beat"),
        feed: format!("{p}._presence.*"),
        sync: format!("{p}._presence.sync."),
    };
    let timing = Timing {
        beat: Duration::from_millis(config.presence_heartbeat_ms.max(1)),
        ttl: Duration::from_millis(config.presence_ttl_ms.max(1)),
    };
    let weak = Arc::downgrade(presence);
    runtime.spawn(publish(
        weak.clone(),
        client.clone(),
        subjects.clone(),
        (rx, published),
        timing.beat,
    ));
    runtime.spawn(serve_snapshots(
        weak.clone(),
        client.clone(),
        subjects.clone(),
    ));
    runtime.spawn(
        Follower {
            me: node,
            presence: weak,
            client,
            subjects,
            ttl: timing.ttl,
            peers: HashMap::new(),
            attempts: 0,
        }
        .run(timing.beat),
    );
}

/// Publishes this node's changes in order, and a beat every `beat`. Ends with the table.
async fn publish(
    presence: Weak<Presence>,
    client: async_nats::Client,
    subjects: Subjects,
    (mut rx, published): (mpsc::Receiver<(u64, Bytes)>, Arc<AtomicU64>),
    beat: Duration,
) {
    let mut tick = tokio::time::interval(beat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last change handed to NATS.
    let mut sent = 0u64;
    loop {
        tokio::select! {
            next = rx.recv() => {
                let Some((seq, body)) = next else { return };
                if let Err(e) = client.publish(subjects.delta.clone(), body).await {
                    tracing::debug!(error = %e, "a presence change was not published");
                }
                sent = seq;
                published.store(seq, Ordering::Release);
            }
            _ = tick.tick() => {
                let Some(p) = presence.upgrade() else { return };
                let Some(numbered) = p.cluster.get().map(Outgoing::seq) else { return };
                // With nothing queued, every numbered change was sent or dropped: announcing
                // the number lets the others notice a drop even when no change follows it.
                let seq = if rx.is_empty() { numbered } else { sent };
                let body = format!(r#"{{"node":"{}","seq":{seq}}}"#, p.node());
                drop(p);
                if let Err(e) = client.publish(subjects.beat.clone(), Bytes::from(body)).await {
                    tracing::debug!(error = %e, "a presence beat was not published");
                }
            }
        }
    }
}

/// On a graceful shutdown, waits (at most `within`) until this node's queued changes (the leaves
/// of its closed connections) are in NATS, so the other nodes drop its members now rather than
/// after the TTL. Nothing outside cluster mode.
pub async fn drain(presence: &Presence, within: Duration) {
    let Some(out) = presence.cluster.get() else {
        return;
    };
    let deadline = Instant::now() + within;
    // A dropped change is never published: then the deadline ends the wait.
    while out.published.load(Ordering::Acquire) < out.seq() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if tokio::time::timeout_at(deadline, out.client.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            "presence: some leaves may not have reached the other nodes; they expire by the TTL"
        );
    }
}

/// Answers snapshot requests for this node's members.
async fn serve_snapshots(presence: Weak<Presence>, client: async_nats::Client, subjects: Subjects) {
    let Some(node) = presence.upgrade().map(|p| p.node().to_owned()) else {
        return;
    };
    let mut requests = match client.subscribe(format!("{}{node}", subjects.sync)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "presence snapshots cannot be served: the other nodes will not see this node's members");
            return;
        }
    };
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else {
            continue;
        };
        let chunks = {
            let Some(p) = presence.upgrade() else {
                return;
            };
            snapshot(&p)
        };
        for chunk in chunks {
            if let Err(e) = client.publish(reply.clone(), chunk).await {
                tracing::debug!(error = %e, "a presence snapshot was not sent");
                break;
            }
        }
    }
}

/// This node's members, as snapshot chunks of at most [`CHUNK_BYTES`].
fn snapshot(p: &Presence) -> Vec<Bytes> {
    // Read before the walk: every change numbered up to it is in what the walk sees.
    let seq = p.cluster.get().map(Outgoing::seq).unwrap_or(0);
    let node = p.node();
    let head = 100 + node.len();
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    p.local_members(|channel, connection, member| {
        let entry =
            format!(r#"{{"channel":"{channel}","connection":"{connection}","member":{member}}}"#);
        if !current.is_empty() && head + current.len() + entry.len() + 1 > CHUNK_BYTES {
            parts.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&entry);
    });
    parts.push(current);
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, members)| {
            Bytes::from(format!(
                r#"{{"node":"{node}","seq":{seq},"part":{i},"last":{},"members":[{members}]}}"#,
                i + 1 == n
            ))
        })
        .collect()
}

/// A change as another node sent it (checked before use: it may run another version).
#[derive(Debug, Deserialize)]
struct Delta {
    node: String,
    seq: u64,
    op: String,
    channel: String,
    connection: String,
    member: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
struct Beat {
    node: String,
    seq: u64,
}

#[derive(Debug, Deserialize)]
struct Chunk {
    node: String,
    seq: u64,
    part: u64,
    last: bool,
    members: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    channel: String,
    connection: String,
    member: Box<RawValue>,
}

struct Snapshot {
    seq: u64,
    members: Vec<Entry>,
}

/// A snapshot could not be fetched; the next beat or change of that node retries.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("no complete snapshot within {0:?}")]
    Timeout(Duration),
    #[error("a malformed snapshot chunk: {0}")]
    Malformed(String),
}

/// Where this node stands with another node's members.
enum Sync {
    /// Applying its changes in sequence.
    Live,
    /// A snapshot is on its way; changes wait in `buffer`.
    Pending { attempt: u64, buffer: Vec<Delta> },
    /// The last snapshot failed; the next beat or change retries.
    Failed,
}

struct Peer {
    /// Its members in this node's table: (channel, connection).
    members: HashSet<(Box<str>, Box<str>)>,
    /// The last of its changes applied.
    last: u64,
    heard: Instant,
    sync: Sync,
}

/// Follows the other nodes: one task owns what it knows of them.
struct Follower {
    me: Arc<str>,
    presence: Weak<Presence>,
    client: async_nats::Client,
    subjects: Subjects,
    ttl: Duration,
    peers: HashMap<Arc<str>, Peer>,
    attempts: u64,
}

type Fetched = (Arc<str>, u64, Result<Snapshot, SyncError>);

impl Follower {
    async fn run(mut self, beat: Duration) {
        let mut feed = match self.client.subscribe(self.subjects.feed.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "other nodes' presence cannot be followed");
                return;
            }
        };
        let (done, mut fetched) = mpsc::channel::<Fetched>(64);
        // Death is noticed within a quarter beat of the TTL.
        let mut check = tokio::time::interval((beat / 4).max(Duration::from_millis(10)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = feed.next() => {
                    let Some(msg) = msg else { return };
                    let Some(p) = self.presence.upgrade() else { return };
                    if msg.subject.as_str() == self.subjects.delta {
                        match serde_json::from_slice::<Delta>(&msg.payload) {
                            Ok(d) => self.on_delta(&p, d, &done),
                            Err(e) => tracing::debug!(error = %e, "a malformed presence change"),
                        }
                    } else if msg.subject.as_str() == self.subjects.beat {
                        match serde_json::from_slice::<Beat>(&msg.payload) {
                            Ok(b) => self.on_beat(b, &done),
                            Err(e) => tracing::debug!(error = %e, "a malformed presence beat"),
                        }
                    }
                }
                Some((node, attempt, result)) = fetched.recv() => {
                    let Some(p) = self.presence.upgrade() else { return };
                    self.on_fetched(&p, node, attempt, result, &done);
                }
                _ = check.tick() => {
                    let Some(p) = self.presence.upgrade() else { return };
                    self.expire(&p);
                }
            }
        }
    }

    /// The peer for a node id from the wire, new ones unsynced; none for this node or a bad id.
    fn peer(&mut self, node: &str) -> Option<(Arc<str>, &mut Peer)> {
        if node == &*self.me || !valid_node(node) {
            return None;
        }
        let key = match self.peers.get_key_value(node) {
            Some((k, _)) => k.clone(),
            None => {
                tracing::info!(node, "presence: a new node");
                let k: Arc<str> = Arc::from(node);
                self.peers.insert(
                    k.clone(),
                    Peer {
                        members: HashSet::new(),
                        last: 0,
                        heard: Instant::now(),
                        sync: Sync::Failed,
                    },
                );
                k
            }
        };
        let peer = self.peers.get_mut(&key)?;
        peer.heard = Instant::now();
        Some((key, peer))
    }

    fn on_beat(&mut self, beat: Beat, done: &mpsc::Sender<Fetched>) {
        let Some((node, peer)) = self.peer(&beat.node) else {
            return;
        };
        let behind = match &peer.sync {
            Sync::Live => beat.seq > peer.last,
            Sync::Pending { .. } => false,
            Sync::Failed => true,
        };
        if behind {
            self.fetch(node, Vec::new(), done);
        }
    }

    fn on_delta(&mut self, p: &Presence, delta: Delta, done: &mpsc::Sender<Fetched>) {
        let Some((node, peer)) = self.peer(&delta.node) else {
            return;
        };
        match &mut peer.sync {
            Sync::Pending { buffer, .. } if buffer.len() < BUFFER => buffer.push(delta),
            Sync::Live if delta.seq <= peer.last => {}
            Sync::Live if delta.seq == peer.last + 1 => {
                peer.last = delta.seq;
                apply(p, &node, peer, &delta);
            }
            // A gap, an overflowing buffer, or a node not synced yet.
            _ => self.fetch(node, vec![delta], done),
        }
    }

    /// Asks `node` for a snapshot, keeping `buffer` and what follows until it arrives.
    fn fetch(&mut self, node: Arc<str>, buffer: Vec<Delta>, done: &mpsc::Sender<Fetched>) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        self.attempts += 1;
        let attempt = self.attempts;
        peer.sync = Sync::Pending { attempt, buffer };
        let client = self.client.clone();
        let subject = format!("{}{node}", self.subjects.sync);
        let done = done.clone();
        tokio::spawn(async move {
            let result = request_snapshot(&client, subject, &node).await;
            let _ = done.send((node, attempt, result)).await;
        });
    }

    fn on_fetched(
        &mut self,
        p: &Presence,
        node: Arc<str>,
        attempt: u64,
        result: Result<Snapshot, SyncError>,
        done: &mpsc::Sender<Fetched>,
    ) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        let buffer = match &mut peer.sync {
            Sync::Pending { attempt: a, buffer } if *a == attempt => std::mem::take(buffer),
            // An older attempt's answer.
            _ => return,
        };
        let snapshot = match result {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "presence: a node's snapshot failed; retrying at its next beat");
                peer.sync = Sync::Failed;
                return;
            }
        };
        let mut fresh = HashSet::with_capacity(snapshot.members.len());
        let mut entries = Vec::with_capacity(snapshot.members.len());
        for e in &snapshot.members {
            if let Some(member) = checked(p, &node, &e.channel, &e.connection, Some(&e.member)) {
                fresh.insert((
                    Box::from(e.channel.as_str()),
                    Box::from(e.connection.as_str()),
                ));
                entries.push((e, member));
            }
        }
        for (channel, connection) in peer.members.difference(&fresh) {
            p.remove_remote(&node, channel, connection);
        }
        for (e, member) in entries {
            p.insert_remote(&node, &e.channel, &e.connection, member);
        }
        peer.members = fresh;
        peer.last = snapshot.seq;
        peer.sync = Sync::Live;
        tracing::debug!(node = %node, members = peer.members.len(), seq = snapshot.seq, "presence: synced");
        let mut rest = buffer.into_iter();
        for delta in rest.by_ref() {
            if delta.seq <= peer.last {
                continue;
            }
            if delta.seq != peer.last + 1 {
                let mut again = vec![delta];
                again.extend(rest);
                self.fetch(node, again, done);
                return;
            }
            peer.last = delta.seq;
            apply(p, &node, peer, &delta);
        }
    }

    /// Forgets nodes not heard from within the TTL, removing their members.
    fn expire(&mut self, p: &Presence) {
        let ttl = self.ttl;
        let dead: Vec<Arc<str>> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.heard.elapsed() > ttl)
            .map(|(node, _)| node.clone())
            .collect();
        let dead: Vec<(Arc<str>, Peer)> = dead
            .into_iter()
            .filter_map(|node| self.peers.remove(&node).map(|peer| (node, peer)))
            .collect();
        // One survivor speaks for the dead: the live node with the smallest id.
        let speaker = self.peers.keys().all(|other| *self.me < **other);
        for (node, peer) in dead {
            let mut gone = Vec::new();
            for (channel, connection) in &peer.members {
                if let Some(member) = p.remove_remote(&node, channel, connection) {
                    gone.push((&**channel, &**connection, member));
                }
            }
            tracing::info!(node = %node, members = gone.len(), ttl_ms = ttl.as_millis() as u64, speaker, "presence: a node went silent; its members left");
            if speaker {
                // Its disconnect goes with a connection's last channel in each namespace.
                let mut left: HashMap<(&str, &str), usize> = HashMap::new();
                for (channel, connection, _) in &gone {
                    *left
                        .entry((herald_protocol::channel::namespace_of(channel), *connection))
                        .or_default() += 1;
                }
                for (channel, connection, member) in &gone {
                    let key = (herald_protocol::channel::namespace_of(channel), *connection);
                    let last = left.get_mut(&key).is_some_and(|n| {
                        *n -= 1;
                        *n == 0
                    });
                    p.notice_departed(channel, member, last);
                }
            }
        }
    }
}

/// Applies one change of `node` in sequence.
fn apply(p: &Presence, node: &Arc<str>, peer: &mut Peer, delta: &Delta) {
    match delta.op.as_str() {
        "join" => {
            if let Some(member) = checked(
                p,
                node,
                &delta.channel,
                &delta.connection,
                delta.member.as_deref(),
            ) {
                p.insert_remote(node, &delta.channel, &delta.connection, member);
                peer.members.insert((
                    Box::from(delta.channel.as_str()),
                    Box::from(delta.connection.as_str()),
                ));
            }
        }
        "leave" => {
            p.remove_remote(node, &delta.channel, &delta.connection);
            peer.members.remove(&(
                Box::from(delta.channel.as_str()),
                Box::from(delta.connection.as_str()),
            ));
        }
        other => tracing::debug!(op = other, "an unknown presence change"),
    }
}

/// A member from another node, when it is one this node can show: a channel of a namespace with
/// presence on here, written as this node writes it; a connection id of that node; a JSON object
/// of a sane size. It goes into frames and reads verbatim, hence the care.
fn checked<'a>(
    p: &Presence,
    node: &str,
    channel: &str,
    connection: &str,
    member: Option<&'a RawValue>,
) -> Option<&'a str> {
    let member = member?.get();
    let ok_channel = herald_protocol::Pattern::parse(channel)
        .is_ok_and(|c| c.to_string() == channel)
        && p.covers(channel);
    let ok_connection = connection
        .strip_prefix(node)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let ok_member = member.starts_with('{') && member.len() <= MAX_MEMBER_BYTES;
    (ok_channel && ok_connection && ok_member).then_some(member)
}

/// Node ids are the hex prefix of connection ids.
fn valid_node(node: &str) -> bool {
    (1..=32).contains(&node.len()) && node.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Requests `node`'s snapshot and gathers its chunks.
async fn request_snapshot(
    client: &async_nats::Client,
    subject: String,
    node: &str,
) -> Result<Snapshot, SyncError> {
    let nats = |e: &dyn std::fmt::Display| SyncError::Nats(e.to_string());
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| nats(&e))?;
    client
        .publish_with_reply(subject, inbox, Bytes::new())
        .await
        .map_err(|e| nats(&e))?;
    let deadline = Instant::now() + SYNC_TIMEOUT;
    let mut members = Vec::new();
    let mut seq = None;
    let mut part = 0u64;
    loop {
        let msg = tokio::time::timeout_at(deadline, replies.next())
            .await
            .map_err(|_| SyncError::Timeout(SYNC_TIMEOUT))?
            .ok_or_else(|| SyncError::Nats("the reply subscription ended".into()))?;
        if msg.status.is_some() {
            // "No responders" and the like: the node is gone or not serving yet.
            return Err(SyncError::Nats(format!("status {:?}", msg.status)));
        }
        let chunk: Chunk = serde_json::from_slice(&msg.payload)
            .map_err(|e| SyncError::Malformed(e.to_string()))?;
        if chunk.node != node || chunk.part != part || seq.is_some_and(|s| s != chunk.seq) {
            return Err(SyncError::Malformed(format!(
                "part {} of node {} at {}, expected part {part} of {node}",
                chunk.part, chunk.node, chunk.seq
            )));
        }
        seq = Some(chunk.seq);
        part += 1;
        members.extend(chunk.members);
        if chunk.last {
            return Ok(Snapshot {
                seq: chunk.seq,
                members,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_chunked_under_the_bound() {
        let metrics = crate::metrics::Metrics::new(["chat"]);
        let p = Arc::new(Presence::new(
            &[("chat".to_owned(), super::super::PresenceConfig::default())],
            &metrics,
            None,
        ));
        let info = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
        let held: Vec<_> = (0..1500)
            .map(|_| {
                let c = p.connection_id();
                p.join(
                    "/chat/r",
                    super::super::Joining {
                        connection: &c,
                        identity: None,
                        info: Some(&info),
                        events: None,
                    },
                )
            })
            .collect();
        let chunks = snapshot(&p);
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        let mut total = 0;
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.len() <= CHUNK_BYTES, "chunk {i}: {} bytes", c.len());
            let chunk: Chunk = serde_json::from_slice(c).unwrap();
            assert_eq!((chunk.part, chunk.last), (i as u64, i + 1 == chunks.len()));
            total += chunk.members.len();
        }
        assert_eq!(total, held.len());
    }

    #[test]
    fn timing_is_checked() {
        let problems = |beat: u64, ttl: u64| {
            let config = ClusterConfig {
                nats_url: "nats://127.0.0.1:4222".into(),
                presence_heartbeat_ms: beat,
                presence_ttl_ms: ttl,
                ..ClusterConfig::default()
            };
            let mut p = Vec::new();
            config.check(&mut p);
            p
        };
        assert!(problems(1000, 5000).is_empty());
        assert_eq!(problems(1000, 1500).len(), 1, "a TTL under two beats");
        assert_eq!(problems(10, 5000).len(), 1, "a beat too fast");
        assert_eq!(problems(u64::MAX, u64::MAX).len(), 1, "no overflow");
    }

    #[test]
    fn node_ids_and_members_from_the_wire_are_checked() {
        assert!(valid_node("0a1b2c3d"));
        assert!(!valid_node("0a1b.>"));
        assert!(!valid_node(""));
        let metrics = crate::metrics::Metrics::new(["chat"]);
        let p = Presence::new(
            &[("chat".to_owned(), super::super::PresenceConfig::default())],
            &metrics,
            None,
        );
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let m = raw(r#"{"connectionId":"ab-1"}"#);
        assert!(checked(&p, "ab", "/chat/r", "ab-1", Some(&m)).is_some());
        assert!(
            checked(&p, "ab", "/chat/r", "cd-1", Some(&m)).is_none(),
            "another node's id"
        );
        assert!(checked(&p, "ab", "/chat/r", "ab-1\"", Some(&m)).is_none());
        assert!(
            checked(&p, "ab", "/other/r", "ab-1", Some(&m)).is_none(),
            "no presence there"
        );
        assert!(checked(&p, "ab", "/chat/\"x", "ab-1", Some(&m)).is_none());
        assert!(checked(&p, "ab", "/chat/r", "ab-1", Some(&raw("[1]"))).is_none());
    }
}
