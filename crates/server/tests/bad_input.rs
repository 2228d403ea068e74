//! Bad input gets the protocol's error reply, the connection keeps working where the protocol
//! says so, and the server never panics (spec §2.3, §3, §7; choices in docs/protocol.md).

mod common;

use common::*;
use serde_json::{Value, json};

fn error_type(frame: &Value) -> &str {
    frame["errors"][0]["errorType"].as_str().unwrap_or_default()
}

/// After an error the connection still subscribes and publishes.
async fn still_works(c: &mut Client, tag: &str) {
    let r = c
        .publish(&format!("alive-{tag}"), "/default/alive", &[json!(1)])
        .await;
    assert_eq!(
        r["type"], "publish_success",
        "connection still usable after {tag}: {r}"
    );
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_survives() {
    let server = start(config()).await;
    let mut c = Client::ready(&server).await;
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        // (frame, reply type, reply id, errorType)
        ("{not json", "error", None, "BadRequestException"),
        ("[1,2]", "error", None, "BadRequestException"),
        (
            r#"{"type":"launch","id":"a"}"#,
            "error",
            None,
            "UnsupportedOperation",
        ),
        (r#"{"id":"a"}"#, "error", None, "UnsupportedOperation"),
        (
            r#"{"type":"subscribe","channel":"/default/a"}"#,
            "error",
            None,
            "BadRequestException",
        ),
        (
            r#"{"type":"subscribe","id":"bad id!","channel":"/default/a"}"#,
            "error",
            None,
            "BadRequestException",
        ),
        (
            r#"{"type":"subscribe","id":7,"channel":"/default/a"}"#,
            "error",
            None,
            "BadRequestException",
        ),
        (
            r#"{"type":"subscribe","id":"s","channel":"/default/a b"}"#,
            "subscribe_error",
            Some("s"),
            "BadRequestException",
        ),
        (
            r#"{"type":"subscribe","id":"s","channel":"/nope/a"}"#,
            "subscribe_error",
            Some("s"),
            "UnauthorizedException",
        ),
        (
            r#"{"type":"subscribe","id":"s","channel":"/default/*/a"}"#,
            "subscribe_error",
            Some("s"),
            "BadRequestException",
        ),
        (
            r#"{"type":"subscribe","id":"s","channel":"/default/a","authorization":{"x-api-key":"da2-bad00000"}}"#,
            "subscribe_error",
            Some("s"),
            "UnauthorizedException",
        ),
        (
            r#"{"type":"unsubscribe","id":"never"}"#,
            "unsubscribe_error",
            Some("never"),
            "UnknownOperationError",
        ),
        (
            r#"{"type":"publish","id":"p","channel":"/default/*","events":["1"]}"#,
            "publish_error",
            Some("p"),
            "BadRequestException",
        ),
        (
            r#"{"type":"publish","id":"p","channel":"/default/a","events":[]}"#,
            "publish_error",
            Some("p"),
            "BadRequestException",
        ),
        (
            r#"{"type":"publish","id":"p","channel":"/default/a","events":["1","2","3","4","5","6"]}"#,
            "publish_error",
            Some("p"),
            "BadRequestException",
        ),
        (
            r#"{"type":"publish","id":"p","channel":"/default/a","events":["not json"]}"#,
            "publish_error",
            Some("p"),
            "BadRequestException",
        ),
        (
            r#"{"type":"publish","id":"p","channel":"/default/a","events":[{"a":1}]}"#,
            "publish_error",
            Some("p"),
            "BadRequestException",
        ),
        (
            r#"{"type":"publish","id":"p","channel":"/default/a","events":"1"}"#,
            "publish_error",
            Some("p"),
            "BadRequestException",
        ),
        (
            r#"{"type":"publish","id":"p","channel":"/nope/a","events":["1"]}"#,
            "publish_error",
            Some("p"),
            "UnauthorizedException",
        ),
        (
            r#"{"type":"publish","id":"p","channel":"/default/a","events":["1"],"authorization":{"x-api-key":"da2-bad00000"}}"#,
            "publish_error",
            Some("p"),
            "UnauthorizedException",
        ),
    ];
    for (i, (frame, kind, id, error)) in cases.iter().enumerate() {
        c.send_text(frame).await;
        let r = c.recv().await;
        assert_eq!(r["type"], *kind, "reply to {frame}: {r}");
        assert_eq!(r["id"].as_str(), *id, "reply id to {frame}: {r}");
        assert_eq!(error_type(&r), *error, "errorType for {frame}: {r}");
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        still_works(&mut c, &i.to_string()).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn duplicate_ids_oversize_events_and_the_subscription_limit() {
    let server = start(config()).await;
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("dup", "/default/a").await["type"],
        "subscribe_success"
    );
    let r = c.subscribe("dup", "/default/b").await;
    assert_eq!(
        (r["type"].as_str(), error_type(&r)),
        (Some("subscribe_error"), "BadRequestException")
    );
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("duplicated")
    );

    let big = format!("\"{}\"", "x".repeat(240 * 1024));
    let r = c.publish("big", "/default/a", &[json!(big)]).await;
    let r = if r["type"] == "data" {
        c.recv().await
    } else {
        r
    };
    assert_eq!(r["type"], "publish_error", "{r}");

    for i in 1..200 {
        let r = c
            .subscribe(&format!("s{i}"), &format!("/default/c{i}"))
            .await;
        assert_eq!(r["type"], "subscribe_success", "subscription {i}: {r}");
    }
    let r = c.subscribe("s200", "/default/one-too-many").await;
    assert_eq!(
        (r["type"].as_str(), error_type(&r)),
        (Some("subscribe_error"), "MaxSubscriptionsReachedError")
    );
    still_works(&mut c, "limit").await;
    server.stop().await;
}

#[tokio::test]
async fn publish_rate_limit_per_connection() {
    let server = start(config()).await;
    let mut c = Client::ready(&server).await;
    // 30 publishes sent at once: the burst of 25 passes, the rest are refused, none crash.
    for i in 0..30 {
        c.send(json!({"type": "publish", "id": format!("p{i}"), "channel": "/default/r", "events": ["1"], "authorization": {"x-api-key": KEY}})).await;
    }
    let mut refused = 0;
    for _ in 0..30 {
        let r = c.recv().await;
        if r["type"] == "publish_error" {
            assert_eq!(error_type(&r), "LimitExceededError");
            refused += 1;
        }
    }
    assert!(refused >= 4, "at least 4 of 30 refused, got {refused}");
    server.stop().await;
}

#[tokio::test]
async fn binary_and_invalid_frames() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = start(config()).await;
    let mut c = Client::ready(&server).await;
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let r = c.recv().await;
    assert_eq!(
        (r["type"].as_str(), error_type(&r)),
        (Some("error"), "BadRequestException")
    );
    still_works(&mut c, "binary").await;
    // A message over the size limit closes the connection with 1009, as RFC 6455 says.
    let huge = "x".repeat(1_300_000);
    let _ = c.ws.send(Message::text(huge)).await;
    let close = c.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
    server.stop().await;
}

