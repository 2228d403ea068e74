//! Server-Sent Events (`GET /event/stream`) over real sockets: a Rust reader that decodes the
//! chunked response itself, and `curl -N`. Authorization like a subscribe (headers, or a
//! single-use short-lived token), the same frames as a WebSocket with the channel, resume from
//! `Last-Event-ID` under publishing with no gap and no duplicate, the connection cap, and the
//! slow-consumer rule.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: Option<String>,
    kind: String,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A stream read over a raw socket: status, headers, then events from the chunked body.
struct Stream {
    reader: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
    /// Body bytes de-chunked but not yet parsed into events.
    pending: Vec<u8>,
    /// Comments seen (keep-alives).
    comments: usize,
    ended: bool,
}

impl Stream {
    async fn open(server: &TestServer, path_and_query: &str, headers: &[(&str, &str)]) -> Stream {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let mut req = format!("GET {path_and_query} HTTP/1.1\r\nhost: {}\r\n", server.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        tokio::time::timeout(WAIT, reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        Stream {
            reader,
            status,
            headers,
            pending: Vec::new(),
            comments: 0,
            ended: false,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A whole body (an error answer), read to its length.
    async fn body(&mut self) -> Value {
        let len: usize = self.header("content-length").unwrap().parse().unwrap();
        let mut b = vec![0; len];
        self.reader.read_exact(&mut b).await.unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    /// Reads one chunk into `pending`; false at the end of the body or of the socket.
    async fn chunk(&mut self) -> bool {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let size = usize::from_str_radix(line.trim(), 16).unwrap();
        if size == 0 {
            return false;
        }
        let mut b = vec![0; size + 2];
        if self.reader.read_exact(&mut b).await.is_err() {
            return false;
        }
        self.pending.extend_from_slice(&b[..size]);
        true
    }

    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("an event within the wait bound")
    }

    async fn next_inner(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let mut event = Event {
                    id: None,
                    kind: "message".into(),
                    data: String::new(),
                };
                let mut comment = true;
                for line in text.lines() {
                    if line.is_empty() || line.starts_with(':') {
                        continue;
                    }
                    comment = false;
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.kind = value.to_owned(),
                        "data" => event.data.push_str(value),
                        other => panic!("unexpected field {other}"),
                    }
                }
                if comment {
                    self.comments += 1;
                    continue;
                }
                return Some(event);
            }
            if self.ended || !self.chunk().await {
                self.ended = true;
                return None;
            }
        }
    }

    /// The next `data` event, skipping others.
    async fn data(&mut self) -> Event {
        loop {
            let e = self.next().await.expect("the stream is open");
            if e.kind == "data" {
                return e;
            }
        }
    }
}

fn stream_path(channels: &[&str]) -> String {
    let q: Vec<String> = channels
        .iter()
        .map(|c| format!("channel={}", c.replace('/', "%2F").replace('*', "%2A")))
        .collect();
    format!("/event/stream?{}", q.join("&"))
}

async fn open_ok(server: &TestServer, channels: &[&str], extra: &[(&str, &str)]) -> Stream {
    let mut headers = vec![("x-api-key", KEY)];
    headers.extend_from_slice(extra);
    let mut s = Stream::open(server, &stream_path(channels), &headers).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    for n in 0..channels.len() {
        let e = s.next().await.unwrap();
        assert_eq!(e.kind, "subscribe_success", "{e:?}");
        assert_eq!(e.json()["id"], n.to_string());
    }
    s
}

async fn publish(server: &TestServer, channel: &str, events: &[Value]) -> Value {
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let (status, reply) = post(server, KEY, &json!({"channel": channel, "events": events})).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

#[tokio::test]
async fn events_arrive_as_websocket_frames_with_their_channel() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    let mut s = open_ok(&server, &["/default/a", "/chat/*"], &[]).await;
    publish(&server, "/default/a", &[json!({"n": 1})]).await;
    let e = s.data().await;
    assert_eq!(e.id, None, "no history, no id");
    assert_eq!(
        e.data,
        format!(
            r#"{{"type":"data","id":"0","channel":"/default/a","event":{}}}"#,
            serde_json::to_string(&json!({"n": 1}).to_string()).unwrap()
        )
    );
    let reply = publish(&server, "/chat/room/x", &[json!({"n": 2})]).await;
    let position = &reply["successful"][0]["position"];
    let e = s.data().await;
    let v = e.json();
    assert_eq!(v["id"], "1");
    assert_eq!(v["channel"], "/chat/room/x");
    assert_eq!(v["event"], json!({"n": 2}).to_string());
    assert_eq!(
        e.id.unwrap(),
        format!(
            "/chat/room/x {}:{} {}",
            position["epoch"].as_str().unwrap(),
            position["offset"],
            v["position"]["time_ms"]
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_comments_on_an_idle_stream() {
    let mut c = config();
    c.sse.keepalive_interval_ms = 50;
    let server = start(c).await;
    let mut s = open_ok(&server, &["/default/a"], &[]).await;
    publish(&server, "/default/a", &[json!({"n": 1})]).await;
    s.data().await;
    while s.comments < 2 {
        assert!(s.chunk().await);
        let _ = tokio::time::timeout(Duration::from_millis(1), s.next_inner()).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn refused_like_a_subscribe() {
    let server = start(config()).await;
    let mut s = Stream::open(&server, &stream_path(&["/default/a"]), &[]).await;
    assert_eq!(s.status, 401);
    assert_eq!(
        s.body().await["errors"][0]["errorType"],
        "UnauthorizedException"
    );
    let s = Stream::open(
        &server,
        &stream_path(&["/default/a"]),
        &[("x-api-key", "da2-wrongkey00000000000000000")],
    )
    .await;
    assert_eq!(s.status, 401);
    assert_eq!(s.header("x-amzn-errortype"), Some("UnauthorizedException"));
    let mut s = Stream::open(
        &server,
        &stream_path(&["/nowhere/a"]),
        &[("x-api-key", KEY)],
    )
    .await;
    let status = s.status;
    assert_eq!(status, 401, "{}", s.body().await);
    let mut s = Stream::open(&server, "/event/stream", &[("x-api-key", KEY)]).await;
    assert_eq!(s.status, 400);
    assert_eq!(
        s.body().await["errors"][0]["errorType"],
        "BadRequestException"
    );
    let mut s = Stream::open(&server, &stream_path(&["/*"]), &[("x-api-key", KEY)]).await;
    let status = s.status;
    assert_eq!(status, 400, "{}", s.body().await);
    server.stop().await;
}

async fn token(server: &TestServer, channels: &[&str], key: &str) -> (u16, Value) {
    let (status, _, body) = http(
        server,
        "POST",
        "/event/stream/token",
        &[("content-type", "application/json"), ("x-api-key", key)],
        json!({"channels": channels}).to_string().as_bytes(),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_token_opens_its_channels_once() {
    let server = start(config()).await;
    let (status, body) = token(&server, &["/default/a", "/other/*"], KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expiresInMs"], 60_000);
    let t = body["token"].as_str().unwrap().to_owned();
    assert_eq!(t.len(), 64);
    let mut s = Stream::open(&server, &format!("/event/stream?token={t}"), &[]).await;
    assert_eq!(s.status, 200);
    for _ in 0..2 {
        assert_eq!(s.next().await.unwrap().kind, "subscribe_success");
    }
    publish(&server, "/other/b/c", &[json!({"n": 1})]).await;
    assert_eq!(s.data().await.json()["channel"], "/other/b/c");
    // Single use.
    let mut again = Stream::open(&server, &format!("/event/stream?token={t}"), &[]).await;
    assert_eq!(again.status, 401);
    assert_eq!(
        again.body().await["errors"][0]["errorType"],
        "UnauthorizedException"
    );
    // A token only opens its own channels.
    let (_, body) = token(&server, &["/default/a"], KEY).await;
    let t = body["token"].as_str().unwrap();
    let mut other = Stream::open(
        &server,
        &format!("/event/stream?token={t}&channel=%2Fother%2Fx"),
        &[],
    )
    .await;
    let status = other.status;
    assert_eq!(status, 400, "{}", other.body().await);
    // Issued only to a credential that may subscribe to every channel asked.
    let (status, body) = token(&server, &["/default/a"], "da2-wrongkey00000000000000000").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = token(&server, &["/default/a", "/nowhere/a"], KEY).await;
    assert_eq!(status, 401, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_token_expires() {
    let mut c = config();
    c.sse.token_ttl_secs = 1;
    let server = start(c).await;
    let (_, body) = token(&server, &["/default/a"], KEY).await;
    let t = body["token"].as_str().unwrap();
    // Expiry is the passing of time itself: nothing to await but the clock.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s = Stream::open(&server, &format!("/event/stream?token={t}"), &[]).await;
    assert_eq!(s.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn streams_count_under_max_connections() {
    let mut c = config();
    c.limits.max_connections = 1;
    let server = start(c).await;
    let s = open_ok(&server, &["/default/a"], &[]).await;
    let mut second = Stream::open(
        &server,
        &stream_path(&["/default/a"]),
        &[("x-api-key", KEY)],
    )
    .await;
    assert_eq!(second.status, 429);
    assert_eq!(
        second.body().await["errors"][0]["errorType"],
        "LimitExceededError"
    );
    let (_, _, metrics) = http(&server, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("herald_active_sse_streams 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_active_connections 1\n"),
        "{metrics}"
    );
    // The place is freed when the stream ends.
    drop(s);
    let mut freed = false;
    for _ in 0..200 {
        let s = Stream::open(
            &server,
            &stream_path(&["/default/a"]),
            &[("x-api-key", KEY)],
        )
        .await;
        if s.status == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed);
    server.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off() {
    let mut c = config();
    c.limits.max_queued_bytes = 256 * 1024;
    c.limits.write_timeout_ms = 500;
    let server = start(c).await;
    // Opened and then never read.
    let s = open_ok(&server, &["/default/a"], &[]).await;
    let pad = "x".repeat(100 * 1024);
    // Far more than the socket buffers and the queue hold.
    for _ in 0..100 {
        publish(&server, "/default/a", &[json!({"pad": pad})]).await;
    }
    // The queue overflowed; the stream ends once its stalled write passes the write deadline.
    let mut cut = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let (_, _, metrics) = http(&server, "GET", "/metrics", &[], b"").await;
        let metrics = String::from_utf8(metrics).unwrap();
        if metrics.contains("herald_slow_consumer_disconnects_total 1\n") {
            assert!(
                metrics.contains("herald_active_sse_streams 0\n"),
                "{metrics}"
            );
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cut, "the stream was never cut");
    drop(s);
    server.stop().await;
}

/// Reads a stream, dropping it every few events and reopening it with `Last-Event-ID`, while a
/// publisher keeps publishing: every event arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_last_event_id_without_gap_or_duplicate() {
    const TOTAL: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let server = std::sync::Arc::new(start(history_config(dir.path(), None)).await);
    // Started once the first stream is subscribed: that one has no `Last-Event-ID`, so it sees
    // only what is published after it subscribed.
    let start_publisher = || {
        let server = server.clone();
        tokio::spawn(async move {
            for n in 0..TOTAL {
                publish(&server, "/chat/room", &[json!({"n": n})]).await;
                if n % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut publisher = None;
    let mut got: Vec<u64> = Vec::new();
    let mut last: Option<String> = None;
    let mut wildcard = false;
    while got.len() < TOTAL as usize {
        // Alternately the exact channel and a wildcard over it.
        let channel = if wildcard { "/chat/*" } else { "/chat/room" };
        wildcard = !wildcard;
        let extra: Vec<(&str, &str)> = last
            .as_deref()
            .map(|id| vec![("last-event-id", id)])
            .unwrap_or_default();
        let mut s = Stream::open(
            &server,
            &stream_path(&[channel]),
            &[&[("x-api-key", KEY)][..], &extra].concat(),
        )
        .await;
        assert_eq!(s.status, 200);
        let first = s.next().await.unwrap();
        assert_eq!(first.kind, "subscribe_success", "{first:?}");
        if last.is_some() {
            assert_eq!(first.json()["resume"]["recovered"], true, "{first:?}");
        }
        if publisher.is_none() {
            publisher = Some(start_publisher());
        }
        for _ in 0..25 {
            if got.len() == TOTAL as usize {
                break;
            }
            let e = s.data().await;
            let event: Value = serde_json::from_str(e.json()["event"].as_str().unwrap()).unwrap();
            got.push(event["n"].as_u64().unwrap());
            last = e.id.clone();
        }
    }
    publisher.expect("started").await.unwrap();
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>());
}

/// `curl -N` as a reader: its output lines, read on a thread of their own.
struct Curl {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Curl {
    fn start(url: &str) -> Curl {
        use std::io::BufRead;
        let mut child = std::process::Command::new("curl")
            .args(["-sN", "-H", &format!("x-api-key: {KEY}"), url])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("curl is installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Curl { child, lines }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.recv())
            .await
            .expect("a line within the wait bound")
            .expect("curl is running")
    }
}

impl Drop for Curl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn curl_reads_the_stream() {
    let server = start(config()).await;
    let mut curl = Curl::start(&server.url(&stream_path(&["/default/*"])));
    assert_eq!(curl.line().await, "event: subscribe_success");
    assert_eq!(
        curl.line().await,
        r#"data: {"type":"subscribe_success","id":"0"}"#
    );
    assert_eq!(curl.line().await, "");
    publish(&server, "/default/a/b", &[json!({"hello": "curl"})]).await;
    assert_eq!(curl.line().await, "event: data");
    assert_eq!(
        curl.line().await,
        format!(
            r#"data: {{"type":"data","id":"0","channel":"/default/a/b","event":{}}}"#,
            serde_json::to_string(&json!({"hello": "curl"}).to_string()).unwrap()
        )
    );
    drop(curl);
    server.stop().await;
}

/// A reload that no longer allows a stream's subscription ends it, telling the client why.
#[tokio::test]
async fn a_reload_revokes_and_the_stream_ends() {
    use herald_server::config::NamespaceConfig;
    use std::sync::{Arc, Mutex};
    const ADMIN: &str = "admin-secret-0000";
    let mut with_app = config();
    with_app.admin.keys = vec![ADMIN.into()];
    with_app.namespaces.push(NamespaceConfig {
        name: "app".into(),
        publish_auth_modes: None,
        subscribe_auth_modes: None,
        history: None,
        handlers: None,
        rules: None,
        presence: None,
    });
    let mut without = with_app.clone();
    without.namespaces.retain(|n| n.name != "app");
    let next = Arc::new(Mutex::new(with_app.clone()));
    let source = next.clone();
    let server = start_reloadable(
        with_app,
        Box::new(move || Ok(source.lock().unwrap().clone())),
    )
    .await;
    let mut s = open_ok(&server, &["/app/a"], &[]).await;
    *next.lock().unwrap() = without;
    let (status, _, _) = http(
        &server,
        "POST",
        "/admin/reload",
        &[("x-admin-key", ADMIN)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let e = s.next().await.unwrap();
    assert_eq!(e.kind, "subscribe_error", "{e:?}");
    assert_eq!(e.json()["errors"][0]["errorType"], "UnauthorizedException");
    assert_eq!(
        s.next().await,
        None,
        "the stream ends with its last subscription"
    );
    server.stop().await;
}
