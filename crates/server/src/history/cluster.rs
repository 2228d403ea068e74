//! Cluster history: JetStream stores every history namespace's events, one stream per namespace.
//!
//! Each namespace has an *appender* that stores rounds (answering `successful` once JetStream
//! stored them, without delivering), and a *follower*: every node follows each stream and
//! delivers each stored batch to its local subscribers, in stream order — so every node delivers
//! a channel's events in offset order, whichever node stored them.
//!
//! A resume reads beside the follower: it first waits until this node's follower has passed
//! everything stored when it began (the client's last position may come from a node that was
//! ahead of this one), then reads the stream up to what the follower has passed. Its last step
//! runs in the follower between batches: it reads up to the last batch delivered live, then
//! registers the subscription. The replay ends exactly where live delivery continues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_history::{
    AnyStore, Followed, Follower, HistoryError, HistoryStore, JetStreamStore, ReadOutcome,
    Retention, Since,
};
use herald_protocol::Channel;
use herald_protocol::{Pattern, Resume};
use tokio::sync::{Semaphore, mpsc, watch};

use super::pace::Pace;
use super::replay::{self, Bounds, FinishJob, Gone, Replay, Source};
use super::round::{self, Stored};
use super::{AppendJob, Appended, Beside, History, QUEUE, Queues, ReadLimits, body};
use crate::broker::local::Hub;
use crate::connection::outbox::Outbox;

/// Longest a resume waits for this node's follower to catch up with the stream.
const CATCH_UP: Duration = Duration::from_secs(10);

impl History {
    /// Starts, for each namespace of the opened JetStream store, an appender and a follower that
    /// delivers to this node's subscriptions (`hub`).
    pub async fn cluster(
        store: Arc<JetStreamStore>,
        namespaces: &[(String, Retention)],
        hub: Arc<Hub>,
        limits: ReadLimits,
    ) -> Result<History, HistoryError> {
        let mut queues = HashMap::new();
        for (name, _) in namespaces {
            let follower = store.follow(name).await?;
            let (append, appends) = mpsc::channel(QUEUE);
            tokio::spawn(store_rounds(store.clone(), name.clone(), appends));
            let (finish, finishes) = mpsc::channel(limits.concurrent);
            let (passed, seen) = watch::channel(follower.seen());
            let deliverer = Deliverer {
                namespace: name.clone(),
                store: store.clone(),
                hub: hub.clone(),
                bounds: limits.replay,
                passed,
            };
            tokio::spawn(deliverer.run(finishes, follower));
            let progress = Progress {
                store: store.clone(),
                namespace: name.clone(),
                seen,
            };
            queues.insert(
                name.clone(),
                Queues {
                    append,
                    finish,
                    reads: Arc::new(Semaphore::new(limits.concurrent)),
                    pace: Pace::new(limits.replay_per_second, limits.replay_bytes_per_second),
                    beside: Beside::Stream(progress),
                },
            );
        }
        Ok(History {
            store: Arc::new(AnyStore::JetStream(store)),
            queues,
            limits,
        })
    }
}

/// How far this node's follower of one namespace has got, for resumes reading beside it.
pub(super) struct Progress {
    store: Arc<JetStreamStore>,
    namespace: String,
    /// The last stream sequence the follower passed (everything up to it is delivered).
    seen: watch::Receiver<u64>,
}

impl Progress {
    /// A resume's first step: once the follower has passed what the stream held when called
    /// (or after [`CATCH_UP`]), reads the stream up to what the follower has passed.
    pub(super) async fn read(
        &self,
        pattern: &Pattern,
        from: &Resume,
        bounds: &Bounds,
        pace: &Pace,
        outbox: &Outbox,
        with_channel: bool,
    ) -> Result<Replay, Gone> {
        let mut seen = self.seen.clone();
        match self.store.last_sequence(&self.namespace).await {
            Ok(target) => {
                let caught_up = seen.wait_for(|s| *s >= target);
                if tokio::time::timeout(CATCH_UP, caught_up).await.is_err() {
                    // Replay stops at what was delivered live, so nothing is skipped; events the
                    // client saw elsewhere beyond that may reach it twice.
                    tracing::warn!(
                        namespace = %self.namespace,
                        seen = *seen.borrow(),
                        target,
                        "history follower did not catch up in time; resuming anyway"
                    );
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                "cannot read the stream's last sequence; resuming from what this node has"
            ),
        }
        let source = UpTo {
            store: &self.store,
            max_seq: *seen.borrow(),
        };
        replay::read(&source, pattern, from, bounds, pace, outbox, with_channel).await
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
    bounds: Bounds,
    /// Publishes `Follower::seen` after each delivery, for [`Progress`].
    passed: watch::Sender<u64>,
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
    async fn run(self, mut finishes: mpsc::Receiver<FinishJob>, mut follower: Follower) {
        loop {
            tokio::select! {
                batch = follower.next() => {
                    match batch {
                        Some(Ok(Some(batch))) => self.deliver(&batch),
                        Some(Ok(None)) => {}
                        Some(Err(e)) => {
                            // The consumer recreates itself after outages; avoid spinning
                            // meanwhile.
                            tracing::warn!(namespace = %self.namespace, error = %e, "history follower");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        None => return,
                    }
                    let seen = follower.seen();
                    self.passed.send_if_modified(|s| std::mem::replace(s, seen) != seen);
                }
                job = finishes.recv() => match job {
                    Some(job) => {
                        // Everything up to `seen` was delivered live: replay stops there.
                        let source = UpTo { store: &self.store, max_seq: follower.seen() };
                        replay::finish(&source, &*self.hub, &self.bounds, job).await;
                    }
                    None => return,
                },
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