#[tokio::test]
async fn http_publish_errors() {
    let server = start(config()).await;
    let ok = |events: Value| json!({"channel": "/default/a", "events": events});
    let cases: Vec<(Value, &str, u16, &str)> = vec![
        (
            ok(json!(["1"])),
            "da2-bad00000",
            401,
            "UnauthorizedException",
        ),
        (ok(json!(["1"])), "", 401, "UnauthorizedException"),
        (
            json!({"channel": "/default/a b", "events": ["1"]}),
            KEY,
            400,
            "BadRequestException",
        ),
        (
            json!({"channel": "/default/*", "events": ["1"]}),
            KEY,
            400,
            "BadRequestException",
        ),
        (
            json!({"channel": "/nope/a", "events": ["1"]}),
            KEY,
            401,
            "UnauthorizedException",
        ),
        (ok(json!([])), KEY, 400, "BadRequestException"),
        (
            ok(json!(["1", "2", "3", "4", "5", "6"])),
            KEY,
            400,
            "BadRequestException",
        ),
        (ok(json!(["{"])), KEY, 400, "BadRequestException"),
        (ok(json!([{"a": 1}])), KEY, 400, "BadRequestException"),
        (json!({"events": ["1"]}), KEY, 400, "BadRequestException"),
        (json!("just a string"), KEY, 400, "BadRequestException"),
    ];
    for (body, key, status, error) in cases {
        let (got, reply) = post(&server, key, &body).await;
        assert_eq!(got, status, "status for {body}: {reply}");
        assert_eq!(error_type(&reply), error, "errorType for {body}: {reply}");
    }
    // Oversized events fail one by one; the others are published.
    let big = format!("\"{}\"", "x".repeat(240 * 1024));
    let (status, reply) = post(&server, KEY, &ok(json!(["1", big]))).await;
    assert_eq!(status, 200);
    assert_eq!(reply["successful"][0]["index"], 0);
    assert_eq!(reply["failed"][0]["index"], 1);
    assert_eq!(reply["failed"][0]["code"], "EventTooLargeException");
    // Over 1.2 MB in total: 413.
    let body = json!({"channel": "/default/a", "events": [big.clone(), big.clone(), big.clone(), big.clone(), big.clone(), big]});
    let (status, reply) = post(&server, KEY, &body).await;
    assert_eq!(
        (status, error_type(&reply)),
        (413, "PayloadTooLargeException")
    );
    let (status, _, _) = http(&server, "POST", "/elsewhere", &[], b"").await;
    assert_eq!(status, 404);
    let (status, _, _) = http(&server, "GET", "/event/realtime", &[], b"").await;
    assert_eq!(
        status, 400,
        "a plain GET on the socket path is not an upgrade"
    );
    server.stop().await;
}
