//! The publish/subscribe scenarios: `fanout`, `channels` and `sweep` share this engine.
//!
//! A run: connect and subscribe every subscriber, publish for a bounded time (or event count),
//! drain until every acknowledged event has arrived or deliveries stall, then stop the
//! subscribers and check completeness against what the server acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{Semaphore, watch};

use crate::procfs::{Resources, Window};
use crate::publisher::{self, PubPlan};
use crate::subscriber::{self, Shared};
use crate::track::{Completeness, Latency};

/// Sizes of one publish/subscribe run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub channels: u32,
    pub subs_per_channel: u32,
    /// Share of each channel's subscribers that subscribe to the channel's group wildcard instead.
    pub wildcard_share: f64,
    pub http_publishers: u32,
    pub ws_publishers: u32,
    pub batch: usize,
    pub payload: usize,
    /// Total publish rate in events/s; 0 = as fast as acknowledgements allow.
    pub rate: f64,
    pub duration_s: f64,
    pub max_events: u64,
    pub connect_concurrency: usize,
    pub ws_window: usize,
    pub drain_s: f64,
    /// Sweep: rates to step through (events/s); empty for a single run.
    pub steps: Vec<f64>,
    pub step_s: f64,
    /// Sweep stops at the first step whose p99 exceeds this.
    pub max_p99_ms: f64,
    /// How subscribers connect.
    pub transport: crate::target::Transport,
    /// Subscribers asked for the channel on every event (`withChannel`).
    pub with_channel: bool,
    /// Subscribers checked each event's `channel` member against their subscription.
    pub checks_channel: bool,
}

/// One sweep step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    pub offered_events_per_s: f64,
    pub published_events_per_s: f64,
    pub deliveries_per_s: f64,
    pub latency: Latency,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub subscribers_connected: u64,
    pub subscribers_failed: u64,
    pub setup_s: f64,
    pub publish_s: f64,
    pub published: u64,
    pub publish_errors: u64,
    pub published_per_s: f64,
    pub deliveries: u64,
    /// Deliveries over the time from the first publish to the last delivery.
    pub deliveries_per_s: f64,
    pub latency: Latency,
    /// Publish→acknowledgement latency (HTTP publishers only).
    pub publish_ack: Latency,
    pub completeness: Completeness,
    pub resources: Resources,
    pub steps: Vec<Step>,
}

