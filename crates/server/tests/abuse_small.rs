//! Hostile clients, the smaller findings (issue 20, finding 7), each over real sockets: namespace
//! names cannot be enumerated, credentials survive a flood of other headers, reserved close codes
//! are not echoed, deep events are refused, CORS stays on the publish and history paths, and the
//! admin API wants long keys and slows guessing down.

mod common;

use common::*;
use serde_json::{Value, json};

fn error_type(frame: &Value) -> &str {
    frame["errors"][0]["errorType"].as_str().unwrap_or_default()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A valid key on an unknown namespace gets exactly what a bad key on a real one gets, over HTTP
/// and on the socket, so namespace names cannot be enumerated.
#[tokio::test]
async fn an_unknown_namespace_looks_like_a_refusal() {
    let server = start(config()).await;
    let publish = |channel: &str| json!({"channel": channel, "events": ["1"]}).to_string();
    let as_http = |key: &'static str, channel: &str| {
        let body = publish(channel);
        let server = &server;
        async move {
            let (status, headers, body) = http(
                server,
                "POST",
                "/event",
                &[("content-type", "application/json"), ("x-api-key", key)],
                body.as_bytes(),
            )
            .await;
            let kind = header(&headers, "x-amzn-errortype").map(str::to_owned);
            (status, kind, body)
        }
    };
    let refused = as_http("da2-bad00000", "/default/a").await;
    assert_eq!(refused.0, 401);
    assert_eq!(as_http(KEY, "/nope/a").await, refused);

    let history = |channel: &str| {
        let path = format!("/event/history?channel={channel}");
        let server = &server;
        async move {
            let (status, _, body) = http(server, "GET", &path, &[("x-api-key", KEY)], b"").await;
            (status, body)
        }
    };
    let (status, body) = history("/nope/a").await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, refused.2);

    let mut c = Client::ready(&server).await;
    let bad = json!({"x-api-key": "da2-bad00000", "host": "localhost"});
    c.send(
        json!({"type": "subscribe", "id": "bad", "channel": "/default/a", "authorization": bad}),
    )
    .await;
    let bad_subscribe = c.recv().await;
    for (id, channel) in [("s1", "/nope/a"), ("s2", "/nope/*")] {
        let r = c.subscribe(id, channel).await;
        assert_eq!(r["type"], "subscribe_error", "{r}");
        assert_eq!(r["errors"], bad_subscribe["errors"], "{channel}: {r}");
    }
    c.send(json!({"type": "publish", "id": "bad", "channel": "/default/a", "events": ["1"], "authorization": bad}))
        .await;
    let bad_publish = c.recv().await;
    let r = c.publish("p1", "/nope/a", &[json!(1)]).await;
    assert_eq!(r["type"], "publish_error", "{r}");
    assert_eq!(r["errors"], bad_publish["errors"]);
    assert_eq!(error_type(&r), "UnauthorizedException");
    server.stop().await;
}

