//! The three wire protocols the bench speaks, behind one `Endpoint`: AppSync Events (Herald),
//! Pusher (Sockudo) and the NATS text protocol over WebSocket (nats-server).

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;

use crate::ws::{self, OP_PING, OP_TEXT, WsReader, WsWriter, find};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// AWS AppSync Events (Herald).
    Appsync,
    /// Pusher channels protocol (Sockudo).
    Pusher,
    /// NATS text protocol over WebSocket (nats-server).
    Nats,
}

/// How subscribers of the publish/subscribe scenarios connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The protocol's WebSocket.
    Ws,
    /// Herald's Server-Sent Events stream, `GET /event/stream` (AppSync protocol only).
    Sse,
}

/// Where and how to reach the server under test.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub protocol: Protocol,
    pub ws_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub api_key: String,
    pub namespace: String,
    pub app_id: String,
    pub app_key: String,
    pub app_secret: String,
    /// Events per channel group; a wildcard subscriber covers one group.
    pub group_size: u32,
    pub transport: Transport,
    /// AppSync subscribers ask for the channel on every event (Herald's `withChannel`).
    pub with_channel: bool,
}

impl Endpoint {
    pub fn http_host(&self) -> String {
        self.http_addr.to_string()
    }

    /// The concrete channel with index `chan`.
    pub fn channel(&self, chan: u32) -> String {
        let g = chan / self.group_size;
        match self.protocol {
            Protocol::Appsync => format!("/{}/g{g}/c{chan}", self.namespace),
            Protocol::Pusher => format!("g{g}-c{chan}"),
            Protocol::Nats => format!("{}.g{g}.c{chan}", self.namespace),
        }
    }

    /// The wildcard covering group `group` (every channel `c` with `c / group_size == group`).
    pub fn wildcard(&self, group: u32) -> anyhow::Result<String> {
        match self.protocol {
            Protocol::Appsync => Ok(format!("/{}/g{group}/*", self.namespace)),
            Protocol::Nats => Ok(format!("{}.g{group}.>", self.namespace)),
            Protocol::Pusher => bail!("the Pusher protocol has no wildcard subscriptions"),
        }
    }