pub async fn run(
    ep: crate::target::Endpoint,
    plan: Plan,
    server_pid: Option<u32>,
    progress: bool,
) -> anyhow::Result<Outcome> {
    let publishers = plan.http_publishers + plan.ws_publishers;
    if publishers == 0 {
        bail!("need at least one publisher");
    }
    if plan.http_publishers > 0 && !ep.supports_http_publish() {
        bail!("{:?} has no HTTP publish; use --ws-publishers", ep.protocol);
    }
    if plan.ws_publishers > 0 && !ep.supports_ws_publish() {
        bail!(
            "{:?} publishes over HTTP only; use --http-publishers",
            ep.protocol
        );
    }
    let sh = Arc::new(Shared::new(ep.clone()));

    // Subscribers: channel c has subs_per_channel subscribers; the first share of them take the
    // wildcard of c's group and so expect every channel of that group.
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let wild_per_channel = (f64::from(plan.subs_per_channel) * plan.wildcard_share - 1e-9)
        .ceil()
        .max(0.0) as u32;
    let mut subs = Vec::new();
    let mut idx = 0u64;
    let setup_start = Instant::now();
    for c in 0..plan.channels {
        for k in 0..plan.subs_per_channel {
            let (name, covers) = if k < wild_per_channel {
                let g = c / ep.group_size;
                let first = g * ep.group_size;
                (
                    ep.wildcard(g)?,
                    (first..(first + ep.group_size).min(plan.channels)).collect::<Vec<_>>(),
                )
            } else {
                (ep.channel(c), vec![c])
            };
            let h = tokio::spawn(subscriber::run(
                sh.clone(),
                idx,
                name.clone(),
                gate.clone(),
                stop_rx.clone(),
            ));
            subs.push((h, covers, name, idx));
            idx += 1;
        }
    }
    let total_subs = idx;
    let mut last_print = Instant::now();
    loop {
        let done = sh.ready.load(Ordering::Relaxed) + sh.failed.load(Ordering::Relaxed);
        if done >= total_subs {
            break;
        }
        if progress && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!(
                "[setup {:>4.0}s] subscribed {}/{} failed {}",
                setup_start.elapsed().as_secs_f64(),
                sh.ready.load(Ordering::Relaxed),
                total_subs,
                sh.failed.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup_s = setup_start.elapsed().as_secs_f64();

    // Publish.
    let pp = Arc::new(PubPlan {
        channels: plan.channels,
        publishers,
        batch: plan.batch,
        payload: plan.payload,
        rate: AtomicU64::new(0),
        max_events: (plan.max_events / u64::from(publishers)).max(plan.batch as u64),
        stop: AtomicBool::new(false),
        ws_window: plan.ws_window.max(1),
        channel_name: None,
    });
    pp.set_rate(plan.steps.first().copied().unwrap_or(plan.rate));
    let window = Window::start(server_pid);
    let t0 = Instant::now();
    let drain = Duration::from_secs_f64(plan.drain_s);
    let mut pubs = Vec::new();
    for id in 0..publishers {
        let (sh, pp) = (sh.clone(), pp.clone());
        pubs.push(if id < plan.http_publishers {
            tokio::spawn(publisher::run_http(sh, pp, id))
        } else {
            tokio::spawn(publisher::run_ws(sh, pp, id, drain))
        });
    }

    let mut steps = Vec::new();
    // Each event on a channel reaches its exact subscribers plus the wildcard subscribers of
    // every channel in its group.
    let group = f64::from(ep.group_size.min(plan.channels));
    let deliveries_per_event =
        f64::from(plan.subs_per_channel - wild_per_channel) + group * f64::from(wild_per_channel);
    if plan.steps.is_empty() {
        let end = t0 + Duration::from_secs_f64(plan.duration_s);
        let mut tick = Instant::now();
        let (mut last_d, mut last_p) = (0, 0);
        while Instant::now() < end && !pubs.iter().all(|h| h.is_finished()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if progress && tick.elapsed() >= Duration::from_secs(1) {
                let dt = tick.elapsed().as_secs_f64();
                let (d, p) = (sh.counters.delivered(), sh.counters.published());
                eprintln!(
                    "[{:>5.1}s] published {p} ({:.0}/s) delivered {d} ({:.0}/s) publish errors {}",
                    t0.elapsed().as_secs_f64(),
                    (p - last_p) as f64 / dt,
                    (d - last_d) as f64 / dt,
                    sh.counters.publish_errors()
                );
                (last_d, last_p, tick) = (d, p, Instant::now());
            }
        }
    } else {
        for &rate in &plan.steps {
            pp.set_rate(rate);
            let _ = sh.latency.take();
            let (d0, p0, s0) = (
                sh.counters.delivered(),
                sh.counters.published(),
                Instant::now(),
            );
            tokio::time::sleep(Duration::from_secs_f64(plan.step_s)).await;
            let dt = s0.elapsed().as_secs_f64();
            let step = Step {
                offered_events_per_s: rate,
                published_events_per_s: (sh.counters.published() - p0) as f64 / dt,
                deliveries_per_s: (sh.counters.delivered() - d0) as f64 / dt,
                latency: Latency::from_hist(&sh.latency.take()),
            };
            if progress {
                eprintln!(
                    "[step {:>9.0} ev/s] published {:.0}/s delivered {:.0}/s p50 {}us p99 {}us",
                    rate,
                    step.published_events_per_s,
                    step.deliveries_per_s,
                    step.latency.p50_us,
                    step.latency.p99_us
                );
            }
            // Saturated: publishers cannot reach the offered rate, deliveries fall behind what
            // was published, or latency passes the limit.
            let saturated = step.published_events_per_s < 0.9 * rate
                || step.deliveries_per_s < 0.9 * step.published_events_per_s * deliveries_per_event
                || step.latency.p99_us as f64 > plan.max_p99_ms * 1000.0;
            steps.push(step);
            if saturated {
                break;
            }
        }
    }
    pp.stop.store(true, Ordering::Relaxed);
    let publish_s = t0.elapsed().as_secs_f64();
    let mut acked_per_channel = vec![0u64; plan.channels as usize];
    for h in pubs {
        match h.await? {
            Ok(acked) => acked
                .into_iter()
                .for_each(|(c, n)| acked_per_channel[c as usize] += n),
            Err(e) => eprintln!("publisher failed: {e:#}"),
        }
    }

    // Drain: wait for every acknowledged event to reach every connected subscriber.
    let expected_total: u64 = subs
        .iter()
        .map(|(_, covers, _, _)| {
            covers
                .iter()
                .map(|&c| acked_per_channel[c as usize])
                .sum::<u64>()
        })
        .sum::<u64>()
        * sh.ready.load(Ordering::Relaxed)
        / total_subs.max(1);
    let mut last = (sh.counters.delivered(), Instant::now());
    let drain_deadline = Instant::now() + drain * 4;
    let mut t_last_delivery = Instant::now();
    while sh.counters.delivered() < expected_total && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let d = sh.counters.delivered();
        if d != last.0 {
            last = (d, Instant::now());
            t_last_delivery = last.1;
        } else if last.1.elapsed() > drain {
            break;
        }
    }
    let resources = window.finish();
    let _ = stop_tx.send(true);
    let mut completeness = Completeness::default();
    for (h, covers, name, idx) in subs {
        if let Some(t) = h.await? {
            let expected = covers.iter().map(|&c| acked_per_channel[c as usize]).sum();
            completeness.add(idx, &name, &t, expected);
        }
    }
    let deliveries = sh.counters.delivered();
    let window_s = t_last_delivery
        .saturating_duration_since(t0)
        .as_secs_f64()
        .max(publish_s.min(1e-3));
    Ok(Outcome {
        subscribers_connected: sh.ready.load(Ordering::Relaxed),
        subscribers_failed: sh.failed.load(Ordering::Relaxed),
        setup_s,
        publish_s,
        published: sh.counters.published(),
        publish_errors: sh.counters.publish_errors(),
        published_per_s: sh.counters.published() as f64 / publish_s,
        deliveries,
        deliveries_per_s: deliveries as f64 / window_s,
        latency: Latency::from_hist(&sh.latency.take()),
        publish_ack: Latency::from_hist(&sh.acks.take()),
        completeness,
        resources,
        steps,
    })
}
