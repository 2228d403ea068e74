//! `herald-bench`: a load generator for AWS AppSync Events endpoints (Herald) and, for
//! comparison, Sockudo (Pusher protocol) and nats-server (NATS over WebSocket).
//!
//! Layout: `ws` and `http` are the lean client transports; `target` maps the three protocols onto
//! one `Endpoint`; `marker` is the self-describing event payload; `track` checks completeness and
//! collects latency; `subscriber`/`publisher`/`pubsub` run the fan-out scenarios, `conn` the
//! connection scenarios, `attack` the hostile clients against a well-behaved pair; `report` prints
//! and saves results; `procfs` reads server CPU, memory and open files.
//! Every run is bounded in time and count, and talks to loopback addresses only.

mod attack;
mod conn;
mod http;
mod marker;
mod procfs;
mod publisher;
mod pubsub;
mod pusher;
mod report;
mod sse;
mod subscriber;
mod summarize;
mod target;
mod track;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::target::{Endpoint, Protocol, Transport};

#[derive(Parser)]
#[command(
    name = "herald-bench",
    about = "Load generator for AppSync Events endpoints and peers"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Wire protocol of the server under test.
    #[arg(long, global = true, value_enum, default_value = "appsync")]
    protocol: Protocol,
    /// WebSocket address (loopback).
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    ws: SocketAddr,
    /// HTTP publish address (loopback); defaults to the WebSocket address.
    #[arg(long, global = true)]
    http: Option<SocketAddr>,
    #[arg(long, global = true, default_value = "bench-key")]
    api_key: String,
    #[arg(long, global = true, default_value = "default")]
    namespace: String,
    /// Pusher app id, key and secret (Sockudo).
    #[arg(long, global = true, default_value = "app-id")]
    app_id: String,
    #[arg(long, global = true, default_value = "app-key")]
    app_key: String,
    #[arg(long, global = true, default_value = "app-secret")]
    app_secret: String,
    /// Server process to read CPU and RSS from (/proc/<pid>).
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Runtime worker threads of the load generator.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    /// Tiny sizes, a few seconds; exit non-zero unless delivery is complete (for CI).
    #[arg(long, global = true)]
    smoke: bool,
    /// How subscribers of `fanout`, `channels` and `sweep` connect: `ws`, or `sse` for Herald's
    /// Server-Sent Events stream (`GET /event/stream`, AppSync protocol only).
    #[arg(long, global = true, value_enum, default_value = "ws")]
    transport: Transport,
    /// Subscribers ask for the channel on every event (`"withChannel": true`, Herald's
    /// extension) and check it against their subscription.
    #[arg(long, global = true)]
    with_channel: bool,
    /// Free-form label stored in the JSON (e.g. "herald", "sockudo").
    #[arg(long, global = true, default_value = "")]
    label: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// S subscribers on one channel, P publishers.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        subscribers: u32,
        #[command(flatten)]
        p: PubArgs,
    },
    /// C channels × K subscribers each, a share of them on their group's wildcard.
    Channels {
        #[arg(long, default_value_t = 100)]
        channels: u32,
        #[arg(long, default_value_t = 10)]
        subscribers: u32,
        /// Share of subscribers (0..1) that subscribe to `/<ns>/g<group>/*`.
        #[arg(long, default_value_t = 0.1)]
        wildcard_share: f64,
        /// Channels per wildcard group.
        #[arg(long, default_value_t = 10)]
        group_size: u32,
        #[command(flatten)]
        p: PubArgs,
    },
    /// Publish rate in steps up to saturation, latency at each step.
    Sweep {
        #[arg(long, default_value_t = 100)]
        subscribers: u32,
        #[arg(long, default_value_t = 1)]
        channels: u32,
        /// First rate (events/s, all publishers together).
        #[arg(long, default_value_t = 1000.0)]
        start_rate: f64,
        /// Each step multiplies the rate by this.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        #[arg(long, default_value_t = 12)]
        max_steps: u32,
        #[arg(long, default_value_t = 3.0)]
        step_secs: f64,
        /// Stop after the first step whose p99 exceeds this (ms).
        #[arg(long, default_value_t = 100.0)]
        max_p99_ms: f64,
        #[command(flatten)]
        p: PubArgs,
    },
    /// Connection storm: connect, handshake, close, as fast as possible.
    Connect {
        #[arg(long, default_value_t = 20_000)]
        connections: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Also subscribe each connection to one of 1000 channels before closing it (connects
        /// and subscribes per second; on a presence namespace, joins and leaves too).
        #[arg(long)]
        subscribe: bool,
    },
    /// N open idle connections; server RSS per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: u64,
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
        /// Also subscribe each connection to one of `--channels` channels.
        #[arg(long)]
        subscribe: bool,
        /// Channels the subscriptions spread over (1: every connection on one channel).
        #[arg(long, default_value_t = 1000)]
        channels: u32,
        /// Seconds to hold the connections before reading RSS.
        #[arg(long, default_value_t = 2.0)]
        hold_secs: f64,
    },
    /// A well-behaved publisher and subscriber while one attack runs (AppSync only).
    Attack {
        #[arg(long, value_enum)]
        kind: attack::Kind,
        /// Seconds the well-behaved publisher runs under attack.
        #[arg(long, default_value_t = 20.0)]
        secs: f64,
        /// Well-behaved publisher's events/s.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Well-behaved event size in bytes.
        #[arg(long, default_value_t = 100)]
        payload: usize,
        #[arg(long, default_value = "/default/victim")]
        victim_channel: String,
        /// Seconds the attack runs before the well-behaved publisher starts.
        #[arg(long, default_value_t = 2.0)]
        warmup_secs: f64,
        /// Concurrent hostile connections (default: per kind).
        #[arg(long)]
        conns: Option<usize>,
        /// Budget of hostile connections or requests over the whole run.
        #[arg(long, default_value_t = 1_000_000)]
        max_attempts: u64,
        /// Size of the attacker's big events (non-reader, history prefill), bytes.
        #[arg(long, default_value_t = 16 * 1024)]
        big_bytes: usize,
        /// non-reader: big events/s the attacker publishes to the busy channel.
        #[arg(long, default_value_t = 100.0)]
        busy_rate: f64,
        /// resume-storm, history-flood: events stored first on a fresh /<namespace>/big-<time>.
        #[arg(long, default_value_t = 1000)]
        fill_events: u64,
        /// Seconds without a delivery after which draining gives up.
        #[arg(long, default_value_t = 3.0)]
        drain_secs: f64,
        /// JSON report of a `--kind none` run: compare p99 latencies with it (bar: ≤ 2×).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Local address every hostile socket binds before connecting; the well-behaved clients
        /// keep the default source address (127.0.0.1 toward a loopback server), so per-address
        /// limits apply to the attacker alone. 127.0.0.1 shares them with the victim.
        #[arg(long, default_value = "127.0.0.2")]
        attacker_address: IpAddr,
        /// CPUs the attack's threads run on (comma-separated, e.g. `1`); default: any. With
        /// `--attacker-nice 19` the attacker then takes only CPU time the server and the victim
        /// leave, as an attacker on another machine would.
        #[arg(long, value_delimiter = ',')]
        attacker_cpus: Vec<usize>,
        /// Nice value of the attack's threads (0–19).
        #[arg(long, default_value_t = 0)]
        attacker_nice: i32,
    },
    /// Medians of the JSON reports in a folder, side by side per server, as Markdown.
    Summarize { dir: PathBuf },
}

