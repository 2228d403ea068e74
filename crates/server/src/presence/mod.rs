//! Presence (Herald extension, `docs/extensions.md#presence`): on a namespace with `presence` on,
//! every live subscription makes its connection a member of the channel it subscribed to (a
//! wildcard subscription of its pattern, `/chat/*`). A member is one connection: its id, the
//! identity its subscription was admitted with, when it joined, and the small JSON object it
//! sent as `presence.info`. Subscriptions that ask for it receive joins and leaves as `data`
//! frames marked `"presence":"join"|"leave"`.
//!
//! A member is held by a [`Membership`] beside its subscription; dropping it (unsubscribe,
//! revocation on reload, the connection's end) is the leave, so no path can forget one.
//!
//! In a cluster ([`cluster`]), each node also holds the other nodes' members, tagged with their
//! node, so counts, lists and join/leave events are cluster-wide; only the owning node sends a
//! member's notices.
//!
//! Lock order: a room shard, then the cluster's outgoing queue, then outboxes (events are queued
//! while the shard is held, so every watcher sees joins and leaves in the order the table
//! changed, and changes are numbered in that order). Nothing takes a shard while holding either.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub mod cluster;
pub mod hooks;
pub mod read;

use crate::broker::Subscriber;
use crate::connection::outbox::Out;

/// A namespace's `presence = { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Largest `presence.info` a subscriber may send, bytes of its JSON text.
    pub max_info_bytes: usize,
    /// Most members one read lists; the rest are paged with `after`.
    pub max_members_listed: usize,
    /// Lifecycle notices (connect, disconnect, join, leave) POSTed to a backend.
    pub webhook: Option<hooks::WebhookConfig>,
    /// The same notices published as events on this channel (of any namespace), for backends
    /// that subscribe instead.
    pub channel: Option<String>,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            max_info_bytes: 1024,
            max_members_listed: 1000,
            webhook: None,
            channel: None,
        }
    }
}

impl PresenceConfig {
    pub fn check(&self, namespace: &str, problems: &mut Vec<String>) {
        if self.max_info_bytes == 0 || self.max_info_bytes > 64 * 1024 {
            problems.push(format!(
                "namespaces.{namespace}.presence.max_info_bytes: must be 1 to 65536"
            ));
        }
        if self.max_members_listed == 0 {
            problems.push(format!(
                "namespaces.{namespace}.presence.max_members_listed: must be greater than 0"
            ));
        }
        if let Some(w) = &self.webhook {
            w.check(namespace, problems);
        }
        if let Some(c) = &self.channel
            && herald_protocol::Channel::parse(c).is_err()
        {
            problems.push(format!(
                "namespaces.{namespace}.presence.channel: {c:?} is not a channel such as /{namespace}/presence"
            ));
        }
    }
}

/// Who is in one channel, and who wants to hear of joins and leaves.
#[derive(Default)]
struct Room {
    /// By connection id (so listing pages in a stable order).
    members: BTreeMap<Arc<str>, Member>,
    /// How many of `members` are this node's (the metrics count only those).
    local: usize,
    watchers: Vec<Watcher>,
}

struct Member {
    /// `{"connectionId":..,"identity":..,"joinedAt":..,"info":..}`, built once at the join.
    json: Box<str>,
    /// Live subscriptions of this connection on this channel: the member leaves with the last.
    subscriptions: u32,
    /// The node that holds it, when not this one (its connection lives there).
    origin: Option<Arc<str>>,
}

struct Watcher {
    token: u64,
    subscriber: Arc<Subscriber>,
}

const SHARDS: usize = 16;

/// Rooms by channel.
type Rooms = HashMap<Box<str>, Room>;
/// Memberships per (namespace, connection).
type ConnectionCounts = HashMap<(Box<str>, Arc<str>), u32>;

/// A namespace with presence on.
struct Space {
    name: String,
    config: PresenceConfig,
    metrics: Arc<crate::metrics::Namespace>,
    hooks: Option<hooks::Hooks>,
    /// Notices for `presence.channel`, published in order by one task.
    notices: Option<tokio::sync::mpsc::Sender<Bytes>>,
}

impl Space {
    /// Whether anyone hears of connects, disconnects, joins and leaves.
    fn noticed(&self) -> bool {
        self.hooks.is_some() || self.notices.is_some()
    }

