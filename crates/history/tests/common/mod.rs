//! The conformance suite every `HistoryStore` must pass, plus fixtures. Each `check_*` function
//! is generic over the store; `conformance!` instantiates all of them for one implementation.
//! Where JetStream legitimately behaves differently (docs/cluster.md), the checks read the
//! fixture's [`Caps`] instead of being skipped.

#![allow(dead_code, reason = "each test binary uses a different subset")]

#[path = "../support/nats.rs"]
pub mod nats;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_history::{
    FjallOptions, FjallStore, HistoryError, HistoryStore, JetStreamOptions, JetStreamStore,
    MemoryOptions, MemoryStore, Position, ReadOutcome, Retention, Since, StoredEvent, SyncPolicy,
    UnrecoverableReason,
};

/// Where a store's semantics differ from the embedded stores', each for a documented reason.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// A channel's first offset is 1. JetStream starts each channel's chain at the stream's
    /// sequence × 4096, so a channel emptied by retention never reuses an old offset.
    pub first_offset_is_one: bool,
    /// A channel whose events were all removed keeps its top, and so tells "saw everything" from
    /// "missed something". JetStream knows a channel only by its newest stored batch: an emptied
    /// channel reads as never used (top offset 0, a time read finds nothing, an old position is
    /// `Expired`, the next append starts a new chain), and a never-used channel cannot tell a
    /// position ahead of it from one whose events all expired (`Expired`, not `AheadOfTop`).
    pub remembers_emptied_channels: bool,
    /// Age retention compares each event's `time_ms` and follows `set_retention`. JetStream's
    /// `max_age` counts from when JetStream received the message and is set when the store opens.
    pub ages_by_event_time: bool,
    /// A read by time that starts just after removed events still succeeds when those were
    /// older than asked (the store remembers the newest removed time). JetStream no longer knows
    /// a removed batch's time, so it says `Expired`.
    pub remembers_removed_times: bool,
    /// Concurrent appends to one channel all succeed (the store queues them). JetStream's race
    /// by compare-and-set and one gives up with a retryable `Unavailable` after 64 lost races;
    /// the server sends one append per channel at a time per node, so there only nodes race.
    pub queues_appends: bool,
}

impl Caps {
    /// The memory and fjall stores: the contract of `HistoryStore` as written.
    pub const EMBEDDED: Caps = Caps {
        first_offset_is_one: true,
        remembers_emptied_channels: true,
        ages_by_event_time: true,
        remembers_removed_times: true,
        queues_appends: true,
    };
    /// `JetStreamStore` (cluster mode).
    pub const JETSTREAM: Caps = Caps {
        first_offset_is_one: false,
        remembers_emptied_channels: false,
        ages_by_event_time: false,
        remembers_removed_times: false,
        queues_appends: false,
    };
}

/// A store under test plus whatever must outlive it (a temporary directory, a NATS server).
pub struct Fixture<S> {
    pub store: Arc<S>,
    pub caps: Caps,
    pub dir: Option<tempfile::TempDir>,
    pub nats: Option<nats::Nats>,
}

/// Prune often so age-retention tests finish quickly.
pub const FAST_PRUNE: Duration = Duration::from_millis(10);

/// Retention of namespace `ns` in the count tests.
pub const COUNT_RETENTION: Retention = Retention {
    max_age: None,
    max_count: Some(3),
};
/// Retention of namespace `ns` in the race between readers and trimming.
pub const RACE_RETENTION: Retention = Retention {
    max_age: None,
    max_count: Some(8),
};
/// Retention of namespace `ns` in the age test: short, because JetStream ages events by its own
/// clock, which a test cannot advance.
pub const AGE_RETENTION: Retention = Retention {
    max_age: Some(Duration::from_secs(3)),
    max_count: None,
};

fn embedded_fixture<S>(store: S, dir: Option<tempfile::TempDir>) -> Fixture<S> {
    Fixture {
        store: Arc::new(store),
        caps: Caps::EMBEDDED,
        dir,
        nats: None,
    }
}

