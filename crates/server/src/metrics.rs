//! Prometheus metrics at `GET /metrics`, named after AppSync's CloudWatch metrics (spec §8) and
//! labelled by namespace, never by channel. The exposition is the Prometheus project's
//! `prometheus-client` (text format 0.0.4).
//!
//! Recording is one relaxed atomic add on a handle held in structs made at startup; nothing is
//! formatted until `/metrics` is scraped. Per-namespace handles live in one struct per namespace,
//! so a publish looks its namespace up once. Latency histograms ([`Histogram`]) are lock-free
//! too: fixed buckets of atomics, so the connection tasks that observe queueing delay never
//! contend on a lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;

/// Upper bounds of the latency buckets, in seconds: 50 µs to 10 s.
const BOUNDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// A latency histogram with fixed buckets ([`BOUNDS`]); observing is a few atomic adds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound; the last slot counts those above every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Cumulative counts, as the format wants.
        let mut cumulative = 0;
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(BOUNDS.len() + 1);
        for (bound, n) in BOUNDS.iter().chain([&f64::INFINITY]).zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum,
            self.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// How a publish arrived, for the publish latency histogram.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Http,
    WebSocket,
}

/// Per-namespace metrics.
#[derive(Debug, Default)]
pub struct Namespace {
    pub subscribe_success: Counter,
    pub subscribe_client_error: Counter,
    pub unsubscribe_success: Counter,
    pub active_subscriptions: Gauge,
    /// Presence members (connections in a channel), and channels with at least one.
    pub presence_members: Gauge,
    pub presence_channels: Gauge,
    /// Presence notices for `presence.channel` dropped because its queue was full.
    pub presence_notices_dropped: Counter,
    /// Presence webhook notices taken by the receiver, batches retried, notices dropped (queue
    /// full, or every attempt failed).
    pub presence_webhook_deliveries: Counter,
    pub presence_webhook_retries: Counter,
    pub presence_webhook_dropped: Counter,
    pub publish_success: Counter,
    pub publish_client_error: Counter,
    pub publish_server_error: Counter,
    /// Events accepted by publishes.
    pub broadcast_events: Counter,
    /// Bytes of accepted events, each counted as the JSON string it travels as (escaped).
    pub broadcast_event_bytes: Counter,
    /// Subscriptions reached, summed over events.
    pub deliveries: Counter,
    /// Events refused per event (too large).
    pub failed_events: Counter,
    /// Events stored in history.
    pub history_appends: Counter,
    pub history_errors: Counter,
    /// Resumed subscriptions, and those that could not recover everything.
    pub resumes: Counter,
    pub resumes_unrecovered: Counter,
    /// Resumes stopped before going live because their connection ended.
    pub resumes_abandoned: Counter,
    /// Operations refused by access rules.
    pub rule_denials: Counter,
    /// From a decoded publish to its answer, by transport.
    pub publish_http_seconds: Histogram,
    pub publish_websocket_seconds: Histogram,
    /// Handler calls, by kind.
    pub on_publish_seconds: Histogram,
    pub on_subscribe_seconds: Histogram,
    /// A publish's wait for history: queued, stored (group commit), delivered.
    pub history_append_seconds: Histogram,
}

impl Namespace {
    pub fn publish_seconds(&self, transport: Transport) -> &Histogram {
        match transport {
            Transport::Http => &self.publish_http_seconds,
            Transport::WebSocket => &self.publish_websocket_seconds,
        }
    }
}

/// WebSocket messages and bytes sent: counted by the connection tasks, and by the fan-out for
/// what it writes directly (`connection::outbox`), into the same two counters.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    pub messages: Counter,
    pub bytes: Counter,
}

