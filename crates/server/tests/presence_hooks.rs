//! Presence lifecycle notices (issue 15): the webhook receiver sees every connect, join, leave and
//! disconnect once, signed, in order — or they are counted as dropped; the same notices as events
//! on a configured channel. Delivery never waits for the webhook.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, WAIT, config, http, start};
use herald_server::config::NamespaceConfig;
use herald_server::presence::PresenceConfig;
use herald_server::presence::hooks::{WebhookConfig, sign};
use herald_testkit::fixture::{Fixture, Reply, serve};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef-secret";

fn with_presence(presence: PresenceConfig) -> herald_server::Config {
    let mut c = config();
    c.namespaces.push(NamespaceConfig {
        presence: Some(presence),
        ..NamespaceConfig::named("room")
    });
    c
}

fn webhook(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        secret: SECRET.into(),
        batch_ms: 20,
        ..WebhookConfig::default()
    }
}

/// A server whose `room` namespace posts notices to `receiver`, and a client subscribed to
/// `/room/a` there.
async fn member_with_webhook(receiver: &Fixture) -> (common::TestServer, Client) {
    let server = start(with_presence(PresenceConfig {
        webhook: Some(webhook(receiver.url("/hooks"))),
        ..PresenceConfig::default()
    }))
    .await;
    let mut c = Client::ready(&server).await;
    let ok = c.subscribe("a", "/room/a").await;
    assert_eq!(ok["type"], "subscribe_success");
    (server, c)
}

/// Every notice the receiver took, in the order received, after checking each batch's signature.
fn notices(fixture: &Fixture) -> Vec<Value> {
    let mut all = Vec::new();
    for hit in fixture.hits() {
        let header = |name: &str| {
            hit.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let timestamp = header("x-herald-timestamp");
        assert_eq!(
            header("x-herald-signature"),
            format!("sha256={}", sign(SECRET, &timestamp, &hit.body)),
            "every batch is signed"
        );
        let batch: Value = serde_json::from_str(&hit.body).unwrap();
        assert_eq!(batch["namespace"], "room");
        all.extend(batch["notices"].as_array().unwrap().iter().cloned());
    }
    all
}

/// Polls `done` until it holds, or panics after `WAIT`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn metric(server: &common::TestServer, name: &str) -> f64 {
    let (_, _, body) = http(server, "GET", "/metrics", &[], b"").await;
    let line = format!("{name}{{namespace=\"room\"}} ");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_webhook_sees_each_connect_join_leave_and_disconnect_once_in_order() {
    let receiver = serve(|_, _| Reply::Json(200, "{}".into())).await;
    let (server, mut c) = member_with_webhook(&receiver).await;
    assert_eq!(
        c.subscribe("b", "/room/b").await["type"],
        "subscribe_success"
    );
    c.send(json!({"type": "unsubscribe", "id": "a"})).await;
    assert_eq!(c.recv().await["type"], "unsubscribe_success");
    drop(c);
    until("six notices", || notices(&receiver).len() >= 6).await;
    let got: Vec<(String, String)> = notices(&receiver)
        .iter()
        .map(|n| {
            let channel = n["channel"].as_str().unwrap_or("-").to_owned();
            (n["type"].as_str().unwrap().to_owned(), channel)
        })
        .collect();
    let want = [
        ("connect", "-"),
        ("join", "/room/a"),
        ("join", "/room/b"),
        ("leave", "/room/a"),
        ("leave", "/room/b"),
        ("disconnect", "-"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(t, c)| (t.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
    let all = notices(&receiver);
    let connection = &all[0]["member"]["connectionId"];
    assert!(
        all.iter()
            .all(|n| &n["member"]["connectionId"] == connection)
    );
    assert_eq!(
        metric(&server, "herald_presence_webhook_deliveries_total").await,
        6.0
    );
    server.stop().await;
}

#[tokio::test]
async fn failed_batches_are_retried_until_taken() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    // The first two attempts fail.
    let receiver = serve(move |_, _| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::Json(503, "{}".into())
        } else {
            Reply::Json(200, "{}".into())
        }
    })
    .await;
    let (server, _member) = member_with_webhook(&receiver).await;
    until("a batch taken", || calls.load(Ordering::SeqCst) >= 3).await;
    let mut taken = 0.0;
    let started = Instant::now();
    while taken < 2.0 && started.elapsed() < WAIT {
        taken = metric(&server, "herald_presence_webhook_deliveries_total").await;
    }
    assert_eq!(taken, 2.0, "connect and join, taken once");
    assert_eq!(
        metric(&server, "herald_presence_webhook_retries_total").await,
        2.0
    );
    assert_eq!(
        metric(&server, "herald_presence_webhook_dropped_total").await,
        0.0
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_webhook_drops_and_counts_and_delivery_goes_on() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = start(with_presence(PresenceConfig {
        webhook: Some(WebhookConfig {
            max_attempts: 1,
            queue: 1,
            ..webhook(format!("http://127.0.0.1:{port}/hooks"))
        }),
        ..PresenceConfig::default()
    }))
    .await;
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = Client::ready(&server).await;
        let channel = format!("/room/r{i}");
        assert_eq!(
            c.subscribe("s", &channel).await["type"],
            "subscribe_success"
        );
        clients.push(c);
    }
    // Publishing and delivery are not held up by the webhook.
    let first = clients[0].publish("p", "/room/r0", &[json!(1)]).await;
    let second = clients[0].recv().await;
    let mut kinds = [first["type"].clone(), second["type"].clone()];
    kinds.sort_by_key(|v| v.to_string());
    assert_eq!(kinds, [json!("data"), json!("publish_success")]);
    let mut dropped = 0.0;
    let started = Instant::now();
    while dropped < 20.0 && started.elapsed() < WAIT {
        dropped = metric(&server, "herald_presence_webhook_dropped_total").await;
    }
    assert_eq!(
        dropped, 20.0,
        "ten connects and ten joins, each counted as dropped"
    );
    server.stop().await;
}

#[tokio::test]
async fn notices_are_events_on_the_configured_channel() {
    let server = start(with_presence(PresenceConfig {
        channel: Some("/default/presence".into()),
        ..PresenceConfig::default()
    }))
    .await;
    let mut backend = Client::ready(&server).await;
    assert_eq!(
        backend.subscribe("n", "/default/presence").await["type"],
        "subscribe_success"
    );
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("a", "/room/a").await["type"],
        "subscribe_success"
    );
    drop(c);
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let frame = backend.recv().await;
        assert_eq!(frame["type"], "data");
        let notice: Value = serde_json::from_str(frame["event"].as_str().unwrap()).unwrap();
        kinds.push(notice["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds, ["connect", "join", "leave", "disconnect"]);
    server.stop().await;
}
