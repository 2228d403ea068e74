//! `JetStreamStore` against a real `nats-server -js` started by the test: offsets stay gapless
//! when two stores (two nodes) append to one channel at once, reads page and resume like the
//! embedded stores, retention is reported as expiry, and a follower sees batches in order.

#[path = "support/nats.rs"]
mod nats;

use std::sync::Arc;

use bytes::Bytes;
use herald_history::{
    HistoryStore, JetStreamOptions, JetStreamStore, Position, ReadOutcome, Retention, Since,
    UnrecoverableReason,
};
use nats::{Nats, free_port};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn open(nats: &Nats, retention: Retention) -> JetStreamStore {
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    JetStreamStore::open(
        client,
        &JetStreamOptions {
            subject_prefix: "t".into(),
            replicas: 1,
        },
        &[("ns".to_owned(), retention)],
    )
    .await
    .expect("streams open")
}

async fn read(s: &JetStreamStore, channel: &str, since: Since, limit: usize) -> ReadOutcome {
    s.read(channel, since, limit).await.expect("read")
}

fn offsets(outcome: &ReadOutcome) -> Vec<u64> {
    match outcome {
        ReadOutcome::Events { events, .. } => events.iter().map(|e| e.position.offset).collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_stay_gapless_across_nodes_and_reads_page() {
    let nats = Nats::start(free_port());
    let a = Arc::new(open(&nats, Retention::default()).await);
    let b_node = Arc::new(open(&nats, Retention::default()).await);

    // An empty channel: offset 0, and a client holding that position later gets everything.
    let empty = a.top("/ns/c").await.unwrap();
    assert_eq!(empty.offset, 0);
    assert_eq!(
        b_node.top("/ns/c").await.unwrap(),
        empty,
        "both nodes agree"
    );

    // Two nodes append to one channel concurrently.
    let mut tasks = Vec::new();
    for (node, store) in [a.clone(), b_node.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..40 {
                let events = vec![b(&format!("{node}-{i}-x")), b(&format!("{node}-{i}-y"))];
                let p = store.append("ns", "/ns/c", events, 1000 + i).await.unwrap();
                mine.extend(p);
            }
            mine
        }));
    }
    let mut all: Vec<Position> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let first = all[0].offset;
    assert!(all.iter().all(|p| p.epoch == empty.epoch));
    assert_eq!(
        all.iter().map(|p| p.offset).collect::<Vec<_>>(),
        (first..first + 160).collect::<Vec<_>>(),
        "160 events, offsets dense and unique across both nodes"
    );

    // Resuming from the empty position returns all of them, paged, from either node.
    let mut seen = Vec::new();
    let mut since = Since::After(empty);
    loop {
        let page = read(&b_node, "/ns/c", since, 25).await;
        let got = offsets(&page);
        let Some(&last) = got.last() else { break };
        seen.extend(got);
        since = Since::After(Position {
            epoch: empty.epoch,
            offset: last,
        });
    }
    assert_eq!(seen, (first..first + 160).collect::<Vec<_>>());
    // Each node's own events keep their order.
    if let ReadOutcome::Events { events, .. } = read(&a, "/ns/c", Since::Start, 1000).await {
        for node in ["0-", "1-"] {
            let mine: Vec<String> = events
                .iter()
                .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
                .filter(|p| p.starts_with(node))
                .collect();
            let expect: Vec<String> = (0..40)
                .flat_map(|i| [format!("{node}{i}-x"), format!("{node}{i}-y")])
                .collect();
            assert_eq!(mine, expect);
        }
    }
    // Positions ahead of the top, and from another epoch, are reported, not skipped.
    let top = a.top("/ns/c").await.unwrap();
    let ahead = Position {
        epoch: top.epoch,
        offset: top.offset + 1,
    };
    assert!(matches!(
        read(&a, "/ns/c", Since::After(ahead), 10).await,
        ReadOutcome::Unrecoverable {
            reason: UnrecoverableReason::AheadOfTop,
            ..
        }
    ));
    let other = Position {
        epoch: top.epoch ^ 1,
        offset: 3,
    };
    assert!(matches!(
        read(&a, "/ns/c", Since::After(other), 10).await,
        ReadOutcome::Unrecoverable {
            reason: UnrecoverableReason::EpochMismatch,
            ..
        }
    ));
    assert_eq!(a.channels_under("/ns").await.unwrap(), vec!["/ns/c"]);

    // By time: from the first batch stamped at or after t, to the top.
    match read(&a, "/ns/c", Since::TimeMs(1039), 1000).await {
        ReadOutcome::Events { events, top } => {
            assert!(!events.is_empty());
            assert!(events.iter().all(|e| e.time_ms >= 1039));
            assert_eq!(events.last().map(|e| e.position), Some(top));
        }
        other => panic!("{other:?}"),
    }
    let before = offsets(&read(&a, "/ns/c", Since::Start, 1000).await);
    assert_eq!(before.len(), 160, "Since::Start reads everything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_shows_as_expiry_and_new_chains_never_reuse_offsets() {
    let nats = Nats::start(free_port());
    let s = open(
        &nats,
        Retention {
            max_age: None,
            max_count: Some(3),
        },
    )
    .await;
    let p = s
        .append(
            "ns",
            "/ns/r",
            (0..5).map(|i| b(&i.to_string())).collect(),
            1,
        )
        .await
        .unwrap();
    let first = p[0];
    // Only the newest 3 are visible.
    assert_eq!(
        offsets(&read(&s, "/ns/r", Since::Start, 10).await),
        vec![first.offset + 2, first.offset + 3, first.offset + 4]
    );
    assert!(matches!(
        read(&s, "/ns/r", Since::After(first), 10).await,
        ReadOutcome::Unrecoverable {
            reason: UnrecoverableReason::Expired,
            ..
        }
    ));

    // Everything removed (as age retention would): the next append starts a new chain above
    // every old offset, and an old position is told it expired.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("t_history_ns").await.unwrap();
    stream.purge().await.unwrap();
    let last = p[4];
    let fresh = s.append("ns", "/ns/r", vec![b("new")], 2).await;
    // The node's cached tip is stale after the purge: the append still lands, above the old.
    let fresh = fresh.unwrap();
    assert!(fresh[0].offset > last.offset, "{fresh:?} vs {last:?}");
    assert!(matches!(
        read(&s, "/ns/r", Since::After(last), 10).await,
        ReadOutcome::Unrecoverable {
            reason: UnrecoverableReason::Expired,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_batches_in_stream_order() {
    let nats = Nats::start(free_port());
    let s = open(&nats, Retention::default()).await;
    s.append("ns", "/ns/before", vec![b("old")], 1)
        .await
        .unwrap();
    let mut follower = s.follow("ns").await.unwrap();
    let mut expected = Vec::new();
    for i in 0..10 {
        let channel = if i % 2 == 0 { "/ns/x" } else { "/ns/y/z" };
        let p = s
            .append("ns", channel, vec![b(&i.to_string())], 5)
            .await
            .unwrap();
        expected.push((channel.to_owned(), p[0]));
    }
    let mut got = Vec::new();
    let mut last_seq = follower.start;
    for _ in 0..10 {
        let batch = follower.next().await.unwrap().unwrap().unwrap();
        assert!(batch.seq > last_seq);
        last_seq = batch.seq;
        got.push((batch.channel, batch.events[0].position));
    }
    assert_eq!(got, expected, "only what was stored after following began");
    // A read capped at a sequence returns only what a follower up to it delivered.
    let capped = s
        .read_until("/ns/x", Since::Start, 100, follower.start + 1)
        .await
        .unwrap();
    assert_eq!(offsets(&capped).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_message_on_a_history_subject_does_not_wedge_the_channel() {
    let nats = Nats::start(free_port());
    let s = open(&nats, Retention::default()).await;
    let before = s.append("ns", "/ns/s", vec![b("1")], 1).await.unwrap();
    // Something other than Herald publishes on the channel's subject.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut follower = s.follow("ns").await.unwrap();
    let stray = js
        .publish("t._h.ns.s", Bytes::from_static(b"garbage"))
        .await
        .unwrap()
        .await
        .unwrap();
    // A follower passes it without handing it out, and counts it as seen (a resume waits for
    // that).
    assert!(follower.next().await.unwrap().unwrap().is_none());
    assert_eq!(follower.seen(), stray.sequence);
    // The next append still lands (on a new chain) and is followed; the stray one is skipped.
    let after = s.append("ns", "/ns/s", vec![b("2")], 2).await.unwrap();
    assert!(after[0].offset > before[0].offset);
    let got = follower.next().await.unwrap().unwrap().unwrap();
    assert_eq!(got.events[0].position, after[0]);
    // A read from the start skips it too.
    match read(&s, "/ns/s", Since::Start, 10).await {
        ReadOutcome::Events { events, .. } => {
            assert!(
                events
                    .iter()
                    .all(|e| e.payload != Bytes::from_static(b"garbage"))
            );
            assert_eq!(events.last().map(|e| e.position), Some(after[0]));
        }
        other => panic!("{other:?}"),
    }
}
