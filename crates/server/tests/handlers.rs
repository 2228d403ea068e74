//! Namespace handlers over real sockets: JavaScript onPublish/onSubscribe transforming,
//! filtering and refusing, and an HTTP handler in a real server on loopback.

mod common;

use common::*;
use herald_server::Config;
use herald_server::config::NamespaceConfig;
use serde_json::{Value, json};

const JS: &str = r#"
import { util } from '@aws-appsync/utils';
export function onPublish(ctx) {
  if (ctx.events.some(e => e.payload.forbidden)) util.error('forbidden word', 'ModerationError');
  return ctx.events
    .filter(e => !e.payload.drop)
    .map(e => e.payload.bad ? { id: e.id, error: 'bad event' }
                            : { id: e.id, payload: { ...e.payload, seen: ctx.info.channel.path } });
}
export function onSubscribe(ctx) {
  if (ctx.info.channel.path.startsWith('/js/private')) util.unauthorized();
}
"#;

fn with_handlers(code: &str, http_url: Option<&str>) -> Config {
    let mut c = config();
    let handlers = herald_handler::HandlerConfig {
        code: Some(code.to_owned()),
        ..Default::default()
    };
    c.namespaces.push(NamespaceConfig {
        name: "js".into(),
        publish_auth_modes: None,
        subscribe_auth_modes: None,
        history: None,
        handlers: Some(handlers),
        rules: None,
        presence: None,
    });
    if let Some(url) = http_url {
        let h: herald_handler::HandlerConfig =
            toml_like(&format!(r#"{{"on_publish": {{"http": "{url}"}}}}"#));
        c.namespaces.push(NamespaceConfig {
            name: "web".into(),
            publish_auth_modes: None,
            subscribe_auth_modes: None,
            history: None,
            handlers: Some(h),
            rules: None,
            presence: None,
        });
    }
    c
}

fn toml_like(json: &str) -> herald_handler::HandlerConfig {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn javascript_transforms_filters_and_refuses() {
    let server = start(with_handlers(JS, None)).await;
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("s", "/js/room").await["type"],
        "subscribe_success"
    );
    let events = [
        json!({"n": 1}),
        json!({"n": 2, "drop": true}),
        json!({"n": 3, "bad": true}),
    ];
    let (status, reply) = post(&server, KEY, &json!({"channel": "/js/room", "events": events.iter().map(Value::to_string).collect::<Vec<_>>()})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["successful"].as_array().unwrap().len(),
        2,
        "delivered and dropped: {reply}"
    );
    assert_eq!(reply["failed"][0]["index"], 2);
    assert_eq!(reply["failed"][0]["code"], "EventHandlerError");
    let f = c.recv().await;
    let event: Value = serde_json::from_str(f["event"].as_str().unwrap()).unwrap();
    assert_eq!(event, json!({"n": 1, "seen": "/js/room"}));

    // util.error → 403 over HTTP, publish_error over WebSocket, with the handler's message.
    let (status, reply) = post(
        &server,
        KEY,
        &json!({"channel": "/js/room", "events": ["{\"forbidden\":true}"]}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(reply["errors"][0]["errorType"], "ModerationError");
    assert_eq!(reply["errors"][0]["message"], "forbidden word");
    let r = c
        .publish("p", "/js/room", &[json!({"forbidden": true})])
        .await;
    assert_eq!(r["type"], "publish_error");
    assert_eq!(r["errors"][0]["message"], "forbidden word");

    // util.unauthorized in onSubscribe → subscribe_error Unauthorized; the connection lives on.
    let r = c.subscribe("x", "/js/private/a").await;
    assert_eq!(
        (r["type"].as_str(), r["errors"][0]["errorType"].as_str()),
        (Some("subscribe_error"), Some("Unauthorized"))
    );
    assert_eq!(
        c.subscribe("y", "/js/public").await["type"],
        "subscribe_success"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_syntax_error_stops_the_server_with_namespace_and_line() {
    let err = herald_server::Server::bind(with_handlers(
        "export function onPublish(ctx) {\n  return [;\n}",
        None,
    ))
    .await
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(text.contains("js") && text.contains("line 2"), "{text}");
}

#[tokio::test]
async fn http_handler_transforms() {
    // A real HTTP handler on loopback that uppercases `text`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break body.to_string();
                        }
                    }
                };
                let ctx: Value = serde_json::from_str(&body).unwrap();
                let events: Vec<Value> = ctx["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| json!({"id": e["id"], "payload": {"text": e["payload"]["text"].as_str().unwrap_or("").to_uppercase()}}))
                    .collect();
                let answer = json!({"events": events}).to_string();
                let _ = s
                    .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len()).as_bytes())
                    .await;
            });
        }
    });
    let server = start(with_handlers(JS, Some(&url))).await;
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("s", "/web/*").await["type"],
        "subscribe_success"
    );
    let (status, reply) = post(
        &server,
        KEY,
        &json!({"channel": "/web/a", "events": ["{\"text\":\"hi\"}"]}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let f = c.recv().await;
    assert_eq!(f["event"], "{\"text\":\"HI\"}");
    server.stop().await;
}
