//! Resuming a subscription: which channels it covers and where each resumes from, what it missed
//! (at most `max_replay_events`, read a page at a time), then the subscription goes live through
//! `subscription::activate`. The caller runs this between deliveries of the namespace.

use bytes::Bytes;
use herald_history::{HistoryError, Position, ReadOutcome, Since};
use herald_protocol::reply::ResumeReport;
use herald_protocol::{Pattern, Resume};

use super::{ResumeJob, body, reason};
use crate::broker::Broker;

/// Events read from the store per call while replaying.
const READ_PAGE: usize = 500;

/// Where a resume reads from: the whole store (embedded), or the stream up to what this node
/// delivered live (cluster).
pub(super) trait Source {
    async fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, HistoryError>;
    async fn channels_under(&self, prefix: &str) -> Result<Vec<String>, HistoryError>;
}

/// Runs a resume job: reply and replay, register, answer the session.
pub(super) async fn run(source: &impl Source, broker: &dyn Broker, job: ResumeJob, max: usize) {
    let ResumeJob {
        id,
        pattern,
        from,
        subscriber,
        reply,
    } = job;
    let (report, frames) = missed(source, &pattern, &from, max).await;
    crate::subscription::activate(broker, &id, &pattern, subscriber, Some(&report), frames);
    let _ = reply.send(report);
}

fn position(epoch: u64, offset: u64) -> Since {
    Since::After(Position { epoch, offset })
}

/// The channels a resume covers, each with where it resumes from.
async fn channels(
    source: &impl Source,
    pattern: &Pattern,
    from: &Resume,
) -> Result<Vec<(String, Since)>, HistoryError> {
    let known = |channel: &str| {
        from.positions
            .iter()
            .find(|(c, _, _)| c == channel)
            .map(|(_, epoch, offset)| position(*epoch, *offset))
    };
    Ok(match pattern {
        Pattern::Exact(c) => {
            let since = match (from.after, from.since_ms) {
                (Some((epoch, offset)), _) => position(epoch, offset),
                (None, Some(t)) => Since::TimeMs(t),
                (None, None) => known(c.as_str()).unwrap_or(Since::Start),
            };
            vec![(c.as_str().to_owned(), since)]
        }
        Pattern::Below(prefix) => source
            .channels_under(prefix.as_str())
            .await?
            .into_iter()
            .map(|ch| {
                let since =
                    known(&ch).unwrap_or_else(|| from.since_ms.map_or(Since::Start, Since::TimeMs));
                (ch, since)
            })
            .collect(),
    })
}

/// What the subscription missed: the report, and the data bodies in offset order per channel.
async fn missed(
    source: &impl Source,
    pattern: &Pattern,
    from: &Resume,
    max: usize,
) -> (ResumeReport, Vec<Bytes>) {
    let mut frames: Vec<Bytes> = Vec::new();
    let mut report = ResumeReport {
        recovered: true,
        replayed: 0,
        reason: None,
    };
    let channels = channels(source, pattern, from).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "history listing failed");
        report.recovered = false;
        report.reason = Some("unavailable");
        Vec::new()
    });
    'channels: for (channel, mut since) in channels {
        loop {
            let room = max.saturating_sub(frames.len());
            if room == 0 {
                // Anything left? Then the client must page through the HTTP endpoint.
                if let Ok(ReadOutcome::Events { events, .. }) =
                    source.read(&channel, since, 1).await
                    && !events.is_empty()
                {
                    report.recovered = false;
                    report.reason = Some("too_many");
                }
                break 'channels;
            }
            match source.read(&channel, since, room.min(READ_PAGE)).await {
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
    (report, frames)
}