/// Credentials after dozens of other headers (or fields of an `authorization` object) still
/// count: only the other headers are bounded.
#[tokio::test]
async fn credentials_survive_a_flood_of_other_headers() {
    let server = start(config()).await;
    let junk: Vec<(String, String)> = (0..40)
        .map(|i| (format!("a-junk-{i:02}"), "x".repeat(20)))
        .collect();
    let mut headers: Vec<(&str, &str)> =
        junk.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    headers.push(("content-type", "application/json"));
    headers.push(("x-api-key", KEY));
    let (status, _, body) = http(
        &server,
        "POST",
        "/event",
        &headers,
        br#"{"channel":"/default/a","events":["1"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let mut c = Client::ready(&server).await;
    let mut authorization = serde_json::Map::new();
    for (k, v) in &junk {
        authorization.insert(k.clone(), json!(v));
    }
    authorization.insert("x-api-key".into(), json!(KEY));
    c.send(json!({"type": "subscribe", "id": "s", "channel": "/default/a", "authorization": authorization}))
        .await;
    let r = c.recv().await;
    assert_eq!(r["type"], "subscribe_success", "{r}");
    server.stop().await;
}

/// A raw WebSocket, for frames a well-behaved client library refuses to send or to read.
mod raw {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct Socket(TcpStream);

    impl Socket {
        /// Upgrades with the test key in the `header-` subprotocol.
        pub async fn open(server: &TestServer) -> Socket {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            let auth = json!({"host": server.addr.to_string(), "x-api-key": KEY}).to_string();
            let req = format!(
                "GET /event/realtime HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                 sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\
                 sec-websocket-protocol: aws-appsync-event-ws, header-{}\r\n\r\n",
                server.addr,
                b64url(&auth)
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                tokio::time::timeout(WAIT, s.read_exact(&mut b))
                    .await
                    .expect("upgrade answer within the wait bound")
                    .unwrap();
                head.push(b[0]);
            }
            assert!(
                head.starts_with(b"HTTP/1.1 101"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            Socket(s)
        }

        /// Sends one masked, final frame.
        pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
            assert!(payload.len() < 126);
            let mask = [0x11u8, 0x22, 0x33, 0x44];
            let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            self.0.write_all(&frame).await.unwrap();
        }

        /// Reads frames until a close frame; returns its payload.
        pub async fn close_reply(&mut self) -> Vec<u8> {
            loop {
                let (opcode, payload) = tokio::time::timeout(WAIT, self.frame())
                    .await
                    .expect("a frame within the wait bound");
                if opcode == 0x8 {
                    return payload;
                }
            }
        }

        async fn frame(&mut self) -> (u8, Vec<u8>) {
            let mut h = [0u8; 2];
            self.0.read_exact(&mut h).await.unwrap();
            let len = match h[1] & 0x7f {
                126 => u64::from(self.0.read_u16().await.unwrap()),
                127 => self.0.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.0.read_exact(&mut payload).await.unwrap();
            (h[0] & 0x0f, payload)
        }
    }
}

/// The close code in a close frame's payload.
fn code_of(payload: &[u8]) -> Option<u16> {
    payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// RFC 6455 §7.4: codes that must not appear in a close frame (1004–1006, 1015, anything outside
/// 1000–1014 and 3000–4999) are a protocol error (1002), not something to echo; a close without
/// a code is answered with 1000; valid codes are echoed.
#[tokio::test]
async fn reserved_close_codes_are_a_protocol_error() {
    let server = start(config()).await;
    let cases: &[(&[u8], u16)] = &[
        (&1005u16.to_be_bytes(), 1002),
        (&1006u16.to_be_bytes(), 1002),
        (&1015u16.to_be_bytes(), 1002),
        (&1004u16.to_be_bytes(), 1002),
        (&999u16.to_be_bytes(), 1002),
        (&2999u16.to_be_bytes(), 1002),
        (&5000u16.to_be_bytes(), 1002),
        (&0u16.to_be_bytes(), 1002),
        // One byte: half a code.
        (&[0x03], 1002),
        (b"", 1000),
        // A reason that is not UTF-8 (§8.1).
        (&[0x03, 0xe8, 0xff], 1007),
        (&1000u16.to_be_bytes(), 1000),
        (&1001u16.to_be_bytes(), 1001),
        (&1014u16.to_be_bytes(), 1014),
        (&3000u16.to_be_bytes(), 3000),
        (&4999u16.to_be_bytes(), 4999),
    ];
    for (payload, want) in cases {
        let mut s = raw::Socket::open(&server).await;
        s.send(0x8, payload).await;
        let reply = s.close_reply().await;
        assert_eq!(code_of(&reply), Some(*want), "close payload {payload:?}");
    }
    server.stop().await;
}

/// Events nested deeper than the protocol's bound are refused like invalid ones, on both
/// transports; at the bound they pass, and brackets inside strings do not count.
#[tokio::test]
async fn deeply_nested_events_are_refused() {
    let server = start(config()).await;
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let at_bound = nested(64);
    let too_deep = nested(65);
    let quoted = json!("[".repeat(1000)).to_string();

    let mut c = Client::ready(&server).await;
    for (i, (event, ok)) in [(&at_bound, true), (&too_deep, false), (&quoted, true)]
        .into_iter()
        .enumerate()
    {
        c.send(json!({"type": "publish", "id": format!("p{i}"), "channel": "/default/a", "events": [event]}))
            .await;
        let r = c.recv().await;
        if ok {
            assert_eq!(r["type"], "publish_success", "{r}");
        } else {
            assert_eq!(r["type"], "publish_error", "{r}");
            assert_eq!(error_type(&r), "BadRequestException");
            let message = r["errors"][0]["message"].as_str().unwrap();
            assert!(
                message.contains("event 0") && message.contains("64"),
                "{message}"
            );
        }
        let (status, reply) = post(
            &server,
            KEY,
            &json!({"channel": "/default/a", "events": [event]}),
        )
        .await;
        assert_eq!(status, if ok { 200 } else { 400 }, "{reply}");
    }
    server.stop().await;
}

/// An admin key long enough for the admin API (16 characters or more).
const ADMIN: &str = "admin-key-0123456789";

/// CORS headers go on the publish and history paths only: a page on another origin must not
/// read `/metrics` or drive the admin API.
#[tokio::test]
async fn cors_only_on_publish_and_history() {
    let mut config = config();
    config.admin.keys = vec![ADMIN.into()];
    let server = start(config).await;
    let origin = ("origin", "https://elsewhere.example");
    let allowed =
        |headers: &[(String, String)]| header(headers, "access-control-allow-origin").is_some();
    for (method, path, extra) in [
        ("GET", "/metrics", None),
        ("GET", "/healthz", None),
        ("POST", "/admin/reload", Some(("x-admin-key", "wrong"))),
        ("GET", "/console", None),
        ("GET", "/nowhere", None),
    ] {
        let mut headers = vec![origin];
        headers.extend(extra);
        let (_, h, _) = http(&server, method, path, &headers, b"").await;
        assert!(!allowed(&h), "{method} {path}: {h:?}");
    }
    let (status, h, _) = http(
        &server,
        "POST",
        "/event",
        &[origin, ("x-api-key", KEY)],
        br#"{"channel":"/default/a","events":["1"]}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert!(allowed(&h), "{h:?}");
    let (_, h, _) = http(
        &server,
        "GET",
        "/event/history?channel=/default/a",
        &[origin, ("x-api-key", KEY)],
        b"",
    )
    .await;
    assert!(allowed(&h), "{h:?}");
    // A browser reading history with a key header asks first.
    let (status, h, _) = http(
        &server,
        "OPTIONS",
        "/event/history",
        &[
            origin,
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-api-key"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    assert!(allowed(&h), "{h:?}");
    assert_eq!(
        header(&h, "access-control-allow-methods"),
        Some("GET, OPTIONS")
    );
    server.stop().await;
}

/// An admin key shorter than 16 characters is a configuration problem naming its key.
#[tokio::test]
async fn short_admin_keys_are_refused() {
    let mut config = config();
    config.admin.keys = vec![ADMIN.into(), "short-key".into()];
    let Err(e) = herald_server::Server::bind(config).await else {
        panic!("a 9-character admin key must be refused");
    };
    let e = e.to_string();
    assert!(e.contains("admin.keys[1]") && e.contains("16"), "{e}");
}

/// After 5 wrong admin keys within a minute, the admin API answers 429 to everyone (the right
/// key too) for the rest of the minute.
#[tokio::test]
async fn admin_key_guessing_is_rate_limited() {
    let mut config = config();
    config.admin.keys = vec![ADMIN.into()];
    let source_config = config.clone();
    let server = start_reloadable(config, Box::new(move || Ok(source_config.clone()))).await;
    let reload = |key: &'static str| {
        let server = &server;
        async move {
            http(
                server,
                "POST",
                "/admin/reload",
                &[("x-admin-key", key)],
                b"",
            )
            .await
            .0
        }
    };
    assert_eq!(reload(ADMIN).await, 200);
    for i in 0..5 {
        assert_eq!(reload("admin-key-guess-00000").await, 401, "attempt {i}");
    }
    assert_eq!(reload("admin-key-guess-00000").await, 429);
    assert_eq!(reload(ADMIN).await, 429);
    server.stop().await;
}
