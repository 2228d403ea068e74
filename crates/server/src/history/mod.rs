//! Channel history in the server: storing events before they are acknowledged, stamping data
//! frames with positions, replaying missed events to a resuming subscription, and the HTTP
//! history endpoint's reads.
//!
//! Each namespace with history has one *lane*: a task that takes publishes and resumes in
//! arrival order. A round takes every publish waiting (group commit: appends of all channels in
//! the round are in flight together, so the store shares one fsync among them), then delivers
//! each channel's events in offset order and answers the publishers. A resume runs between rounds,
//! so nothing is delivered in its namespace while it reads history and registers the
//! subscription: the replay ends exactly where live delivery starts — no gap, no duplicate.
//!
//! In cluster mode the store is JetStream and the lane only appends; each node follows every
//! history namespace's stream and delivers from it, and resumes run in that follower (`cluster`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use herald_history::{
    AnyStore, FjallOptions, FjallStore, HistoryError, HistoryStore, JetStreamOptions,
    JetStreamStore, MemoryOptions, MemoryStore, Position, ReadOutcome, Retention, Since,
    StoredEvent, SyncPolicy, UnrecoverableReason,
};
use herald_protocol::reply::{self, ResumeReport, StreamPosition};
use herald_protocol::{Channel, ErrorType, Pattern, Resume, WireError};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, HistoryBackend, HistorySync};
use crate::connection::outbox::Out;
use crate::hub::{Broker, Subscriber};

mod cluster;

/// Most publish requests waiting in one lane; publishers wait for room beyond it.
const LANE_QUEUE: usize = 4096;
/// Most events committed in one round.
const ROUND_EVENTS: usize = 2048;
/// Events read from the store per call while replaying.
const READ_PAGE: usize = 500;

/// The store, whichever backend the configuration picked.
pub type Store = AnyStore;

/// What a publish got from history.
pub struct Appended {
    pub positions: Vec<Position>,
    pub time_ms: u64,
    /// Subscriptions each event was delivered to, when the broker can count them.
    pub delivered: Option<usize>,
}

enum Job {
    Append {
        channel: Channel,
        tokens: Vec<Bytes>,
        reply: oneshot::Sender<Result<Appended, WireError>>,
    },
    Resume {
        id: String,
        pattern: Pattern,
        from: Resume,
        subscriber: Arc<Subscriber>,
        reply: oneshot::Sender<ResumeReport>,
    },
}

/// Where one namespace's jobs go: appends to its lane; resumes to the lane too, or to the
/// namespace's follower in cluster mode (where deliveries come from).
struct Lanes {
    append: mpsc::Sender<Job>,
    resume: mpsc::Sender<Job>,
}

/// History for every namespace that keeps it.
pub struct History {
    store: Arc<Store>,
    lanes: HashMap<String, Lanes>,
}

fn unavailable(e: impl std::fmt::Display) -> WireError {
    tracing::error!(error = %e, "history store failed");
    WireError::new(
        ErrorType::Internal,
        format!("the event could not be stored: {e}"),
    )
}

impl History {
    /// Opens the store and starts one lane per history namespace. `None` when no namespace
    /// keeps history.
    pub fn start(
        config: &Config,
        broker: Arc<dyn Broker>,
    ) -> Result<Option<History>, HistoryError> {
        let namespaces = kept(config);
        if namespaces.is_empty() {
            return Ok(None);
        }
        let h = &config.history;
        let store = match h.backend {
            HistoryBackend::Memory => {
                Store::Memory(MemoryStore::with_options(MemoryOptions::default()))
            }
            HistoryBackend::Fjall => {
                let sync = match h.sync {
                    HistorySync::Always => SyncPolicy::Always,
                    HistorySync::Interval => SyncPolicy::IntervalMs(h.sync_interval_ms),
                    HistorySync::Never => SyncPolicy::Never,
                };
                let options = FjallOptions {
                    sync,
                    ..FjallOptions::default()
                };
                Store::Fjall(FjallStore::open_with(
                    config.data_dir.join("history"),
                    options,
                )?)
            }
        };
        let store = Arc::new(store);
        let mut lanes = HashMap::new();
        for (name, retention) in namespaces {
            store.set_retention(&name, retention);
            let (tx, rx) = mpsc::channel(LANE_QUEUE);
            let lane = Lane::new(&name, &store, &broker, config, true);
            tokio::spawn(lane.run(rx));
            let resume = tx.clone();
            lanes.insert(name, Lanes { append: tx, resume });
        }
        Ok(Some(History { store, lanes }))
    }