#[derive(Args, Clone)]
struct PubArgs {
    #[arg(long, default_value_t = 2)]
    http_publishers: u32,
    #[arg(long, default_value_t = 0)]
    ws_publishers: u32,
    /// Events per publish request (AppSync allows 1–5).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Event size in bytes (JSON including the marker).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Total events/s over all publishers; 0 = closed loop, as fast as acknowledgements come back.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Cap on published events over the whole run.
    #[arg(long, default_value_t = 10_000_000)]
    max_events: u64,
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Unacknowledged publishes allowed per WebSocket publisher.
    #[arg(long, default_value_t = 16)]
    ws_window: usize,
    /// Seconds without a delivery after which draining gives up.
    #[arg(long, default_value_t = 3.0)]
    drain_secs: f64,
}

impl PubArgs {
    fn plan(&self, ep: &Endpoint, channels: u32, subs: u32, wildcard_share: f64) -> pubsub::Plan {
        pubsub::Plan {
            channels,
            subs_per_channel: subs,
            wildcard_share,
            http_publishers: self.http_publishers,
            ws_publishers: self.ws_publishers,
            batch: self.batch.max(1),
            payload: self.payload,
            rate: self.rate,
            duration_s: self.secs,
            max_events: self.max_events,
            connect_concurrency: self.connect_concurrency,
            ws_window: self.ws_window,
            drain_s: self.drain_secs,
            steps: Vec::new(),
            step_s: 0.0,
            max_p99_ms: 0.0,
            transport: ep.transport,
            with_channel: ep.with_channel,
            checks_channel: ep.channel_member("/").is_some(),
        }
    }

