//! The conformance suite every `HistoryStore` must pass, plus fixtures. Each `check_*` function
//! is generic over the store; `conformance!` instantiates all of them for one implementation.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_history::{
    FjallOptions, FjallStore, HistoryError, HistoryStore, MemoryOptions, MemoryStore, Position,
    ReadOutcome, Retention, Since, StoredEvent, SyncPolicy, UnrecoverableReason,
};

/// A store under test plus whatever must outlive it (a temporary directory).
pub struct Fixture<S> {
    pub store: Arc<S>,
    pub dir: Option<tempfile::TempDir>,
}

/// Prune often so age-retention tests finish quickly.
pub const FAST_PRUNE: Duration = Duration::from_millis(10);

pub fn memory() -> Fixture<MemoryStore> {
    Fixture {
        store: Arc::new(MemoryStore::with_options(MemoryOptions {
            prune_interval: FAST_PRUNE,
            ..MemoryOptions::default()
        })),
        dir: None,
    }
}

/// The in-memory store behind the `AnyStore` enum.
pub fn any_memory() -> Fixture<herald_history::AnyStore> {
    let f = memory();
    let store = std::sync::Arc::into_inner(f.store).expect("sole owner");
    Fixture {
        store: std::sync::Arc::new(store.into()),
        dir: None,
    }
}

pub fn fjall_options() -> FjallOptions {
    FjallOptions {
        prune_interval: FAST_PRUNE,
        cache_bytes: 4 << 20,
        ..FjallOptions::default()
    }
}

pub fn fjall() -> Fixture<FjallStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FjallStore::open_with(dir.path(), fjall_options()).expect("open fjall store");
    Fixture {
        store: Arc::new(store),
        dir: Some(dir),
    }
}

/// FjallStore acknowledging before fsync (the durability trade-off must not change semantics).
pub fn fjall_interval() -> Fixture<FjallStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = FjallOptions {
        sync: SyncPolicy::IntervalMs(5),
        ..fjall_options()
    };
    let store = FjallStore::open_with(dir.path(), options).expect("open fjall store");
    Fixture {
        store: Arc::new(store),
        dir: Some(dir),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub async fn events(store: &impl HistoryStore, channel: &str, since: Since) -> Vec<StoredEvent> {
    match store.read(channel, since, usize::MAX).await.expect("read") {
        ReadOutcome::Events { events, .. } => events,
        other => panic!("expected events, got {other:?}"),
    }
}

pub fn offsets(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position.offset).collect()
}

pub async fn unrecoverable(
    store: &impl HistoryStore,
    channel: &str,
    since: Since,
) -> (UnrecoverableReason, Position) {
    match store.read(channel, since, 100).await.expect("read") {
        ReadOutcome::Unrecoverable { reason, top } => (reason, top),
        other => panic!("expected unrecoverable, got {other:?}"),
    }
}

/// Polls `cond` until it holds, failing after 10 s (a condition that the store's own pruner
/// makes true; there is nothing to subscribe to).
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn check_order_and_offsets(s: &impl HistoryStore) {
    let first = s
        .append("ns", "/ns/a", vec![b("1"), b("2"), b("3")], 10)
        .await
        .unwrap();
    let epoch = first[0].epoch;
    assert_eq!(
        first,
        (1..=3)
            .map(|offset| Position { epoch, offset })
            .collect::<Vec<_>>()
    );
    let more = s
        .append("ns", "/ns/a", vec![b("4"), b("5")], 11)
        .await
        .unwrap();
    assert_eq!(offsets_of(&more), vec![4, 5]);
    assert!(more.iter().all(|p| p.epoch == epoch));
    assert_eq!(s.top("/ns/a").await.unwrap(), Position { epoch, offset: 5 });
    match s.read("/ns/a", Since::Start, 100).await.unwrap() {
        ReadOutcome::Events { events, top } => {
            assert_eq!(top, Position { epoch, offset: 5 });
            assert_eq!(offsets(&events), vec![1, 2, 3, 4, 5]);
            let payloads: Vec<_> = events.iter().map(|e| e.payload.clone()).collect();
            assert_eq!(payloads, ["1", "2", "3", "4", "5"].map(b));
            assert_eq!(events[0].time_ms, 10);
            assert_eq!(events[4].time_ms, 11);
        }
        other => panic!("{other:?}"),
    }
    // Channels are independent.
    let other = s.append("ns", "/ns/b", vec![b("x")], 12).await.unwrap();
    assert_eq!(offsets_of(&other), vec![1]);
}

