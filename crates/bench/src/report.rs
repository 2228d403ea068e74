//! The run report: a table on stdout and the same figures as JSON.

use serde::Serialize;
use serde_json::Value;

use crate::attack;
use crate::conn::{ConnectOutcome, IdleOutcome};
use crate::pubsub::{Outcome, Plan};
use crate::target::Protocol;
use crate::track::Latency;

#[derive(Serialize)]
pub struct Report {
    pub label: String,
    pub protocol: Protocol,
    pub scenario: String,
    pub unix_time: u64,
    pub params: Value,
    pub result: Value,
    /// Completeness (pub/sub, attack) or no errors (connect/idle). Speed never fails a run.
    pub ok: bool,
    /// One line saying what the run found, where a scenario has one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(skip)]
    rows: Vec<(String, String)>,
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

fn lat_rows(rows: &mut Vec<(String, String)>, name: &str, l: &Latency) {
    rows.push((
        name.to_owned(),
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            l.count
        ),
    ));
}

fn opt<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map_or_else(
        || "n/a (no --server-pid)".to_owned(),
        |v| format!("{v}{unit}"),
    )
}

impl Report {
    pub fn new(label: &str, protocol: Protocol) -> Self {
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Report {
            label: label.to_owned(),
            protocol,
            scenario: String::new(),
            unix_time,
            params: Value::Null,
            result: Value::Null,
            ok: false,
            summary: String::new(),
            rows: Vec::new(),
        }
    }

    fn resources(&mut self, r: &crate::procfs::Resources) {
        let rows = &mut self.rows;
        rows.push((
            "server CPU".into(),
            opt(
                r.server_cpu_percent.map(|v| format!("{v:.0}")),
                " % of one core",
            ),
        ));
        rows.push((
            "server RSS".into(),
            opt(
                r.server_rss_kib_start
                    .zip(r.server_rss_kib_end)
                    .map(|(a, b)| format!("{a} -> {b}")),
                " KiB",
            ),
        ));
        rows.push((
            "bench CPU".into(),
            opt(
                r.bench_cpu_percent.map(|v| format!("{v:.0}")),
                " % of one core",
            ),
        ));
    }

    pub fn pubsub(&mut self, scenario: &str, plan: &Plan, o: Outcome) {
        self.scenario = scenario.to_owned();
        self.params = serde_json::to_value(plan).unwrap_or(Value::Null);
        let c = &o.completeness;
        self.ok = c.is_complete()
            && o.publish_errors == 0
            && o.subscribers_failed == 0
            && o.published > 0;
        let rows = &mut self.rows;
        rows.push((
            "subscribers".into(),
            format!(
                "{} connected, {} failed, setup {:.1} s",
                o.subscribers_connected, o.subscribers_failed, o.setup_s
            ),
        ));
        rows.push((
            "published".into(),
            format!(
                "{} events in {:.1} s ({:.0}/s), {} publish errors",
                o.published, o.publish_s, o.published_per_s, o.publish_errors
            ),
        ));
        rows.push((
            "deliveries".into(),
            format!("{} ({:.0}/s)", o.deliveries, o.deliveries_per_s),
        ));
        lat_rows(rows, "publish->deliver", &o.latency);
        rows.push((
            "completeness".into(),
            format!(
                "{} expected, {} missing, {} duplicated, {} out of order, {} unexpected; {}/{} subscribers incomplete",
                c.expected, c.missing, c.duplicated, c.out_of_order, c.unexpected, c.incomplete_subscribers, c.subscribers
            ),
        ));
        if plan.checks_channel {
            rows.push((
                "channel member".into(),
                format!(
                    "checked on every event, {} wrong or missing",
                    c.wrong_channel
                ),
            ));
        }
        for i in c.incomplete.iter().take(5) {
            rows.push((
                format!("  subscriber {}", i.subscriber),
                format!(
                    "{}: expected {}, received {}, missing {}, duplicated {}, out of order {}, unexpected {}, wrong channel {}",
                    i.channel, i.expected, i.received, i.missing, i.duplicated, i.out_of_order, i.unexpected, i.wrong_channel
                ),
            ));
        }
        for s in &o.steps {
            rows.push((
                format!("step {:.0} ev/s", s.offered_events_per_s),
                format!(
                    "published {:.0}/s delivered {:.0}/s p50 {} p99 {} p99.9 {}",
                    s.published_events_per_s,
                    s.deliveries_per_s,
                    ms(s.latency.p50_us),
                    ms(s.latency.p99_us),
                    ms(s.latency.p999_us)
                ),
            ));
        }
        self.resources(&o.resources);
        self.result = serde_json::to_value(&o).unwrap_or(Value::Null);
    }

