//! SigV4 (IAM) end to end, signed by the `aws-sigv4` crate: the WebSocket form amplify-js
//! builds, HTTP publish signed over the real request, key grants, session tokens, and the
//! credentials sent as real upgrade headers.

mod common;

use common::auth::*;
use herald_testkit::sigv4::{Signer, ws_headers};
use serde_json::json;

#[tokio::test]
async fn iam_sigv4_end_to_end() {
    let w = World::start().await;
    let key = (AK_ALL, SK_ALL);
    let mut c = w.ready(&w.iam_auth(key, "{}")).await;
    let sub = w.iam_auth(key, &subscribe_body("/default/*"));
    assert_success(
        &subscribe(&mut c, "s1", "/default/*", &sub).await,
        "subscribe_success",
        "s1",
    );
    // Events with characters JSON escapes: the rebuilt body must match byte for byte.
    let events = vec![
        json!({"text": "héllo \"wörld\" / ✓\n", "n": 1}).to_string(),
        "\"plain\"".to_owned(),
    ];
    let auth = w.iam_auth(key, &publish_body("/default/room", &events));
    assert_success(
        &publish(&mut c, "p1", "/default/room", &events, &auth).await,
        "publish_success",
        "p1",
    );
    assert_eq!(
        next_event(&mut c, "s1").await,
        json!({"text": "héllo \"wörld\" / ✓\n", "n": 1})
    );
    assert_eq!(next_event(&mut c, "s1").await, json!("plain"));
    // The same signature with other events is refused: the events are covered.
    let tampered = vec!["\"tampered\"".to_owned(), "\"plain\"".to_owned()];
    assert_refused(
        &publish(&mut c, "p2", "/default/room", &tampered, &auth).await,
        "publish_error",
        "p2",
    );
    // HTTP publish signed over the real request, with and without x-amz-content-sha256.
    for sha in [false, true] {
        let body = publish_body("/default/room", &[json!({"http": sha}).to_string()]);
        let (status, reply) = post_iam(&w, key, &body, sha).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(next_event(&mut c, "s1").await, json!({"http": sha}));
    }
    w.stop().await;
}

#[tokio::test]
async fn sigv4_refusals() {
    let w = World::start().await;
    // Connect with a key that may do everything, but only in `default`.
    let dflt = (AK_DEFAULT, SK_DEFAULT);
    let mut c = w.ready(&w.iam_auth(dflt, "{}")).await;
    // `split` takes IAM for publishing, but this key is not granted there; AK_ALL is.
    let events = vec!["1".to_owned()];
    let split = publish_body("/split/a", &events);
    assert_refused(
        &publish(&mut c, "p", "/split/a", &events, &w.iam_auth(dflt, &split)).await,
        "publish_error",
        "p",
    );
    assert_eq!(post_iam(&w, dflt, &split, false).await.0, 401);
    assert_eq!(post_iam(&w, (AK_ALL, SK_ALL), &split, false).await.0, 200);
    // The reader key may subscribe but not publish.
    let reader = (AK_READER, SK_READER);
    assert_success(
        &subscribe(
            &mut c,
            "r",
            "/default/a",
            &w.iam_auth(reader, &subscribe_body("/default/a")),
        )
        .await,
        "subscribe_success",
        "r",
    );
    let body = publish_body("/default/a", &events);
    assert_refused(
        &publish(
            &mut c,
            "rp",
            "/default/a",
            &events,
            &w.iam_auth(reader, &body),
        )
        .await,
        "publish_error",
        "rp",
    );
    assert_eq!(post_iam(&w, reader, &body, false).await.0, 401);
    // A wrong secret, an unknown key, and a signature over another channel.
    let wrong = (AK_ALL, "not-the-secret");
    assert_connect_refused(&w, &w.iam_auth(wrong, "{}")).await;
    assert_connect_refused(&w, &w.iam_auth(("AKIAUNKNOWN", "x"), "{}")).await;
    assert_refused(
        &subscribe(
            &mut c,
            "o",
            "/default/b",
            &w.iam_auth(dflt, &subscribe_body("/default/a")),
        )
        .await,
        "subscribe_error",
        "o",
    );
    assert_eq!(post_iam(&w, wrong, &body, false).await.0, 401);
    // The synthetic connect body signed for a subscribe is not a subscribe signature.
    assert_refused(
        &subscribe(&mut c, "c", "/default/a", &w.iam_auth(dflt, "{}")).await,
        "subscribe_error",
        "c",
    );
    w.stop().await;
}

#[tokio::test]
async fn iam_session_token_is_required_when_configured() {
    let w = World::start().await;
    let key = Key {
        id: AK_SESSION,
        secret: SK_SESSION,
        session_token: Some(SESSION_TOKEN),
    };
    let without = Key {
        session_token: None,
        ..key
    };
    let wrong = Key {
        session_token: Some("another-token"),
        ..key
    };
    let mut c = w.ready(&w.iam_auth(key, "{}")).await;
    assert_eq!(
        w.iam_auth(key, "{}")["x-amz-security-token"],
        SESSION_TOKEN,
        "the token travels in the auth object"
    );
    assert_success(
        &subscribe(
            &mut c,
            "s",
            "/default/t",
            &w.iam_auth(key, &subscribe_body("/default/t")),
        )
        .await,
        "subscribe_success",
        "s",
    );
    let body = publish_body("/default/t", &["\"with-token\"".to_owned()]);
    assert_eq!(post_iam(&w, key, &body, false).await.0, 200);
    assert_eq!(next_event(&mut c, "s").await, json!("with-token"));
    for bad in [without, wrong] {
        assert_connect_refused(&w, &w.iam_auth(bad, "{}")).await;
        assert_refused(
            &subscribe(
                &mut c,
                "b",
                "/default/t",
                &w.iam_auth(bad, &subscribe_body("/default/t")),
            )
            .await,
            "subscribe_error",
            "b",
        );
        assert_eq!(post_iam(&w, bad, &body, false).await.0, 401);
    }
    w.stop().await;
}

#[tokio::test]
async fn connect_credentials_as_upgrade_headers() {
    let w = World::start().await;
    // SigV4 over the connect form: the upgrade's own Host header is the signed host.
    let base = ws_headers(&w.host());
    let url = format!("https://{}/event", w.host());
    let mut headers: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| *k != "host")
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let sign = |secret| Signer::new((AK_ALL, secret), REGION).sign("POST", &url, &base, b"{}");
    headers.extend(sign(SK_ALL));
    let (_, ack) = w.connect_with_headers(&headers).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    // The same headers signed with the wrong secret are refused.
    let mut bad: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k != "authorization" && k != "x-amz-date")
        .cloned()
        .collect();
    bad.extend(sign("not-the-secret"));
    let (_, e) = w.connect_with_headers(&bad).await;
    assert_eq!(e["errors"][0]["errorType"], UNAUTHORIZED, "{e}");
    // A JWT and a Lambda token in `Authorization`.
    for token in [oidc_token(&w.oidc, "upgrade"), "allow-upgrade".to_owned()] {
        let (_, ack) = w
            .connect_with_headers(&[("authorization".into(), token)])
            .await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }
    w.stop().await;
}
