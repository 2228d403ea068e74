//! Measures what a trivial JavaScript `onPublish` costs per call.
//!
//! ```text
//! cargo run --release -p herald-handler --example handler_cost [calls]
//! ```
//!
//! Prints the mean latency of sequential calls (one in flight: queue hand-off, JSON in and out,
//! the call itself) and the throughput with many calls in flight over the default worker count.

use std::sync::Arc;
use std::time::Instant;

use herald_handler::{
    EngineConfig, HandlerConfig, Handlers, IncomingEvent, PublishContext, RequestInfo,
};

const IN_FLIGHT: usize = 64;

/// CPU time used by this process so far (all threads), from /proc; `None` off Linux.
/// Unlike wall time it barely moves when other processes load the machine.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th overall.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn context(events: usize) -> PublishContext {
    PublishContext {
        channel: "/bench/room".into(),
        identity: None,
        request: RequestInfo::default(),
        events: (0..events)
            .map(|i| IncomingEvent {
                id: format!("id-{i}"),
                payload: format!(r#"{{"text":"hello world","seq":{i},"tags":["a","b"]}}"#),
            })
            .collect(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let engine = EngineConfig::default();
    let config = HandlerConfig {
        code: Some("export function onPublish(ctx) { return ctx.events }".into()),
        ..Default::default()
    };
    let handlers = Arc::new(Handlers::new(&engine, [("bench", config)])?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("js_workers = {}, calls = {calls}", engine.js_workers);
    rt.block_on(async {
        for events in [1, 5] {
            for _ in 0..1_000 {
                handlers.on_publish("bench", context(events)).await?;
            }
            let started = Instant::now();
            for _ in 0..calls {
                handlers.on_publish("bench", context(events)).await?;
            }
            let per_call = started.elapsed().as_secs_f64() * 1e6 / calls as f64;
            println!("{events} event(s)/publish, sequential: {per_call:.1} µs per call");

            let started = Instant::now();
            let cpu_started = cpu_seconds();
            let mut tasks = Vec::with_capacity(IN_FLIGHT);
            for _ in 0..IN_FLIGHT {
                let handlers = Arc::clone(&handlers);
                let share = calls / IN_FLIGHT;
                tasks.push(tokio::spawn(async move {
                    for _ in 0..share {
                        handlers.on_publish("bench", context(events)).await?;
                    }
                    Ok::<_, herald_handler::HandlerError>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            let done = (calls / IN_FLIGHT) * IN_FLIGHT;
            let rate = done as f64 / started.elapsed().as_secs_f64();
            println!(
                "{events} event(s)/publish, {IN_FLIGHT} in flight: {rate:.0} calls/s ({:.0} events/s)",
                rate * events as f64
            );
            if let (Some(start), Some(end)) = (cpu_started, cpu_seconds()) {
                let per_call = (end - start) * 1e6 / done as f64;
                println!("{events} event(s)/publish, CPU per call (all threads): {per_call:.1} µs");
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