pub fn memory() -> Fixture<MemoryStore> {
    embedded_fixture(
        MemoryStore::with_options(MemoryOptions {
            prune_interval: FAST_PRUNE,
            ..MemoryOptions::default()
        }),
        None,
    )
}

/// The in-memory store behind the `AnyStore` enum.
pub fn any_memory() -> Fixture<herald_history::AnyStore> {
    let f = memory();
    let store = std::sync::Arc::into_inner(f.store).expect("sole owner");
    embedded_fixture(store.into(), None)
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
    embedded_fixture(store, Some(dir))
}

/// FjallStore acknowledging before fsync (the durability trade-off must not change semantics).
pub fn fjall_interval() -> Fixture<FjallStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = FjallOptions {
        sync: SyncPolicy::IntervalMs(5),
        ..fjall_options()
    };
    let store = FjallStore::open_with(dir.path(), options).expect("open fjall store");
    embedded_fixture(store, Some(dir))
}

/// An embedded store from `make`, with namespace `ns` kept as `ns_retention` says (set the way
/// the server sets it, through `set_retention`).
pub async fn embedded<S: HistoryStore>(
    make: fn() -> Fixture<S>,
    ns_retention: Retention,
) -> Fixture<S> {
    let f = make();
    f.store.set_retention("ns", ns_retention);
    f
}

/// A `JetStreamStore` on its own `nats-server` (free port, own directory, killed on drop).
pub async fn jetstream(ns_retention: Retention) -> Fixture<JetStreamStore> {
    let server = nats::Nats::start(nats::free_port());
    let store = open_jetstream(&server, ns_retention).await;
    Fixture {
        store: Arc::new(store),
        caps: Caps::JETSTREAM,
        dir: None,
        nats: Some(server),
    }
}

/// A `JetStreamStore` (one node) on `server`, with streams for the suite's namespaces `ns` (kept
/// as `ns_retention` says, given at open as the server does in cluster mode) and `other`.
pub async fn open_jetstream(server: &nats::Nats, ns_retention: Retention) -> JetStreamStore {
    let client = async_nats::connect(server.url()).await.expect("NATS");
    JetStreamStore::open(
        client,
        &JetStreamOptions {
            subject_prefix: "t".into(),
            replicas: 1,
        },
        &[
            ("ns".to_owned(), ns_retention),
            ("other".to_owned(), Retention::default()),
        ],
    )
    .await
    .expect("streams open")
}

/// One channel's offsets as the suite counts them: `1` is the channel's first event, `0` the
/// position before it. The store's own first offset may be larger (see [`Caps`]).
#[derive(Debug, Clone, Copy)]
pub struct Chain {
    pub epoch: u64,
    pub first: u64,
}

impl Chain {
    /// The chain whose first event got `first`; checks that offset against `caps`.
    pub fn starting(caps: Caps, first: Position) -> Chain {
        if caps.first_offset_is_one {
            assert_eq!(first.offset, 1, "a channel's first offset is 1");
        } else {
            assert!(first.offset > 1, "first offset {}", first.offset);
        }
        Chain {
            epoch: first.epoch,
            first: first.offset,
        }
    }

