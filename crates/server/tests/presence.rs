//! Presence (issue 15) on one node, over real sockets: members, joins and leaves, reads over the
//! socket and HTTP, access rules on reads, and cleanup when a connection goes.

mod common;

use common::{Client, KEY, config, http, start};
use herald_server::config::NamespaceConfig;
use herald_server::presence::PresenceConfig;
use serde_json::{Value, json};

fn presence_config() -> herald_server::Config {
    let mut c = config();
    c.namespaces.push(NamespaceConfig {
        presence: Some(PresenceConfig::default()),
        ..NamespaceConfig::named("room")
    });
    c
}

/// Subscribes with a `presence` object; returns the reply.
async fn join(c: &mut Client, id: &str, channel: &str, presence: Value) -> Value {
    c.send(json!({
        "type": "subscribe", "id": id, "channel": channel,
        "authorization": {"x-api-key": KEY, "host": "localhost"},
        "presence": presence,
    }))
    .await;
    c.recv().await
}

async fn read(c: &mut Client, id: &str, channel: &str, extra: Value) -> Value {
    let mut msg = json!({
        "type": "presence", "id": id, "channel": channel,
        "authorization": {"x-api-key": KEY, "host": "localhost"},
    });
    if let (Some(m), Some(e)) = (msg.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    c.send(msg).await;
    c.recv().await
}

/// The presence event of a `data` frame: its marker, and the event it carries.
fn presence_event(frame: &Value) -> (String, Value) {
    assert_eq!(frame["type"], "data", "{frame}");
    let marker = frame["presence"]
        .as_str()
        .expect("a presence marker")
        .to_owned();
    let event: Value = serde_json::from_str(frame["event"].as_str().unwrap()).unwrap();
    (marker, event)
}

#[tokio::test]
async fn members_join_and_leave_with_their_subscriptions_and_connections() {
    let server = start(presence_config()).await;
    let mut watcher = Client::ready(&server).await;
    let ok = join(
        &mut watcher,
        "w",
        "/room/a",
        json!({"events": true, "info": {"name": "Wat"}}),
    )
    .await;
    assert_eq!(ok["type"], "subscribe_success");
    // The watcher hears its own join first.
    let (marker, own) = presence_event(&watcher.recv().await);
    assert_eq!(marker, "join");
    assert_eq!(own["member"]["info"]["name"], "Wat");
    assert_eq!(own["member"]["identity"], "test", "the API key's name");
    let own_id = own["member"]["connectionId"].as_str().unwrap().to_owned();

    let mut ann = Client::ready(&server).await;
    assert_eq!(
        join(&mut ann, "s1", "/room/a", json!({"info": {"name": "Ann"}})).await["type"],
        "subscribe_success"
    );
    let (marker, joined) = presence_event(&watcher.recv().await);
    assert_eq!(marker, "join");
    assert_eq!(joined["channel"], "/room/a");
    assert_eq!(joined["member"]["info"]["name"], "Ann");
    let ann_id = joined["member"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(ann_id, own_id);

    // A second subscription of the same connection is not a second member.
    assert_eq!(
        ann.subscribe("s2", "/room/a").await["type"],
        "subscribe_success"
    );
    let r = read(&mut watcher, "p1", "/room/a", json!({})).await;
    assert_eq!(r["type"], "presence_result", "{r}");
    assert_eq!(r["id"], "p1");
    assert_eq!(r["count"], 2);
    assert_eq!(r["members"].as_array().unwrap().len(), 2);

    // Unsubscribing one of two subscriptions keeps the member; the last one is the leave.
    ann.send(json!({"type": "unsubscribe", "id": "s2"})).await;
    assert_eq!(ann.recv().await["type"], "unsubscribe_success");
    ann.send(json!({"type": "unsubscribe", "id": "s1"})).await;
    assert_eq!(ann.recv().await["type"], "unsubscribe_success");
    let (marker, left) = presence_event(&watcher.recv().await);
    assert_eq!(marker, "leave");
    assert_eq!(left["member"]["connectionId"], ann_id.as_str());

    // Closing the socket is a leave too.
    let mut bob = Client::ready(&server).await;
    assert_eq!(
        join(&mut bob, "b", "/room/a", json!({})).await["type"],
        "subscribe_success"
    );
    let (marker, _) = presence_event(&watcher.recv().await);
    assert_eq!(marker, "join");
    drop(bob);
    let (marker, _) = presence_event(&watcher.recv().await);
    assert_eq!(marker, "leave");
    let r = read(&mut watcher, "p2", "/room/a", json!({"countOnly": true})).await;
    assert_eq!(r["count"], 1);
    assert!(r.get("members").is_none(), "{r}");
    server.stop().await;
}

#[tokio::test]
async fn subscriptions_that_did_not_ask_see_no_presence_frames() {
    let server = start(presence_config()).await;
    let mut quiet = Client::ready(&server).await;
    assert_eq!(
        quiet.subscribe("q", "/room/b").await["type"],
        "subscribe_success"
    );
    let mut other = Client::ready(&server).await;
    assert_eq!(
        other.subscribe("o", "/room/b").await["type"],
        "subscribe_success"
    );
    drop(other);
    // The next thing the quiet subscriber sees is a published event, not a join or leave.
    let mut publisher = Client::ready(&server).await;
    let ok = publisher.publish("p", "/room/b", &[json!({"n": 1})]).await;
    assert_eq!(ok["type"], "publish_success");
    let frame = quiet.recv().await;
    assert_eq!(frame["type"], "data");
    assert!(frame.get("presence").is_none(), "{frame}");
    assert_eq!(frame["event"], json!({"n": 1}).to_string());
    server.stop().await;
}

#[tokio::test]
async fn reads_over_http_page_and_check_authorization() {
    let server = start(presence_config()).await;
    let mut members = Vec::new();
    for i in 0..5 {
        let mut c = Client::ready(&server).await;
        let info = json!({"info": {"i": i}});
        assert_eq!(
            join(&mut c, "s", "/room/c", info).await["type"],
            "subscribe_success"
        );
        members.push(c);
    }
    let get = |query: String, key: &'static str| {
        let server = &server;
        async move {
            let (status, _, body) = http(server, "GET", &query, &[("x-api-key", key)], b"").await;
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, page) = get("/event/presence?channel=%2Froom%2Fc&limit=2".into(), KEY).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], 5);
    let mut seen: Vec<Value> = page["members"].as_array().unwrap().clone();
    let mut next = page["next"].as_str().map(str::to_owned);
    while let Some(after) = next {
        let (_, p) = get(
            format!("/event/presence?channel=/room/c&limit=2&after={after}"),
            KEY,
        )
        .await;
        seen.extend(p["members"].as_array().unwrap().iter().cloned());
        next = p["next"].as_str().map(str::to_owned);
    }
    let mut infos: Vec<i64> = seen
        .iter()
        .map(|m| m["info"]["i"].as_i64().unwrap())
        .collect();
    infos.sort();
    assert_eq!(infos, vec![0, 1, 2, 3, 4], "every member once");

    let (status, count) = get("/event/presence?channel=/room/c&countOnly=true".into(), KEY).await;
    assert_eq!((status, count["count"].clone()), (200, json!(5)));
    let (status, denied) = get("/event/presence?channel=/room/c".into(), "da2-wrong").await;
    assert_eq!(status, 401, "{denied}");
    let (status, off) = get("/event/presence?channel=/default/c".into(), KEY).await;
    assert_eq!(status, 400, "a namespace without presence: {off}");
    server.stop().await;
}