    pub fn connect(&mut self, n: u64, concurrency: usize, subscribe: bool, o: ConnectOutcome) {
        self.scenario = "connect".into();
        self.params = serde_json::json!({"connections": n, "concurrency": concurrency, "subscribe": subscribe});
        self.ok = o.errors == 0 && o.connected > 0;
        self.rows.push((
            "connections".into(),
            format!(
                "{} ok, {} errors ({:.2} %) in {:.2} s",
                o.connected,
                o.errors,
                100.0 * o.error_rate,
                o.elapsed_s
            ),
        ));
        self.rows.push((
            "rate".into(),
            format!("{:.0} connections/s", o.connections_per_s),
        ));
        lat_rows(&mut self.rows, "handshake", &o.handshake);
        self.resources(&o.resources);
        self.result = serde_json::to_value(&o).unwrap_or(Value::Null);
    }

    pub fn idle(&mut self, o: IdleOutcome) {
        self.scenario = "idle".into();
        self.params = serde_json::json!({"connections": o.requested, "subscribe": o.subscribed});
        self.ok = o.errors == 0 && o.open == o.requested;
        self.rows.push((
            "open".into(),
            format!(
                "{} of {} ({} errors) in {:.1} s",
                o.open, o.requested, o.errors, o.open_s
            ),
        ));
        self.rows.push((
            "server RSS".into(),
            opt(
                o.server_rss_kib_before
                    .zip(o.server_rss_kib_after)
                    .map(|(a, b)| format!("{a} -> {b}")),
                " KiB",
            ),
        ));
        self.rows.push((
            "RSS per connection".into(),
            opt(o.server_rss_per_conn_kib.map(|v| format!("{v:.2}")), " KiB"),
        ));
        self.rows.push((
            "CPU while opening".into(),
            format!(
                "server {}, bench {}",
                opt(
                    o.resources.server_cpu_percent.map(|v| format!("{v:.0}")),
                    " %"
                ),
                opt(
                    o.resources.bench_cpu_percent.map(|v| format!("{v:.0}")),
                    " %"
                )
            ),
        ));
        self.result = serde_json::to_value(&o).unwrap_or(Value::Null);
    }