    /// The store's offset of the `n`th event (0: before the first).
    pub fn offset(&self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.first + n - 1 }
    }

    pub fn at(&self, n: u64) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.offset(n),
        }
    }

    pub fn after(&self, n: u64) -> Since {
        Since::After(self.at(n))
    }

    /// Which event of the chain a store offset is.
    pub fn number(&self, offset: u64) -> u64 {
        (offset + 1)
            .checked_sub(self.first)
            .expect("offset within the chain")
    }

    pub fn numbers(&self, events: &[StoredEvent]) -> Vec<u64> {
        events
            .iter()
            .map(|e| self.number(e.position.offset))
            .collect()
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

pub async fn check_order_and_offsets<S: HistoryStore>(f: &Fixture<S>) {
    let s = &*f.store;
    let first = s
        .append("ns", "/ns/a", vec![b("1"), b("2"), b("3")], 10)
        .await
        .unwrap();
    let c = Chain::starting(f.caps, first[0]);
    assert_eq!(first, (1..=3).map(|n| c.at(n)).collect::<Vec<_>>());
    let more = s
        .append("ns", "/ns/a", vec![b("4"), b("5")], 11)
        .await
        .unwrap();
    assert_eq!(more, vec![c.at(4), c.at(5)]);
    assert_eq!(s.top("/ns/a").await.unwrap(), c.at(5));
    match s.read("/ns/a", Since::Start, 100).await.unwrap() {
        ReadOutcome::Events { events, top } => {
            assert_eq!(top, c.at(5));
            assert_eq!(c.numbers(&events), vec![1, 2, 3, 4, 5]);
            let payloads: Vec<_> = events.iter().map(|e| e.payload.clone()).collect();
            assert_eq!(payloads, ["1", "2", "3", "4", "5"].map(b));
            assert_eq!(events[0].time_ms, 10);
            assert_eq!(events[4].time_ms, 11);
        }
        other => panic!("{other:?}"),
    }
    // Channels are independent.
    let other = s.append("ns", "/ns/b", vec![b("x")], 12).await.unwrap();
    Chain::starting(f.caps, other[0]);
}

pub async fn check_empty_channel<S: HistoryStore>(f: &Fixture<S>) {
    let s = &*f.store;
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
    let reason = if f.caps.remembers_emptied_channels {
        UnrecoverableReason::AheadOfTop
    } else {
        UnrecoverableReason::Expired
    };
    assert_eq!(
        unrecoverable(s, "/ns/none", Since::After(ahead)).await,
        (reason, top)
    );
    assert_eq!(s.append("ns", "/ns/none", vec![], 1).await.unwrap(), vec![]);
    assert!(s.channels_under("/ns").await.unwrap().is_empty());
    // A client that subscribed to the empty channel resumes gaplessly once events arrive.
    let p = s.append("ns", "/ns/none", vec![b("a")], 1).await.unwrap();
    let c = Chain::starting(f.caps, p[0]);
    assert_eq!(
        c.numbers(&events(s, "/ns/none", Since::After(top)).await),
        vec![1]
    );
}

pub async fn check_limit<S: HistoryStore>(f: &Fixture<S>) {
    let s = &*f.store;
    let payloads: Vec<_> = (1..=10).map(|i| b(&i.to_string())).collect();
    let p = s.append("ns", "/ns/l", payloads, 1).await.unwrap();
    let c = Chain::starting(f.caps, p[0]);
    let page = |since, limit| async move {
        match s.read("/ns/l", since, limit).await.unwrap() {
            ReadOutcome::Events { events, top } => {
                assert_eq!(top, c.at(10));
                c.numbers(&events)
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(page(Since::Start, 3).await, vec![1, 2, 3]);
    assert_eq!(page(c.after(3), 3).await, vec![4, 5, 6]);
    assert_eq!(page(c.after(8), 3).await, vec![9, 10]);
    assert_eq!(page(c.after(10), 3).await, Vec::<u64>::new());
    assert_eq!(page(Since::Start, 0).await, Vec::<u64>::new());
    // Paging through reaches the top exactly.
    let mut seen = vec![];
    let mut since = Since::Start;
    loop {
        let got = page(since, 4).await;
        let Some(&last) = got.last() else { break };
        seen.extend(got);
        since = c.after(last);
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
}

pub async fn check_since_time<S: HistoryStore>(f: &Fixture<S>) {
    let s = &*f.store;
    let mut first = Vec::new();
    for (i, t) in [100, 200, 300].into_iter().enumerate() {
        first.extend(
            s.append("ns", "/ns/t", vec![b(&i.to_string())], t)
                .await
                .unwrap(),
        );
    }
    let c = Chain::starting(f.caps, first[0]);
    let numbers = |since| async move { c.numbers(&events(s, "/ns/t", since).await) };
    assert_eq!(numbers(Since::TimeMs(200)).await, vec![2, 3]);
    assert_eq!(numbers(Since::TimeMs(150)).await, vec![2, 3]);
    assert_eq!(numbers(Since::TimeMs(0)).await, vec![1, 2, 3]);
    assert!(events(s, "/ns/t", Since::TimeMs(301)).await.is_empty());
    // A clock going backwards is clamped so times stay ordered.
    s.append("ns", "/ns/t", vec![b("late")], 50).await.unwrap();
    let all = events(s, "/ns/t", Since::Start).await;
    assert_eq!(
        all.iter().map(|e| e.time_ms).collect::<Vec<_>>(),
        vec![100, 200, 300, 300]
    );
    assert_eq!(numbers(Since::TimeMs(300)).await, vec![3, 4]);
    match s.read("/ns/t", Since::TimeMs(0), 2).await.unwrap() {
        ReadOutcome::Events { events, top } => {
            assert_eq!(c.numbers(&events), vec![1, 2]);
            assert_eq!(top, c.at(4));
        }
        other => panic!("{other:?}"),
    }
}

/// Namespace `ns` keeps [`COUNT_RETENTION`] (3 events per channel).
pub async fn check_retention_count<S: HistoryStore>(f: &Fixture<S>) {
    let s = &*f.store;
    let mut first = Vec::new();
    for i in 1..=5u64 {
        first.extend(
            s.append("ns", "/ns/c", vec![b(&i.to_string())], i * 10)
                .await
                .unwrap(),
        );
    }
    let c = Chain::starting(f.caps, first[0]);
    let top = s.top("/ns/c").await.unwrap();
    assert_eq!(top, c.at(5));
    let numbers = |since| async move { c.numbers(&events(s, "/ns/c", since).await) };
    assert_eq!(numbers(Since::Start).await, vec![3, 4, 5]);
    assert_eq!(
        unrecoverable(s, "/ns/c", c.after(0)).await,
        (UnrecoverableReason::Expired, top)
    );
    assert_eq!(
        unrecoverable(s, "/ns/c", c.after(1)).await,
        (UnrecoverableReason::Expired, top)
    );
    assert_eq!(numbers(c.after(2)).await, vec![3, 4, 5]);
    // Event 2 (time 20) is gone, so "since 20" cannot be answered fully.
    assert_eq!(
        unrecoverable(s, "/ns/c", Since::TimeMs(20)).await.0,
        UnrecoverableReason::Expired
    );
    // "Since 21" can, by a store that still knows event 2 was older.
    if f.caps.remembers_removed_times {
        assert_eq!(numbers(Since::TimeMs(21)).await, vec![3, 4, 5]);
    } else {
        assert_eq!(
            unrecoverable(s, "/ns/c", Since::TimeMs(21)).await.0,
            UnrecoverableReason::Expired
        );
    }
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
    assert_eq!(c.numbers(&kept), vec![8, 9, 10]);
    assert_eq!(kept[0].payload, b("8"));
    // Other namespaces keep the default (unlimited).
    for i in 0..5 {
        s.append("other", "/other/c", vec![b(&i.to_string())], 1)
            .await
            .unwrap();
    }
    assert_eq!(events(s, "/other/c", Since::Start).await.len(), 5);
}

/// Namespace `ns` keeps [`AGE_RETENTION`].
pub async fn check_retention_age<S: HistoryStore>(f: &Fixture<S>) {
    let (s, caps) = (&*f.store, f.caps);
    // Embedded stores age events by their stored time, so old ones can be stamped old.
    let old = if caps.ages_by_event_time {
        now_ms() - 120_000
    } else {
        now_ms()
    };
    let o = s
        .append("ns", "/ns/old", vec![b("o1"), b("o2")], old)
        .await
        .unwrap();
    let m = s
        .append("ns", "/ns/mixed", vec![b("m1")], old)
        .await
        .unwrap();
    if !caps.ages_by_event_time {
        // JetStream ages a message from when it received it and no clock can be advanced: m2
        // must reach it well after m1 for only m1 to expire, so let time pass.
        let age = AGE_RETENTION.max_age.expect("an age");
        tokio::time::sleep(age / 2).await;
    }
    s.append("ns", "/ns/mixed", vec![b("m2")], now_ms())
        .await
        .unwrap();
    eventually("old events pruned", || async {
        events(s, "/ns/old", Since::Start).await.is_empty()
            && events(s, "/ns/mixed", Since::Start).await.len() == 1
    })
    .await;
    let (co, cm) = (Chain::starting(caps, o[0]), Chain::starting(caps, m[0]));
    let top = s.top("/ns/old").await.unwrap();
    if caps.remembers_emptied_channels {
        assert_eq!(top, co.at(2), "pruning never rewinds offsets");
        assert_eq!(
            unrecoverable(s, "/ns/old", co.after(0)).await,
            (UnrecoverableReason::Expired, top)
        );
        assert!(events(s, "/ns/old", co.after(2)).await.is_empty());
        assert_eq!(
            unrecoverable(s, "/ns/old", Since::TimeMs(old)).await.0,
            UnrecoverableReason::Expired
        );
    } else {
        assert_eq!(top.offset, 0, "an emptied channel reads as never used");
        // Even a client that saw everything is told it expired: the store cannot tell.
        assert_eq!(
            unrecoverable(s, "/ns/old", co.after(2)).await.0,
            UnrecoverableReason::Expired
        );
        // Known gap: a client that never saw an event (it holds offset 0) and a read by time
        // both get nothing rather than `Expired`.
        assert!(events(s, "/ns/old", co.after(0)).await.is_empty());
        assert!(events(s, "/ns/old", Since::TimeMs(old)).await.is_empty());
    }
    assert_eq!(
        cm.numbers(&events(s, "/ns/mixed", Since::Start).await),
        vec![2]
    );
    assert_eq!(
        s.channels_under("/ns").await.unwrap(),
        vec!["/ns/mixed".to_owned()]
    );
    let p = s
        .append("ns", "/ns/old", vec![b("n")], now_ms())
        .await
        .unwrap();
    if caps.remembers_emptied_channels {
        // New events continue the same offsets and are kept.
        assert_eq!(p, vec![co.at(3)]);
        assert_eq!(
            co.numbers(&events(s, "/ns/old", co.after(2)).await),
            vec![3]
        );
    } else {
        // A new chain, above every offset the old one used.
        assert!(p[0].offset > co.offset(2), "{p:?}");
        assert_eq!(p[0].epoch, co.epoch);
        assert_eq!(
            unrecoverable(s, "/ns/old", co.after(2)).await.0,
            UnrecoverableReason::Expired
        );
    }
}

pub async fn check_epoch_mismatch<S: HistoryStore>(f: &Fixture<S>) {
    let s = &*f.store;
    let p = s
        .append("ns", "/ns/e", vec![b("a"), b("b")], 1)
        .await
        .unwrap();
    let c = Chain::starting(f.caps, p[0]);
    let top = p[1];
    let stale = Position {
        epoch: top.epoch.wrapping_add(1),
        offset: c.offset(1),
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
    assert_eq!(
        unrecoverable(s, "/ns/e", c.after(3)).await.0,
        UnrecoverableReason::AheadOfTop
    );
}

pub async fn check_channels_under<S: HistoryStore>(f: &Fixture<S>) {
    let s = &*f.store;
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

pub async fn check_invalid_input<S: HistoryStore>(f: &Fixture<S>) {
    let s = &*f.store;
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
pub async fn check_concurrent_appends<S: HistoryStore>(f: &Fixture<S>) {
    const TASKS: usize = 64;
    const APPENDS: usize = 20;
    let channels = ["/ns/c0", "/ns/c1", "/ns/c2", "/ns/c3"];
    let caps = f.caps;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let s = f.store.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..APPENDS {
                let channel = channels[(task + i) % channels.len()];
                let n = 1 + (task + i) % 3;
                let payloads: Vec<_> = (0..n).map(|k| b(&format!("{task}-{i}-{k}"))).collect();
                let positions = loop {
                    match s.append("ns", channel, payloads.clone(), 1).await {
                        Ok(p) => break p,
                        // The caller's retry, as the error says; it stored nothing.
                        Err(HistoryError::Unavailable(_)) if !caps.queues_appends => {}
                        Err(e) => panic!("append: {e}"),
                    }
                };
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
    let mut expected: BTreeMap<&str, BTreeMap<Position, Bytes>> = BTreeMap::new();
    for h in handles {
        for (channel, p, e) in h.await.unwrap() {
            assert!(
                expected.entry(channel).or_default().insert(p, e).is_none(),
                "dup"
            );
        }
    }
    for (channel, want) in expected {
        let first = *want.keys().next().expect("appended");
        let c = Chain::starting(f.caps, first);
        let n = want.len() as u64;
        assert_eq!(
            want.keys().copied().collect::<Vec<_>>(),
            (1..=n).map(|k| c.at(k)).collect::<Vec<_>>()
        );
        let stored = events(&*f.store, channel, Since::Start).await;
        assert_eq!(stored.len() as u64, n);
        for e in stored {
            assert_eq!(want.get(&e.position), Some(&e.payload));
        }
    }
}

/// Readers racing one appender while count retention ([`RACE_RETENTION`]) trims the head: every
/// read is either a contiguous run starting exactly after the requested position, with the right
/// payloads and nothing past `top`, or `Expired`.
pub async fn check_reads_race_appends_and_trimming<S: HistoryStore>(f: &Fixture<S>) {
    const EVENTS: u64 = 400;
    let first = f
        .store
        .append("ns", "/ns/race", vec![b("1")], 1)
        .await
        .unwrap();
    let c = Chain::starting(f.caps, first[0]);
    let writer = {
        let s = f.store.clone();
        tokio::spawn(async move {
            for i in 2..=EVENTS {
                let p = s
                    .append("ns", "/ns/race", vec![b(&i.to_string())], i)
                    .await
                    .unwrap();
                assert_eq!(p, vec![c.at(i)]);
            }
        })
    };
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let s = f.store.clone();
            tokio::spawn(async move {
                let (mut served, mut expired) = (0, 0);
                loop {
                    let top = s.top("/ns/race").await.unwrap();
                    let from = c.number(top.offset).saturating_sub(1 + r * 2);
                    match s.read("/ns/race", c.after(from), 5).await.unwrap() {
                        ReadOutcome::Events { events, top: now } => {
                            assert!(now.offset >= top.offset);
                            for (k, e) in events.iter().enumerate() {
                                let n = c.number(e.position.offset);
                                assert_eq!(n, from + 1 + k as u64);
                                assert!(e.position.offset <= now.offset);
                                assert_eq!(e.payload, b(&n.to_string()));
                            }
                            served += 1;
                        }
                        ReadOutcome::Unrecoverable { reason, .. } => {
                            assert_eq!(reason, UnrecoverableReason::Expired);
                            expired += 1;
                        }
                    }
                    if top == c.at(EVENTS) {
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

/// Instantiates the suite for one store: `conformance!(module_name, open)`, where `open` takes
/// namespace `ns`'s retention and returns a future of the [`Fixture`].
#[macro_export]
macro_rules! conformance {
    ($name:ident, $open:expr) => {
        mod $name {
            use super::common::*;
            use herald_history::Retention;

            #[tokio::test]
            async fn order_and_offsets() {
                check_order_and_offsets(&($open)(Retention::default()).await).await;
            }
            #[tokio::test]
            async fn empty_channel() {
                check_empty_channel(&($open)(Retention::default()).await).await;
            }
            #[tokio::test]
            async fn limit() {
                check_limit(&($open)(Retention::default()).await).await;
            }
            #[tokio::test]
            async fn since_time() {
                check_since_time(&($open)(Retention::default()).await).await;
            }
            #[tokio::test]
            async fn retention_count() {
                check_retention_count(&($open)(COUNT_RETENTION).await).await;
            }
            #[tokio::test]
            async fn retention_age() {
                check_retention_age(&($open)(AGE_RETENTION).await).await;
            }
            #[tokio::test]
            async fn epoch_mismatch() {
                check_epoch_mismatch(&($open)(Retention::default()).await).await;
            }
            #[tokio::test]
            async fn channels_under() {
                check_channels_under(&($open)(Retention::default()).await).await;
            }
            #[tokio::test]
            async fn invalid_input() {
                check_invalid_input(&($open)(Retention::default()).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_race_appends_and_trimming() {
                check_reads_race_appends_and_trimming(&($open)(RACE_RETENTION).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends() {
                check_concurrent_appends(&($open)(Retention::default()).await).await;
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
