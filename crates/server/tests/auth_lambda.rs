//! The Lambda-style authorizer webhook end to end: the request AppSync sends it, its refusals,
//! and a webhook that never answers not holding up delivery on the same connection.

mod common;

use common::KEY;
use common::auth::*;
use serde_json::{Value, json};

#[tokio::test]
async fn lambda_authorizer_end_to_end() {
    let w = World::start().await;
    token_mode_end_to_end(&w, "allow-carol").await;
    // The webhook was asked once per operation, with AppSync's request shape.
    let calls = w.hook.bodies("/authorize");
    let ops: Vec<&str> = calls
        .iter()
        .map(|c| c["requestContext"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "EVENT_CONNECT",
            "EVENT_SUBSCRIBE",
            "EVENT_PUBLISH",
            "EVENT_PUBLISH"
        ]
    );
    assert!(
        calls
            .iter()
            .all(|c| c["authorizationToken"] == "allow-carol")
    );
    assert_eq!(calls[0]["requestContext"]["channel"], Value::Null);
    assert_eq!(
        calls[1]["requestContext"]["channelNamespaceName"],
        "default"
    );
    assert_eq!(calls[1]["requestContext"]["channel"], "/default/*");
    assert_eq!(calls[2]["requestContext"]["channel"], "/default/room");
    assert_eq!(calls[0]["requestHeaders"]["host"], w.host());
    // The token is not repeated among the headers.
    assert!(
        calls
            .iter()
            .all(|c| c["requestHeaders"].get("authorization").is_none())
    );
    w.stop().await;
}

#[tokio::test]
async fn webhook_refusals() {
    let w = World::start().await;
    assert_connect_refused(&w, &w.token_auth("deny-ivan")).await;
    let mut c = w.ready(&w.token_auth("readonly-judy")).await;
    let ro = w.token_auth("readonly-judy");
    // Allowed to subscribe, not to publish.
    assert_success(
        &subscribe(&mut c, "s", "/default/a", &ro).await,
        "subscribe_success",
        "s",
    );
    let events = vec!["1".to_owned()];
    assert_refused(
        &publish(&mut c, "p", "/default/a", &events, &ro).await,
        "publish_error",
        "p",
    );
    let body = publish_body("/default/a", &events);
    assert_http_refused(&post(&w, &body, &[("Authorization", "readonly-judy")]).await);
    // An outright denial.
    let deny = w.token_auth("deny-ivan");
    assert_refused(
        &subscribe(&mut c, "d", "/default/a", &deny).await,
        "subscribe_error",
        "d",
    );
    assert_http_refused(&post(&w, &body, &[("Authorization", "deny-ivan")]).await);
    w.stop().await;
}

/// Delivery to a connection's existing subscriptions must not wait for another operation's
/// authorization (a webhook or JWKS fetch can take up to its timeout).
#[tokio::test]
async fn slow_authorization_does_not_delay_delivery() {
    // The webhook never answers `hang-*`, and Herald waits longer than this test does.
    let w = World::from_toml(|o, c, h| {
        let config = test_config(ALL_MODES, o, c, h);
        assert!(config.contains("timeout_ms = 1500"));
        config.replace("timeout_ms = 1500", "timeout_ms = 60000")
    })
    .await;
    let key_auth = w.key_auth();
    let mut c = w.ready(&key_auth).await;
    assert_success(
        &subscribe(&mut c, "s1", "/default/a", &key_auth).await,
        "subscribe_success",
        "s1",
    );
    // A subscribe whose authorization never completes.
    c.send(json!({"type": "subscribe", "id": "h", "channel": "/default/b", "authorization": w.token_auth("hang-x")})).await;
    let body = publish_body("/default/a", &["1".to_owned()]);
    let (status, _, _) = post(&w, &body, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 200);
    // Within the harness's wait bound, not after the 60 s authorizer timeout.
    assert_eq!(next_event(&mut c, "s1").await, json!(1));
    w.stop().await;
}
