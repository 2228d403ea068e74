//! Live reload over real sockets: `POST /admin/reload` applies a new configuration without
//! dropping connections, revokes subscriptions the new rules refuse, and refuses an invalid one.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use herald_server::Config;
use herald_server::config::NamespaceConfig;
use herald_server::config::RulesConfig;
use serde_json::json;

const ADMIN: &str = "admin-secret-0000";

fn base() -> Config {
    let mut c = config();
    c.admin.keys = vec![ADMIN.into()];
    c
}

fn with_app(rules: Option<&[&str]>) -> Config {
    let mut c = base();
    c.namespaces.push(NamespaceConfig {
        name: "app".into(),
        publish_auth_modes: None,
        subscribe_auth_modes: None,
        history: None,
        handlers: None,
        rules: rules.map(|r| {
            let list: Vec<String> = r.iter().map(|s| s.to_string()).collect();
            RulesConfig {
                subscribe: Some(list.clone()),
                publish: None,
            }
        }),
        presence: None,
    });
    c
}

async fn reload(server: &TestServer, key: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http(
        server,
        "POST",
        "/admin/reload",
        &[("x-admin-key", key)],
        b"",
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn reload_changes_namespaces_and_rules_without_dropping_connections() {
    let next: Arc<Mutex<Config>> = Arc::new(Mutex::new(base()));
    let source = next.clone();
    let server =
        start_reloadable(base(), Box::new(move || Ok(source.lock().unwrap().clone()))).await;
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("d", "/default/x").await["type"],
        "subscribe_success"
    );
    // `app` does not exist yet.
    assert_eq!(
        c.subscribe("a", "/app/public/x").await["type"],
        "subscribe_error"
    );

    *next.lock().unwrap() = with_app(None);
    assert_eq!(reload(&server, "wrong").await.0, 401);
    assert_eq!(
        reload(&server, ADMIN).await,
        (200, json!({"reloaded": true}))
    );
    assert_eq!(
        c.subscribe("a", "/app/private/x").await["type"],
        "subscribe_success"
    );
    assert_eq!(
        c.subscribe("b", "/app/public/x").await["type"],
        "subscribe_success"
    );

    // New rules allow only /app/public/*: the private subscription is revoked and told so.
    *next.lock().unwrap() = with_app(Some(&["/app/public/*"]));
    assert_eq!(reload(&server, ADMIN).await.0, 200);
    let revoked = c.recv().await;
    assert_eq!(revoked["type"], "subscribe_error", "{revoked}");
    assert_eq!(revoked["id"], "a");
    assert_eq!(revoked["errors"][0]["errorType"], "UnauthorizedException");
    post(
        &server,
        KEY,
        &json!({"channel": "/app/private/x", "events": ["\"secret\""]}),
    )
    .await;
    post(
        &server,
        KEY,
        &json!({"channel": "/app/public/x", "events": ["\"hello\""]}),
    )
    .await;
    let f = c.recv().await;
    assert_eq!(
        (f["id"].as_str(), f["event"].as_str()),
        (Some("b"), Some("\"hello\"")),
        "only the allowed subscription receives"
    );
    // And resubscribing to the private channel is refused.
    let r = c.subscribe("a2", "/app/private/x").await;
    assert_eq!(r["errors"][0]["errorType"], "UnauthorizedException");

    // An invalid configuration is refused; the running one stays.
    let mut bad = with_app(Some(&["/app/public/*"]));
    bad.namespaces.push(NamespaceConfig {
        name: "bad/name".into(),
        publish_auth_modes: None,
        subscribe_auth_modes: None,
        history: None,
        handlers: None,
        rules: None,
        presence: None,
    });
    *next.lock().unwrap() = bad;
    let (status, body) = reload(&server, ADMIN).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("namespaces[3].name"),
        "{body}"
    );
    // Changing the listener needs a restart.
    let mut moved = with_app(Some(&["/app/public/*"]));
    moved.listen = "127.0.0.1:1".parse().unwrap();
    *next.lock().unwrap() = moved;
    let (status, body) = reload(&server, ADMIN).await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("listen"),
        "{body}"
    );
    // The connection survived all of it.
    assert_eq!(
        c.subscribe("z", "/app/public/y").await["type"],
        "subscribe_success"
    );
    server.stop().await;
}
