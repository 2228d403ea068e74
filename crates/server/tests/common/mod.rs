//! Test harness: a real Herald server on 127.0.0.1:0 and a real WebSocket client
//! (tokio-tungstenite), speaking the exact AppSync JSON.
//!
//! `auth` adds the world of the `auth_*` tests: identity providers, the authorizer webhook and
//! the other authorization modes.
#![allow(dead_code)]

pub mod auth;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_server::config::{ApiKeyConfig, NamespaceConfig, NamespaceHistory};
use herald_server::{Config, Server};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const KEY: &str = "da2-testkey0000000000000000";
/// Bound on waiting for anything that should arrive; tests never sleep for a fixed time.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }

    /// A server run by another process at `addr`: clients connect to it; `stop` does nothing.
    pub fn elsewhere(addr: SocketAddr) -> TestServer {
        TestServer {
            addr,
            stop: None,
            done: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub fn config() -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        namespaces: ["default", "other"]
            .into_iter()
            .map(|name| NamespaceConfig {
                name: name.into(),
                publish_auth_modes: None,
                subscribe_auth_modes: None,
                history: None,
                handlers: None,
                rules: None,
                presence: None,
            })
            .collect(),
        shutdown_grace_ms: 2000,
        ..Config::default()
    };
    c.auth.api_keys.push(ApiKeyConfig {
        key: KEY.into(),
        name: Some("test".into()),
        expires: None,
    });
    // Every test client is 127.0.0.1: lift the per-address rates (the abuse tests set their own).
    c.admission.max_connects_per_address_per_second = 100_000;
    c.admission.max_http_publishes_per_address_per_second = 100_000;
    c.admission.max_socket_publishes_per_address_per_second = 100_000;
    c
}

/// The test config plus a `chat` namespace that keeps history under `dir`, at most `max_count`
/// events per channel.
pub fn history_config(dir: &std::path::Path, max_count: Option<u64>) -> Config {
    let mut c = config();
    c.data_dir = dir.to_owned();
    c.namespaces.push(NamespaceConfig {
        name: "chat".into(),
        publish_auth_modes: None,
        subscribe_auth_modes: None,
        handlers: None,
        rules: None,
        presence: None,
        history: Some(NamespaceHistory {
            max_age_secs: None,
            max_count,
        }),
    });
    c
}

pub async fn start(config: Config) -> TestServer {
    start_with(config, None).await
}

/// Starts a server whose reloads (`POST /admin/reload`) read `source`.
pub async fn start_reloadable(config: Config, source: herald_server::ReloadSource) -> TestServer {
    start_with(config, Some(source)).await
}

async fn start_with(config: Config, source: Option<herald_server::ReloadSource>) -> TestServer {
    let server = Server::bind(config).await.expect("server starts");
    if let Some(source) = source {
        server.set_reload_source(source);
    }
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        stop: Some(stop),
        done: Some(done),
    }
}

pub fn b64url(s: &str) -> String {
    herald_protocol::auth::base64_encode(s.as_bytes())
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string()
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How the connect authorization is sent.
pub enum Auth<'a> {
    /// The `header-<base64url>` subprotocol, as amplify-js does.
    Subprotocol(&'a str),
    /// Real headers on the upgrade request, as the Swift and Kotlin SDKs do.
    Headers(&'a str),
}

impl Client {
    pub async fn connect(server: &TestServer, auth: Auth<'_>) -> Client {
        Client::connect_at(server, "/event/realtime", auth).await
    }

    /// [`Client::connect`] to another path (an API's `/apis/{apiId}/event/realtime`).
    pub async fn connect_at(server: &TestServer, path: &str, auth: Auth<'_>) -> Client {
        let url = format!("ws://{}{path}?x-amz-user-agent=test", server.addr);
        let mut req = url.into_client_request().unwrap();
        let host = server.addr.to_string();
        let h = req.headers_mut();
        match auth {
            Auth::Subprotocol(key) => {
                let header = json!({"host": host, "x-api-key": key}).to_string();
                let protocols = format!("aws-appsync-event-ws, header-{}", b64url(&header));
                h.insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_str(&protocols).unwrap(),
                );
            }
            Auth::Headers(key) => {
                h.insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static("aws-appsync-event-ws"),
                );
                h.insert("X-Api-Key", HeaderValue::from_str(key).unwrap());
            }
        }
        let (ws, response) = tokio_tungstenite::connect_async(req)
            .await
            .expect("upgrade");
        assert_eq!(
            response.headers().get("sec-websocket-protocol").unwrap(),
            "aws-appsync-event-ws"
        );
        Client { ws }
    }

    /// Connects and completes `connection_init` → `connection_ack`.
    pub async fn ready(server: &TestServer) -> Client {
        let mut c = Client::connect(server, Auth::Subprotocol(KEY)).await;
        c.send(json!({"type": "connection_init"})).await;
        let ack = c.recv().await;
        assert_eq!(ack["type"], "connection_ack");
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_string())).await.unwrap();
    }

    /// Next JSON message (skipping keep-alives unless asked for), or panics after `WAIT`.
    pub async fn recv(&mut self) -> Value {
        loop {
            let v = self.recv_any().await;
            if v["type"] != "ka" {
                return v;
            }
        }
    }

    pub async fn recv_any(&mut self) -> Value {
        let msg = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("a message within the wait bound")
            .expect("the stream is open")
            .expect("no protocol error");
        match msg {
            Message::Text(t) => serde_json::from_str(&t).expect("JSON"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Waits for the server's close frame and returns it.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close within the wait bound")
            {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => return None,
                Some(Err(e)) => panic!("error before close: {e}"),
            }
        }
    }

    pub async fn subscribe(&mut self, id: &str, channel: &str) -> Value {
        self.send(json!({
            "type": "subscribe", "id": id, "channel": channel,
            "authorization": {"x-api-key": KEY, "host": "localhost"}
        }))
        .await;
        self.recv().await
    }

    /// Subscribes with `resume` (a Herald extension) and returns the reply.
    pub async fn resume(&mut self, id: &str, channel: &str, resume: Value) -> Value {
        self.send(json!({
            "type": "subscribe", "id": id, "channel": channel,
            "authorization": {"x-api-key": KEY, "host": "localhost"}, "resume": resume
        }))
        .await;
        self.recv().await
    }

    pub async fn publish(&mut self, id: &str, channel: &str, events: &[Value]) -> Value {
        let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        self.send(json!({
            "type": "publish", "id": id, "channel": channel, "events": events,
            "authorization": {"x-api-key": KEY, "host": "localhost"}
        }))
        .await;
        self.recv().await
    }
}

/// A minimal HTTP/1.1 client over a real socket, for `POST /event` and friends.
pub async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        server.addr,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // A server may answer before reading an oversized body; ignore a failed write then.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.as_bytes().to_vec())
}

/// `POST /event` with the test key; returns status and JSON body.
pub async fn post(server: &TestServer, key: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = http(
        server,
        "POST",
        "/event",
        &[("content-type", "application/json"), ("X-API-KEY", key)],
        body.to_string().as_bytes(),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}
