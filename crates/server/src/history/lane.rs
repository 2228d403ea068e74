//! Embedded history: one *lane* per namespace, a task that is both its appender and its
//! deliverer. It stores a round, delivers each channel's events in offset order, answers the
//! publishers, and between rounds runs the short last step of resumes (see `replay`): by then
//! everything stored has been delivered.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use herald_history::{
    AnyStore, FjallOptions, FjallStore, HistoryError, HistoryStore, MemoryOptions, MemoryStore,
    Position, ReadOutcome, Since, SyncPolicy,
};
use herald_protocol::Channel;
use herald_protocol::reply;
use tokio::sync::mpsc;

use super::config::{HistoryBackend, HistoryConfig, HistorySync};
use super::replay::{self, Bounds, FinishJob, Source};
use super::round::{self, Stored};
use super::{AppendJob, Appended, Beside, History, QUEUE, Queues, ReadLimits, retention, wire};
use crate::broker::Broker;
use crate::namespace::NamespaceHistory;

impl History {
    /// Opens the configured embedded store and starts one lane per history namespace, delivering
    /// through `broker`. `None` when no namespace keeps history.
    pub fn embedded(
        config: &HistoryConfig,
        limits: ReadLimits,
        data_dir: &Path,
        namespaces: &[(String, NamespaceHistory)],
        broker: Arc<dyn Broker>,
    ) -> Result<Option<History>, HistoryError> {
        if namespaces.is_empty() {
            return Ok(None);
        }
        let store = Arc::new(match config.backend {
            HistoryBackend::Memory => {
                AnyStore::Memory(MemoryStore::with_options(MemoryOptions::default()))
            }
            HistoryBackend::Fjall => {
                let sync = match config.sync {
                    HistorySync::Always => SyncPolicy::Always,
                    HistorySync::Interval => SyncPolicy::IntervalMs(config.sync_interval_ms),
                    HistorySync::Never => SyncPolicy::Never,
                };
                let options = FjallOptions {
                    sync,
                    ..FjallOptions::default()
                };
                AnyStore::Fjall(FjallStore::open_with(data_dir.join("history"), options)?)
            }
        });
        let mut queues = std::collections::HashMap::new();
        for (name, kept) in namespaces {
            store.set_retention(name, retention(kept));
            let (append, appends) = mpsc::channel(QUEUE);
            let (finish, finishes) = mpsc::channel(limits.concurrent);
            let lane = Lane {
                namespace: name.clone(),
                store: store.clone(),
                broker: broker.clone(),
                bounds: limits.replay,
            };
            tokio::spawn(lane.run(appends, finishes));
            let reads = Arc::new(tokio::sync::Semaphore::new(limits.concurrent));
            queues.insert(
                name.clone(),
                Queues {
                    append,
                    finish,
                    reads,
                    pace: super::pace::Pace::new(
                        limits.replay_per_second,
                        limits.replay_bytes_per_second,
                    ),
                    beside: Beside::Store,
                },
            );
        }
        Ok(Some(History {
            store,
            queues,
            limits,
        }))
    }
}

struct Lane {
    namespace: String,
    store: Arc<AnyStore>,
    broker: Arc<dyn Broker>,
    bounds: Bounds,
}

impl Source for AnyStore {
    async fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, HistoryError> {
        HistoryStore::read(self, channel, since, limit).await
    }

    async fn channels_under(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        HistoryStore::channels_under(self, prefix).await
    }
}

impl Lane {
    async fn run(
        self,
        mut appends: mpsc::Receiver<AppendJob>,
        mut finishes: mpsc::Receiver<FinishJob>,
    ) {
        loop {
            tokio::select! {
                Some(job) = appends.recv() => {
                    let round = round::collect(job, &mut appends);
                    self.commit(round).await;
                }
                Some(job) = finishes.recv() => {
                    replay::finish(&*self.store, &*self.broker, &self.bounds, job).await;
                }
                else => return,
            }
        }
    }

    /// Stores a round, then delivers and answers each publish in arrival order.
    async fn commit(&self, round: Vec<AppendJob>) {
        let time_ms = crate::time::now_unix_ms();
        for Stored { channel, jobs } in
            round::commit(&self.store, &self.namespace, round, time_ms).await
        {
            for (job, positions) in jobs {
                let delivered = self
                    .fan_out(&channel, &job.tokens, &positions, time_ms)
                    .await;
                let _ = job.reply.send(Ok(Appended {
                    positions,
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
}
