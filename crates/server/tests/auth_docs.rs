//! The configuration `docs/authorization.md` documents, run as written (with the IdP and
//! webhook URLs pointed at the fixtures): every mode behaves as the documentation says.

mod common;

use common::auth::*;
use herald_testkit::jwt::{es256, now, rs256};
use herald_testkit::{Fixture, Idp};
use serde_json::json;

#[tokio::test]
async fn documented_configuration_works_for_every_mode() {
    let w = World::from_toml(documented_config).await;
    let t = now();
    let api_key = json!({"host": w.host(), "x-api-key": "da2-local-development-key"});
    let oidc = w.token_auth(&rs256(
        &json!({"iss": w.oidc.issuer(), "sub": "doc-user", "aud": "herald-web", "iat": t, "exp": t + 600}),
    ));
    let cognito_token = es256(
        &json!({"iss": w.cognito.issuer(), "sub": "doc-pool", "client_id": "1example23456789",
                "token_use": "access", "iat": t, "exp": t + 600}),
    );
    let cognito = w.token_auth(&cognito_token);
    let lambda = w.token_auth("Bearer allow-doc");
    let publisher = ("AKIAHERALDPUBLISHER", "change-me-publisher-secret");
    let reader = Key {
        id: "AKIAHERALDREADER",
        secret: "change-me-reader-secret",
        session_token: Some("optional-session-token"),
    };
    let events = vec!["\"doc\"".to_owned()];
    let chat = publish_body("/chat/room-1", &events);
    let dflt = publish_body("/default/a", &events);

    // Every mode connects.
    for auth in [
        &api_key,
        &oidc,
        &cognito,
        &lambda,
        &w.iam_auth(publisher, "{}"),
        &w.iam_auth(reader, "{}"),
    ] {
        let (_, ack) = w.connect(auth).await;
        assert_eq!(ack["type"], "connection_ack", "connect with {auth}: {ack}");
    }
    let mut c = w.ready(&api_key).await;

    // chat: OIDC and Lambda subscribe; OIDC and Cognito publish.
    for (id, auth) in [("o", &oidc), ("l", &lambda)] {
        assert_success(
            &subscribe(&mut c, id, "/chat/*", auth).await,
            "subscribe_success",
            id,
        );
    }
    for (id, auth) in [
        ("k", &api_key),
        ("c", &cognito),
        ("i", &w.iam_auth(reader, &subscribe_body("/chat/*"))),
    ] {
        assert_refused(
            &subscribe(&mut c, id, "/chat/*", auth).await,
            "subscribe_error",
            id,
        );
    }
    assert_success(
        &publish(&mut c, "p", "/chat/room-1", &events, &oidc).await,
        "publish_success",
        "p",
    );
    assert_eq!(
        post(&w, &chat, &[("Authorization", &cognito_token)])
            .await
            .0,
        200
    );
    for _ in 0..4 {
        assert_eq!(c.data().await["event"], "\"doc\"");
    }
    assert_refused(
        &publish(&mut c, "x", "/chat/room-1", &events, &lambda).await,
        "publish_error",
        "x",
    );
    assert_eq!(post_iam(&w, publisher, &chat, false).await.0, 401);
    assert_http_refused(&post(&w, &chat, &[("x-api-key", "da2-local-development-key")]).await);

    // default: every mode subscribes (the reader key with its session token); API keys and the
    // publisher key publish.
    for (id, auth) in [
        ("dk", api_key.clone()),
        ("do", oidc.clone()),
        ("dc", cognito.clone()),
        ("dl", lambda.clone()),
        ("di", w.iam_auth(reader, &subscribe_body("/default/a"))),
    ] {
        assert_success(
            &subscribe(&mut c, id, "/default/a", &auth).await,
            "subscribe_success",
            id,
        );
    }
    // The publisher key has no EventSubscribe.
    assert_refused(
        &subscribe(
            &mut c,
            "dp",
            "/default/a",
            &w.iam_auth(publisher, &subscribe_body("/default/a")),
        )
        .await,
        "subscribe_error",
        "dp",
    );
    assert_success(
        &publish(
            &mut c,
            "pi",
            "/default/a",
            &events,
            &w.iam_auth(publisher, &dflt),
        )
        .await,
        "publish_success",
        "pi",
    );
    assert_eq!(post_iam(&w, publisher, &dflt, false).await.0, 200);
    for _ in 0..10 {
        assert_eq!(c.data().await["event"], "\"doc\"");
    }
    assert_http_refused(&post(&w, &dflt, &[("Authorization", &cognito_token)]).await);

    // The Lambda provider: tokens must match identity_validation_expression before any call,
    // and every call carries the configured webhook header.
    let calls = w.hook.bodies("/authorize").len();
    assert_refused(
        &subscribe(&mut c, "nb", "/chat/*", &w.token_auth("allow-doc")).await,
        "subscribe_error",
        "nb",
    );
    assert_eq!(w.hook.bodies("/authorize").len(), calls);
    let secrets = w
        .hook
        .header_values("/authorize", "x-herald-webhook-secret");
    assert_eq!(secrets.len(), calls);
    assert!(secrets.iter().all(|v| v == "change-me"));
    w.stop().await;
}

const DOCS: &str = include_str!("../../../docs/authorization.md");

/// Every TOML example of docs/authorization.md, concatenated, with the IdP and webhook URLs
/// pointed at the fixtures.
fn documented_config(oidc: &Idp, cognito: &Idp, hook: &Fixture) -> String {
    let mut blocks = String::new();
    let mut inside = false;
    for line in DOCS.lines() {
        match (inside, line.trim()) {
            (false, "```toml") => inside = true,
            (true, "```") => inside = false,
            (true, _) => {
                blocks.push_str(line);
                blocks.push('\n');
            }
            _ => {}
        }
    }
    let replacements = [
        (
            r#"issuer = "https://idp.example.com/realms/herald""#,
            format!(r#"issuer = "{}""#, oidc.issuer()),
        ),
        (
            r#"# issuer = "http://127.0.0.1:9000/realms/herald""#,
            format!(r#"issuer = "{}""#, cognito.issuer()),
        ),
        (
            r#"authorizer_url = "http://127.0.0.1:9100/authorize""#,
            format!(r#"authorizer_url = "{}""#, hook.url("/authorize")),
        ),
    ];
    for (from, to) in replacements {
        assert!(blocks.contains(from), "docs still contain {from}");
        blocks = blocks.replace(from, &to);
    }
    format!("listen = \"127.0.0.1:0\"\nshutdown_grace_ms = 500\n{blocks}")
}
