//! Black-box tests of the AppSync Events protocol over real sockets (spec §2, §3, §5).

mod common;

use common::*;
use serde_json::{Value, json};

fn event(frame: &Value) -> Value {
    assert_eq!(frame["type"], "data", "expected a data frame: {frame}");
    let s = frame["event"].as_str().expect("event is a JSON string");
    serde_json::from_str(s).unwrap()
}

#[tokio::test]
async fn connect_subscribe_publish_unsubscribe() {
    let server = start(config()).await;
    let mut c = Client::connect(&server, Auth::Subprotocol(KEY)).await;
    c.send(json!({"type": "connection_init"})).await;
    assert_eq!(
        c.recv().await,
        json!({"type": "connection_ack", "connectionTimeoutMs": 300000})
    );
    assert_eq!(
        c.subscribe("s1", "/default/room").await,
        json!({"type": "subscribe_success", "id": "s1"})
    );
    // A publisher subscribed to the channel receives its own events, one frame per event, in order.
    let events = [json!({"n": 1}), json!("two"), json!(3)];
    let mut frames = Vec::new();
    c.send(json!({
        "type": "publish", "id": "p1", "channel": "default/room",
        "events": events.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        "authorization": {"x-api-key": KEY}
    }))
    .await;
    for _ in 0..4 {
        frames.push(c.recv().await);
    }
    let reply = frames
        .iter()
        .find(|f| f["type"] == "publish_success")
        .unwrap();
    assert_eq!(reply["id"], "p1");
    assert_eq!(reply["failed"], json!([]));
    let ok = reply["successful"].as_array().unwrap();
    assert_eq!(ok.len(), 3);
    for (i, s) in ok.iter().enumerate() {
        assert_eq!(s["index"], i);
        assert_eq!(s["identifier"].as_str().unwrap().len(), 36);
    }
    let data: Vec<Value> = frames
        .iter()
        .filter(|f| f["type"] == "data")
        .map(event)
        .collect();
    assert_eq!(data, events);
    assert!(
        frames
            .iter()
            .filter(|f| f["type"] == "data")
            .all(|f| f["id"] == "s1")
    );

    assert_eq!(c.send(json!({"type": "unsubscribe", "id": "s1"})).await, ());
    assert_eq!(
        c.recv().await,
        json!({"type": "unsubscribe_success", "id": "s1"})
    );
    let r = c.publish("p2", "/default/room", &[json!(1)]).await;
    assert_eq!(
        r["type"], "publish_success",
        "no data frame after unsubscribe: {r}"
    );
    server.stop().await;
}

