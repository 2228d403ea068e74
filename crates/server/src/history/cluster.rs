//! Cluster mode's delivery side of history: each node follows every history namespace's
//! JetStream stream and delivers each stored batch to its local subscribers, in stream order —
//! so every node delivers a channel's events in offset order, whichever node stored them.
//!
//! A resume runs in the follower, between batches: it first catches up with everything stored
//! when it began (the client's last position may come from a node that was ahead of this one),
//! then replays from the store up to the last batch delivered live, then registers the
//! subscription. The replay ends exactly where live delivery continues.

use std::time::Duration;

use bytes::Bytes;
use herald_history::{AnyStore, Followed, Follower};
use herald_protocol::Channel;
use tokio::sync::mpsc;

use super::{Job, Lane, body, unavailable};

/// Longest a resume waits for this node's follower to catch up with the stream.
const CATCH_UP: Duration = Duration::from_secs(10);

pub(super) async fn follow(lane: Lane, mut jobs: mpsc::Receiver<Job>, mut follower: Follower) {
    loop {
        tokio::select! {
            batch = follower.next() => match batch {
                Some(Ok(Some(batch))) => deliver(&lane, &batch),
                Some(Ok(None)) => {}
                Some(Err(e)) => {
                    // The consumer recreates itself after outages; avoid spinning meanwhile.
                    tracing::warn!(namespace = %lane.namespace, error = %e, "history follower");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => return,
            },
            job = jobs.recv() => match job {
                Some(Job::Resume { id, pattern, from, subscriber, reply }) => {
                    catch_up(&lane, &mut follower).await;
                    let delivered = follower.seen();
                    let report = lane.resume(&id, &pattern, from, subscriber, delivered).await;
                    let _ = reply.send(report);
                }
                Some(Job::Append { reply, .. }) => {
                    let _ = reply.send(Err(unavailable("append sent to the history follower")));
                }
                None => return,
            },
        }
    }
}

/// Delivers what the stream held when called.
async fn catch_up(lane: &Lane, follower: &mut Follower) {
    let AnyStore::JetStream(js) = &*lane.store else {
        return;
    };
    let target = match js.last_sequence(&lane.namespace).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stream's last sequence; resuming from what this node has");
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while follower.seen() < target {
        match tokio::time::timeout_at(deadline, follower.next()).await {
            Ok(Some(Ok(Some(batch)))) => deliver(lane, &batch),
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
                    namespace = %lane.namespace,
                    seen = follower.seen(),
                    target,
                    "history follower did not catch up in time; resuming anyway"
                );
                break;
            }
        }
    }
}

fn deliver(lane: &Lane, batch: &Followed) {
    let Ok(channel) = Channel::parse(&batch.channel) else {
        return;
    };
    let bodies: Vec<Bytes> = batch
        .events
        .iter()
        .map(|e| body(&batch.channel, e))
        .collect();
    lane.broker.local().deliver(&channel, &bodies);
}
