//! Connection scenarios: `connect` (a storm of handshakes) and `idle` (many open connections,
//! server memory per connection).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::procfs::{self, Resources, Window};
use crate::target::Endpoint;
use crate::track::{Latency, new_histogram};

#[derive(Clone, Debug, serde::Serialize)]
pub struct ConnectOutcome {
    pub attempted: u64,
    pub connected: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub elapsed_s: f64,
    pub connections_per_s: f64,
    /// Time from TCP connect to the protocol's connection acknowledgement.
    pub handshake: Latency,
    pub resources: Resources,
}

/// Opens and closes connections from `concurrency` loops until `total` were tried or `duration`
/// passed.
pub async fn storm(
    ep: Endpoint,
    total: u64,
    concurrency: usize,
    subscribe: bool,
    duration: Duration,
    server_pid: Option<u32>,
    progress: bool,
) -> anyhow::Result<ConnectOutcome> {
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let err = Arc::new(AtomicU64::new(0));
    let window = Window::start(server_pid);
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (ep, next, ok, err) = (ep.clone(), next.clone(), ok.clone(), err.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = new_histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let s = Instant::now();
                let open = async {
                    let (mut r, mut w) = ep.open(None).await?;
                    if subscribe {
                        ep.subscribe(&mut r, &mut w, &ep.channel((i % 1000) as u32), i)
                            .await?;
                    }
                    anyhow::Ok((r, w))
                };
                let attempt = tokio::time::timeout(Duration::from_secs(10), open);
                match attempt.await {
                    Ok(Ok((_r, mut w))) => {
                        h.saturating_record(s.elapsed().as_micros().max(1) as u64);
                        ok.fetch_add(1, Ordering::Relaxed);
                        let _ = w.close().await;
                    }
                    Ok(Err(e)) => {
                        if err.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("connect: {e:#}");
                        }
                    }
                    Err(_) => {
                        err.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            h
        }));
    }
    let mut tick = Instant::now();
    while !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if progress && tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            eprintln!(
                "[{:>5.1}s] connected {} errors {}",
                t0.elapsed().as_secs_f64(),
                ok.load(Ordering::Relaxed),
                err.load(Ordering::Relaxed)
            );
        }
    }
    let mut all = new_histogram();
    for t in tasks {
        all.add(t.await?).expect("same bounds");
    }
    let elapsed_s = t0.elapsed().as_secs_f64();
    let (connected, errors) = (ok.load(Ordering::Relaxed), err.load(Ordering::Relaxed));
    let attempted = connected + errors;
    Ok(ConnectOutcome {
        attempted,
        connected,
        errors,
        error_rate: if attempted == 0 {
            0.0
        } else {
            errors as f64 / attempted as f64
        },
        elapsed_s,
        connections_per_s: connected as f64 / elapsed_s,
        handshake: Latency::from_hist(&all),
        resources: window.finish(),
    })
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct IdleOutcome {
    pub requested: u64,
    pub open: u64,
    pub errors: u64,
    pub subscribed: bool,
    pub open_s: f64,
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
    pub server_rss_per_conn_kib: Option<f64>,
    pub resources: Resources,
}

/// Local addresses per source IP before moving to the next one: the ephemeral port range of one
/// source address holds ~28k connections to one destination.
const CONNS_PER_SOURCE: u64 = 25_000;

/// Source address for connection `i` when spreading, else the default 127.0.0.1.
fn source_ip(i: u64) -> IpAddr {
    let k = i / CONNS_PER_SOURCE;
    IpAddr::V4(Ipv4Addr::new(127, 0, (k / 250) as u8, (k % 250) as u8 + 1))
}

/// Opens `n` connections (optionally one subscription each, spread over `subscribe` channels),
/// holds them `hold`, then reads the server's resident memory per connection.
pub async fn idle(
    ep: Endpoint,
    n: u64,
    concurrency: usize,
    subscribe: Option<u32>,
    hold: Duration,
    server_pid: Option<u32>,
    progress: bool,
) -> anyhow::Result<IdleOutcome> {
    let spread = n > CONNS_PER_SOURCE;
    let before = server_pid.and_then(|p| procfs::sample(Some(p)));
    let window = Window::start(server_pid);
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (ep, gate, errors) = (ep.clone(), gate.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.ok()?;
            let bind = spread.then(|| source_ip(i));
            let conn = async {
                let (mut r, mut w) = ep.open(bind).await?;
                if let Some(channels) = subscribe {
                    let channel = ep.channel((i % u64::from(channels)) as u32);
                    ep.subscribe(&mut r, &mut w, &channel, i).await?;
                }
                anyhow::Ok((r, w))
            };
            match tokio::time::timeout(Duration::from_secs(20), conn).await {
                Ok(Ok(c)) => Some(c),
                other => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        match other {
                            Ok(Err(e)) => eprintln!("idle connection {i}: {e:#}"),
                            _ => eprintln!("idle connection {i}: timed out"),
                        }
                    }
                    None
                }
            }
        }));
    }
    let mut conns = Vec::with_capacity(n as usize);
    let mut tick = Instant::now();
    for t in tasks {
        if let Some(c) = t.await? {
            conns.push(c);
        }
        if progress && tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            eprintln!(
                "[{:>5.1}s] open {}",
                t0.elapsed().as_secs_f64(),
                conns.len()
            );
        }
    }
    let open_s = t0.elapsed().as_secs_f64();
    // Let the server settle (buffers shrink, allocator returns memory) before reading RSS.
    tokio::time::sleep(hold).await;
    let after = server_pid.and_then(|p| procfs::sample(Some(p)));
    let resources = window.finish();
    let open = conns.len() as u64;
    let per_conn = before
        .zip(after)
        .and_then(|(b, a)| (open > 0).then(|| (a.rss_kib as f64 - b.rss_kib as f64) / open as f64));
    for (_r, mut w) in conns {
        let _ = w.close().await;
    }
    Ok(IdleOutcome {
        requested: n,
        open,
        errors: errors.load(Ordering::Relaxed),
        subscribed: subscribe.is_some(),
        open_s,
        server_rss_kib_before: before.map(|s| s.rss_kib),
        server_rss_kib_after: after.map(|s| s.rss_kib),
        server_rss_per_conn_kib: per_conn,
        resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_in_loopback() {
        assert_eq!(source_ip(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(
            source_ip(CONNS_PER_SOURCE),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_ip(CONNS_PER_SOURCE * 300),
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, 51))
        );
    }
}