/// Server-wide metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `api="…"` on every series of an API the control plane created (served at
    /// `/apis/{apiId}/metrics`); the file's API has none, as before.
    pub api_label: Option<String>,
    pub connect_requests: Counter,
    pub connect_success: Counter,
    pub connect_client_error: Counter,
    pub disconnects: Counter,
    pub active_connections: Gauge,
    /// Open Server-Sent Events streams (`GET /event/stream`); also counted in
    /// `active_connections`, as they hold a connection's place.
    pub active_sse_streams: Gauge,
    pub slow_consumer_disconnects: Counter,
    pub inbound_messages: Counter,
    pub outbound_messages: Counter,
    pub outbound_bytes: Counter,
    pub http_requests_2xx: Counter,
    pub http_requests_4xx: Counter,
    pub http_requests_5xx: Counter,
    /// Operations refused by authorization (any operation, any mode).
    pub unauthorized: Counter,
    /// Sockets closed at accept: over `max_sockets` or `max_sockets_per_address`.
    pub refused_sockets: Counter,
    /// Connects and HTTP publishes refused by a per-address rate.
    pub rate_limited: Counter,
    /// Addresses blocked in the kernel for flooding (`admission.flood_block_refusals_per_second`).
    pub flood_blocks: Counter,
    /// Addresses blocked now.
    pub blocked_addresses: Gauge,
    /// Presence changes not sent to the other nodes because their queue was full (the nodes
    /// resynchronise from a snapshot when they see the gap).
    pub presence_deltas_dropped: Counter,
    /// Connections ended by a deadline: a stalled write, a half-sent message, an idle socket,
    /// a slow request body.
    pub timeouts: Counter,
    /// From the first frame queued on an idle connection to the write that sends it.
    pub queue_delay_seconds: Arc<Histogram>,
    namespaces: Arc<Namespaces>,
}

/// Grows on reload when namespaces are added (kept when removed, so counters never reset).
#[derive(Debug, Default)]
struct Namespaces {
    known: RwLock<BTreeMap<String, Arc<Namespace>>>,
    /// Stands in for a namespace that does not exist, so callers never need an `Option`.
    unknown: Arc<Namespace>,
}

