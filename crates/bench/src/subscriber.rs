//! Subscriber tasks (WebSocket or Server-Sent Events): connect, subscribe, then count and time every delivered event until stopped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::marker::scan;
use crate::sse;
use crate::target::{Endpoint, Protocol, Transport, answer_ping};
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
        let conn = match sh.ep.transport {
            Transport::Ws => {
                let (mut r, mut w) = sh.ep.open(None).await?;
                sh.ep.subscribe(&mut r, &mut w, &channel, idx).await?;
                Conn::Ws(r, w)
            }
            Transport::Sse => {
                let (path, headers) = sh.ep.sse_request(&channel);
                Conn::Sse(sse::connect(sh.ep.http_addr, &path, &headers).await?)
            }
        };
        anyhow::Ok(conn)
    };
    let conn = match setup.await {
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
    let member = sh.ep.channel_member(&channel);
    let member = member.as_deref();
    let res = match conn {
        Conn::Ws(r, w) => receive(&sh, idx as usize, r, w, member, &mut t, &mut stop).await,
        Conn::Sse(r) => receive_sse(&sh, idx as usize, r, member, &mut t, &mut stop).await,
    };
    if let Err(e) = res {
        eprintln!("subscriber {idx}: {e:#}");
    }
    Some(t)
}

enum Conn {
    Ws(WsReader, WsWriter),
    Sse(sse::SseReader),
}

/// Where in a data frame the `channel` member may start: it follows `"type"` and `"id"`, so a
/// short prefix is searched rather than the whole event.
const CHANNEL_MEMBER_WITHIN: usize = 96;

/// Whether `frame` carries `member` (see [`crate::target::Endpoint::channel_member`]).
fn has_member(frame: &[u8], member: &[u8]) -> bool {
    let head = &frame[..frame.len().min(CHANNEL_MEMBER_WITHIN + member.len())];
    find(head, member).is_some()
}

/// Latency samples of one subscriber, handed to the shared sink in batches.
struct Samples {
    buf: Vec<u64>,
    last_flush: Instant,
}

impl Samples {
    fn new() -> Self {
        Samples {
            buf: Vec::with_capacity(LOCAL_SAMPLES),
            last_flush: Instant::now(),
        }
    }

    fn flush_if_due(&mut self, sh: &Shared, shard: usize) {
        let now = Instant::now();
        if self.buf.len() >= LOCAL_SAMPLES
            || (!self.buf.is_empty() && now - self.last_flush >= LOCAL_FLUSH_EVERY)
        {
            sh.latency.record_batch(shard, &self.buf);
            self.buf.clear();
            self.last_flush = now;
        }
    }
}

async fn receive(
    sh: &Shared,
    shard: usize,
    mut r: WsReader,
    mut w: WsWriter,
    member: Option<&[u8]>,
    t: &mut SubTracker,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let nats = sh.ep.protocol == Protocol::Nats;
    let mut nats_buf: Vec<u8> = Vec::new();
    let mut samples = Samples::new();
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
                samples.buf.push(now_us.saturating_sub(m.sent_us));
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
                } else if member.is_some_and(|m| !has_member(p, m)) {
                    t.wrong_channel += 1;
                }
            }
        }
        if n > 0 {
            sh.counters.delivered.fetch_add(n, Ordering::Relaxed);
        }
        samples.flush_if_due(sh, shard);
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
    sh.latency.record_batch(shard, &samples.buf);
    Ok(())
}

/// The Server-Sent Events counterpart of [`receive`]: every `data` event is the WebSocket data
/// frame (with the channel), so it is scanned and checked the same way.
async fn receive_sse(
    sh: &Shared,
    shard: usize,
    mut r: sse::SseReader,
    member: Option<&[u8]>,
    t: &mut SubTracker,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut samples = Samples::new();
    let mut now_us = sh.clock.now_us();
    loop {
        let mut n = 0u64;
        let mut ended: Option<String> = None;
        r.events(|name, data| match name {
            b"data" => {
                let before = n;
                scan(data, |m| {
                    t.record(&m);
                    samples.buf.push(now_us.saturating_sub(m.sent_us));
                    n += 1;
                });
                if n > before && member.is_some_and(|m| !has_member(data, m)) {
                    t.wrong_channel += 1;
                }
            }
            b"close" | b"subscribe_error" => {
                ended = Some(String::from_utf8_lossy(data).into_owned());
            }
            _ => {}
        })?;
        if n > 0 {
            sh.counters.delivered.fetch_add(n, Ordering::Relaxed);
        }
        samples.flush_if_due(sh, shard);
        if let Some(why) = ended {
            anyhow::bail!("server ended the stream: {why}");
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            more = r.fill() => {
                if !more? {
                    anyhow::bail!("stream closed by server");
                }
                now_us = sh.clock.now_us();
            }
        }
    }
    sh.latency.record_batch(shard, &samples.buf);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(transport: Transport, with_channel: bool) -> Endpoint {
        let a: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        Endpoint {
            protocol: Protocol::Appsync,
            ws_addr: a,
            http_addr: a,
            api_key: "k".into(),
            namespace: "default".into(),
            app_id: String::new(),
            app_key: String::new(),
            app_secret: String::new(),
            group_size: 10,
            transport,
            with_channel,
        }
    }

    #[test]
    fn channel_member_of_exact_and_wildcard_subscriptions() {
        assert_eq!(
            endpoint(Transport::Ws, false).channel_member("/default/a"),
            None
        );
        let ep = endpoint(Transport::Sse, false);
        let exact = ep.channel_member("/default/g0/c1").unwrap();
        let wild = ep.channel_member("/default/g0/*").unwrap();
        let frame = br#"{"type":"data","id":"s7","channel":"/default/g0/c1","event":"{}"}"#;
        assert!(has_member(frame, &exact));
        assert!(has_member(frame, &wild));
        let other = br#"{"type":"data","id":"s7","channel":"/default/g0/c12","event":"{}"}"#;
        assert!(
            !has_member(other, &exact),
            "a longer channel is another one"
        );
        assert!(has_member(other, &wild));
        let plain = br#"{"type":"data","id":"s7","event":"{\"channel\":\"/default/g0/c1\"}"}"#;
        assert!(
            !has_member(plain, &exact),
            "inside the event does not count"
        );
        let ws = endpoint(Transport::Ws, true);
        assert_eq!(ws.channel_member("/default/g0/c1"), Some(exact));
    }
}
