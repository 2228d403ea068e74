//! Publisher tasks over HTTP (keep-alive, one request in flight) or WebSocket (a window of
//! unacknowledged publishes), paced to a shared target rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::http::HttpConn;
use crate::marker::{Marker, event_json};
use crate::subscriber::Shared;
use crate::target::Protocol;
use crate::ws::{OP_CLOSE, OP_TEXT, find};

/// Settings shared by all publishers of a run.
pub struct PubPlan {
    pub channels: u32,
    pub publishers: u32,
    pub batch: usize,
    pub payload: usize,
    /// Total events/s over all publishers as `f64` bits; 0 means as fast as acknowledgements allow.
    pub rate: AtomicU64,
    /// Per-publisher cap on events.
    pub max_events: u64,
    pub stop: AtomicBool,
    pub ws_window: usize,
    /// Publish every event to this channel instead of the indexed channels.
    pub channel_name: Option<String>,
}

impl PubPlan {
    fn rate_per_publisher(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed)) / f64::from(self.publishers)
    }

    /// The name of channel index `c`.
    fn channel(&self, ep: &crate::target::Endpoint, c: u32) -> String {
        self.channel_name.clone().unwrap_or_else(|| ep.channel(c))
    }

    pub fn set_rate(&self, total: f64) {
        self.rate.store(total.to_bits(), Ordering::Relaxed);
    }

    /// Channels publisher `p` publishes to: a share of all channels, or one if there are fewer
    /// channels than publishers.
    pub fn channels_of(&self, p: u32) -> Vec<u32> {
        if self.channels >= self.publishers {
            (p..self.channels)
                .step_by(self.publishers as usize)
                .collect()
        } else {
            vec![p % self.channels]
        }
    }
}

/// Events acknowledged by the server, per channel index.
pub type Acked = Vec<(u32, u64)>;

/// Open-loop pacing: sends fall due at fixed intervals; after a stall of more than 100 ms the
/// schedule restarts instead of bursting to catch up. Publishers are staggered by `phase` (their
/// share of one interval) so that many slow publishers do not fire in bursts, and a rate change
/// (a sweep step) restarts the schedule at the new interval.
struct Pacer {
    next: Instant,
    rate: f64,
    phase: f64,
}

impl Pacer {
    fn new(id: u32, publishers: u32) -> Pacer {
        Pacer {
            next: Instant::now(),
            rate: 0.0,
            phase: f64::from(id) / f64::from(publishers.max(1)),
        }
    }

    async fn wait(&mut self, rate: f64, batch: usize) {
        if rate <= 0.0 {
            self.rate = rate;
            return;
        }
        let interval = Duration::from_secs_f64(batch as f64 / rate);
        let now = Instant::now();
        if rate != self.rate {
            self.rate = rate;
            self.next = now + interval.mul_f64(self.phase);
        }
        if self.next > now {
            tokio::time::sleep_until(self.next.into()).await;
        } else if now - self.next > Duration::from_millis(100) {
            self.next = now;
        }
        self.next += interval;
    }
}

struct Batches {
    id: u32,
    chans: Vec<u32>,
    seqs: Vec<u64>,
    turn: usize,
    sent: u64,
}

impl Batches {
    /// Next channel slot and its events, stamped now.
    fn next(&mut self, sh: &Shared, plan: &PubPlan) -> (usize, Vec<String>) {
        let slot = self.turn % self.chans.len();
        self.turn += 1;
        let chan = self.chans[slot];
        let now = sh.clock.now_us();
        let events = (0..plan.batch)
            .map(|_| {
                let m = Marker {
                    publisher: self.id,
                    channel: chan,
                    seq: self.seqs[slot],
                    sent_us: now,
                };
                self.seqs[slot] += 1;
                event_json(&m, plan.payload)
            })
            .collect();
        self.sent += plan.batch as u64;
        (slot, events)
    }

    fn more(&self, plan: &PubPlan) -> bool {
        !plan.stop.load(Ordering::Relaxed) && self.sent + plan.batch as u64 <= plan.max_events
    }
}

