//! Hostile clients, the smaller findings (issue 20, finding 7), each over real sockets: namespace
//! names cannot be enumerated, credentials survive a flood of other headers, reserved close codes
//! are not echoed, deep events are refused, CORS stays on the publish and history paths, and the
//! admin API wants long keys and slows guessing down.

mod common;

use common::*;
use serde_json::{Value, json};

fn error_type(frame: &Value) -> &str {
    frame["errors"][0]["errorType"].as_str().unwrap_or_default()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A valid key on an unknown namespace gets exactly what a bad key on a real one gets, over HTTP
/// and on the socket, so namespace names cannot be enumerated.
#[tokio::test]
async fn an_unknown_namespace_looks_like_a_refusal() {
    let server = start(config()).await;
    let publish = |channel: &str| json!({"channel": channel, "events": ["1"]}).to_string();
    let as_http = |key: &'static str, channel: &str| {
        let body = publish(channel);
        let server = &server;
        async move {
            let (status, headers, body) = http(
                server,
                "POST",
                "/event",
                &[("content-type", "application/json"), ("x-api-key", key)],
                body.as_bytes(),
            )
            .await;
            let kind = header(&headers, "x-amzn-errortype").map(str::to_owned);
            (status, kind, body)
        }
    };
    let refused = as_http("da2-bad00000", "/default/a").await;
    assert_eq!(refused.0, 401);
    assert_eq!(as_http(KEY, "/nope/a").await, refused);

    let history = |channel: &str| {
        let path = format!("/event/history?channel={channel}");
        let server = &server;
        async move {
            let (status, _, body) = http(server, "GET", &path, &[("x-api-key", KEY)], b"").await;
            (status, body)
        }
    };
    let (status, body) = history("/nope/a").await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, refused.2);

    let mut c = Client::ready(&server).await;
    let bad = json!({"x-api-key": "da2-bad00000", "host": "localhost"});
    c.send(
        json!({"type": "subscribe", "id": "bad", "channel": "/default/a", "authorization": bad}),
    )
    .await;
    let bad_subscribe = c.recv().await;
    for (id, channel) in [("s1", "/nope/a"), ("s2", "/nope/*")] {
        let r = c.subscribe(id, channel).await;
        assert_eq!(r["type"], "subscribe_error", "{r}");
        assert_eq!(r["errors"], bad_subscribe["errors"], "{channel}: {r}");
    }
    c.send(json!({"type": "publish", "id": "bad", "channel": "/default/a", "events": ["1"], "authorization": bad}))
        .await;
    let bad_publish = c.recv().await;
    let r = c.publish("p1", "/nope/a", &[json!(1)]).await;
    assert_eq!(r["type"], "publish_error", "{r}");
    assert_eq!(r["errors"], bad_publish["errors"]);
    assert_eq!(error_type(&r), "UnauthorizedException");
    server.stop().await;
}

/// Credentials after dozens of other headers (or fields of an `authorization` object) still
/// count: only the other headers are bounded.
#[tokio::test]
async fn credentials_survive_a_flood_of_other_headers() {
    let server = start(config()).await;
    let junk: Vec<(String, String)> = (0..40)
        .map(|i| (format!("a-junk-{i:02}"), "x".repeat(20)))
        .collect();
    let mut headers: Vec<(&str, &str)> =
        junk.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    headers.push(("content-type", "application/json"));
    headers.push(("x-api-key", KEY));
    let (status, _, body) = http(
        &server,
        "POST",
        "/event",
        &headers,
        br#"{"channel":"/default/a","events":["1"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let mut c = Client::ready(&server).await;
    let mut authorization = serde_json::Map::new();
    for (k, v) in &junk {
        authorization.insert(k.clone(), json!(v));
    }
    authorization.insert("x-api-key".into(), json!(KEY));
    c.send(json!({"type": "subscribe", "id": "s", "channel": "/default/a", "authorization": authorization}))
        .await;
    let r = c.recv().await;
    assert_eq!(r["type"], "subscribe_success", "{r}");
    server.stop().await;
}