    /// The bytes that start the `channel` member of an event delivered on subscription `sub`
    /// (`"channel":"/ns/a"` for an exact channel, `"channel":"/ns/g0/` for a wildcard), when
    /// events carry the channel: with `withChannel`, and always over Server-Sent Events.
    pub fn channel_member(&self, sub: &str) -> Option<Vec<u8>> {
        if self.protocol != Protocol::Appsync
            || !(self.with_channel || self.transport == Transport::Sse)
        {
            return None;
        }
        Some(
            match sub.strip_suffix('*') {
                Some(prefix) => format!(r#""channel":"{prefix}"#),
                None => format!(r#""channel":"{sub}""#),
            }
            .into_bytes(),
        )
    }

    /// Path and headers of the Server-Sent Events request subscribing to `channel`.
    pub fn sse_request(&self, channel: &str) -> (String, String) {
        (
            format!("/event/stream?channel={channel}"),
            format!("x-api-key: {}\r\n", self.api_key),
        )
    }

    pub fn supports_http_publish(&self) -> bool {
        self.protocol != Protocol::Nats
    }

    pub fn supports_ws_publish(&self) -> bool {
        self.protocol != Protocol::Pusher
    }

    /// The authorization object of this endpoint's API key.
    pub fn auth_json(&self) -> String {
        serde_json::json!({"host": self.http_host(), "x-api-key": self.api_key}).to_string()
    }

    /// Connects and completes the protocol's connection handshake.
    pub async fn open(&self, bind: Option<IpAddr>) -> anyhow::Result<(WsReader, WsWriter)> {
        let host = self.ws_addr.to_string();
        let (path, protocols) = match self.protocol {
            Protocol::Appsync => {
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.auth_json());
                (
                    "/event/realtime".to_owned(),
                    vec!["aws-appsync-event-ws".to_owned(), format!("header-{b64}")],
                )
            }
            Protocol::Pusher => (
                format!(
                    "/app/{}?protocol=7&client=herald-bench&version=0.1",
                    self.app_key
                ),
                vec![],
            ),
            Protocol::Nats => ("/".to_owned(), vec![]),
        };
        let up = ws::Upgrade {
            addr: self.ws_addr,
            bind,
            host: &host,
            path: &path,
            protocols: &protocols,
        };
        let (mut r, mut w) = ws::connect(&up).await?;
        match self.protocol {
            Protocol::Appsync => {
                w.send(OP_TEXT, br#"{"type":"connection_init"}"#).await?;
                wait_for(
                    &mut r,
                    &mut w,
                    b"\"connection_ack\"",
                    &[b"connection_error"],
                )
                .await?;
            }
            Protocol::Pusher => {
                wait_for(
                    &mut r,
                    &mut w,
                    b"pusher:connection_established",
                    &[b"pusher:error"],
                )
                .await?;
            }
            Protocol::Nats => {
                wait_for(&mut r, &mut w, b"INFO", &[b"-ERR"]).await?;
                w.send(OP_TEXT, b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":false}\r\n")
                    .await?;
            }
        }
        Ok((r, w))
    }

    /// Subscribes `sub_id` to `channel` and waits for the server to confirm it.
    pub async fn subscribe(
        &self,
        r: &mut WsReader,
        w: &mut WsWriter,
        channel: &str,
        sub_id: u64,
    ) -> anyhow::Result<()> {
        match self.protocol {
            Protocol::Appsync => {
                let with = if self.with_channel {
                    r#","withChannel":true"#
                } else {
                    ""
                };
                let msg = format!(
                    r#"{{"type":"subscribe","id":"s{sub_id}","channel":"{channel}"{with},"authorization":{}}}"#,
                    self.auth_json()
                );
                w.send(OP_TEXT, msg.as_bytes()).await?;
                wait_for(
                    r,
                    w,
                    b"subscribe_success",
                    &[b"subscribe_error", b"\"error\""],
                )
                .await
            }
            Protocol::Pusher => {
                let msg =
                    format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
                w.send(OP_TEXT, msg.as_bytes()).await?;
                wait_for(
                    r,
                    w,
                    b"subscription_succeeded",
                    &[b"pusher:error", b"subscription_error"],
                )
                .await
            }
            Protocol::Nats => {
                // PONG after PING proves the SUB before it was processed.
                let msg = format!("SUB {channel} {sub_id}\r\nPING\r\n");
                w.send(OP_TEXT, msg.as_bytes()).await?;
                wait_for(r, w, b"PONG", &[b"-ERR"]).await
            }
        }
    }

    /// Path, extra headers and body of an HTTP publish of `events` (unescaped JSON) to `channel`.
    pub fn http_publish(&self, channel: &str, events: &[String]) -> (String, String, Vec<u8>) {
        match self.protocol {
            Protocol::Appsync | Protocol::Nats => {
                let mut body = format!(r#"{{"channel":"{channel}","events":["#);
                push_escaped_list(&mut body, events);
                body.push_str("]}");
                (
                    "/event".to_owned(),
                    format!("x-api-key: {}\r\n", self.api_key),
                    body.into_bytes(),
                )
            }
            Protocol::Pusher => {
                let (path, body) = if events.len() == 1 {
                    let body = format!(
                        r#"{{"name":"e","channels":["{channel}"],"data":"{}"}}"#,
                        crate::marker::escaped(&events[0])
                    );
                    (format!("/apps/{}/events", self.app_id), body)
                } else {
                    let items: Vec<String> = events
                        .iter()
                        .map(|e| {
                            format!(
                                r#"{{"name":"e","channel":"{channel}","data":"{}"}}"#,
                                crate::marker::escaped(e)
                            )
                        })
                        .collect();
                    (
                        format!("/apps/{}/batch_events", self.app_id),
                        format!(r#"{{"batch":[{}]}}"#, items.join(",")),
                    )
                };
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let q = crate::pusher::signed_query(
                    &self.app_key,
                    &self.app_secret,
                    &path,
                    body.as_bytes(),
                    ts,
                );
                (format!("{path}?{q}"), String::new(), body.into_bytes())
            }
        }
    }

    /// Whether an HTTP publish response means every event was accepted.
    pub fn http_publish_ok(&self, status: u16, body: &[u8]) -> bool {
        match self.protocol {
            Protocol::Appsync | Protocol::Nats => {
                status == 200 && find(body, b"\"failed\":[]").is_some()
            }
            Protocol::Pusher => status == 200,
        }
    }

    /// The WebSocket payload publishing `events` to `channel`; `op_id` comes back in the ack.
    pub fn ws_publish(&self, channel: &str, op_id: &str, events: &[String]) -> Vec<u8> {
        match self.protocol {
            Protocol::Appsync | Protocol::Pusher => {
                let mut s = format!(
                    r#"{{"type":"publish","id":"{op_id}","channel":"{channel}","events":["#
                );
                push_escaped_list(&mut s, events);
                s.push_str(r#"],"authorization":"#);
                s.push_str(&self.auth_json());
                s.push('}');
                s.into_bytes()
            }
            Protocol::Nats => {
                let mut s = String::new();
                for e in events {
                    s.push_str(&format!("PUB {channel} {}\r\n{e}\r\n", e.len()));
                }
                // The PONG to this PING is the publisher's acknowledgement (flow control).
                s.push_str("PING\r\n");
                s.into_bytes()
            }
        }
    }
}

fn push_escaped_list(out: &mut String, events: &[String]) {
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&crate::marker::escaped(e));
        out.push('"');
    }
}

/// Answers keep-alive pings the way each protocol expects; returns true if `payload` was one.
pub fn answer_ping(w: &mut WsWriter, opcode: u8, payload: &[u8]) -> bool {
    if opcode == OP_PING {
        w.queue(ws::OP_PONG, payload);
        return true;
    }
    if payload.starts_with(b"PING\r\n") {
        w.queue(OP_TEXT, b"PONG\r\n");
        return true;
    }
    if find(payload, b"pusher:ping").is_some() {
        w.queue(OP_TEXT, br#"{"event":"pusher:pong","data":{}}"#);
        return true;
    }
    false
}

/// Reads messages until one contains `want`; fails on one containing any of `errors`.
async fn wait_for(
    r: &mut WsReader,
    w: &mut WsWriter,
    want: &[u8],
    errors: &[&[u8]],
) -> anyhow::Result<()> {
    loop {
        let (op, msg) = r
            .recv_owned()
            .await
            .context("waiting for handshake reply")?;
        if op == ws::OP_CLOSE {
            bail!(
                "server closed the connection: {}",
                String::from_utf8_lossy(&msg)
            );
        }
        if find(&msg, want).is_some() {
            return Ok(());
        }
        if errors.iter().any(|e| find(&msg, e).is_some()) {
            bail!("server refused: {}", String::from_utf8_lossy(&msg));
        }
        if answer_ping(w, op, &msg) {
            w.flush().await?;
        }
    }
}