fn offsets_of(p: &[Position]) -> Vec<u64> {
    p.iter().map(|p| p.offset).collect()
}

pub async fn check_empty_channel(s: &impl HistoryStore) {
    let top = s.top("/ns/none").await.unwrap();
    assert_eq!(top.offset, 0);
    assert_ne!(top.epoch, 0);
    assert!(events(s, "/ns/none", Since::Start).await.is_empty());
    assert!(events(s, "/ns/none", Since::After(top)).await.is_empty());
    assert!(events(s, "/ns/none", Since::TimeMs(0)).await.is_empty());
    let ahead = Position {
        epoch: top.epoch,
        offset: 1,
    };
    assert_eq!(
        unrecoverable(s, "/ns/none", Since::After(ahead)).await,
        (UnrecoverableReason::AheadOfTop, top)
    );
    assert_eq!(s.append("ns", "/ns/none", vec![], 1).await.unwrap(), vec![]);
    assert!(s.channels_under("/ns").await.unwrap().is_empty());
    // A client that subscribed to the empty channel resumes gaplessly once events arrive.
    s.append("ns", "/ns/none", vec![b("a")], 1).await.unwrap();
    assert_eq!(
        offsets(&events(s, "/ns/none", Since::After(top)).await),
        vec![1]
    );
}

