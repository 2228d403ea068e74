//! [`JetStreamStore`]: history kept in NATS JetStream, shared by every node of a cluster.
//!
//! # Layout
//!
//! One stream per history namespace, `<PREFIX>_history_<namespace>`, on the subjects
//! `<prefix>._h.<namespace>` and `<prefix>._h.<namespace>.>` (channel `/ns/a/b` is the subject
//! `<prefix>._h.ns.a.b`; `_h` can never be a namespace, so these subjects never meet the core
//! fan-out subjects of `cluster.rs`). Retention maps to the stream's `max_age` and
//! `max_msgs_per_subject`.
//!
//! One JetStream message is one *batch*: the events one append stored together on one channel,
//! length-prefixed in the payload, with headers `Herald-Offset` (the batch's first offset),
//! `Herald-Start` (the first offset of the channel's chain) and `Herald-Time`.
//!
//! # Offsets without gaps across nodes
//!
//! Every append names the stream sequence of the channel's newest batch in
//! `Nats-Expected-Last-Subject-Sequence`, so JetStream refuses it if another node appended in
//! between; the loser reloads the channel's tip and tries again. Offsets therefore continue the
//! newest batch's offsets exactly, whichever node appends.
//!
//! When a channel has no batch at all (new, or retention removed everything), a new *chain*
//! starts at `(stream's last sequence + 1) × 4096`. Each batch holds at most 4096 events and
//! sits at a higher stream sequence than the one before it, so a new chain starts above every
//! offset an older chain of that channel can have used: offsets are never reused within the
//! stream's epoch, and a client holding an old chain's position is told it expired.
//!
//! The epoch is chosen by whichever node creates the stream and kept in the stream's
//! description, so all nodes agree on it; deleting the stream changes it.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use herald_protocol::channel::namespace_of;

use crate::common::{new_epoch, validate_append};
use crate::types::{
    HistoryError, Position, ReadOutcome, Retention, Since, StoredEvent, UnrecoverableReason,
};

/// Most events in one batch; offsets of a new chain are spaced by this much per sequence.
const BATCH_EVENTS: u64 = 4096;
/// Most payload bytes in one batch (NATS's default `max_payload` is 1 MiB).
const BATCH_BYTES: usize = 512 << 10;
/// Appends retried after another node won the race for a channel's tip.
const CAS_ATTEMPTS: usize = 64;
/// Channel tips cached per node; the cache is cleared when it grows past this.
const TIP_CACHE: usize = 65_536;

/// Longest pull of a follower; its heartbeat is half of it.
const FOLLOW_PULL: Duration = Duration::from_secs(2);

const H_OFFSET: &str = "Herald-Offset";
const H_START: &str = "Herald-Start";
const H_TIME: &str = "Herald-Time";
const H_EXPECT: &str = "Nats-Expected-Last-Subject-Sequence";
const EPOCH_TAG: &str = "herald history epoch ";

/// How to reach and lay out JetStream history.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// First token of every subject (the cluster's subject prefix).
    pub subject_prefix: String,
    /// Stream replicas (1 for a single NATS server, 3 for a NATS cluster).
    pub replicas: usize,
}

/// One namespace's stream.
struct Namespace {
    stream: stream::Stream,
    name: String,
    epoch: u64,
    retention: RwLock<Retention>,
}

/// The newest batch of a channel, as far as this node knows.
#[derive(Debug, Clone, Copy)]
struct Tip {
    seq: u64,
    last: u64,
    start: u64,
    time_ms: u64,
}

/// One stored batch, decoded.
#[derive(Debug, Clone)]
struct Batch {
    seq: u64,
    first: u64,
    start: u64,
    time_ms: u64,
    events: Vec<Bytes>,
}

impl Batch {
    fn last(&self) -> u64 {
        // Saturating: headers come over the network.
        self.first
            .saturating_add((self.events.len() as u64).saturating_sub(1))
    }

