//! Several modes in one server: per-namespace mode lists, one connection with a different mode
//! per subscription, `connection_auth_modes`, and modes that are named or used but not
//! configured.

mod common;

use common::auth::*;
use common::{KEY, start};
use serde_json::json;

#[tokio::test]
async fn namespace_with_different_publish_and_subscribe_modes() {
    let w = World::start().await;
    let oidc = oidc_token(&w.oidc, "dave");
    let oidc_auth = w.token_auth(&oidc);
    let mut c = w.ready(&oidc_auth).await;
    // Subscribe: OIDC and Lambda yes, IAM and API key no.
    assert_success(
        &subscribe(&mut c, "o", "/split/a", &oidc_auth).await,
        "subscribe_success",
        "o",
    );
    assert_success(
        &subscribe(&mut c, "l", "/split/*", &w.token_auth("allow-erin")).await,
        "subscribe_success",
        "l",
    );
    let iam_sub = w.iam_auth((AK_ALL, SK_ALL), &subscribe_body("/split/a"));
    assert_refused(
        &subscribe(&mut c, "i", "/split/a", &iam_sub).await,
        "subscribe_error",
        "i",
    );
    let key_auth = w.key_auth();
    assert_refused(
        &subscribe(&mut c, "k", "/split/a", &key_auth).await,
        "subscribe_error",
        "k",
    );
    // Publish: IAM yes; OIDC, Lambda and API key no (socket and HTTP).
    let events = vec!["\"from-iam\"".to_owned()];
    let body = publish_body("/split/a", &events);
    let iam_pub = w.iam_auth((AK_ALL, SK_ALL), &body);
    assert_success(
        &publish(&mut c, "p", "/split/a", &events, &iam_pub).await,
        "publish_success",
        "p",
    );
    // Both subscriptions match; take the two data frames in either order.
    let mut got = [c.data().await, c.data().await];
    got.sort_by_key(|f| f["id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(got[0]["id"], "l");
    assert_eq!(got[1]["id"], "o");
    for auth in [&oidc_auth, &w.token_auth("allow-erin"), &key_auth] {
        assert_refused(
            &publish(&mut c, "x", "/split/a", &events, auth).await,
            "publish_error",
            "x",
        );
    }
    assert_http_refused(&post(&w, &body, &[("Authorization", &oidc)]).await);
    assert_http_refused(&post(&w, &body, &[("Authorization", "allow-erin")]).await);
    assert_http_refused(&post(&w, &body, &[("x-api-key", KEY)]).await);
    assert_eq!(post_iam(&w, (AK_ALL, SK_ALL), &body, false).await.0, 200);
    let mut got = [c.data().await, c.data().await];
    got.sort_by_key(|f| f["id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(got[0]["event"], "\"from-iam\"");
    assert_eq!(got[1]["event"], "\"from-iam\"");
    // The webhook was never asked about a publish here: the mode was refused before it.
    assert!(
        w.hook
            .bodies("/authorize")
            .iter()
            .all(|c| c["requestContext"]["operation"] != "EVENT_PUBLISH")
    );
    w.stop().await;
}

#[tokio::test]
async fn one_connection_different_modes_per_subscription() {
    let w = World::start().await;
    // Connected with an API key; each subscription brings its own credential.
    let mut c = w.ready(&w.key_auth()).await;
    let subs = [
        ("oidc", w.token_auth(&oidc_token(&w.oidc, "frank"))),
        ("pool", w.token_auth(&cognito_token(&w.cognito, "gina"))),
        ("lambda", w.token_auth("allow-hank")),
        (
            "iam",
            w.iam_auth((AK_DEFAULT, SK_DEFAULT), &subscribe_body("/default/multi")),
        ),
    ];
    for (id, auth) in &subs {
        assert_success(
            &subscribe(&mut c, id, "/default/multi", auth).await,
            "subscribe_success",
            id,
        );
    }
    let body = publish_body("/default/multi", &["{\"all\":true}".to_owned()]);
    let (status, reply, _) = post(&w, &body, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 200, "{reply}");
    let mut ids = Vec::new();
    for _ in 0..subs.len() {
        let f = c.data().await;
        assert_eq!(f["type"], "data", "{f}");
        assert_eq!(f["event"], "{\"all\":true}");
        ids.push(f["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["iam", "lambda", "oidc", "pool"]);
    // A subscription without its own authorization uses the connection's (the API key).
    c.send(json!({"type": "subscribe", "id": "inherit", "channel": "/default/multi"}))
        .await;
    assert_success(&c.reply().await, "subscribe_success", "inherit");
    w.stop().await;
}

#[tokio::test]
async fn modes_left_out_of_connection_auth_modes_cannot_connect() {
    // Only API keys may connect; every provider mode is still configured for operations.
    let w = World::with_connection_modes(r#"["API_KEY"]"#).await;
    assert_connect_refused(&w, &w.token_auth(&oidc_token(&w.oidc, "k"))).await;
    assert_connect_refused(&w, &w.token_auth(&cognito_token(&w.cognito, "k"))).await;
    assert_connect_refused(&w, &w.token_auth("allow-kate")).await;
    assert_connect_refused(&w, &w.iam_auth((AK_ALL, SK_ALL), "{}")).await;
    // The webhook was not even asked.
    assert!(w.hook.bodies("/authorize").is_empty());
    // ...but once connected with a key, they work per operation.
    let mut c = w.ready(&w.key_auth()).await;
    assert_success(
        &subscribe(&mut c, "s", "/default/a", &w.token_auth("allow-kate")).await,
        "subscribe_success",
        "s",
    );
    w.stop().await;
}

#[tokio::test]
async fn every_provider_mode_is_refused_when_not_configured() {
    // API keys only: no [[auth.providers]] at all.
    let server = start(common::config()).await;
    let host = server.addr.to_string();
    let (oidc, cognito, hook) = World::services().await;
    let tokens = [
        oidc_token(&oidc, "x"),
        cognito_token(&cognito, "x"),
        "allow-x".to_owned(),
    ];
    let body = publish_body("/default/a", &["1".to_owned()]);
    let w = World {
        oidc,
        cognito,
        hook,
        server,
    };
    let mut iam_auths = vec![w.iam_auth((AK_ALL, SK_ALL), "{}")];
    iam_auths.extend(
        tokens
            .iter()
            .map(|t| json!({"host": host, "Authorization": t})),
    );
    for auth in &iam_auths {
        assert_connect_refused(&w, auth).await;
    }
    let mut c = w.ready(&json!({"host": host, "x-api-key": KEY})).await;
    for auth in &iam_auths {
        assert_refused(
            &subscribe(&mut c, "s", "/default/a", auth).await,
            "subscribe_error",
            "s",
        );
    }
    for token in &tokens {
        assert_http_refused(&post(&w, &body, &[("Authorization", token)]).await);
    }
    assert_eq!(post_iam(&w, (AK_ALL, SK_ALL), &body, false).await.0, 401);
    assert!(w.hook.bodies("/authorize").is_empty());
    assert_eq!(w.oidc.server.count(), 0, "no IdP is asked");
    w.stop().await;
}

#[tokio::test]
async fn a_mode_list_naming_an_unconfigured_provider_stops_startup() {
    let toml = r#"
listen = "127.0.0.1:0"
[auth]
connection_auth_modes = ["API_KEY", "OPENID_CONNECT"]
default_subscribe_auth_modes = ["AWS_LAMBDA"]
[[namespaces]]
name = "default"
publish_auth_modes = ["AWS_IAM"]
"#;
    let config = parse_config(toml);
    let Err(e) = herald_server::Server::bind(config).await else {
        panic!("the server started without the providers its mode lists name");
    };
    let e = e.to_string();
    for named in [
        "auth.connection_auth_modes",
        "OPENID_CONNECT",
        "auth.default_subscribe_auth_modes",
        "AWS_LAMBDA",
        "publish_auth_modes",
        "AWS_IAM",
    ] {
        assert!(e.contains(named), "{named} is named in: {e}");
    }
}
