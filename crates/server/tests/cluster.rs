//! Cluster mode over a real `nats-server` (started by the test on a free loopback port) with
//! three Herald nodes: cross-node delivery counts are exact; a NATS outage makes publishes fail
//! clearly, then heals by itself; history lives in JetStream, and a client resumes on another
//! node with no gap and no duplicate, also while others keep publishing.

mod common;
#[path = "../../history/tests/support/nats.rs"]
mod nats;

use std::time::{Duration, Instant};

use common::*;
use herald_server::Config;
use herald_server::config::{NamespaceConfig, NamespaceHistory};
use nats::{Nats, free_port};
use serde_json::{Value, json};

fn node(nats: &Nats, name: &str) -> Config {
    let mut c = config();
    c.cluster.nats_url = nats.url();
    c.cluster.node_name = Some(name.into());
    c.cluster.subject_prefix = format!("herald-test-{}", nats.port);
    c
}

fn event_of(frame: &Value) -> (String, String) {
    (
        frame["id"].as_str().unwrap_or_default().to_owned(),
        frame["event"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_publish_on_any_node_reaches_every_matching_subscriber_once() {
    let nats = Nats::start(free_port());
    let n1 = start(node(&nats, "n1")).await;
    let n2 = start(node(&nats, "n2")).await;
    let n3 = start(node(&nats, "n3")).await;
    let mut a = Client::ready(&n1).await;
    assert_eq!(
        a.subscribe("x", "/default/room").await["type"],
        "subscribe_success"
    );
    assert_eq!(
        a.subscribe("w", "/default/*").await["type"],
        "subscribe_success"
    );
    let mut b = Client::ready(&n2).await;
    assert_eq!(
        b.subscribe("x", "/default/room").await["type"],
        "subscribe_success"
    );
    assert_eq!(
        b.subscribe("o", "/other/room").await["type"],
        "subscribe_success"
    );

    // 20 events from node 3 over HTTP, in order.
    for i in 0..20 {
        let (status, reply) = post(
            &n3,
            KEY,
            &json!({"channel": "/default/room", "events": [i.to_string()]}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
    }
    // And 5 over a WebSocket on node 1.
    let mut p = Client::ready(&n1).await;
    for i in 20..25 {
        let r = p
            .publish(&format!("p{i}"), "/default/room", &[json!(i)])
            .await;
        assert_eq!(r["type"], "publish_success", "{r}");
        assert!(
            r["successful"][0].get("delivered").is_none()
                || r["successful"][0]["delivered"].is_null(),
            "cluster mode cannot count remote deliveries: {r}"
        );
    }
    let mut got_a: Vec<(String, String)> = Vec::new();
    for _ in 0..50 {
        got_a.push(event_of(&a.recv().await));
    }
    let mut got_b: Vec<(String, String)> = Vec::new();
    for _ in 0..25 {
        got_b.push(event_of(&b.recv().await));
    }
    // Order holds per publisher: node 3's 0..20, then node 1's 20..25, each in order; the two
    // publishers' streams may interleave.
    let per_publisher = |got: &[(String, String)]| -> Vec<(String, String)> {
        let n = |e: &(String, String)| e.1.parse::<u32>().unwrap_or(u32::MAX);
        let mut first: Vec<_> = got.iter().filter(|e| n(e) < 20).cloned().collect();
        first.extend(got.iter().filter(|e| n(e) >= 20).cloned());
        first
    };
    let expect = |id: &str| -> Vec<(String, String)> {
        (0..25).map(|i| (id.to_owned(), i.to_string())).collect()
    };
    let a_exact: Vec<_> = got_a.iter().filter(|(id, _)| id == "x").cloned().collect();
    let a_wild: Vec<_> = got_a.iter().filter(|(id, _)| id == "w").cloned().collect();
    assert_eq!(
        per_publisher(&a_exact),
        expect("x"),
        "exact subscription on node 1: each event once, in order"
    );
    assert_eq!(
        per_publisher(&a_wild),
        expect("w"),
        "wildcard subscription on node 1: each event once, in order"
    );
    assert_eq!(
        per_publisher(&got_b),
        expect("x"),
        "node 2: each event once, in order, nothing from /default/*"
    );
    // Nothing else is waiting: a marker on /other arrives next at b.
    post(
        &n3,
        KEY,
        &json!({"channel": "/other/room", "events": ["\"marker\""]}),
    )
    .await;
    assert_eq!(event_of(&b.recv().await), ("o".into(), "\"marker\"".into()));
    for n in [n1, n2, n3] {
        n.stop().await;
    }
}

#[tokio::test]
async fn nats_outage_fails_publishes_clearly_and_heals() {
    let port = free_port();
    let mut nats = Nats::start(port);
    let n1 = start(node(&nats, "n1")).await;
    let n2 = start(node(&nats, "n2")).await;
    let mut b = Client::ready(&n2).await;
    assert_eq!(
        b.subscribe("s", "/default/heal").await["type"],
        "subscribe_success"
    );
    post(
        &n1,
        KEY,
        &json!({"channel": "/default/heal", "events": ["\"before\""]}),
    )
    .await;
    assert_eq!(b.recv().await["event"], "\"before\"");

    nats.stop();
    // Once the nodes notice, a publish fails with a clear error instead of vanishing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let (status, reply) = post(
            &n1,
            KEY,
            &json!({"channel": "/default/heal", "events": ["\"lost?\""]}),
        )
        .await;
        if status != 200 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "publishes kept succeeding with NATS down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("NATS"),
        "{refused}"
    );

    // NATS comes back on the same port: nodes reconnect and restore their subscriptions;
    // the local subscriber stayed connected throughout.
    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = post(
            &n1,
            KEY,
            &json!({"channel": "/default/heal", "events": ["\"after\""]}),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster did not heal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Published while the subscription may still be restoring: wait for one to arrive.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout(Duration::from_millis(500), b.recv_any()).await {
            Ok(f) if f["event"] == "\"after\"" => break,
            Ok(f) if f["event"] == "\"lost?\"" => {
                panic!("an event refused during the outage arrived: {f}")
            }
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "no delivery after NATS came back"
                );
                post(
                    &n1,
                    KEY,
                    &json!({"channel": "/default/heal", "events": ["\"after\""]}),
                )
                .await;
            }
        }
    }
    n1.stop().await;
    n2.stop().await;
}

/// A node whose `hist` namespace keeps history (in JetStream, since it is clustered).
fn history_node(nats: &Nats, name: &str) -> Config {
    let mut c = node(nats, name);
    c.namespaces.push(NamespaceConfig {
        name: "hist".into(),
        publish_auth_modes: None,
        subscribe_auth_modes: None,
        handlers: None,
        rules: None,
        presence: None,
        history: Some(NamespaceHistory {
            max_age_secs: Some(3600),
            max_count: None,
        }),
    });
    c
}

fn position(frame: &Value) -> (String, u64) {
    let p = &frame["position"];
    (
        p["epoch"].as_str().unwrap_or_default().to_owned(),
        p["offset"].as_u64().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_in_jetstream_resumes_on_another_node_without_gap() {
    let nats = Nats::start(free_port());
    let n1 = start(history_node(&nats, "n1")).await;
    let n2 = start(history_node(&nats, "n2")).await;
    let n3 = start(history_node(&nats, "n3")).await;

    let mut a = Client::ready(&n1).await;
    assert_eq!(
        a.subscribe("s", "/hist/room").await["type"],
        "subscribe_success"
    );
    assert_eq!(
        a.subscribe("w", "/hist/*").await["type"],
        "subscribe_success"
    );
    // Published on node 2 (HTTP) and node 3 (WebSocket); positions come back in the replies.
    let mut acked: Vec<(String, u64)> = Vec::new();
    for i in 0..5 {
        let (status, reply) = post(
            &n2,
            KEY,
            &json!({"channel": "/hist/room", "events": [i.to_string()]}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        acked.push(position(&reply["successful"][0]));
    }
    let mut p3 = Client::ready(&n3).await;
    let r = p3.publish("p", "/hist/room", &[json!(5), json!(6)]).await;
    assert_eq!(r["type"], "publish_success", "{r}");
    acked.push(position(&r["successful"][0]));
    acked.push(position(&r["successful"][1]));
    let epoch = acked[0].0.clone();
    let first = acked[0].1;
    assert_eq!(
        acked,
        (first..first + 7)
            .map(|o| (epoch.clone(), o))
            .collect::<Vec<_>>(),
        "offsets are dense across nodes"
    );
    // Node 1 delivers each event once per subscription, in offset order, with its position.
    let mut exact = Vec::new();
    let mut wild = Vec::new();
    for _ in 0..14 {
        let f = a.recv().await;
        let entry = (
            f["event"].as_str().unwrap_or_default().to_owned(),
            position(&f),
        );
        match f["id"].as_str() {
            Some("s") => exact.push(entry),
            Some("w") => wild.push(entry),
            other => panic!("unexpected frame for {other:?}: {f}"),
        }
    }
    let expect: Vec<_> = (0..7).map(|i| (i.to_string(), acked[i].clone())).collect();
    assert_eq!(exact, expect);
    assert_eq!(wild, expect);

    // The client goes away after event 3 (as if its node had died); 4 more are published on
    // node 2 meanwhile.
    drop(a);
    let last_seen = acked[3].clone();
    for i in 7..11 {
        let (status, reply) = post(
            &n2,
            KEY,
            &json!({"channel": "/hist/room", "events": [i.to_string()]}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        acked.push(position(&reply["successful"][0]));
    }
    // It resumes on node 3: exactly the missed events, in order, then live ones.
    let mut c = Client::ready(&n3).await;
    c.send(
        json!({"type": "subscribe", "id": "r", "channel": "/hist/room",
        "authorization": {"x-api-key": KEY},
        "resume": {"epoch": last_seen.0, "offset": last_seen.1}}),
    )
    .await;
    let ok = c.recv().await;
    assert_eq!(ok["type"], "subscribe_success", "{ok}");
    assert_eq!(
        ok["resume"],
        json!({"recovered": true, "replayed": 7}),
        "{ok}"
    );
    let (status, reply) = post(
        &n1,
        KEY,
        &json!({"channel": "/hist/room", "events": ["11"]}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    acked.push(position(&reply["successful"][0]));
    let mut got = Vec::new();
    for _ in 0..8 {
        let f = c.recv().await;
        got.push((
            f["event"].as_str().unwrap_or_default().to_owned(),
            position(&f),
        ));
    }
    let expect: Vec<_> = (4..12).map(|i| (i.to_string(), acked[i].clone())).collect();
    assert_eq!(got, expect, "replay then live: no gap, no duplicate");

    // A wildcard resume on node 2: /hist/room after a known position, /hist/other (never seen)
    // from its oldest event.
    for e in ["a", "b"] {
        let (status, reply) = post(
            &n3,
            KEY,
            &json!({"channel": "/hist/other", "events": [format!("\"{e}\"")]}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
    }
    let mut w = Client::ready(&n2).await;
    w.send(json!({"type": "subscribe", "id": "w", "channel": "/hist/*",
        "authorization": {"x-api-key": KEY},
        "resume": {"positions": {"/hist/room": {"epoch": epoch, "offset": acked[9].1}}}}))
        .await;
    let ok = w.recv().await;
    assert_eq!(
        ok["resume"],
        json!({"recovered": true, "replayed": 4}),
        "{ok}"
    );
    let mut replayed = Vec::new();
    for _ in 0..4 {
        let f = w.recv().await;
        replayed.push((
            f["position"]["channel"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            f["event"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    replayed.sort();
    assert_eq!(
        replayed,
        [
            ("/hist/other".to_owned(), "\"a\"".to_owned()),
            ("/hist/other".to_owned(), "\"b\"".to_owned()),
            ("/hist/room".to_owned(), "10".to_owned()),
            ("/hist/room".to_owned(), "11".to_owned()),
        ]
    );

    // The HTTP history endpoint reads the same stream on any node.
    let (status, _, body) = http(
        &n1,
        "GET",
        &format!(
            "/event/history?channel=/hist/room&since={}:{}",
            epoch,
            first + 9
        ),
        &[("x-api-key", KEY)],
        b"",
    )
    .await;
    let page: Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(status, 200, "{page}");
    let events: Vec<&str> = page["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["event"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(events, ["10", "11"], "{page}");
    for n in [n1, n2, n3] {
        n.stop().await;
    }
}

/// The seam in cluster mode while publishers keep publishing on another node: a subscriber
/// drops and resumes, alternately on the two nodes, from its last position; it sees every offset
/// exactly once, in order. Resumes read beside each node's follower and go live in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_seam_across_nodes_under_concurrent_publishing() {
    const PUBLISHERS: usize = 2;
    const PER_PUBLISHER: usize = 40;
    const TOTAL: usize = PUBLISHERS * PER_PUBLISHER;
    let nats = Nats::start(free_port());
    let n1 = std::sync::Arc::new(start(history_node(&nats, "n1")).await);
    let n2 = std::sync::Arc::new(start(history_node(&nats, "n2")).await);
    let mut c = Client::ready(&n1).await;
    assert_eq!(
        c.subscribe("s0", "/hist/seam").await["type"],
        "subscribe_success"
    );
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let n2 = n2.clone();
            tokio::spawn(async move {
                for i in 0..PER_PUBLISHER {
                    let body = json!({"channel": "/hist/seam", "events": [format!("\"{p}-{i}\"")]});
                    let (status, reply) = post(&n2, KEY, &body).await;
                    assert_eq!(status, 200, "{reply}");
                }
            })
        })
        .collect();
    let mut seen: Vec<u64> = Vec::new();
    let mut last = None;
    let mut drops = [10, 30, 55].into_iter().peekable();
    let mut resumes = 0;
    while seen.len() < TOTAL {
        if drops.next_if(|&d| d <= seen.len()).is_some() {
            resumes += 1;
            let node = if resumes % 2 == 1 { &n2 } else { &n1 };
            drop(std::mem::replace(&mut c, Client::ready(node).await));
            let (epoch, offset): (String, u64) = last.clone().unwrap();
            let from = json!({"epoch": epoch, "offset": offset});
            let ok = c.resume(&format!("s{resumes}"), "/hist/seam", from).await;
            assert_eq!(ok["resume"]["recovered"], true, "{ok}");
            continue;
        }
        let f = c.recv().await;
        assert_eq!(f["type"], "data", "{f}");
        let p = position(&f);
        seen.push(p.1);
        last = Some(p);
    }
    for p in publishers {
        p.await.unwrap();
    }
    let first = seen[0];
    assert_eq!(
        seen,
        (first..first + TOTAL as u64).collect::<Vec<_>>(),
        "every offset once, in order"
    );
    for n in [n1, n2] {
        if let Some(n) = std::sync::Arc::into_inner(n) {
            n.stop().await;
        }
    }
}

#[tokio::test]
async fn nats_over_tls_with_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let (_, files) =
        herald_server::transport::tls::dev(dir.path()).expect("a CA and a certificate");
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let nats = Nats::with_args(
        free_port(),
        &[
            "--tls",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--user",
            "herald",
            "--pass",
            "s3cret",
        ],
    );
    let secured = |name: &str, password: &str| {
        let mut c = node(&nats, name);
        c.cluster.tls_ca_file = Some(files.ca.clone());
        c.cluster.user = Some("herald".into());
        c.cluster.password = Some(password.into());
        c
    };
    let n1 = start(secured("n1", "s3cret")).await;
    let n2 = start(secured("n2", "s3cret")).await;
    let mut b = Client::ready(&n2).await;
    assert_eq!(
        b.subscribe("s", "/default/tls").await["type"],
        "subscribe_success"
    );
    let (status, reply) = post(
        &n1,
        KEY,
        &json!({"channel": "/default/tls", "events": ["\"over tls\""]}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.recv().await["event"], "\"over tls\"");

    // A wrong password, or no CA to verify the server with, stops the node at startup with a
    // message naming the problem.
    let wrong = herald_server::Server::bind(secured("n3", "wrong")).await;
    let e = wrong
        .err()
        .expect("a wrong password is refused")
        .to_string();
    assert!(e.contains("NATS"), "{e}");
    let mut untrusted = secured("n4", "s3cret");
    untrusted.cluster.tls_ca_file = None;
    untrusted.cluster.tls_required = true;
    let e = herald_server::Server::bind(untrusted)
        .await
        .err()
        .expect("an unknown CA is refused")
        .to_string();
    assert!(e.contains("NATS"), "{e}");
    n1.stop().await;
    n2.stop().await;
}