    fn tip(&self) -> Tip {
        Tip {
            seq: self.seq,
            last: self.last(),
            start: self.start,
            time_ms: self.time_ms,
        }
    }
}

/// A batch of events as it reached a follower, in stream order.
#[derive(Debug, Clone)]
pub struct Followed {
    /// Its stream sequence.
    pub seq: u64,
    /// The channel, e.g. `/chat/room1`.
    pub channel: String,
    /// Its events with their positions.
    pub events: Vec<StoredEvent>,
}

/// Every batch stored in one namespace from a point on, in stream order, as an ordered
/// consumer that recreates itself after NATS outages and resumes where it stopped.
pub struct Follower {
    messages: jetstream::consumer::pull::Ordered,
    prefix: String,
    epoch: u64,
    /// The stream's last sequence when following started: everything after it is delivered.
    pub start: u64,
    /// The last stream sequence this follower has passed, skipped messages included.
    seen: u64,
}

impl Follower {
    /// The last stream sequence passed (delivered or skipped); the follower has handed out
    /// every batch up to it.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The next message of the stream: `Some(Ok(Some(batch)))` for a stored batch,
    /// `Some(Ok(None))` for a message that is not a Herald batch (skipped, with a warning, but
    /// counted in [`Follower::seen`]), `None` when the consumer ended (shutting down).
    pub async fn next(&mut self) -> Option<Result<Option<Followed>, HistoryError>> {
        let message = match self.messages.next().await? {
            Ok(m) => m,
            Err(e) => return Some(Err(storage(e))),
        };
        let Ok(info) = message.info() else {
            return Some(Ok(None));
        };
        let seq = info.stream_sequence;
        self.seen = self.seen.max(seq);
        let batch = channel_of(&self.prefix, &message.subject).and_then(|channel| {
            let headers = message.headers.clone().unwrap_or_default();
            let batch = decode(seq, &headers, &message.payload)?;
            Some(Followed {
                seq,
                events: stored(self.epoch, &batch, 0),
                channel,
            })
        });
        if batch.is_none() {
            tracing::warn!(seq, subject = %message.subject, "skipping a history message Herald did not write");
        }
        Some(Ok(batch))
    }
}

/// History in NATS JetStream: see the module docs.
pub struct JetStreamStore {
    js: jetstream::Context,
    prefix: String,
    namespaces: HashMap<String, Namespace>,
    tips: Mutex<HashMap<String, Tip>>,
}

/// What to check when a stream cannot be created, when the error points somewhere.
fn create_hint(error: &jetstream::context::CreateStreamError, replicas: usize) -> String {
    use jetstream::context::CreateStreamErrorKind as Kind;
    match error.kind() {
        Kind::JetStreamUnavailable | Kind::TimedOut => {
            " (is JetStream enabled on the NATS server?)".to_owned()
        }
        Kind::JetStream(e) if replicas > 1 && e.to_string().contains("replicas") => format!(
            " (cluster.history_replicas is {replicas}: a single NATS server, not clustered, keeps only 1 replica)"
        ),
        _ => String::new(),
    }
}

fn storage(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(format!("JetStream: {e}"))
}

fn parse_header(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.as_str().parse().ok()
}

