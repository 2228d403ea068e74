//! Append throughput of the history stores.
//!
//! ```text
//! cargo run --release -p herald-history --example append_bench -- [seconds per run] [payload bytes]
//! ```
//!
//! For each store and each appender count, `appenders` tasks each append one event per call to
//! their own channel for a fixed time; the figure is acknowledged events per second. FjallStore
//! runs with `SyncPolicy::Always` (every acknowledged event fsynced) in a fresh temporary
//! directory under `$TMPDIR`, so the disk behind it matters. MemoryStore keeps the newest 10,000
//! events per channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_history::{FjallOptions, FjallStore, HistoryStore, MemoryStore, Retention, SyncPolicy};

async fn measure<S: HistoryStore>(
    store: Arc<S>,
    appenders: usize,
    secs: f64,
    payload: Bytes,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|i| {
            let (store, stop, count, payload) =
                (store.clone(), stop.clone(), count.clone(), payload.clone());
            tokio::spawn(async move {
                let channel = format!("/bench/c{i}");
                // Checks the clock itself: MemoryStore appends never yield, so a timer might not
                // get a worker thread to fire on.
                while !stop.load(Ordering::Relaxed) && started.elapsed().as_secs_f64() < secs {
                    store
                        .append("bench", &channel, vec![payload.clone()], 1)
                        .await
                        .expect("append");
                    let n = count.fetch_add(1, Ordering::Relaxed);
                    if n % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("appender task");
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let payload = Bytes::from(vec![b'x'; size]);
    println!("{secs} s per run, {size}-byte events, one event per append");
    for appenders in [1, 64] {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = FjallOptions {
            sync: SyncPolicy::Always,
            ..FjallOptions::default()
        };
        let store = Arc::new(FjallStore::open_with(dir.path(), options).expect("open"));
        let rate = measure(store.clone(), appenders, secs, payload.clone()).await;
        let stats = store.stats();
        let per_batch = stats.appends as f64 / stats.batches.max(1) as f64;
        println!(
            "FjallStore  SyncPolicy::Always  {appenders:>2} appenders: {rate:>10.0} events/s \
             ({per_batch:.1} appends per fsync)"
        );
    }
    for appenders in [1, 64] {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = FjallOptions {
            sync: SyncPolicy::Never,
            ..FjallOptions::default()
        };
        let store = Arc::new(FjallStore::open_with(dir.path(), options).expect("open"));
        let rate = measure(store, appenders, secs, payload.clone()).await;
        println!("FjallStore  SyncPolicy::Never   {appenders:>2} appenders: {rate:>10.0} events/s");
    }
    for appenders in [1, 64] {
        // Bounded by retention, as in production: unbounded it fills RAM in seconds.
        let store = Arc::new(MemoryStore::new());
        store.set_retention(
            "bench",
            Retention {
                max_age: None,
                max_count: Some(10_000),
            },
        );
        let rate = measure(store, appenders, secs, payload.clone()).await;
        println!("MemoryStore                     {appenders:>2} appenders: {rate:>10.0} events/s");
    }
}