    /// Cluster mode: history in JetStream over the node's NATS connection. Each namespace gets
    /// a lane that appends and a follower that delivers what any node stored, in stream order.
    pub async fn start_cluster(
        config: &Config,
        broker: Arc<dyn Broker>,
        client: async_nats::Client,
    ) -> Result<Option<History>, HistoryError> {
        let namespaces = kept(config);
        if namespaces.is_empty() {
            return Ok(None);
        }
        let options = JetStreamOptions {
            subject_prefix: config.cluster.prefix().to_owned(),
            replicas: config.cluster.history_replicas.max(1),
        };
        let js = JetStreamStore::open(client, &options, &namespaces).await?;
        let mut followers = Vec::new();
        for (name, _) in &namespaces {
            followers.push((name.clone(), js.follow(name).await?));
        }
        let store = Arc::new(Store::JetStream(Box::new(js)));
        let mut lanes = HashMap::new();
        for (name, follower) in followers {
            let (append, rx) = mpsc::channel(LANE_QUEUE);
            tokio::spawn(Lane::new(&name, &store, &broker, config, false).run(rx));
            let (resume, jobs) = mpsc::channel(LANE_QUEUE);
            let lane = Lane::new(&name, &store, &broker, config, false);
            tokio::spawn(cluster::follow(lane, jobs, follower));
            lanes.insert(name, Lanes { append, resume });
        }
        Ok(Some(History { store, lanes }))
    }