fn decode(seq: u64, headers: &HeaderMap, payload: &Bytes) -> Option<Batch> {
    let first = parse_header(headers, H_OFFSET)?;
    let start = parse_header(headers, H_START)?;
    let time_ms = parse_header(headers, H_TIME)?;
    let mut events = Vec::new();
    let mut at = 0usize;
    while at < payload.len() {
        let len_bytes: [u8; 4] = payload.get(at..at + 4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let body = at + 4;
        if payload.len() < body + len {
            return None;
        }
        events.push(payload.slice(body..body + len));
        at = body + len;
    }
    if events.is_empty() || first == 0 || start > first {
        return None;
    }
    Some(Batch {
        seq,
        first,
        start,
        time_ms,
        events,
    })
}

fn encode(events: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(events.iter().map(|e| e.len() + 4).sum());
    for e in events {
        out.put_u32(u32::try_from(e.len()).unwrap_or(u32::MAX));
        out.put_slice(e);
    }
    out.freeze()
}

/// Events of `batch` from offset `from` on, with positions.
fn stored(epoch: u64, batch: &Batch, from: u64) -> Vec<StoredEvent> {
    batch
        .events
        .iter()
        .enumerate()
        .map(|(i, payload)| StoredEvent {
            position: Position {
                epoch,
                offset: batch.first.saturating_add(i as u64),
            },
            time_ms: batch.time_ms,
            payload: payload.clone(),
        })
        .filter(|e| e.position.offset >= from)
        .collect()
}

/// `/ns/a/b` from `<prefix>.ns.a.b`.
fn channel_of(prefix: &str, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    Some(format!("/{}", rest.replace('.', "/")))
}

/// Stream names may not hold `.`, `*`, `>` or whitespace.
fn stream_name(prefix: &str, namespace: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}_history_{namespace}")
}

fn epoch_of(config: &stream::Config) -> Option<u64> {
    config
        .description
        .as_deref()?
        .strip_prefix(EPOCH_TAG)?
        .parse()
        .ok()
}

impl JetStreamStore {
    /// Creates (or adopts) one stream per namespace with its retention. Fails when JetStream is
    /// not enabled on the NATS server, or a stream of that name exists but is not Herald's.
    pub async fn open(
        client: async_nats::Client,
        options: &JetStreamOptions,
        namespaces: &[(String, Retention)],
    ) -> Result<JetStreamStore, HistoryError> {
        let js = jetstream::new(client);
        let prefix = format!("{}._h", options.subject_prefix);
        let mut opened = HashMap::new();
        for (namespace, retention) in namespaces {
            let name = stream_name(&options.subject_prefix, namespace);
            let ns = Self::open_stream(&js, &prefix, &name, namespace, *retention, options).await?;
            opened.insert(namespace.clone(), ns);
        }
        Ok(JetStreamStore {
            js,
            prefix,
            namespaces: opened,
            tips: Mutex::new(HashMap::new()),
        })
    }

