//! Idempotent publishes (issue 20): a retried publish with the same idempotency key is not
//! published twice — over HTTP (`Idempotency-Key` header) and over the socket
//! (`idempotencyKey`) — and the retry gets the first publish's identifiers back.

mod common;

use common::{Client, KEY, config, start};
use serde_json::{Value, json};

async fn post_with_key(server: &common::TestServer, key: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = common::http(
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

#[tokio::test]
async fn a_retry_with_the_same_key_is_not_published_twice() {
    let server = start(config()).await;
    let mut sub = Client::ready(&server).await;
    sub.subscribe("s", "/default/orders").await;

    let body = json!({"channel": "/default/orders", "events": ["\"first\""]});
    let (status, first) = post_with_key(&server, "order-42", &body).await;
    assert_eq!(status, 200, "{first}");
    let (status, retry) = post_with_key(&server, "order-42", &body).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(
        first["successful"][0]["identifier"], retry["successful"][0]["identifier"],
        "the retry is answered with the first publish's result"
    );

    // Over the socket too, sharing the namespace's keys.
    let mut publisher = Client::ready(&server).await;
    let frame = |id: &str| {
        json!({
            "type": "publish", "id": id, "channel": "/default/orders",
            "events": ["\"second\""], "idempotencyKey": "order-43",
            "authorization": {"x-api-key": KEY, "host": "localhost"}
        })
    };
    publisher.send(frame("p1")).await;
    assert_eq!(publisher.recv().await["type"], "publish_success");
    publisher.send(frame("p2")).await;
    assert_eq!(publisher.recv().await["type"], "publish_success");

    // A different key publishes; then exactly three events reached the subscriber, in order.
    let (status, _) = post_with_key(
        &server,
        "order-44",
        &json!({"channel": "/default/orders", "events": ["\"third\""]}),
    )
    .await;
    assert_eq!(status, 200);
    let mut got = Vec::new();
    for _ in 0..3 {
        let data = sub.recv().await;
        assert_eq!(data["type"], "data");
        got.push(data["event"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, ["\"first\"", "\"second\"", "\"third\""]);

    // A bad key is refused before anything is published.
    let (status, refused) = post_with_key(&server, "", &body).await;
    assert_eq!(status, 400, "{refused}");
    server.stop().await;
}
