//! Tenant isolation by declarative rules, end to end over real sockets: two tenants, each with
//! its own API key, under `/tenants/{key.name}/*` and a shared `/public/*`.

mod common;

use common::*;
use herald_server::config::RulesConfig;
use herald_server::config::{ApiKeyConfig, NamespaceConfig};
use serde_json::json;

const T1: &str = "da2-tenant-one-0000000";
const T2: &str = "da2-tenant-two-0000000";

async fn tenant(server: &TestServer, key: &str) -> Client {
    let mut c = Client::connect(server, Auth::Subprotocol(key)).await;
    c.send(json!({"type": "connection_init"})).await;
    assert_eq!(c.recv().await["type"], "connection_ack");
    c
}

async fn subscribe(c: &mut Client, key: &str, id: &str, channel: &str) -> serde_json::Value {
    c.send(json!({"type": "subscribe", "id": id, "channel": channel, "authorization": {"x-api-key": key}})).await;
    c.recv().await
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let mut cfg = config();
    for (key, name) in [(T1, "t1"), (T2, "t2")] {
        cfg.auth.api_keys.push(ApiKeyConfig {
            key: key.into(),
            name: Some(name.into()),
            expires: None,
        });
    }
    let rules = ["/app/tenants/{key.name}/*", "/app/public/*"]
        .map(String::from)
        .to_vec();
    cfg.namespaces.push(NamespaceConfig {
        name: "app".into(),
        publish_auth_modes: None,
        subscribe_auth_modes: None,
        history: None,
        handlers: None,
        rules: Some(RulesConfig {
            subscribe: Some(rules.clone()),
            publish: Some(rules),
        }),
        presence: None,
    });
    let server = start(cfg).await;
    let mut a = tenant(&server, T1).await;
    let mut b = tenant(&server, T2).await;

    for (c, key, own) in [(&mut a, T1, "t1"), (&mut b, T2, "t2")] {
        assert_eq!(
            subscribe(c, key, "own", &format!("/app/tenants/{own}/*")).await["type"],
            "subscribe_success"
        );
        assert_eq!(
            subscribe(c, key, "pub", "/app/public/news").await["type"],
            "subscribe_success"
        );
        for (i, foreign) in [
            "/app/tenants/*",
            "/app/*",
            "/app/tenants/t1/x",
            "/app/tenants/t2/x",
        ]
        .iter()
        .enumerate()
        {
            if foreign.contains(own) {
                continue;
            }
            let r = subscribe(c, key, &format!("f{i}"), foreign).await;
            assert_eq!(
                r["type"], "subscribe_error",
                "{own} must not subscribe to {foreign}: {r}"
            );
            assert_eq!(r["errors"][0]["errorType"], "UnauthorizedException");
        }
    }
    // t2 publishes to its own channel and to public; publishing into t1's space is refused.
    let (status, _) = post(
        &server,
        T2,
        &json!({"channel": "/app/tenants/t2/chat", "events": ["\"t2 secret\""]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, r) = post(
        &server,
        T2,
        &json!({"channel": "/app/tenants/t1/chat", "events": ["\"intrusion\""]}),
    )
    .await;
    assert_eq!(
        (status, r["errors"][0]["errorType"].as_str()),
        (401, Some("UnauthorizedException"))
    );
    let (status, _) = post(
        &server,
        T2,
        &json!({"channel": "/app/public/news", "events": ["\"hello all\""]}),
    )
    .await;
    assert_eq!(status, 200);
    // t1 gets only the public event; t2 gets its own and the public one.
    assert_eq!(a.recv().await["event"], "\"hello all\"");
    let mut got = vec![
        b.recv().await["event"].clone(),
        b.recv().await["event"].clone(),
    ];
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, [json!("\"hello all\""), json!("\"t2 secret\"")]);
    // Nothing else is waiting for t1: a fresh publish to public arrives next.
    post(
        &server,
        T1,
        &json!({"channel": "/app/public/news", "events": ["\"marker\""]}),
    )
    .await;
    assert_eq!(a.recv().await["event"], "\"marker\"");
    let (_, _, metrics) = http(&server, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("herald_rule_denials_total{namespace=\"app\"}") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    server.stop().await;
}