    async fn open_stream(
        js: &jetstream::Context,
        prefix: &str,
        name: &str,
        namespace: &str,
        retention: Retention,
        options: &JetStreamOptions,
    ) -> Result<Namespace, HistoryError> {
        let wanted = |description: String| stream::Config {
            name: name.to_owned(),
            description: Some(description),
            subjects: vec![
                format!("{prefix}.{namespace}"),
                format!("{prefix}.{namespace}.>"),
            ],
            storage: stream::StorageType::File,
            num_replicas: options.replicas.max(1),
            discard: stream::DiscardPolicy::Old,
            max_age: retention.max_age.unwrap_or(Duration::ZERO),
            // 0 keeps nothing for Herald but means "unlimited" to JetStream: keep one batch and
            // hide it when reading (see `visible_from`).
            max_messages_per_subject: retention
                .max_count
                .map_or(-1, |n| i64::try_from(n.max(1)).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let stream = match js.get_stream(name).await {
            Ok(s) => s,
            Err(_) => {
                let config = wanted(format!("{EPOCH_TAG}{}", new_epoch()));
                match js.create_stream(config).await {
                    Ok(s) => s,
                    // Another node created it first: adopt theirs (and their epoch). When it
                    // is not there either, the creation's error is the cause worth reporting
                    // (e.g. "replicas > 1 not supported in non-clustered mode").
                    Err(create) => js.get_stream(name).await.map_err(|_| {
                        let why = format!(
                            "cannot create stream {name}: {create}{}",
                            create_hint(&create, options.replicas)
                        );
                        // NATS answered and refused: not a passing outage.
                        match create.kind() {
                            jetstream::context::CreateStreamErrorKind::JetStream(_) => {
                                HistoryError::Setup(why)
                            }
                            _ => storage(why),
                        }
                    })?,
                }
            }
        };
        let info = stream.cached_info().clone();
        let epoch = epoch_of(&info.config).ok_or_else(|| {
            storage(format!(
                "stream {name} exists but was not created by Herald (no epoch in its description); delete it or pick another cluster.subject_prefix"
            ))
        })?;
        let config = wanted(format!("{EPOCH_TAG}{epoch}"));
        if info.config.max_age != config.max_age
            || info.config.max_messages_per_subject != config.max_messages_per_subject
            || info.config.subjects != config.subjects
        {
            let mut updated = info.config.clone();
            updated.max_age = config.max_age;
            updated.max_messages_per_subject = config.max_messages_per_subject;
            updated.subjects = config.subjects;
            js.update_stream(updated)
                .await
                .map_err(|e| storage(format!("cannot update stream {name}: {e}")))?;
        }
        Ok(Namespace {
            stream,
            name: name.to_owned(),
            epoch,
            retention: RwLock::new(retention),
        })
    }

    fn namespace(&self, channel: &str) -> Option<&Namespace> {
        self.namespaces.get(namespace_of(channel))
    }

    fn subject(&self, channel: &str) -> String {
        format!(
            "{}.{}",
            self.prefix,
            channel.trim_start_matches('/').replace('/', ".")
        )
    }

    /// Follows a namespace: every batch stored after this call, in stream order.
    pub async fn follow(&self, namespace: &str) -> Result<Follower, HistoryError> {
        let ns = self
            .namespaces
            .get(namespace)
            .ok_or_else(|| storage(format!("no stream for namespace {namespace}")))?;
        let start = self.last_sequence(namespace).await?;
        let consumer = ns
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start + 1,
                },
                // Short pulls mean a 1 s heartbeat: a consumer lost with its NATS server is
                // noticed and recreated (from the last delivered sequence) in about 2 s, not 30.
                max_expires: FOLLOW_PULL,
                ..Default::default()
            })
            .await
            .map_err(|e| storage(format!("cannot follow stream {}: {e}", ns.name)))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| storage(format!("cannot follow stream {}: {e}", ns.name)))?;
        Ok(Follower {
            messages,
            prefix: self.prefix.clone(),
            epoch: ns.epoch,
            start,
            seen: start,
        })
    }

    /// The namespace stream's newest sequence (0 when empty).
    pub async fn last_sequence(&self, namespace: &str) -> Result<u64, HistoryError> {
        let ns = self
            .namespaces
            .get(namespace)
            .ok_or_else(|| storage(format!("no stream for namespace {namespace}")))?;
        let info = ns.stream.get_info().await.map_err(storage)?;
        Ok(info.state.last_sequence)
    }

    /// The newest message of a subject: its stream sequence, and the batch it holds unless it
    /// is not a Herald batch (written by something else).
    async fn last_message(
        &self,
        ns: &Namespace,
        subject: &str,
    ) -> Result<Option<(u64, Option<Batch>)>, HistoryError> {
        match ns.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some((
                m.sequence,
                decode(m.sequence, &m.headers, &m.payload),
            ))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    /// The newest batch of a subject.
    async fn last_batch(
        &self,
        ns: &Namespace,
        subject: &str,
    ) -> Result<Option<Batch>, HistoryError> {
        Ok(self
            .last_message(ns, subject)
            .await?
            .and_then(|(_, batch)| batch))
    }

    /// The tip an append continues from. A newest message that is not a Herald batch gives
    /// `last: 0`: the append expects it and starts a new chain, so a stray message cannot wedge
    /// the channel.
    async fn last_tip(&self, ns: &Namespace, subject: &str) -> Result<Option<Tip>, HistoryError> {
        Ok(self.last_message(ns, subject).await?.map(|(seq, batch)| {
            batch.map_or(
                Tip {
                    seq,
                    last: 0,
                    start: 0,
                    time_ms: 0,
                },
                |b| b.tip(),
            )
        }))
    }

    /// The first batch of a subject at or after stream sequence `seq`, skipping messages that
    /// are not Herald batches.
    async fn batch_from(
        &self,
        ns: &Namespace,
        subject: &str,
        mut seq: u64,
    ) -> Result<Option<Batch>, HistoryError> {
        loop {
            match ns
                .stream
                .get_first_raw_message_by_subject(subject, seq)
                .await
            {
                Ok(m) => match decode(m.sequence, &m.headers, &m.payload) {
                    Some(batch) => return Ok(Some(batch)),
                    None => seq = m.sequence.saturating_add(1),
                },
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(storage(e)),
            }
        }
    }

    /// The first batch satisfying `pred` (monotone along the subject), given that `last`
    /// satisfies it: a binary search over stream sequences, one lookup per step.
    async fn first_where(
        &self,
        ns: &Namespace,
        subject: &str,
        last: Batch,
        pred: impl Fn(&Batch) -> bool,
    ) -> Result<Batch, HistoryError> {
        let mut best = last;
        let (mut lo, mut hi) = (1u64, best.seq);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.batch_from(ns, subject, mid).await? {
                Some(b) if b.seq < hi => {
                    if pred(&b) {
                        hi = b.seq;
                        best = b;
                    } else {
                        lo = b.seq + 1;
                    }
                }
                _ => hi = mid,
            }
        }
        Ok(best)
    }

    /// The lowest offset a read may return: count retention applies to events, while the
    /// stream can only limit batches, so the rest is hidden here.
    fn visible_from(ns: &Namespace, top: u64) -> u64 {
        let retention = *ns.retention.read().unwrap_or_else(|e| e.into_inner());
        match retention.max_count {
            Some(n) => top.saturating_add(1).saturating_sub(n),
            None => 0,
        }
    }

    /// Like [`HistoryStore::read`](crate::HistoryStore::read), but returns only batches with a
    /// stream sequence up to `max_seq`: a follower replays exactly what it has not delivered
    /// live yet.
    pub async fn read_until(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
        max_seq: u64,
    ) -> Result<ReadOutcome, HistoryError> {
        let Some(ns) = self.namespace(channel) else {
            return Ok(ReadOutcome::Events {
                events: Vec::new(),
                top: Position {
                    epoch: 1,
                    offset: 0,
                },
            });
        };
        let subject = self.subject(channel);
        let last = self.last_batch(ns, &subject).await?;
        let top_offset = last.as_ref().map_or(0, Batch::last);
        let top = Position {
            epoch: ns.epoch,
            offset: top_offset,
        };
        let unrecoverable = |reason| Ok(ReadOutcome::Unrecoverable { reason, top });
        let nothing = Ok(ReadOutcome::Events {
            events: Vec::new(),
            top,
        });
        let visible = Self::visible_from(ns, top_offset);
        let (first, from) = match since {
            Since::After(p) => {
                if p.epoch != ns.epoch {
                    return unrecoverable(UnrecoverableReason::EpochMismatch);
                }
                if p.offset == top_offset {
                    return nothing;
                }
                let Some(last) = last else {
                    // Everything this channel had is gone.
                    return unrecoverable(UnrecoverableReason::Expired);
                };
                if p.offset > top_offset {
                    return unrecoverable(UnrecoverableReason::AheadOfTop);
                }
                let need = p.offset + 1;
                let first = self
                    .first_where(ns, &subject, last, |b| b.last() >= need)
                    .await?;
                let from = if first.first <= need {
                    need
                } else if p.offset == 0 && first.first == first.start {
                    // Never saw an event, and this is the chain's very first batch.
                    first.first
                } else {
                    return unrecoverable(UnrecoverableReason::Expired);
                };
                if from < visible {
                    return unrecoverable(UnrecoverableReason::Expired);
                }
                (first, from)
            }
            Since::Start => {
                let Some(last) = last else { return nothing };
                // The current chain only: an older one ended in a gap.
                let floor = visible.max(last.start);
                let first = self
                    .first_where(ns, &subject, last, |b| b.last() >= floor)
                    .await?;
                let from = first.first.max(floor);
                (first, from)
            }
            Since::TimeMs(t) => {
                let Some(last) = last else { return nothing };
                if last.time_ms < t {
                    return nothing;
                }
                let start = last.start;
                let first = self
                    .first_where(ns, &subject, last, |b| b.time_ms >= t && b.first >= start)
                    .await?;
                if first.first < visible {
                    // Events at or after `t` were hidden by count retention.
                    return unrecoverable(UnrecoverableReason::Expired);
                }
                if first.first != first.start
                    && self.batch_before_is_gone(ns, &subject, &first).await?
                {
                    // Something before it was removed and may have been at or after `t`.
                    return unrecoverable(UnrecoverableReason::Expired);
                }
                (first.clone(), first.first)
            }
        };
        if first.seq > max_seq || limit == 0 {
            return nothing;
        }
        let mut events = stored(ns.epoch, &first, from);
        events.truncate(limit);
        let mut next = first.last().saturating_add(1);
        let mut seq = first.seq;
        while events.len() < limit && next <= top_offset {
            let Some(batch) = self.batch_from(ns, &subject, seq + 1).await? else {
                break;
            };
            // A batch removed under us, or beyond what the caller may see: stop here; the next
            // read tells the caller what happened.
            if batch.seq > max_seq || batch.first != next {
                break;
            }
            let room = limit - events.len();
            events.extend(stored(ns.epoch, &batch, next).into_iter().take(room));
            next = batch.last().saturating_add(1);
            seq = batch.seq;
        }
        Ok(ReadOutcome::Events { events, top })
    }

    /// Whether the batch just before `batch` in its chain is no longer stored.
    async fn batch_before_is_gone(
        &self,
        ns: &Namespace,
        subject: &str,
        batch: &Batch,
    ) -> Result<bool, HistoryError> {
        let Some(oldest) = self.batch_from(ns, subject, 1).await? else {
            return Ok(true);
        };
        Ok(oldest.seq == batch.seq)
    }

    fn cached_tip(&self, channel: &str) -> Option<Tip> {
        let tips = self.tips.lock().unwrap_or_else(|e| e.into_inner());
        tips.get(channel).copied()
    }

    fn remember(&self, channel: &str, tip: Option<Tip>) {
        let mut tips = self.tips.lock().unwrap_or_else(|e| e.into_inner());
        match tip {
            Some(tip) => {
                if tips.len() >= TIP_CACHE {
                    tips.clear();
                }
                tips.insert(channel.to_owned(), tip);
            }
            None => {
                tips.remove(channel);
            }
        }
    }

    /// Stores one batch after the channel's tip, retrying when another node got there first.
    async fn append_batch(
        &self,
        ns: &Namespace,
        channel: &str,
        subject: &str,
        events: &[Bytes],
        time_ms: u64,
    ) -> Result<Tip, HistoryError> {
        let payload = encode(events);
        let mut tip = self.cached_tip(channel);
        for _ in 0..CAS_ATTEMPTS {
            if tip.is_none() {
                tip = self.last_tip(ns, subject).await?;
            }
            let (expect, first, start, time_ms) = match tip {
                Some(t) if t.last > 0 => (
                    t.seq,
                    t.last.saturating_add(1),
                    t.start,
                    time_ms.max(t.time_ms),
                ),
                // No batch, or the newest message is not Herald's: start a new chain.
                other => {
                    let base = self
                        .last_sequence(namespace_of(channel))
                        .await?
                        .saturating_add(1)
                        .saturating_mul(BATCH_EVENTS);
                    (other.map_or(0, |t| t.seq), base, base, time_ms)
                }
            };
            let mut headers = HeaderMap::new();
            headers.insert(H_EXPECT, expect.to_string().as_str());
            headers.insert(H_OFFSET, first.to_string().as_str());
            headers.insert(H_START, start.to_string().as_str());
            headers.insert(H_TIME, time_ms.to_string().as_str());
            let sent = self
                .js
                .publish_with_headers(subject.to_owned(), headers, payload.clone())
                .await
                .map_err(storage)?;
            match sent.await {
                Ok(ack) => {
                    let tip = Tip {
                        seq: ack.sequence,
                        last: first.saturating_add(events.len() as u64 - 1),
                        start,
                        time_ms,
                    };
                    self.remember(channel, Some(tip));
                    return Ok(tip);
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    self.remember(channel, None);
                    tip = None;
                }
                Err(e) => return Err(storage(e)),
            }
        }
        Err(storage(format!(
            "channel {channel} is being appended to by other nodes too fast; retry"
        )))
    }
}