    fn notice(&self, kind: hooks::NoticeKind, channel: Option<&str>, member: &str) {
        let namespace = &self.name;
        let channel = channel
            .map(|c| format!(r#","channel":"{c}""#))
            .unwrap_or_default();
        let notice = format!(
            r#"{{"type":"{}","namespace":"{namespace}"{channel},"member":{member},"at":{}}}"#,
            kind.as_str(),
            crate::time::now_unix_ms()
        );
        if let Some(h) = &self.hooks {
            h.notify(&notice);
        }
        if let Some(tx) = &self.notices {
            let token = serde_json::to_string(&notice).unwrap_or_default();
            if tx
                .try_send(herald_protocol::reply::data_body(&token))
                .is_err()
            {
                self.metrics.presence_notices_dropped.inc();
            }
        }
    }
}

/// Notices waiting for `presence.channel`; past it they are dropped and counted.
const NOTICE_QUEUE: usize = 10_000;

/// The presence table of this node.
pub struct Presence {
    namespaces: HashMap<String, Space>,
    /// Members per (namespace, connection), for connect and disconnect notices (kept only on
    /// namespaces whose notices someone hears).
    connections: Box<[Mutex<ConnectionCounts>]>,
    /// Prefix of this process's connection ids, random per start so ids stay unique across
    /// restarts and nodes.
    node: String,
    next_connection: AtomicU64,
    next_token: AtomicU64,
    /// Rooms by channel; attacker-chosen names, so the hasher is keyed per process.
    shards: Box<[Mutex<Rooms>]>,
    hasher: RandomState,
    /// Where this node's member changes go to the other nodes, in cluster mode.
    cluster: OnceLock<cluster::Outgoing>,
}

/// A connection's place in a channel; dropping it is the leave.
pub struct Membership {
    presence: Arc<Presence>,
    channel: Box<str>,
    connection: Arc<str>,
    /// Its subscription's place among the watchers, when it asked for events.
    watcher: Option<u64>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.presence
            .leave(&self.channel, &self.connection, self.watcher);
    }
}

/// What a subscription brings to a join.
pub struct Joining<'a> {
    pub connection: &'a Arc<str>,
    /// `identity` of the member: who the subscription's credential names, if anyone.
    pub identity: Option<&'a str>,
    /// `presence.info`, a JSON object already checked.
    pub info: Option<&'a str>,
    /// Deliver joins and leaves to this subscription.
    pub events: Option<Arc<Subscriber>>,
}

/// One read: the count, and a page of members.
pub struct View {
    pub count: usize,
    /// Member objects as JSON text.
    pub members: Vec<Box<str>>,
    /// The id to pass as `after` for the next page, when there is one.
    pub next: Option<String>,
}

impl Presence {
    /// The table for these namespaces. With a broker and a Tokio runtime, notices start
    /// flowing to `presence.channel` and `presence.webhook`.
    pub fn new(
        namespaces: &[(String, PresenceConfig)],
        metrics: &crate::metrics::Metrics,
        broker: Option<Arc<dyn crate::broker::Broker>>,
    ) -> Presence {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let mut seed = [0u8; 4];
        // Uniqueness across processes only; a clock-derived prefix would do if the OS has none.
        if getrandom::getrandom(&mut seed).is_err() {
            seed = (crate::time::now_unix_ms() as u32).to_le_bytes();
        }
        Presence {
            namespaces: namespaces
                .iter()
                .map(|(name, c)| {
                    let m = metrics.ns(name);
                    let space = Space {
                        name: name.clone(),
                        hooks: c
                            .webhook
                            .as_ref()
                            .filter(|_| runtime.is_some())
                            .map(|w| hooks::Hooks::start(name, w, m.clone())),
                        notices: match (&c.channel, &broker, &runtime) {
                            (Some(channel), Some(b), Some(rt)) => {
                                notice_publisher(rt, b.clone(), channel)
                            }
                            _ => None,
                        },
                        config: c.clone(),
                        metrics: m,
                    };
                    (name.clone(), space)
                })
                .collect(),
            connections: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            node: seed.iter().map(|b| format!("{b:02x}")).collect(),
            next_connection: AtomicU64::new(1),
            next_token: AtomicU64::new(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            cluster: OnceLock::new(),
        }
    }

    /// The namespace's presence settings, when it has presence on.
    pub fn of(&self, namespace: &str) -> Option<&PresenceConfig> {
        self.namespaces.get(namespace).map(|s| &s.config)
    }

    fn space(&self, channel: &str) -> Option<&Space> {
        self.namespaces
            .get(herald_protocol::channel::namespace_of(channel))
    }

    /// Counts a connection's membership in a namespace up or down; true when it was its first
    /// (up) or last (down).
    fn count_connection(&self, namespace: &str, connection: &Arc<str>, up: bool) -> bool {
        let i = (self.hasher.hash_one(&**connection) as usize) % SHARDS;
        let mut map = self.connections[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (Box::from(namespace), connection.clone());
        if up {
            let n = map.entry(key).or_insert(0);
            *n += 1;
            *n == 1
        } else {
            match map.get_mut(&key) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    map.remove(&key);
                    true
                }
                None => false,
            }
        }
    }

