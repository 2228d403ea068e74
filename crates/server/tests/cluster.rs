//! Cluster mode over a real `nats-server` (started by the test on a free loopback port) with
//! three Herald nodes: cross-node delivery counts are exact, and a NATS outage makes publishes
//! fail clearly, then heals by itself.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use herald_server::Config;
use serde_json::{Value, json};

struct Nats {
    child: Child,
    port: u16,
}

impl Nats {
    fn start(port: u16) -> Nats {
        let bin = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nats-server is installed (.ci/run installs Debian's nats-server)");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not open its port"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats { child, port }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node(nats: &Nats, name: &str) -> Config {
    let mut c = config();
    c.cluster.nats_url = format!("nats://127.0.0.1:{}", nats.port);
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
    let _nats = Nats::start(port);
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
