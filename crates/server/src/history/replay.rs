//! Resuming a subscription, in two steps so that reading history never holds up delivery:
//!
//! 1. [`read`], beside the namespace's deliverer (in the resuming connection's own task): which
//!    channels the resume covers, where each resumes from, and what it missed — read a page at a
//!    time within [`Bounds`], each page paid for from the namespace's replay budget ([`Pace`]:
//!    waiting while it is spent, holding only what was read so far), stopping as soon as the
//!    client is gone.
//! 2. [`finish`], in the deliverer between two deliveries: what was stored since step 1 (a short
//!    read, within what the bounds left), then the subscription goes live through
//!    `subscription::activate`. Nothing is delivered in the namespace meanwhile, so the replay
//!    ends exactly where live delivery starts: no gap, no duplicate. This step never waits on the
//!    budget (it would hold up the namespace's delivery); what it reads is what was published
//!    during step 1, which the publish limits bound.

use bytes::Bytes;
use herald_history::{HistoryError, Position, ReadOutcome, Since};
use herald_protocol::reply::{self, ResumeReport};
use herald_protocol::{Pattern, Resume};
use tokio::sync::oneshot;

use super::pace::Pace;
use super::{body, reason};
use crate::broker::Broker;
use crate::connection::outbox::Outbox;
use crate::subscription::Pending;

/// Most events asked of the store in one call.
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

/// How much one resume may replay, and hold while it reads.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// `history.max_replay_events`.
    pub events: usize,
    /// `history.max_replay_bytes`, counted as the events' JSON text.
    pub bytes: usize,
    /// The largest event the server accepts (`limits.max_event_bytes`): a store call asks for
    /// no more events than fit the bytes left if each were this large, so what one call returns
    /// stays within the budget too.
    pub largest_event: usize,
}

impl Bounds {
    /// Events to ask the store for with this much budget left: at least one (to learn whether
    /// anything is left), at most [`READ_PAGE`].
    pub fn page(&self, events_left: usize, bytes_left: usize) -> usize {
        (bytes_left / self.largest_event.max(1))
            .clamp(1, READ_PAGE)
            .min(events_left.saturating_add(1))
    }
}

/// The client went away: nobody is left to replay to.
#[derive(Debug)]
pub(super) struct Gone;

/// The second step of a resume, queued to the namespace's deliverer.
pub(super) struct FinishJob {
    pub id: String,
    pub pattern: Pattern,
    pub from: Resume,
    pub replay: Replay,
    pub pending: Pending,
    pub reply: oneshot::Sender<(ResumeReport, Pending)>,
}

/// Runs the second step and answers: `broker` registers the subscription once its replay is
/// queued. A job whose resume was abandoned is dropped, and with it its [`Pending`] subscription.
pub(super) async fn finish(
    source: &impl Source,
    broker: &dyn Broker,
    bounds: &Bounds,
    job: FinishJob,
) {
    let FinishJob {
        id,
        pattern,
        from,
        replay,
        pending,
        reply,
    } = job;
    let outbox = &pending.subscriber().outbox;
    if reply.is_closed() || outbox.is_closing() {
        return;
    }
    let Ok((report, frames)) = replay
        .catch_up(source, &pattern, &from, bounds, outbox)
        .await
    else {
        return;
    };
    pending.activate(broker, &id, Some(&report), frames);
    // If the resume was abandoned meanwhile, the answer is dropped and the subscription with it.
    let _ = reply.send((report, pending));
}

/// A replay in progress between the two steps.
pub(super) struct Replay {
    report: ResumeReport,
    frames: Vec<Bytes>,
    /// Bytes of the events in `frames`.
    bytes: usize,
    /// Channels read to their end, each with where the second step continues.
    open: Vec<(String, Since)>,
    /// Every channel the first step listed (sorted), so the second step finds new ones.
    listed: Vec<String>,
    /// Replay ended for good (a bound was reached, or listing failed): step 2 only goes live.
    stopped: bool,
    /// The subscription asked for the channel on every event (`withChannel`).
    with_channel: bool,
}

/// How reading one channel ended.
enum Ended {
    /// Read up to what the store held; live delivery takes over after this point.
    CaughtUp(Since),
    /// The channel cannot be recovered (the report says why).
    Lost,
    /// A bound was reached with events left.
    Bounded,
}

/// Step 1: lists the channels `pattern` covers and reads what the subscription missed, paying
/// for each read from `pace`.
pub(super) async fn read(
    source: &impl Source,
    pattern: &Pattern,
    from: &Resume,
    bounds: &Bounds,
    pace: &Pace,
    outbox: &Outbox,
    with_channel: bool,
) -> Result<Replay, Gone> {
    let mut replay = Replay {
        with_channel,
        report: ResumeReport {
            recovered: true,
            replayed: 0,
            reason: None,
        },
        frames: Vec::new(),
        bytes: 0,
        open: Vec::new(),
        listed: Vec::new(),
        stopped: false,
    };
    match channels(source, pattern, from).await {
        Ok(channels) => {
            replay.listed = channels.iter().map(|(c, _)| c.clone()).collect();
            replay.listed.sort_unstable();
            replay
                .read(source, channels, bounds, Some(pace), outbox)
                .await?;
        }
        Err(e) => {
            tracing::error!(error = %e, "history listing failed");
            replay.lose("unavailable");
            replay.stopped = true;
        }
    }
    Ok(replay)
}

