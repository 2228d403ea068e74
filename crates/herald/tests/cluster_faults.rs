//! Cluster faults with real processes: a 3-server NATS cluster (JetStream, history streams with
//! 3 replicas) and 3 `herald serve` processes running the configuration of `docs/cluster.md` as
//! written (only addresses and the data directory differ).
//!
//! 1. A subscriber on node A gets events published on node B.
//! 2. Node A is killed with SIGKILL; events keep being published on node C.
//! 3. The subscriber reconnects to node B and resumes: exactly the events it missed, in order.
//! 4. A NATS server is killed and restarted while publishing goes on; publishes may fail with a
//!    clear error meanwhile, but every acknowledged event reaches the subscriber and stays in
//!    history, each once, with dense offsets.

#[path = "support/http.rs"]
mod http;
#[path = "../../history/tests/support/nats.rs"]
mod nats;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nats::{NatsCluster, free_port};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The API key of the documented configuration.
const KEY: &str = "da2-0123456789abcdefghijklmnop";
const WAIT: Duration = Duration::from_secs(30);

fn request(port: u16, head: &str, body: &str) -> Option<(u16, Value)> {
    http::request(port, KEY, head, body)
}

struct Node {
    child: Child,
}

impl Node {
    /// Starts `herald serve`; retried while the NATS cluster is still electing its JetStream
    /// leader (the node exits when it cannot create its history stream).
    fn start(config: &std::path::Path, port: u16) -> Node {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(["serve", "--config"])
                .arg(config)
                .stdout(log(config))
                .stderr(log(config))
                .spawn()
                .expect("herald starts");
            loop {
                if request(port, "GET /healthz", "").is_some() {
                    return Node { child };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "herald did not become ready");
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(Instant::now() < deadline, "herald kept failing to start");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no shutdown code runs.
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a node's log goes: `$HERALD_TEST_LOGS/<config name>.log` when set (for debugging).
fn log(config: &std::path::Path) -> Stdio {
    let Some(dir) = std::env::var_os("HERALD_TEST_LOGS") else {
        return Stdio::null();
    };
    let name = config.file_stem().unwrap_or_default().to_string_lossy();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::path::Path::new(&dir).join(format!("{name}.log")))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// Publishes one event over HTTP; the offset it was stored at, if acknowledged.
fn publish(port: u16, event: &str) -> Result<u64, Value> {
    let body = json!({"channel": "/chat/room", "events": [event]}).to_string();
    match request(port, "POST /event", &body) {
        Some((200, reply)) => reply["successful"][0]["position"]["offset"]
            .as_u64()
            .ok_or(reply),
        Some((_, reply)) => Err(reply),
        None => Err(Value::Null),
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn subscribe(port: u16, resume: Option<(&str, u64)>) -> (Socket, Value) {
    let mut req = format!("ws://127.0.0.1:{port}/event/realtime")
        .into_client_request()
        .expect("request");
    let h = req.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("aws-appsync-event-ws"),
    );
    h.insert("x-api-key", HeaderValue::from_static(KEY));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("upgrade");
    let mut sub = json!({"type": "subscribe", "id": "s", "channel": "/chat/room",
        "authorization": {"x-api-key": KEY}});
    if let Some((epoch, offset)) = resume {
        sub["resume"] = json!({"epoch": epoch, "offset": offset});
    }
    ws.send(Message::text(sub.to_string())).await.expect("send");
    let reply = recv(&mut ws).await;
    (ws, reply)
}

/// The next frame that is not a keep-alive.
async fn recv(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait bound")
            .expect("open")
            .expect("no protocol error");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("JSON");
            if v["type"] != "ka" {
                return v;
            }
        }
    }
}

/// Receives data frames until every offset up to `top` arrived; returns (offset, event) pairs.
async fn collect_until(ws: &mut Socket, top: u64) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    loop {
        let f = recv(ws).await;
        assert_eq!(f["type"], "data", "{f}");
        let offset = f["position"]["offset"].as_u64().expect("offset");
        got.push((offset, f["event"].as_str().unwrap_or_default().to_owned()));
        if offset >= top {
            return got;
        }
    }
}

fn assert_dense(got: &[(u64, String)], from: u64) {
    let offsets: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        offsets,
        (from..from + got.len() as u64).collect::<Vec<_>>(),
        "each event once, in offset order, none missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_and_restarted_nats_lose_nothing_acknowledged() {
    let mut cluster = NatsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes: Vec<Node> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = dir.path().join(format!("herald-{i}.toml"));
        let text = documented_config(
            *port,
            &cluster.urls(),
            i,
            &dir.path().join(format!("data-{i}")),
        );
        std::fs::write(&config, text).unwrap();
        nodes.push(Node::start(&config, *port));
    }
    let (a, b, c) = (ports[0], ports[1], ports[2]);

