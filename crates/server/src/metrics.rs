//! Prometheus metrics at `GET /metrics`, named after AppSync's CloudWatch metrics (spec §8) and
//! labelled by namespace, never by channel.
//!
//! Counters are plain atomics held in structs created at startup, so recording is one relaxed
//! atomic add and nothing is formatted until `/metrics` is scraped. Per-delivery counts are added
//! once per written batch by the connection task, not once per subscriber by the publisher.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-namespace metrics.
#[derive(Default)]
pub struct Namespace {
    pub subscribe_success: Counter,
    pub subscribe_client_error: Counter,
    pub unsubscribe_success: Counter,
    pub active_subscriptions: Gauge,
    pub publish_success: Counter,
    pub publish_client_error: Counter,
    pub publish_server_error: Counter,
    /// Events accepted by publishes.
    pub broadcast_events: Counter,
    /// Bytes of accepted events.
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
    /// Operations refused by access rules.
    pub rule_denials: Counter,
}

/// Server-wide metrics.
#[derive(Default)]
pub struct Metrics {
    pub connect_requests: Counter,
    pub connect_success: Counter,
    pub connect_client_error: Counter,
    pub disconnects: Counter,
    pub active_connections: Gauge,
    pub slow_consumer_disconnects: Counter,
    pub inbound_messages: Counter,
    pub outbound_messages: Counter,
    pub outbound_bytes: Counter,
    pub http_requests_2xx: Counter,
    pub http_requests_4xx: Counter,
    pub http_requests_5xx: Counter,
    /// Operations refused by authorization (any operation, any mode).
    pub unauthorized: Counter,
    /// Grows on reload when namespaces are added (kept when removed, so counters never reset).
    namespaces: std::sync::RwLock<BTreeMap<String, std::sync::Arc<Namespace>>>,
    /// Stands in for a namespace that does not exist, so callers never need an `Option`.
    unknown: std::sync::Arc<Namespace>,
}

