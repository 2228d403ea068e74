//! `summarize`: medians over repeated runs, side by side per server, with Herald/peer ratios, as a
//! Markdown table (what `bench/compare.sh` pastes into BENCHMARKS.md).
//!
//! Each JSON report's `label` is `<server>/<case>`; runs with the same label are repetitions.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// One figure: name, whether higher is better, and how to read it from a report.
struct Metric {
    name: &'static str,
    higher_is_better: bool,
    get: fn(&Value) -> Option<f64>,
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn ms(v: Option<f64>) -> Option<f64> {
    v.map(|us| us / 1000.0)
}

/// The best sweep step that kept up with its offered rate (published ≥ 90 %).
fn best_step(v: &Value) -> Option<&Value> {
    v.pointer("/result/steps")?
        .as_array()?
        .iter()
        .filter(|s| {
            f(s, &["published_events_per_s"]) >= f(s, &["offered_events_per_s"]).map(|o| 0.9 * o)
        })
        .max_by(|a, b| {
            f(a, &["deliveries_per_s"])
                .partial_cmp(&f(b, &["deliveries_per_s"]))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
}

/// The sweep step whose delivery rate is closest to half of the best sustained one (the bar's
/// "p99 at half of the maximum rate").
fn half_step(v: &Value) -> Option<&Value> {
    let half = f(best_step(v)?, &["deliveries_per_s"])? / 2.0;
    v.pointer("/result/steps")?
        .as_array()?
        .iter()
        .min_by(|a, b| {
            let da = (f(a, &["deliveries_per_s"]).unwrap_or(0.0) - half).abs();
            let db = (f(b, &["deliveries_per_s"]).unwrap_or(0.0) - half).abs();
            da.partial_cmp(&db).unwrap_or(std::cmp::Ordering::Equal)
        })
}

fn metrics(scenario: &str) -> Vec<Metric> {
    let complete = Metric {
        name: "complete (1 = yes)",
        higher_is_better: true,
        get: |v| {
            Some(if v["ok"].as_bool() == Some(true) {
                1.0
            } else {
                0.0
            })
        },
    };
    let cpu = Metric {
        name: "server CPU %",
        higher_is_better: false,
        get: |v| f(v, &["result", "resources", "server_cpu_percent"]),
    };
    match scenario {
        "fanout" | "channels" => vec![
            Metric {
                name: "deliveries/s",
                higher_is_better: true,
                get: |v| f(v, &["result", "deliveries_per_s"]),
            },
            Metric {
                name: "p50 ms",
                higher_is_better: false,
                get: |v| ms(f(v, &["result", "latency", "p50_us"])),
            },
            Metric {
                name: "p99 ms",
                higher_is_better: false,
                get: |v| ms(f(v, &["result", "latency", "p99_us"])),
            },
            Metric {
                name: "p99.9 ms",
                higher_is_better: false,
                get: |v| ms(f(v, &["result", "latency", "p999_us"])),
            },
            cpu,
            Metric {
                name: "bench CPU %",
                higher_is_better: false,
                get: |v| f(v, &["result", "resources", "bench_cpu_percent"]),
            },
            complete,
        ],
        "sweep" => vec![
            Metric {
                name: "max sustained deliveries/s",
                higher_is_better: true,
                get: |v| f(best_step(v)?, &["deliveries_per_s"]),
            },
            Metric {
                name: "p50 ms at that step",
                higher_is_better: false,
                get: |v| ms(f(best_step(v)?, &["latency", "p50_us"])),
            },
            Metric {
                name: "p99 ms at that step",
                higher_is_better: false,
                get: |v| ms(f(best_step(v)?, &["latency", "p99_us"])),
            },
            Metric {
                name: "deliveries/s of the step nearest half of that",
                higher_is_better: true,
                get: |v| f(half_step(v)?, &["deliveries_per_s"]),
            },
            Metric {
                name: "p99 ms at half rate",
                higher_is_better: false,
                get: |v| ms(f(half_step(v)?, &["latency", "p99_us"])),
            },
            complete,
        ],
        "connect" => vec![
            Metric {
                name: "connections/s",
                higher_is_better: true,
                get: |v| f(v, &["result", "connections_per_s"]),
            },
            Metric {
                name: "error rate %",
                higher_is_better: false,
                get: |v| f(v, &["result", "error_rate"]).map(|e| 100.0 * e),
            },
            Metric {
                name: "handshake p99 ms",
                higher_is_better: false,
                get: |v| ms(f(v, &["result", "handshake", "p99_us"])),
            },
            cpu,
        ],
        "idle" => vec![
            Metric {
                name: "RSS KiB per connection",
                higher_is_better: false,
                get: |v| f(v, &["result", "server_rss_per_conn_kib"]),
            },
            Metric {
                name: "open connections",
                higher_is_better: true,
                get: |v| f(v, &["result", "open"]),
            },
        ],
        _ => Vec::new(),
    }
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(x) if x.abs() >= 1000.0 => format!("{:.0}", x),
        Some(x) if x.abs() >= 10.0 => format!("{:.1}", x),
        Some(x) => format!("{:.3}", x),
    }
}

/// Reads every `*.json` report in `dir` and renders the comparison table.
pub fn summarize(dir: &Path) -> anyhow::Result<String> {
    // case -> server -> reports
    let mut cases: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for p in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(p)?) else {
            continue;
        };
        let label = v["label"].as_str().unwrap_or("").to_owned();
        let (server, case) = label.split_once('/').unwrap_or(("?", &label));
        cases
            .entry(case.to_owned())
            .or_default()
            .entry(server.to_owned())
            .or_default()
            .push(v);
    }
    let mut out = String::new();
    for (case, servers) in &cases {
        let scenario = servers
            .values()
            .flatten()
            .next()
            .and_then(|v| v["scenario"].as_str())
            .unwrap_or("");
        let peers: Vec<&String> = servers.keys().filter(|s| s.as_str() != "herald").collect();
        let runs: Vec<String> = servers
            .iter()
            .map(|(s, v)| format!("{s} {}", v.len()))
            .collect();
        out.push_str(&format!(
            "\n#### {case} ({scenario}; runs: {})\n\n| figure | herald |",
            runs.join(", ")
        ));
        for p in &peers {
            out.push_str(&format!(" {p} | herald/{p} |"));
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---|---|".repeat(peers.len()));
        out.push('\n');
        for m in metrics(scenario) {
            let med = |s: &str| {
                servers
                    .get(s)
                    .and_then(|vs| median(vs.iter().filter_map(|v| (m.get)(v)).collect()))
            };
            let h = med("herald");
            out.push_str(&format!(
                "| {}{} | {} |",
                m.name,
                if m.higher_is_better { " ↑" } else { " ↓" },
                fmt(h)
            ));
            for p in &peers {
                let pv = med(p);
                let ratio = h
                    .zip(pv)
                    .and_then(|(h, p)| (p != 0.0).then(|| format!("{:.2}×", h / p)));
                out.push_str(&format!(
                    " {} | {} |",
                    fmt(pv),
                    ratio.unwrap_or_else(|| "—".to_owned())
                ));
            }
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn table_from_reports() {
        let dir = std::env::temp_dir().join(format!("herald-bench-sum-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (server, d)) in [
            ("herald", 300.0),
            ("herald", 100.0),
            ("herald", 200.0),
            ("nats", 100.0),
        ]
        .iter()
        .enumerate()
        {
            let v = serde_json::json!({"label": format!("{server}/fan"), "scenario": "fanout", "ok": true,
                "result": {"deliveries_per_s": d, "latency": {"p50_us": 1000, "p99_us": 2000, "p999_us": 3000}}});
            std::fs::write(dir.join(format!("{i}.json")), v.to_string()).unwrap();
        }
        let t = summarize(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            t.contains("| deliveries/s ↑ | 200.0 | 100.0 | 2.00× |"),
            "{t}"
        );
    }
}