pub async fn run_http(sh: Arc<Shared>, plan: Arc<PubPlan>, id: u32) -> anyhow::Result<Acked> {
    let chans = plan.channels_of(id);
    let names: Vec<String> = chans.iter().map(|&c| plan.channel(&sh.ep, c)).collect();
    let mut acked = vec![0u64; chans.len()];
    let mut conn = HttpConn::new(sh.ep.http_addr, &sh.ep.http_addr.to_string());
    let mut b = Batches {
        id,
        seqs: vec![0; chans.len()],
        chans: chans.clone(),
        turn: 0,
        sent: 0,
    };
    let mut pacer = Pacer::new(id, plan.publishers);
    let mut errors_shown = 0;
    while b.more(&plan) {
        pacer.wait(plan.rate_per_publisher(), plan.batch).await;
        let (slot, events) = b.next(&sh, &plan);
        let (path, headers, body) = sh.ep.http_publish(&names[slot], &events);
        let n = events.len() as u64;
        let sent = Instant::now();
        match conn.post(&path, &headers, &body).await {
            Ok(resp) if sh.ep.http_publish_ok(resp.status, &resp.body) => {
                acked[slot] += n;
                sh.counters.published.fetch_add(n, Ordering::Relaxed);
                let us = sent.elapsed().as_micros() as u64;
                sh.acks.record_batch(id as usize, &[us]);
            }
            other => {
                sh.counters.publish_errors.fetch_add(n, Ordering::Relaxed);
                if errors_shown < 3 {
                    errors_shown += 1;
                    match other {
                        Ok(r) => eprintln!(
                            "http publisher {id}: {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ),
                        Err(e) => eprintln!("http publisher {id}: {e:#}"),
                    }
                }
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(chans.into_iter().zip(acked).collect())
}

pub async fn run_ws(
    sh: Arc<Shared>,
    plan: Arc<PubPlan>,
    id: u32,
    drain: Duration,
) -> anyhow::Result<Acked> {
    let chans = plan.channels_of(id);
    let names: Vec<String> = chans.iter().map(|&c| plan.channel(&sh.ep, c)).collect();
    let (mut r, mut w) = sh.ep.open(None).await?;
    let acked: Arc<Vec<AtomicU64>> = Arc::new(chans.iter().map(|_| AtomicU64::new(0)).collect());
    let window = Arc::new(Semaphore::new(plan.ws_window));
    let nats = sh.ep.protocol == Protocol::Nats;

    // The reader settles acknowledgements: the op id `<slot>_<n>` names the channel slot. NATS
    // has no publish acknowledgement; each publish frame ends with PING, and the PONG (answered in
    // order, after the PUBs before it were processed) stands in for one.
    let reader: tokio::task::JoinHandle<anyhow::Result<()>> = {
        let (acked, window, sh, batch) =
            (acked.clone(), window.clone(), sh.clone(), plan.batch as u64);
        tokio::spawn(async move {
            loop {
                while let Some(f) = r.next_frame()? {
                    let p = r.payload(&f);
                    if f.opcode == OP_CLOSE {
                        anyhow::bail!("server closed publisher: {}", String::from_utf8_lossy(p));
                    }
                    if nats {
                        let pongs = p.windows(4).filter(|w| *w == b"PONG").count();
                        window.add_permits(pongs);
                        if find(p, b"-ERR").is_some() {
                            eprintln!("nats publisher: {}", String::from_utf8_lossy(p));
                        }
                        continue;
                    }
                    let ok = find(p, b"publish_success").is_some();
                    if ok || find(p, b"publish_error").is_some() || find(p, b"\"error\"").is_some()
                    {
                        let slot = op_slot(p);
                        match slot {
                            Some(s) if ok && find(p, b"\"failed\":[]").is_some() => {
                                acked[s].fetch_add(batch, Ordering::Relaxed);
                                sh.counters.published.fetch_add(batch, Ordering::Relaxed);
                            }
                            _ => {
                                if sh
                                    .counters
                                    .publish_errors
                                    .fetch_add(batch, Ordering::Relaxed)
                                    < 3 * batch
                                {
                                    eprintln!("ws publisher: {}", String::from_utf8_lossy(p));
                                }
                            }
                        }
                        window.add_permits(1);
                    }
                }
                if !r.fill().await? {
                    anyhow::bail!("publisher connection closed");
                }
            }
        })
    };

    let mut b = Batches {
        id,
        seqs: vec![0; chans.len()],
        chans: chans.clone(),
        turn: 0,
        sent: 0,
    };
    let mut pacer = Pacer::new(id, plan.publishers);
    let mut ops = 0u64;
    while b.more(&plan) {
        pacer.wait(plan.rate_per_publisher(), plan.batch).await;
        window.acquire().await?.forget();
        let (slot, events) = b.next(&sh, &plan);
        let frame = sh
            .ep
            .ws_publish(&names[slot], &format!("{slot}_{ops}"), &events);
        ops += 1;
        w.send(OP_TEXT, &frame).await?;
        if nats {
            acked[slot].fetch_add(events.len() as u64, Ordering::Relaxed);
            sh.counters
                .published
                .fetch_add(events.len() as u64, Ordering::Relaxed);
        }
    }
    // Wait for outstanding acknowledgements.
    let settle = async {
        let _all = window.acquire_many(plan.ws_window as u32).await?;
        anyhow::Ok(())
    };
    if tokio::time::timeout(drain, settle).await.is_err() {
        eprintln!("ws publisher {id}: acknowledgements still missing after {drain:?}");
    }
    reader.abort();
    let _ = w.close().await;
    Ok(chans
        .into_iter()
        .zip(acked.iter().map(|a| a.load(Ordering::Relaxed)))
        .collect())
}

/// Channel slot from an AppSync reply's `"id":"<slot>_<n>"`.
fn op_slot(frame: &[u8]) -> Option<usize> {
    let i = find(frame, b"\"id\":\"")? + 6;
    let digits = frame[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&frame[i..i + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_slot_parses() {
        assert_eq!(
            op_slot(br#"{"type":"publish_success","id":"12_99","successful":[]}"#),
            Some(12)
        );
        assert_eq!(op_slot(br#"{"type":"ka"}"#), None);
    }

    #[test]
    fn channel_split() {
        let plan = PubPlan {
            channels: 10,
            publishers: 3,
            batch: 1,
            payload: 0,
            rate: AtomicU64::new(0),
            max_events: 0,
            stop: AtomicBool::new(false),
            ws_window: 1,
            channel_name: None,
        };
        assert_eq!(plan.channels_of(0), vec![0, 3, 6, 9]);
        assert_eq!(plan.channels_of(2), vec![2, 5, 8]);
        let one = PubPlan {
            channels: 1,
            ..plan
        };
        assert_eq!(one.channels_of(2), vec![0]);
    }
}
