//! Lambda authorizer webhook: request shape, allow/deny, caching and TTL override, the
//! validation expression, and every failure (hang, garbage, errors) denying.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use herald_auth::lambda::{LambdaAuthorizer, LambdaConfig, LambdaRequest};
use herald_auth::{AuthError, Identity, Operation};
use herald_testkit::{Fixture, Reply, serve};
use serde_json::{Map, Value, json};

fn config(url: String, ttl: u64) -> LambdaConfig {
    LambdaConfig {
        authorizer_url: url,
        authorizer_result_ttl_in_seconds: ttl,
        identity_validation_expression: None,
        timeout_ms: 2_000,
        api_id: "api-123".into(),
        account_id: "111122223333".into(),
        webhook_headers: BTreeMap::new(),
        max_cache_entries: 100,
    }
}

fn headers() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("x-forwarded-for".into(), json!("10.1.2.3"));
    m
}

fn publish<'a>(token: &'a str, channel: &'a str, h: &'a Map<String, Value>) -> LambdaRequest<'a> {
    LambdaRequest {
        token,
        operation: Operation::Publish,
        namespace: channel.trim_start_matches('/').split('/').next(),
        channel: Some(channel),
        request_id: "req-1",
        request_headers: h,
    }
}

/// An authorizer for `url` that sends the webhook secret header `x-herald-secret: s3cret`.
fn with_secret_header(url: String) -> LambdaAuthorizer {
    let mut cfg = config(url, 0);
    cfg.webhook_headers
        .insert("x-herald-secret".into(), "s3cret".into());
    LambdaAuthorizer::new(cfg).unwrap()
}