pub async fn check_limit(s: &impl HistoryStore) {
    let payloads: Vec<_> = (1..=10).map(|i| b(&i.to_string())).collect();
    s.append("ns", "/ns/l", payloads, 1).await.unwrap();
    let page = |since, limit| async move {
        match s.read("/ns/l", since, limit).await.unwrap() {
            ReadOutcome::Events { events, top } => {
                assert_eq!(top.offset, 10);
                offsets(&events)
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(page(Since::Start, 3).await, vec![1, 2, 3]);
    let epoch = s.top("/ns/l").await.unwrap().epoch;
    let after = |offset| Since::After(Position { epoch, offset });
    assert_eq!(page(after(3), 3).await, vec![4, 5, 6]);
    assert_eq!(page(after(8), 3).await, vec![9, 10]);
    assert_eq!(page(after(10), 3).await, Vec::<u64>::new());
    assert_eq!(page(Since::Start, 0).await, Vec::<u64>::new());
    // Paging through reaches the top exactly.
    let mut seen = vec![];
    let mut since = Since::Start;
    loop {
        let got = page(since, 4).await;
        let Some(&last) = got.last() else { break };
        seen.extend(got);
        since = after(last);
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
}

pub async fn check_since_time(s: &impl HistoryStore) {
    for (i, t) in [100, 200, 300].into_iter().enumerate() {
        s.append("ns", "/ns/t", vec![b(&i.to_string())], t)
            .await
            .unwrap();
    }
    assert_eq!(
        offsets(&events(s, "/ns/t", Since::TimeMs(200)).await),
        vec![2, 3]
    );
    assert_eq!(
        offsets(&events(s, "/ns/t", Since::TimeMs(150)).await),
        vec![2, 3]
    );
    assert_eq!(
        offsets(&events(s, "/ns/t", Since::TimeMs(0)).await),
        vec![1, 2, 3]
    );
    assert!(events(s, "/ns/t", Since::TimeMs(301)).await.is_empty());
    // A clock going backwards is clamped so times stay ordered.
    s.append("ns", "/ns/t", vec![b("late")], 50).await.unwrap();
    let all = events(s, "/ns/t", Since::Start).await;
    assert_eq!(
        all.iter().map(|e| e.time_ms).collect::<Vec<_>>(),
        vec![100, 200, 300, 300]
    );
    assert_eq!(
        offsets(&events(s, "/ns/t", Since::TimeMs(300)).await),
        vec![3, 4]
    );
    match s.read("/ns/t", Since::TimeMs(0), 2).await.unwrap() {
        ReadOutcome::Events { events, top } => {
            assert_eq!(offsets(&events), vec![1, 2]);
            assert_eq!(top.offset, 4);
        }
        other => panic!("{other:?}"),
    }
}

pub async fn check_retention_count(s: &impl HistoryStore) {
    s.set_retention(
        "ns",
        Retention {
            max_age: None,
            max_count: Some(3),
        },
    );
    for i in 1..=5u64 {
        s.append("ns", "/ns/c", vec![b(&i.to_string())], i * 10)
            .await
            .unwrap();
    }
    let top = s.top("/ns/c").await.unwrap();
    assert_eq!(top.offset, 5);
    assert_eq!(
        offsets(&events(s, "/ns/c", Since::Start).await),
        vec![3, 4, 5]
    );
    let at = |offset| {
        Since::After(Position {
            epoch: top.epoch,
            offset,
        })
    };
    assert_eq!(
        unrecoverable(s, "/ns/c", at(0)).await,
        (UnrecoverableReason::Expired, top)
    );
    assert_eq!(
        unrecoverable(s, "/ns/c", at(1)).await,
        (UnrecoverableReason::Expired, top)
    );
    assert_eq!(offsets(&events(s, "/ns/c", at(2)).await), vec![3, 4, 5]);
    // Event 2 (time 20) is gone, so "since 20" cannot be answered fully; "since 21" can.
    assert_eq!(
        unrecoverable(s, "/ns/c", Since::TimeMs(20)).await.0,
        UnrecoverableReason::Expired
    );
    assert_eq!(
        offsets(&events(s, "/ns/c", Since::TimeMs(21)).await),
        vec![3, 4, 5]
    );
    // One append larger than the limit keeps only its newest events.
    s.append(
        "ns",
        "/ns/c",
        (6..=10).map(|i| b(&i.to_string())).collect(),
        100,
    )
    .await
    .unwrap();
    let kept = events(s, "/ns/c", Since::Start).await;
    assert_eq!(offsets(&kept), vec![8, 9, 10]);
    assert_eq!(kept[0].payload, b("8"));
    // Other namespaces keep the default (unlimited).
    for i in 0..5 {
        s.append("other", "/other/c", vec![b(&i.to_string())], 1)
            .await
            .unwrap();
    }
    assert_eq!(events(s, "/other/c", Since::Start).await.len(), 5);
}

pub async fn check_retention_age(s: &impl HistoryStore) {
    s.set_retention(
        "ns",
        Retention {
            max_age: Some(Duration::from_secs(60)),
            max_count: None,
        },
    );
    let old = now_ms() - 120_000;
    s.append("ns", "/ns/old", vec![b("o1"), b("o2")], old)
        .await
        .unwrap();
    s.append("ns", "/ns/mixed", vec![b("m1")], old)
        .await
        .unwrap();
    s.append("ns", "/ns/mixed", vec![b("m2")], now_ms())
        .await
        .unwrap();
    eventually("old events pruned", || async {
        events(s, "/ns/old", Since::Start).await.is_empty()
            && events(s, "/ns/mixed", Since::Start).await.len() == 1
    })
    .await;
    let top = s.top("/ns/old").await.unwrap();
    assert_eq!(top.offset, 2, "pruning never rewinds offsets");
    let at = |offset| {
        Since::After(Position {
            epoch: top.epoch,
            offset,
        })
    };
    assert_eq!(
        unrecoverable(s, "/ns/old", at(0)).await,
        (UnrecoverableReason::Expired, top)
    );
    assert!(events(s, "/ns/old", at(2)).await.is_empty());
    assert_eq!(
        unrecoverable(s, "/ns/old", Since::TimeMs(old)).await.0,
        UnrecoverableReason::Expired
    );
    assert_eq!(
        offsets(&events(s, "/ns/mixed", Since::Start).await),
        vec![2]
    );
    assert_eq!(
        s.channels_under("/ns").await.unwrap(),
        vec!["/ns/mixed".to_owned()]
    );
    // New events continue the same offsets and are kept.
    let p = s
        .append("ns", "/ns/old", vec![b("n")], now_ms())
        .await
        .unwrap();
    assert_eq!(
        p,
        vec![Position {
            epoch: top.epoch,
            offset: 3
        }]
    );
    assert_eq!(offsets(&events(s, "/ns/old", at(2)).await), vec![3]);
}

pub async fn check_epoch_mismatch(s: &impl HistoryStore) {
    let p = s
        .append("ns", "/ns/e", vec![b("a"), b("b")], 1)
        .await
        .unwrap();
    let top = p[1];
    let stale = Position {
        epoch: top.epoch.wrapping_add(1),
        offset: 1,
    };
    assert_eq!(
        unrecoverable(s, "/ns/e", Since::After(stale)).await,
        (UnrecoverableReason::EpochMismatch, top)
    );
    let stale_zero = Position {
        epoch: top.epoch.wrapping_add(1),
        offset: 0,
    };
    assert_eq!(
        unrecoverable(s, "/ns/e", Since::After(stale_zero)).await.0,
        UnrecoverableReason::EpochMismatch
    );
    let ahead = Position {
        epoch: top.epoch,
        offset: 3,
    };
    assert_eq!(
        unrecoverable(s, "/ns/e", Since::After(ahead)).await.0,
        UnrecoverableReason::AheadOfTop
    );
}

pub async fn check_channels_under(s: &impl HistoryStore) {
    for c in [
        "/ns/a",
        "/ns/a/b",
        "/ns/a/b/c",
        "/ns/ab",
        "/ns/a-b",
        "/ns/x/a",
    ] {
        s.append("ns", c, vec![b("e")], 1).await.unwrap();
    }
    s.append("other", "/other/a/b", vec![b("e")], 1)
        .await
        .unwrap();
    assert_eq!(
        s.channels_under("/ns/a").await.unwrap(),
        ["/ns/a/b", "/ns/a/b/c"]
    );
    assert_eq!(
        s.channels_under("/ns").await.unwrap(),
        [
            "/ns/a",
            "/ns/a-b",
            "/ns/a/b",
            "/ns/a/b/c",
            "/ns/ab",
            "/ns/x/a"
        ]
    );
    assert_eq!(
        s.channels_under("/ns/a/b/c").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        s.channels_under("/nope").await.unwrap(),
        Vec::<String>::new()
    );
}

pub async fn check_invalid_input(s: &impl HistoryStore) {
    for (ns, ch) in [
        ("ns", "/nsx/a"),
        ("ns", "ns/a"),
        ("ns", "/other"),
        ("", "/"),
    ] {
        assert!(
            matches!(
                s.append(ns, ch, vec![b("e")], 1).await,
                Err(HistoryError::InvalidChannel { .. })
            ),
            "{ns} {ch}"
        );
    }
    let big = Bytes::from(vec![0u8; herald_history::MAX_EVENT_BYTES + 1]);
    assert!(matches!(
        s.append("ns", "/ns/a", vec![big], 1).await,
        Err(HistoryError::EventTooLarge { .. })
    ));
    assert_eq!(
        s.top("/ns/a").await.unwrap().offset,
        0,
        "a rejected append stores nothing"
    );
}

/// Many tasks append concurrently; per channel the offsets come out gapless and every event is
/// stored exactly at the position its append returned.
pub async fn check_concurrent_appends<S: HistoryStore>(s: Arc<S>) {
    const TASKS: usize = 64;
    const APPENDS: usize = 20;
    let channels = ["/ns/c0", "/ns/c1", "/ns/c2", "/ns/c3"];
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..APPENDS {
                let channel = channels[(task + i) % channels.len()];
                let n = 1 + (task + i) % 3;
                let payloads: Vec<_> = (0..n).map(|k| b(&format!("{task}-{i}-{k}"))).collect();
                let positions = s.append("ns", channel, payloads.clone(), 1).await.unwrap();
                assert_eq!(positions.len(), n);
                assert!(
                    positions.windows(2).all(|w| w[1].offset == w[0].offset + 1),
                    "atomic"
                );
                got.extend(
                    positions
                        .into_iter()
                        .zip(payloads)
                        .map(|(p, e)| (channel, p, e)),
                );
            }
            got
        }));
    }
    let mut expected: BTreeMap<&str, BTreeMap<u64, Bytes>> = BTreeMap::new();
    for h in handles {
        for (channel, p, e) in h.await.unwrap() {
            assert!(
                expected
                    .entry(channel)
                    .or_default()
                    .insert(p.offset, e)
                    .is_none(),
                "dup"
            );
        }
    }
    for (channel, want) in expected {
        let n = want.len() as u64;
        assert_eq!(
            want.keys().copied().collect::<Vec<_>>(),
            (1..=n).collect::<Vec<_>>()
        );
        let stored = events(&*s, channel, Since::Start).await;
        assert_eq!(stored.len() as u64, n);
        for e in stored {
            assert_eq!(want.get(&e.position.offset), Some(&e.payload));
        }
    }
}

