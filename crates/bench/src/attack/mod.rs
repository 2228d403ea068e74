//! The `attack` scenario (hostile clients, issue 20): a well-behaved pair keeps publishing and
//! receiving while one attack runs against the same server, and the run reports whether the pair
//! still got every acknowledged event, in order, and how its latency moved.
//!
//! The well-behaved pair: one WebSocket subscriber on the victim channel and one HTTP publisher
//! at a steady low rate (events carry their publish time, as in every other scenario), plus a
//! probe that opens a fresh WebSocket five times a second to see whether newcomers still get in.
//! Timeline: prefill (history attacks) → the subscriber subscribes → the attack starts → after
//! the warm-up the publisher and the probe start → both stop when the attack ends → drain.
//! The attack runs on its own runtime and threads (`hostile::spawn`), so the well-behaved tasks
//! never wait in a run queue behind thousands of hostile ones; the cores are still shared. Every
//! hostile socket comes from its own source address (`AttackPlan::attacker_address`), the
//! well-behaved clients from the default one.
//! `hostile` holds the attacks, `socket` the raw-socket helpers they share.

mod hostile;
mod socket;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{Semaphore, watch};

pub use hostile::AttackOutcome;

use crate::procfs::{self, Resources, Window};
use crate::publisher::{self, PubPlan};
use crate::subscriber::{self, Shared};
use crate::target::{Endpoint, Protocol};
use crate::track::{Completeness, Latency, new_histogram};

/// The attacks `--kind` chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// No attack: the baseline.
    None,
    /// HTTP requests declaring a 1.2 MB body that stall after 64 KiB of it.
    SlowBody,
    /// Sockets opened as fast as possible and held, each with half a request line sent.
    SocketFlood,
    /// WebSocket handshakes as fast as possible, each closed at once.
    ConnectFlood,
    /// Subscribers of a busy channel that never read; the attacker publishes big events to it.
    NonReader,
    /// WebSockets announcing a 1 MB message, sending 16 KiB of it, then stalling.
    HalfMessage,
    /// Connect, resume from the start of a channel filled with big events, close; repeat.
    ResumeStorm,
    /// `GET /event/history?…&limit=1000` of a filled channel, never reading the answers.
    HistoryFlood,
}

impl Kind {
    /// Concurrent hostile connections when `--conns` is not given.
    pub fn default_workers(self) -> usize {
        match self {
            Kind::None => 0,
            Kind::SlowBody | Kind::HalfMessage => 1000,
            Kind::SocketFlood => 5000,
            Kind::ConnectFlood => 32,
            Kind::NonReader => 100,
            Kind::ResumeStorm => 8,
            Kind::HistoryFlood => 64,
        }
    }

    fn needs_history(self) -> bool {
        matches!(self, Kind::ResumeStorm | Kind::HistoryFlood)
    }

    /// What `AttackOutcome::units` counts.
    fn units(self) -> &'static str {
        match self {
            Kind::NonReader => "big events the attacker published to the busy channel",
            Kind::ResumeStorm => "events the server said it replayed",
            _ => "",
        }
    }
}

/// The hostile side of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttackPlan {
    pub kind: Kind,
    /// Concurrent hostile connections (each worker opens one, holds or cycles it, repeats).
    pub workers: usize,
    /// Budget of connections or requests over the whole attack.
    pub max_attempts: u64,
    /// Namespace attacked: `/<ns>/busy` (non-reader), `/<ns>/slow` (slow-body), and the history
    /// attacks' channel, which needs a namespace keeping history.
    pub namespace: String,
    /// Size of the attacker's big events (non-reader, prefill), bytes.
    pub big_bytes: usize,
    /// non-reader: big events/s the attacker publishes.
    pub busy_rate: f64,
    /// History attacks: events stored on `big_channel` before the run.
    pub fill_events: u64,
    /// The history attacks' channel, `/<ns>/big-<unix time>`: a fresh one each run, so that it
    /// holds exactly `fill_events` events and a resume from time 0 is served in full (on a
    /// channel retention already trimmed, such a resume is answered `expired` and replays
    /// nothing).
    pub big_channel: String,
    /// Local address every hostile socket binds before connecting (127.0.0.2 by default; Linux
    /// routes all of 127.0.0.0/8 to loopback), while the well-behaved clients stay on 127.0.0.1:
    /// the server's per-address limits then apply to the attacker alone, as they would for a
    /// remote attacker. 127.0.0.1 puts both behind the same limits (the old behaviour).
    pub attacker_address: IpAddr,
    /// CPUs the attack's threads are confined to (empty: wherever the scheduler puts them).
    /// On a machine that also runs the server, the attacker's own CPU otherwise competes with
    /// the server and the victim for the same cores, which a remote attacker would not.
    pub attacker_cpus: Vec<usize>,
    /// Nice value of the attack's threads (0: the same priority as everything else).
    pub attacker_nice: i32,
}