/// A webhook that allows tokens starting with "good" and answers with `extra` merged in.
async fn webhook(extra: Value) -> Fixture {
    serve(move |_, body| {
        let req: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let token = req["authorizationToken"].as_str().unwrap_or("");
        let mut resp = json!({
            "isAuthorized": token.starts_with("good"),
            "handlerContext": {"user": token, "op": req["requestContext"]["operation"]},
        });
        if let (Some(r), Some(e)) = (resp.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        Reply::Json(200, resp.to_string())
    })
    .await
}

#[tokio::test]
async fn sends_the_appsync_request_and_returns_the_handler_context() {
    let server = webhook(json!({})).await;
    let auth = with_secret_header(server.url("/authorize"));
    let h = headers();
    let id = auth
        .authorize(&publish("good-token", "/news/latest", &h))
        .await
        .unwrap();
    let Identity::Lambda(l) = &id else {
        panic!("lambda identity")
    };
    assert_eq!(l.handler_context["user"], "good-token");
    assert_eq!(
        id.to_context_value(&[])["handlerContext"]["op"],
        "EVENT_PUBLISH"
    );

    let hit = server.last().unwrap();
    assert_eq!(
        (hit.method.as_str(), hit.path.as_str()),
        ("POST", "/authorize")
    );
    assert!(
        hit.headers
            .iter()
            .any(|(k, v)| k == "x-herald-secret" && v == "s3cret")
    );
    assert!(
        hit.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json")
    );
    let sent: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(
        sent,
        json!({
            "authorizationToken": "good-token",
            "requestContext": {
                "apiId": "api-123",
                "accountId": "111122223333",
                "requestId": "req-1",
                "operation": "EVENT_PUBLISH",
                "channelNamespaceName": "news",
                "channel": "/news/latest",
            },
            "requestHeaders": {"x-forwarded-for": "10.1.2.3"},
        })
    );

    // Connect: namespace and channel are null.
    let connect = LambdaRequest {
        operation: Operation::Connect,
        namespace: None,
        channel: None,
        ..publish("good", "/x", &h)
    };
    auth.authorize(&connect).await.unwrap();
    let sent: Value = serde_json::from_str(&server.last().unwrap().body).unwrap();
    assert_eq!(sent["requestContext"]["operation"], "EVENT_CONNECT");
    assert_eq!(sent["requestContext"]["channelNamespaceName"], Value::Null);
    assert_eq!(sent["requestContext"]["channel"], Value::Null);
}

#[tokio::test]
async fn deny_is_unauthorized() {
    let server = webhook(json!({})).await;
    let auth = LambdaAuthorizer::new(config(server.url("/"), 0)).unwrap();
    let h = headers();
    let err = auth
        .authorize(&publish("bad-token", "/news/a", &h))
        .await
        .unwrap_err();
    assert_eq!(err, AuthError::AuthorizerDenied);
    assert_eq!(
        (err.error_type(), err.http_status()),
        ("UnauthorizedException", 401)
    );
    assert!(!err.is_server_fault());
    assert!(!err.to_string().contains("bad-token"));
}

#[tokio::test]
async fn decisions_are_cached_per_token_operation_and_channel() {
    let server = webhook(json!({})).await;
    let auth = LambdaAuthorizer::new(config(server.url("/"), 300)).unwrap();
    let h = headers();
    auth.authorize(&publish("good-1", "/news/a", &h))
        .await
        .unwrap();
    auth.authorize(&publish("good-1", "/news/a", &h))
        .await
        .unwrap();
    assert_eq!(server.count(), 1);
    auth.authorize(&publish("good-1", "/news/b", &h))
        .await
        .unwrap();
    assert_eq!(server.count(), 2);
    let sub = LambdaRequest {
        operation: Operation::Subscribe,
        ..publish("good-1", "/news/a", &h)
    };
    auth.authorize(&sub).await.unwrap();
    assert_eq!(server.count(), 3);
    auth.authorize(&publish("good-2", "/news/a", &h))
        .await
        .unwrap();
    assert_eq!(server.count(), 4);
    // Denials are cached too.
    for _ in 0..3 {
        assert_eq!(
            auth.authorize(&publish("bad", "/news/a", &h)).await,
            Err(AuthError::AuthorizerDenied)
        );
    }
    assert_eq!(server.count(), 5);
}

#[tokio::test]
async fn ttl_zero_means_no_cache_and_ttl_override_wins() {
    let h = headers();
    let server = webhook(json!({})).await;
    let auth = LambdaAuthorizer::new(config(server.url("/"), 0)).unwrap();
    auth.authorize(&publish("good", "/n/a", &h)).await.unwrap();
    auth.authorize(&publish("good", "/n/a", &h)).await.unwrap();
    assert_eq!(server.count(), 2);

    let server = webhook(json!({"ttlOverride": 60})).await;
    let auth = LambdaAuthorizer::new(config(server.url("/"), 0)).unwrap();
    auth.authorize(&publish("good", "/n/a", &h)).await.unwrap();
    auth.authorize(&publish("good", "/n/a", &h)).await.unwrap();
    assert_eq!(server.count(), 1);

    let server = webhook(json!({"ttlOverride": 0})).await;
    let auth = LambdaAuthorizer::new(config(server.url("/"), 300)).unwrap();
    auth.authorize(&publish("good", "/n/a", &h)).await.unwrap();
    auth.authorize(&publish("good", "/n/a", &h)).await.unwrap();
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn validation_expression_is_checked_before_calling() {
    let server = webhook(json!({})).await;
    let mut cfg = config(server.url("/"), 0);
    cfg.identity_validation_expression = Some("good-[0-9]+".into());
    let auth = LambdaAuthorizer::new(cfg).unwrap();
    let h = headers();
    // Anchored: a token that merely contains a match is refused.
    for token in ["good-abc", "xgood-1", "good-1x", ""] {
        assert!(
            auth.authorize(&publish(token, "/n/a", &h)).await.is_err(),
            "{token}"
        );
    }
    assert_eq!(server.count(), 0);
    auth.authorize(&publish("good-42", "/n/a", &h))
        .await
        .unwrap();
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_hanging_webhook_times_out_and_denies() {
    let server = serve(|_, _| Reply::Hang).await;
    let mut cfg = config(server.url("/"), 300);
    cfg.timeout_ms = 200;
    let auth = LambdaAuthorizer::new(cfg).unwrap();
    let h = headers();
    let err = auth
        .authorize(&publish("good", "/n/a", &h))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::AuthorizerUnavailable(ref why) if why.contains("timed out")),
        "{err}"
    );
    assert!(err.is_server_fault());
    assert_eq!(err.http_status(), 401);
    // Failures are not cached: the next call tries again.
    let _ = auth.authorize(&publish("good", "/n/a", &h)).await;
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn garbage_responses_deny() {
    let reply: Arc<Mutex<(u16, String)>> = Arc::new(Mutex::new((200, String::new())));
    let r = Arc::clone(&reply);
    let server = serve(move |_, _| {
        let (status, body) = r.lock().unwrap().clone();
        Reply::Raw(status, "application/json", body)
    })
    .await;
    let auth = LambdaAuthorizer::new(config(server.url("/"), 300)).unwrap();
    let h = headers();
    type Expect = fn(&AuthError) -> bool;
    let cases: [(u16, &str, Expect); 7] = [
        (200, "<html>not json</html>", |e| {
            matches!(e, AuthError::AuthorizerInvalidResponse(_))
        }),
        (200, "{}", |e| {
            matches!(e, AuthError::AuthorizerInvalidResponse(_))
        }),
        (200, r#"{"isAuthorized":"true"}"#, |e| {
            matches!(e, AuthError::AuthorizerInvalidResponse(_))
        }),
        (
            200,
            r#"{"isAuthorized":true,"handlerContext":"nope"}"#,
            |e| matches!(e, AuthError::AuthorizerInvalidResponse(_)),
        ),
        (200, r#"[true]"#, |e| {
            matches!(e, AuthError::AuthorizerInvalidResponse(_))
        }),
        (500, r#"{"isAuthorized":true}"#, |e| {
            matches!(e, AuthError::AuthorizerUnavailable(_))
        }),
        (403, r#"{"isAuthorized":true}"#, |e| {
            matches!(e, AuthError::AuthorizerUnavailable(_))
        }),
    ];
    for (status, body, expect) in cases {
        *reply.lock().unwrap() = (status, body.to_owned());
        let err = auth
            .authorize(&publish("good", "/n/a", &h))
            .await
            .unwrap_err();
        assert!(expect(&err), "{status} {body}: {err}");
    }
    // An oversized body is refused without buffering it all.
    *reply.lock().unwrap() = (
        200,
        format!(
            r#"{{"isAuthorized":true,"handlerContext":{{"x":"{}"}}}}"#,
            "a".repeat(100_000)
        ),
    );
    assert!(matches!(
        auth.authorize(&publish("good", "/n/a", &h)).await,
        Err(AuthError::AuthorizerUnavailable(_))
    ));
    // A good answer after all that still works (nothing bad was cached).
    *reply.lock().unwrap() = (200, r#"{"isAuthorized":true}"#.to_owned());
    let id = auth.authorize(&publish("good", "/n/a", &h)).await.unwrap();
    assert!(matches!(id, Identity::Lambda(ref l) if l.handler_context.is_empty()));
}