    /// Smoke runs: a couple of seconds at a modest rate.
    fn smoke(&mut self) {
        self.secs = self.secs.min(2.0);
        self.max_events = self.max_events.min(2_000);
        if self.rate == 0.0 {
            self.rate = 500.0;
        }
        self.drain_secs = self.drain_secs.min(2.0);
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::Summarize { dir } = &cli.cmd {
        print!("{}", summarize::summarize(dir)?);
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.common.threads.max(1))
        .enable_all()
        .build()?;
    let ok = rt.block_on(run(cli))?;
    if !ok {
        std::process::exit(2);
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let c = cli.common;
    let mut ep = Endpoint {
        protocol: c.protocol,
        ws_addr: c.ws,
        http_addr: c.http.unwrap_or(c.ws),
        api_key: c.api_key.clone(),
        namespace: c.namespace.clone(),
        app_id: c.app_id.clone(),
        app_key: c.app_key.clone(),
        app_secret: c.app_secret.clone(),
        group_size: 10,
        transport: c.transport,
        with_channel: c.with_channel,
    };
    if (c.transport == Transport::Sse || c.with_channel) && c.protocol != Protocol::Appsync {
        bail!("--transport sse and --with-channel are Herald extensions of the AppSync protocol");
    }
    let pubsub_cmd = matches!(
        cli.cmd,
        Cmd::Fanout { .. } | Cmd::Channels { .. } | Cmd::Sweep { .. }
    );
    if c.transport == Transport::Sse && !pubsub_cmd {
        bail!("--transport sse applies to fanout, channels and sweep only");
    }
    for a in [ep.ws_addr, ep.http_addr] {
        if !a.ip().is_loopback() {
            bail!("{a} is not a loopback address: the bench only drives local servers");
        }
    }
    let mut rep = report::Report::new(&c.label, c.protocol);
    match cli.cmd {
        Cmd::Fanout { subscribers, mut p } => {
            let subscribers = if c.smoke {
                p.smoke();
                subscribers.min(20)
            } else {
                subscribers
            };
            let plan = p.plan(&ep, 1, subscribers, 0.0);
            let long = plan.duration_s > 3.0 || subscribers > 2000;
            rep.pubsub(
                "fanout",
                &plan,
                pubsub::run(ep, plan.clone(), c.server_pid, long).await?,
            );
        }
        Cmd::Channels {
            channels,
            subscribers,
            wildcard_share,
            group_size,
            mut p,
        } => {
            let (channels, subscribers) = if c.smoke {
                p.smoke();
                (channels.min(20), subscribers.min(3))
            } else {
                (channels, subscribers)
            };
            ep.group_size = group_size.max(1);
            let share = if ep.protocol == Protocol::Pusher {
                0.0
            } else {
                wildcard_share
            };
            if share != wildcard_share {
                eprintln!("note: Pusher has no wildcard subscriptions; wildcard share set to 0");
            }
            let plan = p.plan(&ep, channels, subscribers, share);
            let long = plan.duration_s > 3.0 || channels * subscribers > 2000;
            rep.pubsub(
                "channels",
                &plan,
                pubsub::run(ep, plan.clone(), c.server_pid, long).await?,
            );
        }
        Cmd::Sweep {
            subscribers,
            channels,
            start_rate,
            factor,
            max_steps,
            step_secs,
            max_p99_ms,
            mut p,
        } => {
            let (subscribers, max_steps, step_secs) = if c.smoke {
                (subscribers.min(10), max_steps.min(2), step_secs.min(1.0))
            } else {
                (subscribers, max_steps, step_secs)
            };
            if c.smoke {
                p.smoke();
            }
            let mut plan = p.plan(&ep, channels, subscribers, 0.0);
            plan.steps = (0..max_steps)
                .map(|i| start_rate * factor.powi(i as i32))
                .collect();
            plan.step_s = step_secs;
            plan.max_p99_ms = max_p99_ms;
            plan.max_events = u64::MAX / 2;
            rep.pubsub(
                "sweep",
                &plan,
                pubsub::run(ep, plan.clone(), c.server_pid, true).await?,
            );
        }
        Cmd::Connect {
            connections,
            concurrency,
            secs,
            subscribe,
        } => {
            let (n, conc, secs) = if c.smoke {
                (connections.min(200), concurrency.min(8), secs.min(3.0))
            } else {
                (connections, concurrency, secs)
            };
            let out = conn::storm(
                ep,
                n,
                conc,
                subscribe,
                Duration::from_secs_f64(secs),
                c.server_pid,
                secs > 3.0,
            )
            .await?;
            rep.connect(n, conc, subscribe, out);
        }
        Cmd::Idle {
            connections,
            concurrency,
            subscribe,
            channels,
            hold_secs,
        } => {
            let (n, hold) = if c.smoke {
                (connections.min(100), hold_secs.min(0.5))
            } else {
                (connections, hold_secs)
            };
            let out = conn::idle(
                ep,
                n,
                concurrency,
                subscribe.then_some(channels.max(1)),
                Duration::from_secs_f64(hold),
                c.server_pid,
                n > 2000,
            )
            .await?;
            rep.idle(out);
        }
        Cmd::Attack {
            kind,
            secs,
            rate,
            payload,
            victim_channel,
            warmup_secs,
            conns,
            max_attempts,
            big_bytes,
            busy_rate,
            fill_events,
            drain_secs,
            baseline,
            attacker_address,
            attacker_cpus,
            attacker_nice,
        } => {
            let workers = conns.unwrap_or(kind.default_workers());
            let mut plan = attack::Plan {
                duration_s: secs,
                warmup_s: warmup_secs,
                rate,
                payload,
                victim_channel,
                drain_s: drain_secs,
                attack: attack::AttackPlan {
                    kind,
                    workers,
                    max_attempts,
                    namespace: c.namespace.clone(),
                    big_bytes,
                    busy_rate,
                    fill_events,
                    big_channel: format!("/{}/big-{}", c.namespace, rep.unix_time),
                    attacker_address,
                    attacker_cpus,
                    attacker_nice,
                },
            };
            if c.smoke {
                plan.duration_s = plan.duration_s.min(3.0);
                plan.warmup_s = plan.warmup_s.min(0.5);
                plan.drain_s = plan.drain_s.min(2.0);
                plan.attack.workers = plan.attack.workers.min(20);
                plan.attack.fill_events = plan.attack.fill_events.min(50);
            }
            let baseline = match baseline {
                Some(p) => Some(serde_json::from_slice::<serde_json::Value>(
                    &std::fs::read(p)?,
                )?),
                None => None,
            };
            let out = attack::run(ep, plan.clone(), c.server_pid, !c.smoke).await?;
            rep.attack(&plan, out, baseline.as_ref());
        }
        Cmd::Summarize { .. } => unreachable!("handled before the runtime starts"),
    }
    rep.print();
    if let Some(path) = &c.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rep)?)?;
    }
    Ok(rep.ok)
}