impl Replay {
    /// Step 2: reads what was stored since step 1 (and, for a wildcard, channels that appeared
    /// meanwhile); returns the report and the frames to queue.
    async fn catch_up(
        mut self,
        source: &impl Source,
        pattern: &Pattern,
        from: &Resume,
        bounds: &Bounds,
        outbox: &Outbox,
    ) -> Result<(ResumeReport, Vec<Bytes>), Gone> {
        if !self.stopped {
            let mut next = std::mem::take(&mut self.open);
            if matches!(pattern, Pattern::Below(_)) {
                match channels(source, pattern, from).await {
                    Ok(all) => next.extend(
                        all.into_iter()
                            .filter(|(c, _)| self.listed.binary_search(c).is_err()),
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "history listing failed");
                        self.lose("unavailable");
                    }
                }
            }
            self.read(source, next, bounds, None, outbox).await?;
        }
        self.report.replayed = self.frames.len();
        Ok((self.report, self.frames))
    }

    /// Reads each channel in turn from where it stands, until a bound is reached; each read paid
    /// for from `pace` when given.
    async fn read(
        &mut self,
        source: &impl Source,
        channels: Vec<(String, Since)>,
        bounds: &Bounds,
        pace: Option<&Pace>,
        outbox: &Outbox,
    ) -> Result<(), Gone> {
        for (channel, since) in channels {
            match self
                .channel(source, &channel, since, bounds, pace, outbox)
                .await?
            {
                Ended::CaughtUp(at) => self.open.push((channel, at)),
                Ended::Lost => {}
                Ended::Bounded => {
                    // The client pages through `GET /event/history` for the rest.
                    self.lose("too_many");
                    self.stopped = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reads one channel from `since`, a page at a time.
    async fn channel(
        &mut self,
        source: &impl Source,
        channel: &str,
        mut since: Since,
        bounds: &Bounds,
        pace: Option<&Pace>,
        outbox: &Outbox,
    ) -> Result<Ended, Gone> {
        loop {
            if outbox.is_closing() {
                return Err(Gone);
            }
            let limit = bounds.page(
                bounds.events.saturating_sub(self.frames.len()),
                bounds.bytes.saturating_sub(self.bytes),
            );
            let ticket = match pace {
                Some(pace) => Some(
                    pace.take(limit, || outbox.is_closing())
                        .await
                        .map_err(|_| Gone)?,
                ),
                None => None,
            };
            match source.read(channel, since, limit).await {
                Ok(ReadOutcome::Events { events, top }) => {
                    if let Some(ticket) = ticket {
                        ticket.used(&events);
                    }
                    let Some(last) = events.last().map(|e| e.position) else {
                        return Ok(Ended::CaughtUp(since));
                    };
                    for event in &events {
                        let size = event.payload.len();
                        if self.frames.len() >= bounds.events || self.bytes + size > bounds.bytes {
                            return Ok(Ended::Bounded);
                        }
                        self.bytes += size;
                        let body = body(channel, event);
                        self.frames.push(if self.with_channel {
                            reply::channel_body(channel, &body)
                        } else {
                            body
                        });
                    }
                    since = Since::After(last);
                    if last.offset >= top.offset {
                        return Ok(Ended::CaughtUp(since));
                    }
                    // A page can be a megabyte of copying: let the other tasks of this thread
                    // (live deliveries) run before the next.
                    tokio::task::yield_now().await;
                }
                Ok(ReadOutcome::Unrecoverable { reason: r, .. }) => {
                    self.lose(reason(r));
                    return Ok(Ended::Lost);
                }
                Err(e) => {
                    tracing::error!(error = %e, "history read failed");
                    self.lose("unavailable");
                    return Ok(Ended::Lost);
                }
            }
        }
    }

    fn lose(&mut self, why: &'static str) {
        self.report.recovered = false;
        self.report.reason = Some(why);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_fits_the_bytes_left_even_of_the_largest_events() {
        let b = Bounds {
            events: 1000,
            bytes: 1 << 20,
            largest_event: 100_000,
        };
        assert_eq!(b.page(1000, 1 << 20), 10);
        assert_eq!(
            b.page(1000, 99_999),
            1,
            "at least one, to learn whether more is left"
        );
        assert_eq!(b.page(0, 1 << 20), 1);
        let small = Bounds {
            largest_event: 10,
            ..b
        };
        assert_eq!(small.page(1000, 1 << 20), READ_PAGE);
        assert_eq!(
            small.page(3, 1 << 20),
            4,
            "one more than fits tells if more is left"
        );
    }
}