/// A redirect is a failure: following it would hand the webhook's secret headers and the
/// client's token to wherever it points.
#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = webhook(json!({})).await;
    for status in [301, 302, 307, 308] {
        let to = elsewhere.url("/steal");
        let server = serve(move |_, _| Reply::Redirect(status, to.clone())).await;
        let auth = with_secret_header(server.url("/authorize"));
        let h = headers();
        let err = auth
            .authorize(&publish("good", "/n/a", &h))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::AuthorizerUnavailable(ref why) if why.contains("redirect") && why.contains(&status.to_string())),
            "{status}: {err}"
        );
        assert_eq!(server.count(), 1);
    }
    assert_eq!(elsewhere.count(), 0, "the redirect target was called");
}

/// Logs and `Debug` show the webhook's scheme, host and port only: its path or query may hold a
/// secret.
#[test]
fn the_webhook_url_is_shown_as_its_origin_only() {
    let cfg = config(
        "https://user:pw@hooks.example/t0ken-path?key=s3cret".into(),
        0,
    );
    let shown = format!("{:?}", LambdaAuthorizer::new(cfg).unwrap());
    assert!(shown.contains("https://hooks.example:443"), "{shown}");
    for secret in ["t0ken", "s3cret", "user", "pw@"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[tokio::test]
async fn unreachable_webhook_denies() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let auth = LambdaAuthorizer::new(config(format!("http://{closed}/"), 0)).unwrap();
    let h = headers();
    assert!(matches!(
        auth.authorize(&publish("good", "/n/a", &h)).await,
        Err(AuthError::AuthorizerUnavailable(_))
    ));
}

#[test]
fn config_is_validated() {
    assert!(LambdaAuthorizer::new(config("ftp://x".into(), 0)).is_err());
    assert!(LambdaAuthorizer::new(config("http://127.0.0.1:1/".into(), 3601)).is_err());
    let mut cfg = config("http://127.0.0.1:1/".into(), 0);
    cfg.identity_validation_expression = Some("(unclosed".into());
    assert!(LambdaAuthorizer::new(cfg.clone()).is_err());
    cfg.identity_validation_expression = None;
    cfg.webhook_headers
        .insert("authorization".into(), "very-secret".into());
    assert!(!format!("{cfg:?}").contains("very-secret"));
}