/// One attack run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    /// Seconds the well-behaved publisher runs under attack (the attack runs the warm-up longer).
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Well-behaved publisher's events/s, and event size.
    pub rate: f64,
    pub payload: usize,
    pub victim_channel: String,
    /// Seconds without a delivery after which draining gives up.
    pub drain_s: f64,
    pub attack: AttackPlan,
}

/// What the well-behaved clients saw.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Victim {
    pub channel: String,
    /// Events the server acknowledged to the publisher.
    pub acknowledged: u64,
    pub publish_errors: u64,
    pub published_per_s: f64,
    /// Publishes that fell due but were never sent, because the one before had not returned
    /// (the publisher has one request in flight and does not catch up after a stall): while
    /// the server stalls, latency is not sampled, so a large count means the percentiles
    /// understate the stall (coordinated omission). `max` still shows it.
    pub missed_schedule: u64,
    /// Events the subscriber received (with duplicates).
    pub delivered: u64,
    /// Publish→deliver latency.
    pub deliver: Latency,
    /// Publish→acknowledgement latency of the HTTP publisher.
    pub publish_ack: Latency,
    pub completeness: Completeness,
    /// Fresh WebSocket handshakes of the probe: connect to `connection_ack`.
    pub connects_ok: u64,
    pub connects_failed: u64,
    pub connect: Latency,
    /// Each second of the run: the slowest delivery (µs) and how many took 1 ms or more.
    pub deliver_per_second: Vec<(u64, u64)>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub victim: Victim,
    pub attack: AttackOutcome,
    pub resources: Resources,
}

/// How often the probe opens a fresh WebSocket.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Longest wait for the victim subscriber to subscribe.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(10);