#[tokio::test]
async fn info_is_bounded_and_must_be_an_object() {
    let mut c = config();
    c.namespaces.push(NamespaceConfig {
        presence: Some(PresenceConfig {
            max_info_bytes: 32,
            ..PresenceConfig::default()
        }),
        ..NamespaceConfig::named("room")
    });
    let server = start(c).await;
    let mut client = Client::ready(&server).await;
    let big = json!({"info": {"name": "x".repeat(64)}});
    let r = join(&mut client, "a", "/room/d", big).await;
    assert_eq!(r["type"], "subscribe_error", "{r}");
    assert_eq!(r["errors"][0]["errorType"], "BadRequestException");
    let r = join(&mut client, "b", "/room/d", json!({"info": [1, 2]})).await;
    assert_eq!(r["type"], "subscribe_error", "{r}");
    let r = read(&mut client, "p", "/room/d", json!({"countOnly": 3})).await;
    assert_eq!(r["type"], "presence_error", "{r}");
    assert_eq!(r["id"], "p");
    // The connection survives its bad messages.
    assert_eq!(
        join(&mut client, "c", "/room/d", json!({"info": {}})).await["type"],
        "subscribe_success"
    );
    server.stop().await;
}

#[tokio::test]
async fn presence_metrics_count_members_and_channels() {
    let server = start(presence_config()).await;
    let mut a = Client::ready(&server).await;
    assert_eq!(
        a.subscribe("1", "/room/m1").await["type"],
        "subscribe_success"
    );
    assert_eq!(
        a.subscribe("2", "/room/m2").await["type"],
        "subscribe_success"
    );
    let mut b = Client::ready(&server).await;
    assert_eq!(
        b.subscribe("1", "/room/m1").await["type"],
        "subscribe_success"
    );
    let (_, _, body) = http(&server, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("herald_presence_members{namespace=\"room\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("herald_presence_channels{namespace=\"room\"} 2"),
        "{text}"
    );
    server.stop().await;
}

/// Presence reads follow the channel's access rules: a tenant reads its own rooms' members, and
/// another tenant's read is refused as its subscribe would be.
#[tokio::test]
async fn access_rules_apply_to_presence_reads() {
    use herald_server::config::{ApiKeyConfig, RulesConfig};
    let mut c = config();
    for (key, name) in [
        ("da2-tenant-one-0000000", "t1"),
        ("da2-tenant-two-0000000", "t2"),
    ] {
        c.auth.api_keys.push(ApiKeyConfig {
            key: key.into(),
            name: Some(name.into()),
            expires: None,
        });
    }
    let rules = vec!["/room/{key.name}/*".to_owned()];
    c.namespaces.push(NamespaceConfig {
        presence: Some(PresenceConfig::default()),
        rules: Some(RulesConfig {
            subscribe: Some(rules.clone()),
            publish: Some(rules),
        }),
        ..NamespaceConfig::named("room")
    });
    let server = start(c).await;
    let mut one =
        Client::connect(&server, common::Auth::Subprotocol("da2-tenant-one-0000000")).await;
    one.send(json!({"type": "connection_init"})).await;
    assert_eq!(one.recv().await["type"], "connection_ack");
    one.send(
        json!({"type": "subscribe", "id": "s", "channel": "/room/t1/lobby",
        "authorization": {"x-api-key": "da2-tenant-one-0000000"}}),
    )
    .await;
    assert_eq!(one.recv().await["type"], "subscribe_success");
    let get = |key: &'static str| {
        let server = &server;
        async move {
            let (status, _, body) = http(
                server,
                "GET",
                "/event/presence?channel=/room/t1/lobby",
                &[("x-api-key", key)],
                b"",
            )
            .await;
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, own) = get("da2-tenant-one-0000000").await;
    assert_eq!((status, own["count"].clone()), (200, json!(1)), "{own}");
    assert_eq!(own["members"][0]["identity"], "t1");
    let (status, other) = get("da2-tenant-two-0000000").await;
    assert_eq!(status, 401, "{other}");
    // The same over the other tenant's socket.
    let mut two =
        Client::connect(&server, common::Auth::Subprotocol("da2-tenant-two-0000000")).await;
    two.send(json!({"type": "connection_init"})).await;
    assert_eq!(two.recv().await["type"], "connection_ack");
    two.send(json!({"type": "presence", "id": "p", "channel": "/room/t1/lobby"}))
        .await;
    let r = two.recv().await;
    assert_eq!(r["type"], "presence_error", "{r}");
    assert_eq!(r["errors"][0]["errorType"], "UnauthorizedException");
    server.stop().await;
}

/// `onSubscribe` sees the member's info (`ctx.presence.info`) and can refuse the subscription.
#[tokio::test]
async fn on_subscribe_validates_presence_info() {
    let mut c = config();
    let code = r#"
import { util } from '@aws-appsync/utils';
export function onSubscribe(ctx) {
  if (ctx.presence && ctx.presence.info.role === 'admin') util.unauthorized();
}
"#;
    c.namespaces.push(NamespaceConfig {
        presence: Some(PresenceConfig::default()),
        handlers: Some(herald_handler::HandlerConfig {
            code: Some(code.to_owned()),
            ..Default::default()
        }),
        ..NamespaceConfig::named("room")
    });
    let server = start(c).await;
    let mut client = Client::ready(&server).await;
    let r = join(
        &mut client,
        "a",
        "/room/h",
        json!({"info": {"role": "admin"}}),
    )
    .await;
    assert_eq!(r["type"], "subscribe_error", "{r}");
    assert_eq!(r["errors"][0]["errorType"], "Unauthorized", "{r}");
    let r = join(
        &mut client,
        "b",
        "/room/h",
        json!({"info": {"role": "guest"}}),
    )
    .await;
    assert_eq!(r["type"], "subscribe_success", "{r}");
    let r = read(&mut client, "p", "/room/h", json!({})).await;
    assert_eq!(r["count"], 1);
    assert_eq!(r["members"][0]["info"]["role"], "guest");
    server.stop().await;
}

/// A reconnect storm leaves exactly the connections that are still open, each once.
#[tokio::test]
async fn reconnect_storms_leave_no_duplicate_or_ghost_members() {
    let server = start(presence_config()).await;
    let mut kept = Vec::new();
    for round in 0..3 {
        let mut open = Vec::new();
        for i in 0..20 {
            let mut c = Client::ready(&server).await;
            let info = json!({"info": {"user": i}});
            assert_eq!(
                join(&mut c, "s", "/room/storm", info.clone()).await["type"],
                "subscribe_success"
            );
            // Some subscribe twice: still one member per connection.
            if i % 3 == 0 {
                assert_eq!(
                    join(&mut c, "t", "/room/storm", info).await["type"],
                    "subscribe_success"
                );
            }
            open.push(c);
        }
        // Every round closes all but the last round's first five abruptly (no unsubscribe).
        if round == 2 {
            kept.extend(open.drain(..5));
        }
        drop(open);
    }
    let mut watcher = Client::ready(&server).await;
    // Closed sockets leave as the server notices them; wait until only the kept remain.
    let started = std::time::Instant::now();
    loop {
        let r = read(&mut watcher, "p", "/room/storm", json!({"countOnly": true})).await;
        if r["count"] == 5 {
            break;
        }
        assert!(
            started.elapsed() < common::WAIT,
            "still {} members",
            r["count"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = read(&mut watcher, "q", "/room/storm", json!({})).await;
    let ids: std::collections::HashSet<String> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["connectionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 5, "{r}");
    drop(kept);
    server.stop().await;
}