impl Metrics {
    pub fn new<'a>(namespaces: impl IntoIterator<Item = &'a str>) -> Metrics {
        let m = Metrics::default();
        m.add_namespaces(namespaces);
        m
    }

    /// The namespace's metrics (a shared sink for unknown names, which are never exported).
    pub fn ns(&self, name: &str) -> Arc<Namespace> {
        let ns = &self.namespaces;
        ns.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .unwrap_or(&ns.unknown)
            .clone()
    }

    /// Adds metrics for namespaces a reload introduced.
    pub fn add_namespaces<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut map = self
            .namespaces
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for name in names {
            map.entry(name.to_owned()).or_default();
        }
    }

    pub fn http_status(&self, status: u16) {
        match status {
            500.. => self.http_requests_5xx.inc(),
            400..=499 => self.http_requests_4xx.inc(),
            _ => self.http_requests_2xx.inc(),
        };
    }

    /// The Prometheus text exposition. `queued_bytes` is read from the connections at scrape
    /// time.
    pub fn render(&self, queued_bytes: u64) -> String {
        let mut registry = match &self.api_label {
            Some(api) => Registry::with_prefix_and_labels(
                "herald",
                std::iter::once(("api".into(), api.clone().into())),
            ),
            None => Registry::with_prefix("herald"),
        };
        let plain: [(&str, &str, &Counter); 14] = [
            (
                "presence_deltas_dropped",
                "Presence changes not sent to the other nodes: their queue was full.",
                &self.presence_deltas_dropped,
            ),
            (
                "refused_sockets",
                "Sockets closed at accept: over the total or per-address cap.",
                &self.refused_sockets,
            ),
            (
                "flood_blocks",
                "Addresses blocked in the kernel for opening sockets over their cap, or connecting over their rate, too fast.",
                &self.flood_blocks,
            ),
            (
                "rate_limited",
                "Connects and HTTP publishes refused by a per-address rate.",
                &self.rate_limited,
            ),
            (
                "timeouts",
                "Connections ended by a deadline (stalled write, half-sent message, idle socket, slow body).",
                &self.timeouts,
            ),
            (
                "connect_requests",
                "WebSocket upgrades received.",
                &self.connect_requests,
            ),
            (
                "connect_success",
                "Connections admitted.",
                &self.connect_success,
            ),
            (
                "connect_client_errors",
                "Connections refused (authorization, limits).",
                &self.connect_client_error,
            ),
            (
                "disconnect",
                "Admitted connections that ended.",
                &self.disconnects,
            ),
            (
                "slow_consumer_disconnects",
                "Connections closed because their outbound queue overflowed.",
                &self.slow_consumer_disconnects,
            ),
            (
                "inbound_messages",
                "WebSocket messages received.",
                &self.inbound_messages,
            ),
            (
                "outbound_messages",
                "WebSocket messages sent.",
                &self.outbound_messages,
            ),
            (
                "outbound_bytes",
                "Bytes of WebSocket messages sent.",
                &self.outbound_bytes,
            ),
            (
                "unauthorized",
                "Operations refused by authorization.",
                &self.unauthorized,
            ),
        ];
        for (name, help, counter) in plain {
            // Handles share their atomic: the registry reads the live values.
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "active_connections",
            "Open connections: WebSockets and Server-Sent Events streams.",
            self.active_connections.clone(),
        );
        registry.register(
            "blocked_addresses",
            "Addresses whose connection attempts the listener drops now (flood blocks).",
            self.blocked_addresses.clone(),
        );
        registry.register(
            "active_sse_streams",
            "Open Server-Sent Events streams (GET /event/stream), also in active_connections.",
            self.active_sse_streams.clone(),
        );
        let queued: Gauge = Gauge::default();
        queued.set(i64::try_from(queued_bytes).unwrap_or(i64::MAX));
        registry.register(
            "queued_bytes",
            "Bytes waiting in connection outbound queues.",
            queued,
        );
        registry.register_collector(Box::new(Scrape {
            http: [
                ("2xx", self.http_requests_2xx.clone()),
                ("4xx", self.http_requests_4xx.clone()),
                ("5xx", self.http_requests_5xx.clone()),
            ],
            queue_delay: self.queue_delay_seconds.clone(),
            namespaces: self.namespaces.clone(),
        }));
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// What the registry's own types cannot hold: labelled families and the histograms. Holds
/// handles that share the live atomics.
#[derive(Debug)]
struct Scrape {
    http: [(&'static str, Counter); 3],
    queue_delay: Arc<Histogram>,
    namespaces: Arc<Namespaces>,
}

type Field<T> = fn(&Namespace) -> &T;

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut e = encoder.encode_descriptor(
                "http_requests",
                "HTTP requests answered, by status class.",
                None,
                MetricType::Counter,
            )?;
            for (class, c) in &self.http {
                c.encode(e.encode_family(&[("status", *class)])?)?;
            }
        }
        self.queue_delay.encode(encoder.encode_descriptor(
            "queue_delay_seconds",
            "Time from the first frame queued on an idle connection to the write that sends it (sampled: one in 16 such writes per connection).",
            None,
            MetricType::Histogram,
        )?)?;
        let known = self
            .namespaces
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for (name, help, field) in COUNTERS {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (ns, n) in known.iter() {
                field(n).encode(e.encode_family(&[("namespace", ns.as_str())])?)?;
            }
        }
        for (name, help, field) in GAUGES {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (ns, n) in known.iter() {
                field(n).encode(e.encode_family(&[("namespace", ns.as_str())])?)?;
            }
        }
        for (name, help, label, parts) in HISTOGRAMS {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (ns, n) in known.iter() {
                for (value, field) in parts {
                    let labels = [("namespace", ns.as_str()), (label, value)];
                    field(n).encode(e.encode_family(&labels)?)?;
                }
            }
        }
        let mut e = encoder.encode_descriptor(
            "history_append_duration_seconds",
            "A publish's wait for history: queued, stored (group commit), delivered.",
            None,
            MetricType::Histogram,
        )?;
        for (ns, n) in known.iter() {
            n.history_append_seconds
                .encode(e.encode_family(&[("namespace", ns.as_str())])?)?;
        }
        Ok(())
    }
}

/// Per-namespace gauges: name, help, field.
const GAUGES: [(&str, &str, Field<Gauge>); 3] = [
    ("active_subscriptions", "Live subscriptions.", |n| {
        &n.active_subscriptions
    }),
    (
        "presence_members",
        "Presence members: connections subscribed to a channel of a namespace with presence on.",
        |n| &n.presence_members,
    ),
    (
        "presence_channels",
        "Channels with at least one presence member.",
        |n| &n.presence_channels,
    ),
];