/// Readers racing one appender while count retention trims the head: every read is either a
/// contiguous run starting exactly after the requested position, with the right payloads and
/// nothing past `top`, or `Expired`.
pub async fn check_reads_race_appends_and_trimming<S: HistoryStore>(s: Arc<S>) {
    const EVENTS: u64 = 400;
    s.set_retention(
        "ns",
        Retention {
            max_age: None,
            max_count: Some(8),
        },
    );
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 1..=EVENTS {
                let p = s
                    .append("ns", "/ns/race", vec![b(&i.to_string())], i)
                    .await
                    .unwrap();
                assert_eq!(p[0].offset, i);
            }
        })
    };
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let s = s.clone();
            tokio::spawn(async move {
                let (mut served, mut expired) = (0, 0);
                loop {
                    let top = s.top("/ns/race").await.unwrap();
                    let from = top.offset.saturating_sub(1 + r * 2);
                    let since = Since::After(Position {
                        epoch: top.epoch,
                        offset: from,
                    });
                    match s.read("/ns/race", since, 5).await.unwrap() {
                        ReadOutcome::Events { events, top: now } => {
                            assert!(now.offset >= top.offset);
                            for (k, e) in events.iter().enumerate() {
                                assert_eq!(e.position.offset, from + 1 + k as u64);
                                assert!(e.position.offset <= now.offset);
                                assert_eq!(e.payload, b(&e.position.offset.to_string()));
                            }
                            served += 1;
                        }
                        ReadOutcome::Unrecoverable { reason, .. } => {
                            assert_eq!(reason, UnrecoverableReason::Expired);
                            expired += 1;
                        }
                    }
                    if top.offset == EVENTS {
                        return (served, expired);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    writer.await.unwrap();
    for r in readers {
        let (served, _expired) = r.await.unwrap();
        assert!(served > 0);
    }
}

/// Instantiates the suite for one store: `conformance!(module_name, fixture_fn)`.
#[macro_export]
macro_rules! conformance {
    ($name:ident, $fixture:ident) => {
        mod $name {
            use super::common::*;

            #[tokio::test]
            async fn order_and_offsets() {
                check_order_and_offsets(&*$fixture().store).await;
            }
            #[tokio::test]
            async fn empty_channel() {
                check_empty_channel(&*$fixture().store).await;
            }
            #[tokio::test]
            async fn limit() {
                check_limit(&*$fixture().store).await;
            }
            #[tokio::test]
            async fn since_time() {
                check_since_time(&*$fixture().store).await;
            }
            #[tokio::test]
            async fn retention_count() {
                check_retention_count(&*$fixture().store).await;
            }
            #[tokio::test]
            async fn retention_age() {
                check_retention_age(&*$fixture().store).await;
            }
            #[tokio::test]
            async fn epoch_mismatch() {
                check_epoch_mismatch(&*$fixture().store).await;
            }
            #[tokio::test]
            async fn channels_under() {
                check_channels_under(&*$fixture().store).await;
            }
            #[tokio::test]
            async fn invalid_input() {
                check_invalid_input(&*$fixture().store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_race_appends_and_trimming() {
                check_reads_race_appends_and_trimming($fixture().store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends() {
                check_concurrent_appends($fixture().store).await;
            }
        }
    };
}

/// The sync policy a crash-test child runs under, from its name.
pub fn policy_from_name(name: &str) -> SyncPolicy {
    match name {
        "interval" => SyncPolicy::IntervalMs(50),
        "never" => SyncPolicy::Never,
        _ => SyncPolicy::Always,
    }
}