    /// Whether any namespace has presence on.
    pub fn any(&self) -> bool {
        !self.namespaces.is_empty()
    }

    /// A fresh connection id (`<node>-<n>`).
    pub fn connection_id(&self) -> Arc<str> {
        let n = self.next_connection.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{}-{n}", self.node))
    }

    fn shard(&self, channel: &str) -> std::sync::MutexGuard<'_, Rooms> {
        // The modulo keeps the index in range.
        let i = (self.hasher.hash_one(channel) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the connection a member of `channel` (or counts one more subscription of it), and
    /// tells the channel's watchers of a new member.
    pub fn join(self: &Arc<Self>, channel: &str, who: Joining<'_>) -> Membership {
        let watcher = who
            .events
            .as_ref()
            .map(|_| self.next_token.fetch_add(1, Ordering::Relaxed));
        let mut shard = self.shard(channel);
        let room = shard.entry(Box::from(channel)).or_default();
        if let (Some(token), Some(subscriber)) = (watcher, who.events) {
            room.watchers.push(Watcher { token, subscriber });
        }
        match room
            .members
            .get_mut(who.connection)
            .filter(|m| m.origin.is_none())
        {
            Some(member) => member.subscriptions += 1,
            None => {
                let json = member_json(who.connection, who.identity, who.info);
                announce(room, channel, "join", &json);
                if let Some(out) = self.cluster.get() {
                    out.changed(cluster::Change::Join, channel, who.connection, &json);
                }
                if let Some(space) = self.space(channel) {
                    let m = &space.metrics;
                    m.presence_members.inc();
                    if room.local == 0 {
                        m.presence_channels.inc();
                    }
                    if space.noticed() {
                        if self.count_connection(&space.name, who.connection, true) {
                            space.notice(hooks::NoticeKind::Connect, None, &json);
                        }
                        space.notice(hooks::NoticeKind::Join, Some(channel), &json);
                    }
                }
                room.members.insert(
                    who.connection.clone(),
                    Member {
                        json,
                        subscriptions: 1,
                        origin: None,
                    },
                );
                room.local += 1;
            }
        }
        drop(shard);
        Membership {
            presence: self.clone(),
            channel: Box::from(channel),
            connection: who.connection.clone(),
            watcher,
        }
    }

    fn leave(&self, channel: &str, connection: &Arc<str>, watcher: Option<u64>) {
        let mut shard = self.shard(channel);
        let Some(room) = shard.get_mut(channel) else {
            return;
        };
        if let Some(token) = watcher {
            room.watchers.retain(|w| w.token != token);
        }
        if let Some(member) = room
            .members
            .get_mut(connection)
            .filter(|m| m.origin.is_none())
        {
            member.subscriptions = member.subscriptions.saturating_sub(1);
            if member.subscriptions == 0
                && let Some(gone) = room.members.remove(connection)
            {
                room.local = room.local.saturating_sub(1);
                announce(room, channel, "leave", &gone.json);
                if let Some(out) = self.cluster.get() {
                    out.changed(cluster::Change::Leave, channel, connection, &gone.json);
                }
                if let Some(space) = self.space(channel) {
                    let m = &space.metrics;
                    m.presence_members.dec();
                    if room.local == 0 {
                        m.presence_channels.dec();
                    }
                    if space.noticed() {
                        space.notice(hooks::NoticeKind::Leave, Some(channel), &gone.json);
                        if self.count_connection(&space.name, connection, false) {
                            space.notice(hooks::NoticeKind::Disconnect, None, &gone.json);
                        }
                    }
                }
            }
        }
        if room.members.is_empty() && room.watchers.is_empty() {
            shard.remove(channel);
        }
    }

    /// Members of `channel`: the count, and unless `count_only` up to `limit` members (capped
    /// by the namespace's `max_members_listed`) after the connection id `after`.
    pub fn read(&self, channel: &str, count_only: bool, after: Option<&str>, limit: usize) -> View {
        let shard = self.shard(channel);
        let Some(room) = shard.get(channel) else {
            return View {
                count: 0,
                members: Vec::new(),
                next: None,
            };
        };
        let count = room.members.len();
        if count_only {
            return View {
                count,
                members: Vec::new(),
                next: None,
            };
        }
        let mut page = match after {
            Some(a) => room
                .members
                .range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => room.members.range::<str, _>(..),
        };
        let members: Vec<(Arc<str>, Box<str>)> = page
            .by_ref()
            .take(limit)
            .map(|(id, m)| (id.clone(), m.json.clone()))
            .collect();
        let more = page.next().is_some();
        View {
            count,
            next: members
                .last()
                .filter(|_| more)
                .map(|(id, _)| id.to_string()),
            members: members.into_iter().map(|(_, json)| json).collect(),
        }
    }
}

/// What the cluster replication ([`cluster`]) does to the table.
impl Presence {
    /// This node's id in the cluster: the random prefix of its connection ids, so a restarted
    /// process is a new node.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Whether `channel`'s namespace has presence on here.
    pub(crate) fn covers(&self, channel: &str) -> bool {
        self.space(channel).is_some()
    }

