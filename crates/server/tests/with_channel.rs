//! `withChannel` on `subscribe` (Herald extension): each `data` frame of that subscription names
//! the channel its event was published to, on exact and wildcard subscriptions, with and without
//! history, replayed or live, on one node and across a cluster. Frames of subscriptions that did
//! not ask stay byte for byte what they were.

mod common;
#[path = "../../history/tests/support/nats.rs"]
mod nats;

use common::*;
use futures_util::StreamExt;
use herald_server::Config;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The next text message as sent, skipping keep-alives.
async fn raw(c: &mut Client) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, c.ws.next())
            .await
            .expect("a message within the wait bound")
            .expect("the stream is open")
            .expect("no protocol error");
        match msg {
            Message::Text(t) if t.as_str() != r#"{"type":"ka"}"# => return t.to_string(),
            Message::Text(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

async fn subscribe(c: &mut Client, id: &str, channel: &str, with_channel: Option<bool>) {
    let mut m = json!({
        "type": "subscribe", "id": id, "channel": channel,
        "authorization": {"x-api-key": KEY, "host": "localhost"}
    });
    if let Some(w) = with_channel {
        m["withChannel"] = json!(w);
    }
    c.send(m).await;
    assert_eq!(
        raw(c).await,
        format!(r#"{{"type":"subscribe_success","id":"{id}"}}"#)
    );
}

/// The frames one `data` event gives each kind of subscription, from the event `token` (as
/// published) and the `position` suffix a history namespace adds (empty without history).
fn plain(id: &str, token: &str, position: &str) -> String {
    format!(r#"{{"type":"data","id":"{id}","event":{token}{position}}}"#)
}

fn routed(id: &str, channel: &str, token: &str, position: &str) -> String {
    format!(r#"{{"type":"data","id":"{id}","channel":"{channel}","event":{token}{position}}}"#)
}

/// `,"position":{…}` exactly as the frame carries it, from a parsed frame.
fn position_suffix(frame: &str) -> String {
    let v: Value = serde_json::from_str(frame).unwrap();
    let p = &v["position"];
    if p.is_null() {
        return String::new();
    }
    format!(
        r#","position":{{"channel":"{}","epoch":"{}","offset":{},"time_ms":{}}}"#,
        p["channel"].as_str().unwrap(),
        p["epoch"].as_str().unwrap(),
        p["offset"],
        p["time_ms"]
    )
}

/// One client holds four subscriptions (exact and wildcard, each with and without the flag) in
/// `ns`; events go to two channels below it. Every frame is checked byte for byte.
async fn check_namespace(server: &TestServer, ns: &str) {
    let mut c = Client::ready(server).await;
    subscribe(&mut c, "exact", &format!("/{ns}/room/a"), None).await;
    subscribe(&mut c, "exact-ch", &format!("/{ns}/room/a"), Some(true)).await;
    subscribe(&mut c, "wild", &format!("/{ns}/room/*"), Some(false)).await;
    subscribe(&mut c, "wild-ch", &format!("/{ns}/*"), Some(true)).await;
    for (i, channel) in [format!("/{ns}/room/a"), format!("/{ns}/room/b/c")]
        .iter()
        .enumerate()
    {
        let event = json!({"n": i, "text": "quote \" and \\ and \u{e9}"}).to_string();
        let (status, reply) = post(
            server,
            KEY,
            &json!({"channel": channel, "events": [event, event]}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let token = serde_json::to_string(&event).unwrap();
        let mut expected: Vec<String> = Vec::new();
        let mut got: Vec<String> = Vec::new();
        let ids: &[&str] = if i == 0 {
            &["exact", "exact-ch", "wild", "wild-ch"]
        } else {
            &["wild", "wild-ch"]
        };
        for _ in 0..2 * ids.len() {
            got.push(raw(&mut c).await);
        }
        let position = |n: usize| position_suffix(&got[n]);
        // Each subscription's two frames arrive in order; across subscriptions, by index order.
        for id in ids {
            let mine: Vec<usize> = (0..got.len())
                .filter(|&n| got[n].contains(&format!(r#""id":"{id}""#)))
                .collect();
            assert_eq!(mine.len(), 2, "{id}: {got:?}");
            for n in mine {
                expected.push(if id.ends_with("-ch") {
                    routed(id, channel, &token, &position(n))
                } else {
                    plain(id, &token, &position(n))
                });
            }
        }
        let mut sorted = got.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected, "{ns} {channel}");
    }
}

#[tokio::test]
async fn the_channel_on_every_event_only_for_subscriptions_that_ask() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    check_namespace(&server, "default").await;
    check_namespace(&server, "chat").await;
    server.stop().await;
}

#[tokio::test]
async fn not_a_boolean_is_refused() {
    let server = start(config()).await;
    let mut c = Client::ready(&server).await;
    c.send(json!({
        "type": "subscribe", "id": "s", "channel": "/default/a",
        "authorization": {"x-api-key": KEY, "host": "localhost"}, "withChannel": "yes"
    }))
    .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "subscribe_error", "{reply}");
    assert_eq!(reply["errors"][0]["errorType"], "BadRequestException");
    server.stop().await;
}

#[tokio::test]
async fn a_resumed_wildcard_replays_with_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    let mut first = Client::ready(&server).await;
    for channel in ["/chat/x", "/chat/y/z"] {
        let reply = first.publish("p", channel, &[json!({"on": channel})]).await;
        assert_eq!(reply["type"], "publish_success", "{reply}");
    }
    let mut c = Client::ready(&server).await;
    for (id, with_channel) in [("plain", false), ("ch", true)] {
        c.send(json!({
            "type": "subscribe", "id": id, "channel": "/chat/*", "withChannel": with_channel,
            "authorization": {"x-api-key": KEY, "host": "localhost"}, "resume": {"since_ms": 0}
        }))
        .await;
        let reply = c.recv().await;
        assert_eq!(reply["resume"]["replayed"], 2, "{reply}");
        for _ in 0..2 {
            let frame = raw(&mut c).await;
            let v: Value = serde_json::from_str(&frame).unwrap();
            let channel = v["position"]["channel"].as_str().unwrap();
            let token = serde_json::to_string(&json!({"on": channel}).to_string()).unwrap();
            let expected = if with_channel {
                routed(id, channel, &token, &position_suffix(&frame))
            } else {
                plain(id, &token, &position_suffix(&frame))
            };
            assert_eq!(frame, expected);
        }
    }
    // Then live, the same way.
    let reply = first
        .publish("p", "/chat/x", &[json!({"on": "/chat/x"})])
        .await;
    assert_eq!(reply["type"], "publish_success", "{reply}");
    let mut frames = [raw(&mut c).await, raw(&mut c).await];
    frames.sort();
    let token = serde_json::to_string(&json!({"on": "/chat/x"}).to_string()).unwrap();
    assert_eq!(
        frames[0],
        routed("ch", "/chat/x", &token, &position_suffix(&frames[0]))
    );
    assert_eq!(
        frames[1],
        plain("plain", &token, &position_suffix(&frames[1]))
    );
    server.stop().await;
}

fn node(nats: &nats::Nats, name: &str) -> Config {
    let mut c = config();
    c.cluster.nats_url = nats.url();
    c.cluster.node_name = Some(name.into());
    c.cluster.subject_prefix = format!("herald-test-{}", nats.port);
    c
}

/// Over NATS each node delivers what it receives to its own subscribers: the channel comes from
/// the subject, and the frames are the same as on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_cluster() {
    let nats = nats::Nats::start(nats::free_port());
    let n1 = start(node(&nats, "n1")).await;
    let n2 = start(node(&nats, "n2")).await;
    let mut c = Client::ready(&n1).await;
    subscribe(&mut c, "wild", "/default/*", None).await;
    subscribe(&mut c, "wild-ch", "/default/*", Some(true)).await;
    let event = json!({"n": 1}).to_string();
    let (status, reply) = post(
        &n2,
        KEY,
        &json!({"channel": "/default/a/b", "events": [event]}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let token = serde_json::to_string(&event).unwrap();
    let mut frames = [raw(&mut c).await, raw(&mut c).await];
    frames.sort();
    assert_eq!(
        frames,
        [
            plain("wild", &token, ""),
            routed("wild-ch", "/default/a/b", &token, ""),
        ]
    );
    n1.stop().await;
    n2.stop().await;
}