impl Metrics {
    pub fn new<'a>(namespaces: impl IntoIterator<Item = &'a str>) -> Metrics {
        Metrics {
            namespaces: std::sync::RwLock::new(
                namespaces
                    .into_iter()
                    .map(|n| (n.to_owned(), std::sync::Arc::default()))
                    .collect(),
            ),
            ..Metrics::default()
        }
    }

    /// The namespace's metrics (a shared sink for unknown names, which are never exported).
    pub fn ns(&self, name: &str) -> std::sync::Arc<Namespace> {
        self.namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .unwrap_or(&self.unknown)
            .clone()
    }

    /// Adds metrics for namespaces a reload introduced.
    pub fn add_namespaces<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut map = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        for name in names {
            map.entry(name.to_owned()).or_default();
        }
    }

    pub fn http_status(&self, status: u16) {
        match status {
            500.. => self.http_requests_5xx.inc(),
            400..=499 => self.http_requests_4xx.inc(),
            _ => self.http_requests_2xx.inc(),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, queued_bytes: u64) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let mut one = |name: &str, kind: &str, help: &str, value: i128| {
            let _ = writeln!(
                out,
                "# HELP herald_{name} {help}\n# TYPE herald_{name} {kind}\nherald_{name} {value}"
            );
        };
        one(
            "connect_requests_total",
            "counter",
            "WebSocket upgrades received.",
            self.connect_requests.get().into(),
        );
        one(
            "connect_success_total",
            "counter",
            "Connections admitted.",
            self.connect_success.get().into(),
        );
        one(
            "connect_client_errors_total",
            "counter",
            "Connections refused (authorization, limits).",
            self.connect_client_error.get().into(),
        );
        one(
            "disconnect_total",
            "counter",
            "Admitted connections that ended.",
            self.disconnects.get().into(),
        );
        one(
            "active_connections",
            "gauge",
            "Open WebSocket connections.",
            self.active_connections.get().into(),
        );
        one(
            "slow_consumer_disconnects_total",
            "counter",
            "Connections closed because their outbound queue overflowed.",
            self.slow_consumer_disconnects.get().into(),
        );
        one(
            "inbound_messages_total",
            "counter",
            "WebSocket messages received.",
            self.inbound_messages.get().into(),
        );
        one(
            "outbound_messages_total",
            "counter",
            "WebSocket messages sent.",
            self.outbound_messages.get().into(),
        );
        one(
            "outbound_bytes_total",
            "counter",
            "Bytes of WebSocket messages sent.",
            self.outbound_bytes.get().into(),
        );
        one(
            "unauthorized_total",
            "counter",
            "Operations refused by authorization.",
            self.unauthorized.get().into(),
        );
        one(
            "queued_bytes",
            "gauge",
            "Bytes waiting in connection outbound queues.",
            queued_bytes.into(),
        );
        let _ = writeln!(
            out,
            "# HELP herald_http_requests_total HTTP requests answered, by status class.\n# TYPE herald_http_requests_total counter"
        );
        for (class, c) in [
            ("2xx", &self.http_requests_2xx),
            ("4xx", &self.http_requests_4xx),
            ("5xx", &self.http_requests_5xx),
        ] {
            let _ = writeln!(
                out,
                "herald_http_requests_total{{status=\"{class}\"}} {}",
                c.get()
            );
        }
        type Get = fn(&Namespace) -> i128;
        let per_ns: [(&str, &str, &str, Get); 16] = [
            (
                "subscribe_success_total",
                "counter",
                "Subscriptions accepted.",
                |n| n.subscribe_success.get().into(),
            ),
            (
                "subscribe_client_errors_total",
                "counter",
                "Subscriptions refused.",
                |n| n.subscribe_client_error.get().into(),
            ),
            (
                "unsubscribe_success_total",
                "counter",
                "Subscriptions ended by the client.",
                |n| n.unsubscribe_success.get().into(),
            ),
            (
                "active_subscriptions",
                "gauge",
                "Live subscriptions.",
                |n| n.active_subscriptions.get().into(),
            ),
            (
                "publish_success_total",
                "counter",
                "Publish requests accepted (HTTP and WebSocket).",
                |n| n.publish_success.get().into(),
            ),
            (
                "publish_client_errors_total",
                "counter",
                "Publish requests refused for the client's fault.",
                |n| n.publish_client_error.get().into(),
            ),
            (
                "publish_server_errors_total",
                "counter",
                "Publish requests failed by the server.",
                |n| n.publish_server_error.get().into(),
            ),
            (
                "broadcast_events_total",
                "counter",
                "Events accepted for broadcast.",
                |n| n.broadcast_events.get().into(),
            ),
            (
                "broadcast_event_bytes_total",
                "counter",
                "Bytes of events accepted for broadcast.",
                |n| n.broadcast_event_bytes.get().into(),
            ),
            (
                "deliveries_total",
                "counter",
                "Events handed to subscriptions (one per event per subscription).",
                |n| n.deliveries.get().into(),
            ),
            (
                "failed_events_total",
                "counter",
                "Events refused one by one (e.g. too large).",
                |n| n.failed_events.get().into(),
            ),
            (
                "history_appends_total",
                "counter",
                "Events stored in history.",
                |n| n.history_appends.get().into(),
            ),
            (
                "history_errors_total",
                "counter",
                "History store failures.",
                |n| n.history_errors.get().into(),
            ),
            (
                "resumes_total",
                "counter",
                "Subscriptions resumed from a position or time.",
                |n| n.resumes.get().into(),
            ),
            (
                "resumes_unrecovered_total",
                "counter",
                "Resumes that could not replay everything.",
                |n| n.resumes_unrecovered.get().into(),
            ),
            (
                "rule_denials_total",
                "counter",
                "Subscribes and publishes refused by access rules.",
                |n| n.rule_denials.get().into(),
            ),
        ];
        for (name, kind, help, get) in per_ns {
            let _ = writeln!(
                out,
                "# HELP herald_{name} {help}\n# TYPE herald_{name} {kind}"
            );
            for (ns, m) in self
                .namespaces
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                let _ = writeln!(out, "herald_{name}{{namespace=\"{ns}\"}} {}", get(m));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new(["default", "chat"]);
        m.ns("chat").publish_success.add(3);
        m.ns("nope").publish_success.inc();
        m.active_connections.inc();
        let text = m.render(7);
        assert!(text.contains("herald_publish_success_total{namespace=\"chat\"} 3\n"));
        assert!(text.contains("herald_publish_success_total{namespace=\"default\"} 0\n"));
        assert!(!text.contains("nope"));
        assert!(text.contains("herald_active_connections 1\n"));
        assert!(text.contains("herald_queued_bytes 7\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<i128>().unwrap();
        }
    }
}