    /// Adds another node's member, telling local watchers; nothing if it is there already
    /// (inserts are idempotent by node, connection and channel).
    pub(crate) fn insert_remote(
        &self,
        node: &Arc<str>,
        channel: &str,
        connection: &str,
        json: &str,
    ) {
        let mut shard = self.shard(channel);
        let room = shard.entry(Box::from(channel)).or_default();
        if room.members.contains_key(connection) {
            return;
        }
        announce(room, channel, "join", json);
        room.members.insert(
            Arc::from(connection),
            Member {
                json: Box::from(json),
                subscriptions: 0,
                origin: Some(node.clone()),
            },
        );
    }

    /// Removes another node's member, telling local watchers; its JSON when it was there.
    pub(crate) fn remove_remote(
        &self,
        node: &str,
        channel: &str,
        connection: &str,
    ) -> Option<Box<str>> {
        let mut shard = self.shard(channel);
        let room = shard.get_mut(channel)?;
        if room.members.get(connection)?.origin.as_deref() != Some(node) {
            return None;
        }
        let gone = room.members.remove(connection)?;
        announce(room, channel, "leave", &gone.json);
        if room.members.is_empty() && room.watchers.is_empty() {
            shard.remove(channel);
        }
        Some(gone.json)
    }

    /// Calls `each(channel, connection, member JSON)` for every member of this node. One shard
    /// at a time, so a change may be seen or not while the walk runs.
    pub(crate) fn local_members(&self, mut each: impl FnMut(&str, &str, &str)) {
        for shard in self.shards.iter() {
            let rooms = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (channel, room) in rooms.iter() {
                for (connection, m) in room.members.iter().filter(|(_, m)| m.origin.is_none()) {
                    each(channel, connection, &m.json);
                }
            }
        }
    }