pub async fn run(
    ep: Endpoint,
    plan: Plan,
    server_pid: Option<u32>,
    progress: bool,
) -> anyhow::Result<Outcome> {
    if ep.protocol != Protocol::Appsync {
        bail!("the attack scenario speaks AppSync Events only");
    }
    let prefilled = if plan.attack.kind.needs_history() {
        let n = hostile::prefill(&ep, &plan.attack).await?;
        if progress {
            eprintln!("[setup] stored {n} events on {}", plan.attack.big_channel);
        }
        n
    } else {
        0
    };

    let sh = Arc::new(Shared::new(ep.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let sub = tokio::spawn(subscriber::run(
        sh.clone(),
        0,
        plan.victim_channel.clone(),
        Arc::new(Semaphore::new(1)),
        stop_rx,
    ));
    let asked = Instant::now();
    while sh.ready.load(Ordering::Relaxed) == 0 {
        if sh.failed.load(Ordering::Relaxed) > 0 || asked.elapsed() > SUBSCRIBE_WITHIN {
            bail!("the well-behaved subscriber could not subscribe");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The attack starts, and has the warm-up to take hold before the victim publishes.
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(plan.warmup_s + plan.duration_s);
    let tally = Arc::new(hostile::Tally::default());
    let attack = hostile::spawn(ep.clone(), plan.attack.clone(), end, tally.clone())?;
    let mut peaks = Peaks::new(server_pid);
    let warmup = Duration::from_secs_f64(plan.warmup_s);
    while t0.elapsed() < warmup {
        let left = warmup.saturating_sub(t0.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        peaks.sample();
    }

    let pp = Arc::new(PubPlan {
        channels: 1,
        publishers: 1,
        batch: 1,
        payload: plan.payload,
        rate: AtomicU64::new(0),
        max_events: u64::MAX / 2,
        stop: AtomicBool::new(false),
        ws_window: 1,
        channel_name: Some(plan.victim_channel.clone()),
    });
    pp.set_rate(plan.rate);
    let window = Window::start(server_pid);
    let t_pub = Instant::now();
    let publisher = tokio::spawn(publisher::run_http(sh.clone(), pp.clone(), 0));
    let probe = tokio::spawn(probe(ep.clone(), end));
    let mut tick = Instant::now();
    let mut held_at_end = 0;
    let mut per_second = Vec::new();
    sh.latency.take_window();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if Instant::now() < end {
            held_at_end = tally.held();
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            peaks.sample();
            let (max_us, slow) = sh.latency.take_window();
            per_second.push((max_us, slow));
            if progress {
                eprintln!(
                    "[{:>5.1}s] victim acked {} delivered {} errors {} slowest {:.2} ms, {} ≥ 1 ms | {}{}",
                    t_pub.elapsed().as_secs_f64(),
                    sh.counters.published(),
                    sh.counters.delivered(),
                    sh.counters.publish_errors(),
                    max_us as f64 / 1000.0,
                    slow,
                    tally.progress(),
                    peaks.describe()
                );
            }
        }
    }
    pp.stop.store(true, Ordering::Relaxed);
    let publish_s = t_pub.elapsed().as_secs_f64();
    let drain = Duration::from_secs_f64(plan.drain_s);
    // Every wait of the attack and the probe is bounded by `end`; the publisher's request in
    // flight is not, so it gets the drain time and is then abandoned.
    if tokio::time::timeout(drain * 4, publisher).await.is_err() {
        eprintln!("the well-behaved publisher's last request did not return");
    }
    let (connect, connects_ok, connects_failed) = probe.await?;
    tokio::task::spawn_blocking(move || attack.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the attack's thread panicked"))?;

    // Drain: everything acknowledged should reach the subscriber.
    let acknowledged = sh.counters.published();
    let mut last = (sh.counters.delivered(), Instant::now());
    let drain_deadline = Instant::now() + drain * 4;
    while sh.counters.delivered() < acknowledged && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let d = sh.counters.delivered();
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > drain {
            break;
        }
    }
    let resources = window.finish();
    let _ = stop_tx.send(true);
    let mut completeness = Completeness::default();
    if let Some(t) = sub.await? {
        completeness.add(0, &plan.victim_channel, &t, acknowledged);
    }
    let mut attack = tally.outcome(&plan.attack, held_at_end);
    attack.prefilled = prefilled;
    (attack.server_fds_max, attack.server_rss_kib_max) = (peaks.fds, peaks.rss_kib);
    Ok(Outcome {
        victim: Victim {
            channel: plan.victim_channel,
            acknowledged,
            publish_errors: sh.counters.publish_errors(),
            published_per_s: acknowledged as f64 / publish_s,
            missed_schedule: ((plan.rate * publish_s) as u64)
                .saturating_sub(acknowledged + sh.counters.publish_errors()),
            delivered: sh.counters.delivered(),
            deliver: Latency::from_hist(&sh.latency.take()),
            publish_ack: Latency::from_hist(&sh.acks.take()),
            completeness,
            connects_ok,
            connects_failed,
            connect,
            deliver_per_second: per_second,
        },
        attack,
        resources,
    })
}

/// A newcomer's view: opens and closes a fresh WebSocket every [`PROBE_EVERY`] until `end`.
async fn probe(ep: Endpoint, end: Instant) -> (Latency, u64, u64) {
    let mut h = new_histogram();
    let (mut ok, mut failed) = (0, 0);
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        let t = Instant::now();
        if t >= end {
            break;
        }
        match tokio::time::timeout_at(end.into(), ep.open(None)).await {
            Ok(Ok((_r, mut w))) => {
                h.saturating_record(t.elapsed().as_micros().max(1) as u64);
                ok += 1;
                let _ = w.close().await;
            }
            Ok(Err(e)) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("probe connection: {e:#}");
                }
            }
            // Still connecting when the attack ended: it never got in under attack.
            Err(_) => failed += 1,
        }
    }
    (Latency::from_hist(&h), ok, failed)
}

/// The server's open file descriptors and memory at their highest during the attack.
struct Peaks {
    pid: Option<u32>,
    fds: Option<u64>,
    rss_kib: Option<u64>,
}

impl Peaks {
    fn new(pid: Option<u32>) -> Self {
        Peaks {
            pid,
            fds: None,
            rss_kib: None,
        }
    }

    fn sample(&mut self) {
        let Some(pid) = self.pid else { return };
        if let Some(n) = procfs::open_fds(pid) {
            self.fds = Some(self.fds.map_or(n, |m| m.max(n)));
        }
        if let Some(s) = procfs::sample(Some(pid)) {
            self.rss_kib = Some(self.rss_kib.map_or(s.rss_kib, |m| m.max(s.rss_kib)));
        }
    }

    fn describe(&self) -> String {
        match (self.fds, self.rss_kib) {
            (Some(f), Some(r)) => format!(" | server fds max {f}, RSS max {} MiB", r / 1024),
            _ => String::new(),
        }
    }
}
