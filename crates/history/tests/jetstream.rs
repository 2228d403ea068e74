//! `JetStreamStore`-only behaviour against a real `nats-server -js` started by each test: offsets
//! stay gapless when two stores (two nodes) append to one channel at once, a purged stream never
//! gets its old offsets reused, a follower sees batches in order, and a stray message cannot wedge
//! a channel. Everything the embedded stores share runs in `conformance.rs` (module `jetstream`).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::nats::{Nats, free_port};
use common::{b, open_jetstream};
use herald_history::{
    HistoryStore, JetStreamStore, Position, ReadOutcome, Retention, Since, UnrecoverableReason,
};

async fn read(s: &JetStreamStore, channel: &str, since: Since, limit: usize) -> ReadOutcome {
    s.read(channel, since, limit).await.expect("read")
}

fn offsets(outcome: &ReadOutcome) -> Vec<u64> {
    match outcome {
        ReadOutcome::Events { events, .. } => common::offsets(events),
        other => panic!("expected events, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_stay_gapless_across_nodes_and_read_from_either() {
    let nats = Nats::start(free_port());
    let a = Arc::new(open_jetstream(&nats, Retention::default()).await);
    let b_node = Arc::new(open_jetstream(&nats, Retention::default()).await);

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
    let ReadOutcome::Events { events, .. } = read(&a, "/ns/c", Since::Start, 1000).await else {
        panic!("expected events");
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_stream_never_gets_its_old_offsets_reused() {
    let nats = Nats::start(free_port());
    let s = open_jetstream(&nats, Retention::default()).await;
    let p = s
        .append(
            "ns",
            "/ns/r",
            (0..5).map(|i| b(&i.to_string())).collect(),
            1,
        )
        .await
        .unwrap();

    // Everything removed behind the store's back (as age retention would): the next append
    // starts a new chain above every old offset, and an old position is told it expired.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("t_history_ns").await.unwrap();
    stream.purge().await.unwrap();
    let last = p[4];
    // The node's cached tip is stale after the purge: the append still lands, above the old.
    let fresh = s.append("ns", "/ns/r", vec![b("new")], 2).await.unwrap();
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
    let s = open_jetstream(&nats, Retention::default()).await;
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
    let s = open_jetstream(&nats, Retention::default()).await;
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

/// docs/cluster.md's `history_replicas = 3` against one NATS server: the error is NATS's own
/// reason, not a "stream not found" from the fallback lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_replicas_for_one_server_reports_the_real_cause() {
    let nats = Nats::start(free_port());
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let options = herald_history::JetStreamOptions {
        subject_prefix: "replicas".into(),
        replicas: 3,
    };
    let Err(e) =
        JetStreamStore::open(client, &options, &[("ns".into(), Retention::default())]).await
    else {
        panic!("three replicas on one server were accepted");
    };
    assert!(
        matches!(e, herald_history::HistoryError::Setup(_)),
        "a refusal, not an outage: {e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("replicas > 1 not supported in non-clustered mode"),
        "{text}"
    );
    assert!(text.contains("cluster.history_replicas is 3"), "{text}");
    assert!(!text.contains("not found"), "{text}");
}