    /// The notices of a member whose node died, sent by the one node that speaks for it: its
    /// leave, and its disconnect when it was its connection's last channel in the namespace.
    pub(crate) fn notice_departed(&self, channel: &str, member: &str, disconnect: bool) {
        if let Some(space) = self.space(channel).filter(|s| s.noticed()) {
            space.notice(hooks::NoticeKind::Leave, Some(channel), member);
            if disconnect {
                space.notice(hooks::NoticeKind::Disconnect, None, member);
            }
        }
    }
}

/// Starts the task that publishes a namespace's notices to its `presence.channel`, in order.
fn notice_publisher(
    runtime: &tokio::runtime::Handle,
    broker: Arc<dyn crate::broker::Broker>,
    channel: &str,
) -> Option<tokio::sync::mpsc::Sender<Bytes>> {
    let channel = herald_protocol::Channel::parse(channel).ok()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(NOTICE_QUEUE);
    runtime.spawn(async move {
        while let Some(body) = rx.recv().await {
            if let Err(e) = broker.publish(&channel, std::slice::from_ref(&body)).await {
                tracing::warn!(error = %e, channel = %channel, "a presence notice was not published");
            }
        }
    });
    Some(tx)
}

/// Queues a join or leave on every watcher of the room: the event is encoded once, its frame
/// tail shared by every watcher (and built once more for those that asked for the channel).
fn announce(room: &Room, channel: &str, action: &str, member: &str) {
    if room.watchers.is_empty() {
        return;
    }
    let event = format!(r#"{{"presence":"{action}","channel":"{channel}","member":{member}}}"#);
    let body = presence_body(&event, action);
    let mut routed: Option<Bytes> = None;
    for w in &room.watchers {
        let body = if w.subscriber.with_channel {
            routed
                .get_or_insert_with(|| herald_protocol::reply::channel_body(channel, &body))
                .clone()
        } else {
            body.clone()
        };
        // A refused push means that connection is closing.
        let _ = w.subscriber.outbox.push(Out::Data {
            prefix: w.subscriber.prefix.clone(),
            body,
        });
    }
}

/// The shared end of a presence `data` frame: the event as a JSON string, then the marker
/// AppSync clients ignore.
fn presence_body(event: &str, action: &str) -> Bytes {
    let token = serde_json::to_string(event).unwrap_or_default();
    let mut v = Vec::with_capacity(token.len() + 24);
    v.extend_from_slice(token.as_bytes());
    v.extend_from_slice(br#","presence":""#);
    v.extend_from_slice(action.as_bytes());
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

fn member_json(connection: &str, identity: Option<&str>, info: Option<&str>) -> Box<str> {
    let identity = serde_json::to_string(&identity).unwrap_or_else(|_| "null".into());
    let mut s = format!(
        r#"{{"connectionId":"{connection}","identity":{identity},"joinedAt":{}"#,
        crate::time::now_unix_ms()
    );
    if let Some(info) = info {
        s.push_str(r#","info":"#);
        s.push_str(info);
    }
    s.push('}');
    s.into_boxed_str()
}

/// Who a member is, as its subscription's credential established: the JWT user (its username,
/// else `sub`), the IAM principal, the API key's configured name. A Lambda authorizer names no
/// one (`null`), nor does an unnamed API key.
pub fn identity_name(identity: &herald_auth::Identity) -> Option<&str> {
    use herald_auth::Identity;
    match identity {
        Identity::ApiKey { name } => name.as_deref(),
        Identity::Jwt(j) => {
            let name = if j.username.is_empty() {
                j.sub.as_str()
            } else {
                j.username.as_str()
            };
            Some(name).filter(|s| !s.is_empty())
        }
        Identity::Iam(i) => Some(i.principal.as_str()),
        Identity::Lambda(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (Arc<Presence>, crate::metrics::Metrics) {
        let metrics = crate::metrics::Metrics::new(["chat", "chatter"]);
        let namespaces = [
            ("chat".to_owned(), PresenceConfig::default()),
            ("chatter".to_owned(), PresenceConfig::default()),
        ];
        (
            Arc::new(Presence::new(&namespaces, &metrics, None)),
            metrics,
        )
    }

    fn census(m: &crate::metrics::Metrics, ns: &str) -> (i64, i64) {
        let n = m.ns(ns);
        (n.presence_members.get(), n.presence_channels.get())
    }

    fn joining<'a>(c: &'a Arc<str>, who: &'a str) -> Joining<'a> {
        Joining {
            connection: c,
            identity: Some(who),
            info: Some(r#"{"n":1}"#),
            events: None,
        }
    }

    #[test]
    fn a_connection_is_one_member_however_many_subscriptions_it_holds() {
        let (p, m) = table();
        let (a, b) = (p.connection_id(), p.connection_id());
        let first = p.join("/chat/r", joining(&a, "ann"));
        let second = p.join("/chat/r", joining(&a, "ann"));
        let _other = p.join("/chat/r", joining(&b, "bob"));
        assert_eq!(p.read("/chat/r", true, None, 10).count, 2);
        drop(first);
        assert_eq!(p.read("/chat/r", true, None, 10).count, 2);
        drop(second);
        assert_eq!(p.read("/chat/r", true, None, 10).count, 1);
        assert_eq!(census(&m, "chat"), (1, 1));
    }

    #[test]
    fn pages_in_connection_order() {
        let (p, _m) = table();
        let ids: Vec<Arc<str>> = (0..5).map(|_| p.connection_id()).collect();
        let _held: Vec<_> = ids
            .iter()
            .map(|c| p.join("/chat/r", joining(c, "x")))
            .collect();
        let first = p.read("/chat/r", false, None, 2);
        assert_eq!((first.count, first.members.len()), (5, 2));
        let mut seen = first.members.len();
        let mut next = first.next;
        while let Some(after) = next {
            let page = p.read("/chat/r", false, Some(&after), 2);
            seen += page.members.len();
            next = page.next;
        }
        assert_eq!(seen, 5);
        let member: serde_json::Value =
            serde_json::from_str(&p.read("/chat/r", false, None, 1).members[0]).unwrap();
        assert_eq!(member["identity"], "x");
        assert_eq!(member["info"]["n"], 1);
    }

    #[test]
    fn census_counts_only_its_namespace() {
        let (p, m) = table();
        let c = p.connection_id();
        let a = p.join("/chat/r", joining(&c, "x"));
        let _b = p.join("/chatter/r", joining(&c, "x"));
        let _c = p.join("/chatter/s", joining(&c, "x"));
        assert_eq!(census(&m, "chat"), (1, 1));
        assert_eq!(census(&m, "chatter"), (2, 2));
        drop(a);
        assert_eq!(census(&m, "chat"), (0, 0));
    }
}
