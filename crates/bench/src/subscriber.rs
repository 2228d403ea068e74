//! Subscriber tasks: connect, subscribe, then count and time every delivered event until stopped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::marker::scan;
use crate::target::{Endpoint, Protocol, answer_ping};
use crate::track::{Clock, Counters, LatencySink, SubTracker};
use crate::ws::{OP_CLOSE, WsReader, WsWriter, find};

/// Shared handles every subscriber task needs.
pub struct Shared {
    pub ep: Endpoint,
    pub clock: Clock,
    pub counters: Counters,
    pub latency: LatencySink,
    /// Publish→acknowledgement latency of HTTP publishers.
    pub acks: LatencySink,
    /// Subscribers that finished their handshake (ok) or gave up (failed).
    pub ready: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub fn new(ep: Endpoint) -> Self {
        Shared {
            ep,
            clock: Clock::new(),
            counters: Counters::default(),
            latency: LatencySink::default(),
            acks: LatencySink::default(),
            ready: Default::default(),
            failed: Default::default(),
        }
    }
}

/// Latency samples kept locally before taking a shared lock.
const LOCAL_SAMPLES: usize = 512;
/// A subscriber also hands over fewer samples once this much time passed, so sweep steps see them.
const LOCAL_FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Runs one subscriber; returns what it saw, or `None` if it never subscribed.
pub async fn run(
    sh: Arc<Shared>,
    idx: u64,
    channel: String,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> Option<SubTracker> {
    let setup = async {
        let _permit = gate.acquire().await?;
        let (mut r, mut w) = sh.ep.open(None).await?;
        sh.ep.subscribe(&mut r, &mut w, &channel, idx).await?;
        anyhow::Ok((r, w))
    };
    let (r, w) = match setup.await {
        Ok(c) => c,
        Err(e) => {
            if sh.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("subscriber {idx} on {channel}: {e:#}");
            }
            return None;
        }
    };
    sh.ready.fetch_add(1, Ordering::Relaxed);
    let mut t = SubTracker::default();
    if let Err(e) = receive(&sh, idx as usize, r, w, &mut t, &mut stop).await {
        eprintln!("subscriber {idx}: {e:#}");
    }
    Some(t)
}

async fn receive(
    sh: &Shared,
    shard: usize,
    mut r: WsReader,
    mut w: WsWriter,
    t: &mut SubTracker,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let nats = sh.ep.protocol == Protocol::Nats;
    let mut nats_buf: Vec<u8> = Vec::new();
    let mut samples: Vec<u64> = Vec::with_capacity(LOCAL_SAMPLES);
    let mut last_flush = Instant::now();
    let mut now_us = sh.clock.now_us();
    loop {
        let mut n = 0u64;
        while let Some(f) = r.next_frame()? {
            let p = r.payload(&f);
            let before = n;
            if f.opcode == OP_CLOSE {
                anyhow::bail!(
                    "server closed the connection: {}",
                    String::from_utf8_lossy(p)
                );
            }
            let mut on_marker = |m: crate::marker::Marker| {
                t.record(&m);
                samples.push(now_us.saturating_sub(m.sent_us));
                n += 1;
            };
            if nats {
                nats_buf.extend_from_slice(p);
                let used = nats_messages(&nats_buf, &mut w, &mut on_marker);
                nats_buf.drain(..used);
            } else {
                scan(p, &mut on_marker);
                // Only frames without an event can be keep-alive pings.
                if n == before {
                    answer_ping(&mut w, f.opcode, p);
                }
            }
        }
        if n > 0 {
            sh.counters.delivered.fetch_add(n, Ordering::Relaxed);
        }
        let now = Instant::now();
        if samples.len() >= LOCAL_SAMPLES
            || (!samples.is_empty() && now - last_flush >= LOCAL_FLUSH_EVERY)
        {
            sh.latency.record_batch(shard, &samples);
            samples.clear();
            last_flush = now;
        }
        w.flush().await?;
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            more = r.fill() => {
                if !more? {
                    anyhow::bail!("connection closed by server");
                }
                now_us = sh.clock.now_us();
            }
        }
    }
    sh.latency.record_batch(shard, &samples);
    Ok(())
}

/// Consumes complete NATS protocol messages from `buf`; returns how many bytes were used.
fn nats_messages(
    buf: &[u8],
    w: &mut WsWriter,
    on_marker: &mut impl FnMut(crate::marker::Marker),
) -> usize {
    let mut pos = 0;
    while let Some(e) = find(&buf[pos..], b"\r\n") {
        let line = &buf[pos..pos + e];
        if line.starts_with(b"MSG ") || line.starts_with(b"HMSG ") {
            let size: usize = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let start = pos + e + 2;
            if buf.len() < start + size + 2 {
                return pos;
            }
            scan(&buf[start..start + size], &mut *on_marker);
            pos = start + size + 2;
        } else {
            if line == b"PING" {
                w.queue(crate::ws::OP_TEXT, b"PONG\r\n");
            }
            pos += e + 2;
        }
    }
    pos
}
