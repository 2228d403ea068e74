//! Group commit: a round takes every append waiting (up to a bound), stores all its channels
//! concurrently so the store shares one fsync among them, and hands back each channel's jobs with
//! their positions in arrival order.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use herald_history::{HistoryError, HistoryStore, Position};
use herald_protocol::{Channel, WireError};
use tokio::sync::mpsc;

use super::{AppendJob, uncertain};

/// Most events committed in one round.
const ROUND_EVENTS: usize = 2048;

/// One channel's part of a stored round.
pub(super) struct Stored {
    pub channel: Channel,
    /// In arrival order, each with its events' positions.
    pub jobs: Vec<(AppendJob, Vec<Position>)>,
}

/// `first` and every append already waiting, up to the round's bound.
pub(super) fn collect(first: AppendJob, rx: &mut mpsc::Receiver<AppendJob>) -> Vec<AppendJob> {
    let mut events = first.tokens.len();
    let mut round = vec![first];
    while events < ROUND_EVENTS {
        match rx.try_recv() {
            Ok(job) => {
                events += job.tokens.len();
                round.push(job);
            }
            Err(_) => break,
        }
    }
    round
}

/// Stores a round. A channel whose append failed is answered here, with the error; the stored
/// channels are returned for the caller to deliver and answer.
pub(super) async fn commit<S>(
    store: &Arc<S>,
    namespace: &str,
    round: Vec<AppendJob>,
    time_ms: u64,
) -> Vec<Stored>
where
    S: HistoryStore + Send + Sync + 'static,
{
    // Group by channel, keeping arrival order within each channel.
    let mut groups: Vec<(Channel, Vec<AppendJob>)> = Vec::new();
    let mut index: HashMap<Channel, usize> = HashMap::new();
    for job in round {
        match index.get(&job.channel).and_then(|&i| groups.get_mut(i)) {
            Some((_, jobs)) => jobs.push(job),
            None => {
                index.insert(job.channel.clone(), groups.len());
                groups.push((job.channel.clone(), vec![job]));
            }
        }
    }
    let mut appends = tokio::task::JoinSet::new();
    for (i, (channel, jobs)) in groups.iter().enumerate() {
        let tokens: Vec<Bytes> = jobs.iter().flat_map(|j| j.tokens.iter().cloned()).collect();
        let store = store.clone();
        let ns = namespace.to_owned();
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
    let mut stored = Vec::with_capacity(groups.len());
    for ((channel, jobs), result) in groups.into_iter().zip(results) {
        let failure = match result {
            Some(Ok(positions)) => {
                let mut positions = positions.into_iter();
                let jobs = jobs
                    .into_iter()
                    .map(|job| {
                        let mine = positions.by_ref().take(job.tokens.len()).collect();
                        (job, mine)
                    })
                    .collect();
                stored.push(Stored { channel, jobs });
                continue;
            }
            Some(Err(e)) => uncertain(&e),
            None => uncertain("history append was lost"),
        };
        refuse(jobs, &failure);
    }
    stored
}

fn refuse(jobs: Vec<AppendJob>, error: &WireError) {
    for job in jobs {
        let _ = job.reply.send(Err(error.clone()));
    }
}
