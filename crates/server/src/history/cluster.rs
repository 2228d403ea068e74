//! Cluster history: JetStream stores every history namespace's events, one stream per namespace.
//!
//! Each namespace has an *appender* that stores rounds (answering `successful` once JetStream
//! stored them, without delivering), and a *follower*: every node follows each stream and
//! delivers each stored batch to its local subscribers, in stream order — so every node delivers
//! a channel's events in offset order, whichever node stored them.
//!
//! A resume runs in the follower, between batches: it first catches up with everything stored
//! when it began (the client's last position may come from a node that was ahead of this one),
//! then replays from the store up to the last batch delivered live, then registers the
//! subscription. The replay ends exactly where live delivery continues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_history::{
    AnyStore, Followed, Follower, HistoryError, HistoryStore, JetStreamStore, ReadOutcome,
    Retention, Since,
};
use herald_protocol::Channel;
use tokio::sync::mpsc;

use super::replay::{self, Source};
use super::round::{self, Stored};
use super::{AppendJob, Appended, History, QUEUE, Queues, ResumeJob, body};
use crate::broker::local::Hub;

/// Longest a resume waits for this node's follower to catch up with the stream.
const CATCH_UP: Duration = Duration::from_secs(10);

impl History {
    /// Starts, for each namespace of the opened JetStream store, an appender and a follower that
    /// delivers to this node's subscriptions (`hub`).
    pub async fn cluster(
        store: Arc<JetStreamStore>,
        namespaces: &[(String, Retention)],
        hub: Arc<Hub>,
        max_replay: usize,
    ) -> Result<History, HistoryError> {
        let mut queues = HashMap::new();
        for (name, _) in namespaces {
            let follower = store.follow(name).await?;
            let (append, appends) = mpsc::channel(QUEUE);
            tokio::spawn(store_rounds(store.clone(), name.clone(), appends));
            let (resume, resumes) = mpsc::channel(QUEUE);
            let deliverer = Deliverer {
                namespace: name.clone(),
                store: store.clone(),
                hub: hub.clone(),
                max_replay,
            };
            tokio::spawn(deliverer.run(resumes, follower));
            queues.insert(name.clone(), Queues { append, resume });
        }
        Ok(History {
            store: Arc::new(AnyStore::JetStream(store)),
            queues,
        })
    }
}

/// The appender: stores rounds and answers; the followers deliver.
async fn store_rounds(
    store: Arc<JetStreamStore>,
    namespace: String,
    mut appends: mpsc::Receiver<AppendJob>,
) {
    while let Some(job) = appends.recv().await {
        let round = round::collect(job, &mut appends);
        let time_ms = crate::time::now_unix_ms();
        for Stored { jobs, .. } in round::commit(&store, &namespace, round, time_ms).await {
            for (job, positions) in jobs {
                let _ = job.reply.send(Ok(Appended {
                    positions,
                    time_ms,
                    // Every node's follower delivers it; nobody here can count them.
                    delivered: None,
                }));
            }
        }
    }
}

/// Follows one namespace's stream on this node.
struct Deliverer {
    namespace: String,
    store: Arc<JetStreamStore>,
    hub: Arc<Hub>,
    max_replay: usize,
}

/// The stream up to what this node's follower delivered live.
struct UpTo<'a> {
    store: &'a JetStreamStore,
    max_seq: u64,
}

impl Source for UpTo<'_> {
    async fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, HistoryError> {
        self.store
            .read_until(channel, since, limit, self.max_seq)
            .await
    }

    async fn channels_under(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        self.store.channels_under(prefix).await
    }
}

impl Deliverer {
    async fn run(self, mut resumes: mpsc::Receiver<ResumeJob>, mut follower: Follower) {
        loop {
            tokio::select! {
                batch = follower.next() => match batch {
                    Some(Ok(Some(batch))) => self.deliver(&batch),
                    Some(Ok(None)) => {}
                    Some(Err(e)) => {
                        // The consumer recreates itself after outages; avoid spinning meanwhile.
                        tracing::warn!(namespace = %self.namespace, error = %e, "history follower");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => return,
                },
                job = resumes.recv() => match job {
                    Some(job) => {
                        self.catch_up(&mut follower).await;
                        let source = UpTo { store: &self.store, max_seq: follower.seen() };
                        replay::run(&source, &*self.hub, job, self.max_replay).await;
                    }
                    None => return,
                },
            }
        }
    }

    /// Delivers what the stream held when called.
    async fn catch_up(&self, follower: &mut Follower) {
        let target = match self.store.last_sequence(&self.namespace).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stream's last sequence; resuming from what this node has");
                return;
            }
        };
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while follower.seen() < target {
            match tokio::time::timeout_at(deadline, follower.next()).await {
                Ok(Some(Ok(Some(batch)))) => self.deliver(&batch),
                Ok(Some(Ok(None))) => {}
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "history follower");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(None) => break,
                Err(_) => {
                    // Replay stops at what was delivered live, so nothing is skipped; events the
                    // client saw elsewhere beyond that may reach it twice.
                    tracing::warn!(
                        namespace = %self.namespace,
                        seen = follower.seen(),
                        target,
                        "history follower did not catch up in time; resuming anyway"
                    );
                    break;
                }
            }
        }
    }

    fn deliver(&self, batch: &Followed) {
        let Ok(channel) = Channel::parse(&batch.channel) else {
            return;
        };
        let bodies: Vec<Bytes> = batch
            .events
            .iter()
            .map(|e| body(&batch.channel, e))
            .collect();
        self.hub.deliver(&channel, &bodies);
    }
}