    // 1. Subscribed on A, published on B.
    let (mut ws, ok) = subscribe(a, None).await;
    assert_eq!(ok["type"], "subscribe_success", "{ok}");
    let mut acked: Vec<(u64, String)> = Vec::new();
    for i in 0..20 {
        let e = format!("\"e{i}\"");
        acked.push((publish(b, &e).expect("published on B"), e));
    }
    let first = acked[0].0;
    assert_dense(&acked, first);
    let got = collect_until(&mut ws, acked[19].0).await;
    assert_eq!(got, acked, "live on A, from B");
    let epoch = epoch_of(b);

    eprintln!("step: 2. A dies");
    // 2. A dies; C keeps publishing.
    nodes[0].kill();
    for i in 20..40 {
        let e = format!("\"e{i}\"");
        acked.push((publish(c, &e).expect("published on C"), e));
    }
    drop(ws);

    eprintln!("step: 3. Resume on B");
    // 3. Resume on B from the last event seen: exactly the 20 missed.
    let (mut ws, ok) = subscribe(b, Some((&epoch, acked[19].0))).await;
    assert_eq!(ok["type"], "subscribe_success", "{ok}");
    assert_eq!(
        ok["resume"],
        json!({"recovered": true, "replayed": 20}),
        "{ok}"
    );
    let got = collect_until(&mut ws, acked[39].0).await;
    assert_eq!(got, acked[20..], "the missed events, once, in order");

    eprintln!("step: 4. A NATS server ");
    // 4. A NATS server dies and comes back while B and C keep publishing.
    cluster.servers[0].stop();
    let mut refused = 0;
    let mut i = 40;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < 70 {
        assert!(Instant::now() < deadline, "publishing never recovered");
        if i == 55 {
            cluster.servers[0].restart();
        }
        let e = format!("\"e{i}\"");
        i += 1;
        match publish(if i % 2 == 0 { b } else { c }, &e) {
            Ok(offset) => acked.push((offset, e)),
            Err(reply) => {
                // Refused with a reason, never silently dropped.
                assert!(!reply.is_null(), "a publish got no answer");
                if refused == 0 {
                    eprintln!("first refusal: {reply}");
                }
                refused += 1;
                // Pace retries while NATS moves the stream's leader.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let top = acked.last().map(|a| a.0).unwrap_or_default();
    let got = collect_until(&mut ws, top).await;
    assert_dense(&got, acked[39].0 + 1);
    for a in &acked[40..] {
        assert!(got.contains(a), "acknowledged {a:?} was delivered");
    }

    // Everything acknowledged is in history, read from C.
    let (status, page) = request(
        c,
        &format!(
            "GET /event/history?channel=/chat/room&since={epoch}:{}&limit=1000",
            first - 1
        ),
        "",
    )
    .expect("history answered");
    assert_eq!(status, 200, "{page}");
    let stored: Vec<(u64, String)> = page["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["position"]["offset"].as_u64().unwrap_or_default(),
                        e["event"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_dense(&stored, first);
    for a in &acked {
        assert!(stored.contains(a), "acknowledged {a:?} is in history");
    }
    eprintln!(
        "cluster faults: {} acknowledged, {refused} refused during the NATS restart, {} stored",
        acked.len(),
        stored.len()
    );
}

/// The Herald configuration of `docs/cluster.md`, as written, with only this machine's addresses
/// and a data directory filled in: the guide's config is the one under test.
fn documented_config(port: u16, nats_urls: &str, i: usize, data_dir: &std::path::Path) -> String {
    let doc = include_str!("../../../docs/cluster.md");
    let start = doc
        .find("```toml\n")
        .expect("docs/cluster.md has a TOML block")
        + 8;
    let end = start + doc[start..].find("```").expect("the block ends");
    let mut text = format!("data_dir = {data_dir:?}\n");
    for line in doc[start..end].lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        let line = match key {
            "listen" => format!("listen = \"127.0.0.1:{port}\""),
            "nats_url" => format!("nats_url = \"{nats_urls}\""),
            "node_name" => format!("node_name = \"herald-{i}\""),
            _ => line.to_owned(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    for key in [
        "listen = ",
        "nats_url = ",
        "node_name = ",
        "history_replicas = 3",
        KEY,
        "name = \"chat\"",
    ] {
        assert!(text.contains(key), "docs/cluster.md's config has {key}");
    }
    text
}

/// The history epoch, from the history endpoint of any node.
fn epoch_of(port: u16) -> String {
    let (_, page) = request(port, "GET /event/history?channel=/chat/room&limit=1", "")
        .expect("history answered");
    page["top"]["epoch"].as_str().unwrap_or_default().to_owned()
}