#[tokio::test]
async fn wildcard_matches_every_deeper_channel_but_not_the_prefix() {
    let server = start(config()).await;
    let mut sub = Client::ready(&server).await;
    assert_eq!(
        sub.subscribe("w", "/default/*").await["type"],
        "subscribe_success"
    );
    assert_eq!(
        sub.subscribe("x", "/default/a").await["type"],
        "subscribe_success"
    );
    let mut publisher = Client::ready(&server).await;
    for (i, channel) in ["/default", "/other/a", "/default/a", "/default/a/b/c/d"]
        .iter()
        .enumerate()
    {
        let r = publisher
            .publish(&format!("p{i}"), channel, &[json!({"on": channel})])
            .await;
        assert_eq!(r["type"], "publish_success", "{r}");
    }
    // `/default` and `/other/a` reach nobody; `/default/a` reaches both subscriptions.
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = sub.recv().await;
        got.push((
            f["id"].as_str().unwrap().to_string(),
            event(&f)["on"].as_str().unwrap().to_string(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("w".into(), "/default/a".into()),
            ("w".into(), "/default/a/b/c/d".into()),
            ("x".into(), "/default/a".into())
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn connect_authorization_from_upgrade_headers_and_no_connection_init() {
    let server = start(config()).await;
    // The Swift and Kotlin SDKs send credentials as headers; some clients never send init.
    let mut c = Client::connect(&server, Auth::Headers(KEY)).await;
    assert_eq!(
        c.subscribe("s", "/default/x").await["type"],
        "subscribe_success"
    );
    let (status, body) = post(
        &server,
        KEY,
        &json!({"channel": "/default/x", "events": ["{\"a\":1}"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(event(&c.recv().await), json!({"a": 1}));
    server.stop().await;
}

#[tokio::test]
async fn bad_or_expired_connect_key_gets_connection_error_then_close() {
    let mut cfg = config();
    cfg.auth.api_keys.push(herald_server::config::ApiKeyConfig {
        key: "da2-expired000000".into(),
        name: None,
        expires: Some("2020-01-01T00:00:00Z".into()),
    });
    let server = start(cfg).await;
    for key in ["da2-wrong0000000", "da2-expired000000"] {
        let mut c = Client::connect(&server, Auth::Subprotocol(key)).await;
        let e = c.recv().await;
        assert_eq!(
            e,
            json!({"type": "connection_error", "errors": [{"errorType": "UnauthorizedException", "errorCode": 401, "message": "You are not authorized to make this call."}]})
        );
        let close = c.closed().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1000);
    }
    server.stop().await;
}

#[tokio::test]
async fn http_publish_reaches_websocket_subscribers() {
    let server = start(config()).await;
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("s", "/default/*").await["type"],
        "subscribe_success"
    );
    let payloads = [
        "{\"event_1\":\"data_1\"}",
        "\"a string\"",
        "42",
        "[1,2]",
        "null",
    ];
    let (status, body) = post(
        &server,
        KEY,
        &json!({"channel": "default/channel", "events": payloads}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["failed"], json!([]));
    assert_eq!(body["successful"].as_array().unwrap().len(), 5);
    for p in payloads {
        let f = c.recv().await;
        assert_eq!(
            f["event"], p,
            "the event string arrives exactly as published"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn keepalive_and_maximum_lifetime() {
    let mut cfg = config();
    cfg.websocket.keepalive_interval_ms = 50;
    cfg.websocket.max_lifetime_secs = 1;
    let server = start(cfg).await;
    let mut c = Client::ready(&server).await;
    assert_eq!(c.recv_any().await, json!({"type": "ka"}));
    let close = c.closed().await.expect("closed at the end of its lifetime");
    assert_eq!(u16::from(close.code), 1000);
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_says_going_away() {
    let server = start(config()).await;
    let mut c = Client::ready(&server).await;
    let stopping = tokio::spawn(server.stop());
    let close = c.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    stopping.await.unwrap();
}

#[tokio::test]
async fn cors_lets_browsers_publish() {
    let server = start(config()).await;
    let (status, headers, _) = http(
        &server,
        "OPTIONS",
        "/event",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-api-key"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert!(
        get("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert!(
        get("access-control-allow-headers")
            .unwrap()
            .contains("x-api-key")
    );
    let (status, headers, _) = http(
        &server,
        "POST",
        "/event",
        &[("origin", "https://app.example"), ("x-api-key", KEY)],
        br#"{"channel":"/default/a","events":["1"]}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "access-control-allow-origin" && v == "https://app.example")
    );
    let (status, _, body) = http(&server, "GET", "/healthz", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    server.stop().await;
}

#[tokio::test]
async fn slow_consumer_is_disconnected_and_others_keep_receiving() {
    let mut cfg = config();
    cfg.limits.max_queued_bytes = 256 * 1024;
    let server = start(cfg).await;
    let mut slow = Client::ready(&server).await;
    assert_eq!(
        slow.subscribe("s", "/default/big").await["type"],
        "subscribe_success"
    );
    let mut fast = Client::ready(&server).await;
    assert_eq!(
        fast.subscribe("f", "/default/big").await["type"],
        "subscribe_success"
    );
    let big = format!("\"{}\"", "x".repeat(200 * 1024));
    let reader = tokio::spawn(async move {
        for _ in 0..60 {
            let f = fast.recv().await;
            assert_eq!(f["event"].as_str().map(str::len), Some(200 * 1024 + 2));
        }
    });
    // `slow` reads nothing while 60 × 200 KB go out: kernel buffers fill, then its queue.
    for _ in 0..60 {
        let (status, _) = post(
            &server,
            KEY,
            &json!({"channel": "/default/big", "events": [big]}),
        )
        .await;
        assert_eq!(status, 200);
    }
    reader.await.unwrap();
    let close = slow.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4008);
    assert!(close.reason.contains("slow consumer"));
    server.stop().await;
}

#[tokio::test]
async fn prometheus_metrics_by_namespace() {
    let server = start(config()).await;
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("s", "/other/m").await["type"],
        "subscribe_success"
    );
    let (status, _) = post(
        &server,
        KEY,
        &json!({"channel": "/other/m", "events": ["1", "2"]}),
    )
    .await;
    assert_eq!(status, 200);
    c.recv().await;
    c.recv().await;
    let (status, headers, body) = http(&server, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/plain"))
    );
    let text = String::from_utf8(body).unwrap();
    for line in [
        "herald_active_connections 1",
        "herald_active_subscriptions{namespace=\"other\"} 1",
        "herald_publish_success_total{namespace=\"other\"} 1",
        "herald_broadcast_events_total{namespace=\"other\"} 2",
        "herald_deliveries_total{namespace=\"other\"} 2",
        "herald_subscribe_success_total{namespace=\"default\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    assert!(!text.contains("/other/m"), "never labelled by channel");
    server.stop().await;
}
