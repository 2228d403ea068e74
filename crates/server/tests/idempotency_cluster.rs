//! Idempotent publishes across a cluster (issue 20): two Herald nodes on one real `nats-server`
//! with JetStream. A publish retried on another node — over HTTP (`Idempotency-Key`) or the
//! socket (`idempotencyKey`) — is answered with the first publish's result and never delivered
//! twice; another namespace's same key is independent; what the shared bucket holds (pending,
//! unknown) is answered as the local table would; and while JetStream is unreachable a keyed
//! publish is refused as not published, then publishes once it is back.

mod common;
#[path = "../../history/tests/support/nats.rs"]
mod nats;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;
use herald_server::Config;
use herald_server::config::{NamespaceConfig, NamespaceHistory};
use nats::{Nats, free_port};
use serde_json::{Value, json};

/// A node of the test cluster; `hist` keeps history (in JetStream), so replies carry positions.
fn node(nats: &Nats, name: &str) -> Config {
    let mut c = config();
    c.cluster.nats_url = nats.url();
    c.cluster.node_name = Some(name.into());
    c.cluster.subject_prefix = format!("herald-test-{}", nats.port);
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

async fn post_with_key(server: &TestServer, key: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = http(
        server,
        "POST",
        "/event",
        &[
            ("content-type", "application/json"),
            ("x-api-key", KEY),
            ("idempotency-key", key),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn keyed_frame(id: &str, channel: &str, event: &str, key: &str) -> Value {
    json!({
        "type": "publish", "id": id, "channel": channel, "events": [event],
        "idempotencyKey": key,
        "authorization": {"x-api-key": KEY, "host": "localhost"}
    })
}

/// The events `client` receives on subscription `id` until it has seen every marker, in order,
/// markers left out.
async fn events_until_markers(client: &mut Client, id: &str, markers: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    let mut got = Vec::new();
    while seen.len() < markers.len() {
        let frame = client.recv().await;
        assert_eq!(frame["type"], "data", "{frame}");
        if frame["id"] != id {
            continue;
        }
        let event = frame["event"].as_str().unwrap_or_default().to_owned();
        if markers.contains(&event.as_str()) {
            seen.push(event);
        } else {
            got.push(event);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_node_gets_the_first_result_and_no_second_copy() {
    let nats = Nats::start(free_port());
    let a = start(node(&nats, "a")).await;
    let b = start(node(&nats, "b")).await;
    let mut on_a = Client::ready(&a).await;
    let mut on_b = Client::ready(&b).await;
    for (client, channel) in [
        (&mut on_a, "/default/orders"),
        (&mut on_b, "/default/orders"),
    ] {
        assert_eq!(
            client.subscribe("d", channel).await["type"],
            "subscribe_success"
        );
    }
    let mut elsewhere = Client::ready(&b).await;
    for (id, channel) in [("o", "/other/orders"), ("h", "/hist/orders")] {
        assert_eq!(
            elsewhere.subscribe(id, channel).await["type"],
            "subscribe_success"
        );
    }

    // HTTP: first on node A, the retry on node B.
    let body = json!({"channel": "/default/orders", "events": ["\"first\""]});
    let (status, first) = post_with_key(&a, "order-42", &body).await;
    assert_eq!(status, 200, "{first}");
    let (status, retry) = post_with_key(&b, "order-42", &body).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry, first, "node B answers with node A's result");

    // The socket: first on node A, the retry on node B.
    let mut pub_a = Client::ready(&a).await;
    let mut pub_b = Client::ready(&b).await;
    pub_a
        .send(keyed_frame(
            "p1",
            "/default/orders",
            "\"second\"",
            "order-43",
        ))
        .await;
    let first = pub_a.recv().await;
    assert_eq!(first["type"], "publish_success", "{first}");
    pub_b
        .send(keyed_frame(
            "p2",
            "/default/orders",
            "\"second\"",
            "order-43",
        ))
        .await;
    let retry = pub_b.recv().await;
    assert_eq!(retry["type"], "publish_success", "{retry}");
    assert_eq!(retry["successful"], first["successful"]);
    assert_eq!(retry["failed"], first["failed"]);

    // HTTP and socket share a namespace's keys across nodes too.
    let (status, shared) = post_with_key(
        &b,
        "order-43",
        &json!({"channel": "/default/orders", "events": ["\"second\""]}),
    )
    .await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(shared["successful"], first["successful"]);

    // Another namespace with the same key publishes.
    let (status, other) = post_with_key(
        &b,
        "order-42",
        &json!({"channel": "/other/orders", "events": ["\"other\""]}),
    )
    .await;
    assert_eq!(status, 200, "{other}");
    assert_ne!(
        other["successful"][0]["identifier"], retry["successful"][0]["identifier"],
        "{other}"
    );
    assert_eq!(elsewhere.recv().await["event"], "\"other\"");

    // History: the retry gets the same position.
    let hist = json!({"channel": "/hist/orders", "events": ["\"kept\""]});
    let (status, first) = post_with_key(&a, "order-44", &hist).await;
    assert_eq!(status, 200, "{first}");
    assert!(first["successful"][0]["position"].is_object(), "{first}");
    let (status, retry) = post_with_key(&b, "order-44", &hist).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry, first);
    assert_eq!(elsewhere.recv().await["event"], "\"kept\"");

    // Markers from both nodes: a copy published by either would arrive before its node's marker.
    for (node, marker) in [(&a, "\"marker-a\""), (&b, "\"marker-b\"")] {
        let (status, reply) = post(
            node,
            KEY,
            &json!({"channel": "/default/orders", "events": [marker]}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
    }
    let markers = ["\"marker-a\"", "\"marker-b\""];
    for client in [&mut on_a, &mut on_b] {
        let got = events_until_markers(client, "d", &markers).await;
        assert_eq!(got, ["\"first\"", "\"second\""], "each event once");
    }
    a.stop().await;
    b.stop().await;
}

/// The bucket key of `key` in `namespace` (the documented layout: namespace, then hex).
fn entry_key(namespace: &str, key: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{namespace}.{hex}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_shared_bucket_holds_is_answered_on_every_node() {
    let nats = Nats::start(free_port());
    let a = start(node(&nats, "a")).await;
    // A first keyed publish creates the bucket, with the window as its max_age.
    let body = json!({"channel": "/default/x", "events": ["1"]});
    assert_eq!(post_with_key(&a, "warm-up", &body).await.0, 200);
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let js = jetstream::new(client);
    let bucket = format!("herald-test-{}_idempotency", nats.port);
    let kv = js.get_key_value(&bucket).await.expect("the bucket exists");
    let status = kv.status().await.expect("its status");
    assert_eq!(status.max_age(), Duration::from_secs(120));

    // A claim held by a publish still running (on some node): 409, retry.
    kv.create(
        entry_key("default", "busy/key.1*>"),
        r#"{"state":"pending"}"#.into(),
    )
    .await
    .expect("a pending claim");
    let (status, busy) = post_with_key(&a, "busy/key.1*>", &body).await;
    assert_eq!(status, 409, "{busy}");
    assert!(
        busy["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("in progress"),
        "{busy}"
    );
    // A publish that failed and may have stored: refused, not published again.
    kv.create(
        entry_key("default", "unsure"),
        r#"{"state":"unknown"}"#.into(),
    )
    .await
    .expect("an unknown outcome");
    let (status, unsure) = post_with_key(&a, "unsure", &body).await;
    assert_eq!(status, 409, "{unsure}");
    assert!(
        unsure["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("may have been stored"),
        "{unsure}"
    );
    // A released claim publishes.
    kv.delete(entry_key("default", "busy/key.1*>"))
        .await
        .expect("released");
    assert_eq!(post_with_key(&a, "busy/key.1*>", &body).await.0, 200);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_refuses_as_not_published_then_heals() {
    let mut nats = Nats::start(free_port());
    let a = start(node(&nats, "a")).await;
    let body = json!({"channel": "/default/y", "events": ["\"once\""]});
    nats.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let (status, reply) = post_with_key(&a, "outage-1", &body).await;
        if status != 200 {
            break reply;
        }
        assert!(Instant::now() < deadline, "keyed publishes kept succeeding");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("idempotency store is unavailable, the event was not published"),
        "{refused}"
    );

    // Back: the same key publishes (nothing was claimed), once.
    nats.restart();
    let mut sub = Client::ready(&a).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if sub.subscribe("s", "/default/y").await["type"] == "subscribe_success" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no subscription after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = loop {
        let (status, reply) = post_with_key(&a, "outage-1", &body).await;
        if status == 200 {
            break reply;
        }
        assert!(Instant::now() < deadline, "the node did not heal: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, retry) = post_with_key(&a, "outage-1", &body).await;
    assert_eq!((status, &retry), (200, &first));
    assert_eq!(sub.recv().await["event"], "\"once\"");
    let (status, _) = post(
        &a,
        KEY,
        &json!({"channel": "/default/y", "events": ["\"marker\""]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sub.recv().await["event"], "\"marker\"", "no second copy");
    a.stop().await;
}