/// Per-namespace counters: name (without `_total`), help, field.
const COUNTERS: [(&str, &str, Field<Counter>); 20] = [
    ("subscribe_success", "Subscriptions accepted.", |n| {
        &n.subscribe_success
    }),
    ("subscribe_client_errors", "Subscriptions refused.", |n| {
        &n.subscribe_client_error
    }),
    (
        "unsubscribe_success",
        "Subscriptions ended by the client.",
        |n| &n.unsubscribe_success,
    ),
    (
        "publish_success",
        "Publish requests accepted (HTTP and WebSocket).",
        |n| &n.publish_success,
    ),
    (
        "publish_client_errors",
        "Publish requests refused for the client's fault.",
        |n| &n.publish_client_error,
    ),
    (
        "publish_server_errors",
        "Publish requests failed by the server.",
        |n| &n.publish_server_error,
    ),
    ("broadcast_events", "Events accepted for broadcast.", |n| {
        &n.broadcast_events
    }),
    (
        "broadcast_event_bytes",
        "Bytes of events accepted for broadcast, each counted as the JSON string it travels as.",
        |n| &n.broadcast_event_bytes,
    ),
    (
        "deliveries",
        "Events handed to subscriptions (one per event per subscription).",
        |n| &n.deliveries,
    ),
    (
        "failed_events",
        "Events refused one by one (e.g. too large).",
        |n| &n.failed_events,
    ),
    ("history_appends", "Events stored in history.", |n| {
        &n.history_appends
    }),
    ("history_errors", "History store failures.", |n| {
        &n.history_errors
    }),
    (
        "resumes",
        "Subscriptions resumed from a position or time.",
        |n| &n.resumes,
    ),
    (
        "resumes_unrecovered",
        "Resumes that could not replay everything.",
        |n| &n.resumes_unrecovered,
    ),
    (
        "resumes_abandoned",
        "Resumes stopped before going live because their connection ended.",
        |n| &n.resumes_abandoned,
    ),
    (
        "rule_denials",
        "Subscribes and publishes refused by access rules.",
        |n| &n.rule_denials,
    ),
    (
        "presence_notices_dropped",
        "Presence notices for presence.channel dropped: its queue was full.",
        |n| &n.presence_notices_dropped,
    ),
    (
        "presence_webhook_deliveries",
        "Presence notices the webhook receiver took (2xx).",
        |n| &n.presence_webhook_deliveries,
    ),
    (
        "presence_webhook_retries",
        "Presence webhook batches sent again after a failure.",
        |n| &n.presence_webhook_retries,
    ),
    (
        "presence_webhook_dropped",
        "Presence notices dropped: the webhook queue was full, or every attempt failed.",
        |n| &n.presence_webhook_dropped,
    ),
];

/// Per-namespace histograms with one more label: name, help, label, (value, field) pairs.
type Labelled = (
    &'static str,
    &'static str,
    &'static str,
    [(&'static str, Field<Histogram>); 2],
);
const HISTOGRAMS: [Labelled; 2] = [
    (
        "publish_duration_seconds",
        "Publish requests, from decoded to answered.",
        "transport",
        [
            ("http", |n| &n.publish_http_seconds),
            ("websocket", |n| &n.publish_websocket_seconds),
        ],
    ),
    (
        "handler_duration_seconds",
        "Namespace handler calls.",
        "handler",
        [
            ("onPublish", |n| &n.on_publish_seconds),
            ("onSubscribe", |n| &n.on_subscribe_seconds),
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new(["default", "chat"]);
        m.ns("chat").publish_success.inc_by(3);
        m.ns("nope").publish_success.inc();
        m.active_connections.inc();
        m.ns("chat")
            .publish_seconds(Transport::Http)
            .observe(Duration::from_micros(300));
        m.queue_delay_seconds.observe(Duration::from_secs(60));
        let text = m.render(7);
        assert!(
            text.contains("herald_publish_success_total{namespace=\"chat\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("herald_publish_success_total{namespace=\"default\"} 0\n"));
        assert!(!text.contains("nope"));
        assert!(text.contains("herald_active_connections 1\n"));
        assert!(text.contains("herald_queued_bytes 7\n"));
        assert!(text.contains("herald_http_requests_total{status=\"2xx\"} 0\n"));
        assert!(text.contains(
            "herald_publish_duration_seconds_bucket{namespace=\"chat\",transport=\"http\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains(
            "herald_publish_duration_seconds_bucket{namespace=\"chat\",transport=\"http\",le=\"0.00025\"} 0\n"
        ));
        assert!(text.contains("herald_queue_delay_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("herald_queue_delay_seconds_count 1\n"));
        assert!(
            text.contains("herald_history_append_duration_seconds_count{namespace=\"chat\"} 0\n")
        );
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap();
        }
    }
}