    /// `baseline`: the JSON report of a `--kind none` run to compare p99 latencies with.
    pub fn attack(&mut self, plan: &attack::Plan, o: attack::Outcome, baseline: Option<&Value>) {
        self.scenario = "attack".into();
        self.params = serde_json::to_value(plan).unwrap_or(Value::Null);
        let (v, a) = (&o.victim, &o.attack);
        let c = &v.completeness;
        self.ok =
            c.subscribers == 1 && c.is_complete() && v.publish_errors == 0 && v.acknowledged > 0;
        let rows = &mut self.rows;
        let kind = serde_json::to_value(a.kind)
            .ok()
            .and_then(|k| k.as_str().map(str::to_owned))
            .unwrap_or_default();
        rows.push((
            "attack".into(),
            format!(
                "{kind}: {} workers, {} attempts, {} opened, {} refused, {} completed",
                a.workers, a.attempts, a.opened, a.refused, a.completed
            ),
        ));
        rows.push((
            "hostile sockets".into(),
            format!(
                "held at most {}, {} at the end; {} closed by the server (after p50 {:.1} s, max {:.1} s)",
                a.held_max,
                a.held_at_end,
                a.closed_by_server,
                a.server_closed_after.p50_us as f64 / 1e6,
                a.server_closed_after.max_us as f64 / 1e6
            ),
        ));
        if !a.outcomes.is_empty() {
            let list: Vec<String> = a
                .outcomes
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            rows.push(("attempts ended".into(), list.join(", ")));
        }
        if !a.units_are.is_empty() {
            rows.push((
                "attack volume".into(),
                format!("{} {}", a.units, a.units_are),
            ));
        }
        if a.prefilled > 0 {
            rows.push(("prefilled".into(), format!("{} events", a.prefilled)));
        }
        rows.push((
            "server peaks".into(),
            opt(
                a.server_fds_max
                    .zip(a.server_rss_kib_max)
                    .map(|(f, r)| format!("{f} open files, RSS {} MiB", r / 1024)),
                "",
            ),
        ));
        rows.push((
            "victim publish".into(),
            format!(
                "{} acknowledged ({:.0}/s), {} publish errors, {} fell due but not sent (one was in flight)",
                v.acknowledged, v.published_per_s, v.publish_errors, v.missed_schedule
            ),
        ));
        lat_rows(rows, "victim publish->ack", &v.publish_ack);
        lat_rows(rows, "victim publish->deliver", &v.deliver);
        rows.push((
            "victim delivery".into(),
            format!(
                "{} delivered, {} lost, {} duplicated, {} out of order, {} unexpected",
                v.delivered, c.missing, c.duplicated, c.out_of_order, c.unexpected
            ),
        ));
        rows.push((
            "newcomer connects".into(),
            format!(
                "{} ok, {} failed; handshake p50 {} p99 {} max {}",
                v.connects_ok,
                v.connects_failed,
                ms(v.connect.p50_us),
                ms(v.connect.p99_us),
                ms(v.connect.max_us)
            ),
        ));
        let p99 = |r: &Value, which: &str| r["result"]["victim"][which]["p99_us"].as_u64();
        let versus = baseline.and_then(|b| {
            let (base, ack) = (p99(b, "deliver")?, p99(b, "publish_ack")?);
            let ratio = v.deliver.p99_us as f64 / base.max(1) as f64;
            let ack_ratio = v.publish_ack.p99_us as f64 / ack.max(1) as f64;
            Some(serde_json::json!({
                "baseline_deliver_p99_us": base,
                "deliver_p99_ratio": ratio,
                "baseline_ack_p99_us": ack,
                "ack_p99_ratio": ack_ratio,
                "bar_holds": ratio <= 2.0 && ack_ratio <= 2.0,
            }))
        });
        let mut bar = String::new();
        if let Some(x) = &versus {
            let holds = x["bar_holds"].as_bool() == Some(true);
            bar = format!(
                "; p99 ÷ baseline: deliver {:.2}, ack {:.2}: bar (≤ 2×) {}",
                x["deliver_p99_ratio"].as_f64().unwrap_or(0.0),
                x["ack_p99_ratio"].as_f64().unwrap_or(0.0),
                if holds { "holds" } else { "FAILS" }
            );
            rows.push((
                "vs baseline".into(),
                bar.trim_start_matches("; ").to_owned(),
            ));
        }
        self.resources(&o.resources);
        self.summary = format!(
            "{kind}: victim deliver p50 {} p99 {}, ack p50 {} p99 {}{bar}; {} acknowledged, {} lost, {} out of order, {} publish errors; attack held {} sockets at most, {} closed by server, {} refused",
            ms(v.deliver.p50_us),
            ms(v.deliver.p99_us),
            ms(v.publish_ack.p50_us),
            ms(v.publish_ack.p99_us),
            v.acknowledged,
            c.missing,
            c.out_of_order,
            v.publish_errors,
            a.held_max,
            a.closed_by_server,
            a.refused
        );
        let mut result = serde_json::to_value(&o).unwrap_or(Value::Null);
        if let (Some(x), Some(m)) = (versus, result.as_object_mut()) {
            m.insert("versus".into(), x);
        }
        self.result = result;
    }

    pub fn print(&self) {
        let label = if self.label.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.label)
        };
        println!(
            "herald-bench {} ({:?}){label}",
            self.scenario, self.protocol
        );
        let w = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &self.rows {
            println!("  {k:<w$}  {v}");
        }
        println!(
            "  {:<w$}  {}",
            "verdict",
            if self.ok { "OK" } else { "INCOMPLETE / ERRORS" }
        );
        if !self.summary.is_empty() {
            println!("{}", self.summary);
        }
    }
}