fn is_not_found(e: &stream::LastRawMessageError) -> bool {
    match e.kind() {
        stream::LastRawMessageErrorKind::NoMessageFound => true,
        stream::LastRawMessageErrorKind::JetStream(j) => {
            j.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND
        }
        _ => false,
    }
}

impl crate::HistoryStore for JetStreamStore {
    async fn append(
        &self,
        namespace: &str,
        channel: &str,
        events: Vec<Bytes>,
        time_ms: u64,
    ) -> Result<Vec<Position>, HistoryError> {
        validate_append(namespace, channel, &events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let ns = self
            .namespaces
            .get(namespace)
            .ok_or_else(|| storage(format!("namespace {namespace} has no history stream")))?;
        let subject = self.subject(channel);
        let mut positions = Vec::with_capacity(events.len());
        let mut rest = &events[..];
        while !rest.is_empty() {
            // A batch: at least one event, then as many as fit.
            let mut n = 1;
            let mut bytes = rest.first().map_or(0, Bytes::len);
            while let Some(e) = rest.get(n) {
                if n as u64 >= BATCH_EVENTS || bytes + e.len() > BATCH_BYTES {
                    break;
                }
                bytes += e.len();
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            let tip = self
                .append_batch(ns, channel, &subject, chunk, time_ms)
                .await?;
            let first = tip
                .last
                .saturating_add(1)
                .saturating_sub(chunk.len() as u64);
            positions.extend((first..=tip.last).map(|offset| Position {
                epoch: ns.epoch,
                offset,
            }));
            rest = tail;
        }
        Ok(positions)
    }

    async fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, HistoryError> {
        self.read_until(channel, since, limit, u64::MAX).await
    }

    async fn top(&self, channel: &str) -> Result<Position, HistoryError> {
        let Some(ns) = self.namespace(channel) else {
            return Ok(Position {
                epoch: 1,
                offset: 0,
            });
        };
        let last = self.last_batch(ns, &self.subject(channel)).await?;
        Ok(Position {
            epoch: ns.epoch,
            offset: last.map_or(0, |b| b.last()),
        })
    }

    async fn channels_under(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        let Some(ns) = self.namespace(prefix) else {
            return Ok(Vec::new());
        };
        let filter = format!("{}.>", self.subject(prefix));
        let mut subjects = ns
            .stream
            .info_with_subjects(filter)
            .await
            .map_err(storage)?;
        let mut channels = Vec::new();
        while let Some(entry) = subjects.next().await {
            let (subject, count) = entry.map_err(storage)?;
            if count > 0
                && let Some(channel) = channel_of(&self.prefix, &subject)
            {
                channels.push(channel);
            }
        }
        channels.sort();
        Ok(channels)
    }

    fn set_retention(&self, namespace: &str, retention: Retention) {
        // The stream's own limits are set when it is opened; this updates what reads hide.
        if let Some(ns) = self.namespaces.get(namespace) {
            *ns.retention.write().unwrap_or_else(|e| e.into_inner()) = retention;
        }
    }
}