    /// Whether a namespace keeps history.
    pub fn keeps(&self, namespace: &str) -> bool {
        self.lanes.contains_key(namespace)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores the events (durably, under the sync policy) and delivers them in channel order.
    pub async fn append(
        &self,
        channel: &Channel,
        tokens: Vec<Bytes>,
    ) -> Result<Appended, WireError> {
        let lane = self
            .lanes
            .get(channel.namespace())
            .ok_or_else(|| unavailable("no history lane for this namespace"))?;
        let (reply, answer) = oneshot::channel();
        lane.append
            .send(Job::Append {
                channel: channel.clone(),
                tokens,
                reply,
            })
            .await
            .map_err(|_| unavailable("history lane stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("history lane stopped"))?
    }

    /// Replays what `subscriber` missed since `from`, sends `subscribe_success` (with the
    /// resume report) before the replay, then registers the subscription for live events.
    /// Returns once the subscription is live, with what was recovered.
    pub async fn resume(
        &self,
        id: &str,
        pattern: &Pattern,
        from: Resume,
        subscriber: Arc<Subscriber>,
    ) -> Result<ResumeReport, WireError> {
        let lane = self
            .lanes
            .get(pattern.namespace())
            .ok_or_else(|| unavailable("no history lane for this namespace"))?;
        let (reply, done) = oneshot::channel();
        lane.resume
            .send(Job::Resume {
                id: id.to_owned(),
                pattern: pattern.clone(),
                from,
                subscriber,
                reply,
            })
            .await
            .map_err(|_| unavailable("history lane stopped"))?;
        done.await.map_err(|_| unavailable("history lane stopped"))
    }
}

/// Converts a store position for the wire.
pub fn wire(p: Position) -> StreamPosition {
    StreamPosition {
        epoch: p.epoch,
        offset: p.offset,
    }
}

/// The data body of a stored event.
pub fn body(channel: &str, event: &StoredEvent) -> Bytes {
    let token = std::str::from_utf8(&event.payload).unwrap_or("null");
    reply::data_body_at(token, channel, wire(event.position), event.time_ms)
}

pub fn reason(r: UnrecoverableReason) -> &'static str {
    match r {
        UnrecoverableReason::EpochMismatch | UnrecoverableReason::AheadOfTop => "epoch_changed",
        UnrecoverableReason::Expired => "expired",
    }
}

/// The namespaces that keep history, with their retention.
fn kept(config: &Config) -> Vec<(String, Retention)> {
    config
        .namespaces
        .iter()
        .filter_map(|ns| {
            let h = ns.history.as_ref()?;
            Some((
                ns.name.clone(),
                Retention {
                    max_age: h.max_age_secs.map(std::time::Duration::from_secs),
                    max_count: h.max_count,
                },
            ))
        })
        .collect()
}

struct Lane {
    namespace: String,
    store: Arc<Store>,
    broker: Arc<dyn Broker>,
    max_replay: usize,
    /// Whether the lane delivers what it stored (a single node), or a follower does (cluster).
    deliver: bool,
}

type AppendJob = (
    Channel,
    Vec<Bytes>,
    oneshot::Sender<Result<Appended, WireError>>,
);

impl Lane {
    fn new(
        namespace: &str,
        store: &Arc<Store>,
        broker: &Arc<dyn Broker>,
        config: &Config,
        deliver: bool,
    ) -> Lane {
        Lane {
            namespace: namespace.to_owned(),
            store: store.clone(),
            broker: broker.clone(),
            max_replay: config.history.max_replay_events,
            deliver,
        }
    }

    /// A store read; `max_seq` caps a JetStream read at what this node's follower delivered.
    async fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
        max_seq: u64,
    ) -> Result<ReadOutcome, HistoryError> {
        match &*self.store {
            AnyStore::JetStream(js) => js.read_until(channel, since, limit, max_seq).await,
            store => store.read(channel, since, limit).await,
        }
    }

    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut held: Option<Job> = None;
        loop {
            let job = match held.take() {
                Some(job) => job,
                None => match rx.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            match job {
                Job::Resume {
                    id,
                    pattern,
                    from,
                    subscriber,
                    reply,
                } => {
                    let report = self.resume(&id, &pattern, from, subscriber, u64::MAX).await;
                    let _ = reply.send(report);
                }
                Job::Append {
                    channel,
                    tokens,
                    reply,
                } => {
                    let mut events = tokens.len();
                    let mut round: Vec<AppendJob> = vec![(channel, tokens, reply)];
                    while events < ROUND_EVENTS {
                        match rx.try_recv() {
                            Ok(Job::Append {
                                channel,
                                tokens,
                                reply,
                            }) => {
                                events += tokens.len();
                                round.push((channel, tokens, reply));
                            }
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(round).await;
                }
            }
        }
    }

    /// Appends every channel of the round concurrently (one shared fsync), then delivers.
    async fn commit(&self, round: Vec<AppendJob>) {
        // Group by channel, keeping arrival order within each channel.
        let mut groups: Vec<(Channel, Vec<AppendJob>)> = Vec::new();
        let mut index: HashMap<Channel, usize> = HashMap::new();
        for job in round {
            match index.get(&job.0).and_then(|&i| groups.get_mut(i)) {
                Some((_, jobs)) => jobs.push(job),
                None => {
                    index.insert(job.0.clone(), groups.len());
                    groups.push((job.0.clone(), vec![job]));
                }
            }
        }
        let time_ms = crate::time::now_unix_ms();
        let mut appends = tokio::task::JoinSet::new();
        for (i, (channel, jobs)) in groups.iter().enumerate() {
            let tokens: Vec<Bytes> = jobs.iter().flat_map(|j| j.1.iter().cloned()).collect();
            let store = self.store.clone();
            let ns = self.namespace.clone();
            let channel = channel.as_str().to_owned();
            appends.spawn(async move { (i, store.append(&ns, &channel, tokens, time_ms).await) });
        }
        let mut results: Vec<Option<Result<Vec<Position>, HistoryError>>> =
            (0..groups.len()).map(|_| None).collect();
        while let Some(done) = appends.join_next().await {
            match done {
                Ok((i, r)) => {
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Some(r);
                    }
                }
                Err(e) => tracing::error!(error = %e, "history append task failed"),
            }
        }
        for ((channel, jobs), result) in groups.into_iter().zip(results) {
            let positions = match result {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    let err = unavailable(&e);
                    for (_, _, reply) in jobs {
                        let _ = reply.send(Err(err.clone()));
                    }
                    continue;
                }
                None => {
                    for (_, _, reply) in jobs {
                        let _ = reply.send(Err(unavailable("history append was lost")));
                    }
                    continue;
                }
            };
            let mut positions = positions.into_iter();
            for (_, tokens, reply) in jobs {
                let mine: Vec<Position> = positions.by_ref().take(tokens.len()).collect();
                let delivered = if self.deliver {
                    self.fan_out(&channel, &tokens, &mine, time_ms).await
                } else {
                    // Every node's follower delivers it, from the stream.
                    None
                };
                let _ = reply.send(Ok(Appended {
                    positions: mine,
                    time_ms,
                    delivered,
                }));
            }
        }
    }

    /// Delivers stored events with their positions.
    async fn fan_out(
        &self,
        channel: &Channel,
        tokens: &[Bytes],
        positions: &[Position],
        time_ms: u64,
    ) -> Option<usize> {
        let bodies: Vec<Bytes> = tokens
            .iter()
            .zip(positions)
            .map(|(t, p)| {
                let token = std::str::from_utf8(t).unwrap_or("null");
                reply::data_body_at(token, channel.as_str(), wire(*p), time_ms)
            })
            .collect();
        match self.broker.publish(channel, &bodies).await {
            Ok(d) => d,
            Err(e) => {
                // Stored but not fanned out: resuming subscribers will still get it.
                tracing::warn!(error = %e, "stored events could not be fanned out");
                Some(0)
            }
        }
    }

    async fn resume(
        &self,
        id: &str,
        pattern: &Pattern,
        from: Resume,
        subscriber: Arc<Subscriber>,
        max_seq: u64,
    ) -> ResumeReport {
        let mut frames: Vec<Bytes> = Vec::new();
        let mut report = ResumeReport {
            recovered: true,
            replayed: 0,
            reason: None,
        };
        let channels: Vec<(String, Since)> = match pattern {
            Pattern::Exact(c) => {
                let since = match (from.after, from.since_ms) {
                    (Some((epoch, offset)), _) => Since::After(Position { epoch, offset }),
                    (None, Some(t)) => Since::TimeMs(t),
                    (None, None) => {
                        match from.positions.iter().find(|(ch, _, _)| ch == c.as_str()) {
                            Some((_, epoch, offset)) => Since::After(Position {
                                epoch: *epoch,
                                offset: *offset,
                            }),
                            None => Since::Start,
                        }
                    }
                };
                vec![(c.as_str().to_owned(), since)]
            }
            Pattern::Below(prefix) => match self.store.channels_under(prefix.as_str()).await {
                Ok(list) => list
                    .into_iter()
                    .map(|ch| {
                        let since = match from.positions.iter().find(|(c, _, _)| *c == ch) {
                            Some((_, epoch, offset)) => Since::After(Position {
                                epoch: *epoch,
                                offset: *offset,
                            }),
                            None => from.since_ms.map_or(Since::Start, Since::TimeMs),
                        };
                        (ch, since)
                    })
                    .collect(),
                Err(e) => {
                    tracing::error!(error = %e, "history listing failed");
                    report.recovered = false;
                    report.reason = Some("unavailable");
                    Vec::new()
                }
            },
        };
        'channels: for (channel, mut since) in channels {
            loop {
                let room = self.max_replay.saturating_sub(frames.len());
                if room == 0 {
                    // Anything left? Then the client must page through the HTTP endpoint.
                    if let Ok(ReadOutcome::Events { events, .. }) =
                        self.read(&channel, since, 1, max_seq).await
                        && !events.is_empty()
                    {
                        report.recovered = false;
                        report.reason = Some("too_many");
                    }
                    break 'channels;
                }
                match self
                    .read(&channel, since, room.min(READ_PAGE), max_seq)
                    .await
                {
                    Ok(ReadOutcome::Events { events, top }) => {
                        let Some(last) = events.last().map(|e| e.position) else {
                            break;
                        };
                        frames.extend(events.iter().map(|e| body(&channel, e)));
                        if last.offset >= top.offset {
                            break;
                        }
                        since = Since::After(last);
                    }
                    Ok(ReadOutcome::Unrecoverable { reason: r, .. }) => {
                        report.recovered = false;
                        report.reason = Some(reason(r));
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "history read failed");
                        report.recovered = false;
                        report.reason = Some("unavailable");
                        break;
                    }
                }
            }
        }
        report.replayed = frames.len();
        // Reply, then the replay, then live: all through the one ordered outbox.
        let _ = subscriber
            .outbox
            .push(Out::Text(reply::subscribe_resumed(id, &report)));
        for body in frames {
            if subscriber
                .outbox
                .push(Out::Data {
                    prefix: subscriber.prefix.clone(),
                    body,
                })
                .is_err()
            {
                break;
            }
        }
        self.broker.subscribe(pattern, subscriber);
        report
    }
}
