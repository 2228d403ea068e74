//! One WebSocket to the realtime endpoint: TCP (and TLS) opened here, the upgrade with the
//! credentials in the `header-` subprotocol, `connection_init` → `connection_ack`, then JSON
//! messages in and out.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::auth::{Operation, Signer};
use crate::endpoint::Endpoint;
use crate::error::{Error, ServerErrors, excerpt};

/// The most we read of one socket message or reply. Events are at most 240 KB and requests
/// 1.2 MB, so anything larger is a broken or hostile server, not something to buffer.
pub(crate) const MAX_MESSAGE: usize = 4 << 20;
/// AppSync's documented value; used when `connection_ack` does not say.
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_millis(300_000);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open, acknowledged socket.
pub(crate) struct Socket {
    ws: WebSocketStream<Box<dyn Io>>,
    url: String,
    /// The server's `connectionTimeoutMs`: silence longer than this means the link is dead.
    pub(crate) keepalive: Duration,
}

/// Why a read ended the socket.
pub(crate) enum Closed {
    /// The server closed it (with its close frame, if any) or the stream ended.
    ByServer(String),
    /// A read error.
    Failed(Error),
}

impl Socket {
    /// Connects, upgrades and waits for `connection_ack`, all within `timeout`.
    pub(crate) async fn open(
        endpoint: &Endpoint,
        signer: &Signer,
        tls: &Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<Socket, Error> {
        let opening = async {
            let mut socket = Socket::upgrade(endpoint, signer, tls).await?;
            socket.send(&json!({"type": "connection_init"})).await?;
            loop {
                let msg = match socket.recv().await {
                    Ok(msg) => msg,
                    Err(Closed::ByServer(why)) => {
                        return Err(Error::ConnectionLost {
                            reason: format!("the server closed the connection{why}"),
                            may_have_published: false,
                        });
                    }
                    Err(Closed::Failed(e)) => return Err(e),
                };
                match msg.get("type").and_then(Value::as_str).unwrap_or("") {
                    "connection_ack" => {
                        socket.keepalive = msg
                            .get("connectionTimeoutMs")
                            .and_then(Value::as_u64)
                            .map_or(DEFAULT_CONNECTION_TIMEOUT, Duration::from_millis);
                        return Ok(socket);
                    }
                    "connection_error" | "error" => {
                        return Err(Error::ConnectionRejected(ServerErrors::from_message(&msg)));
                    }
                    _ => {} // ka before the ack, and anything else a server may add.
                }
            }
        };
        match tokio::time::timeout(timeout, opening).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                what: "connection_ack",
                after: timeout,
            }),
        }
    }

    async fn upgrade(
        endpoint: &Endpoint,
        signer: &Signer,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Socket, Error> {
        let url = endpoint.realtime();
        let url_text = url.to_string();
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        // IPv6 literals come bracketed from the URL; the socket and TLS want them bare.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let connect_error = |source| Error::Connect {
            url: url_text.clone(),
            source,
        };
        let tcp = TcpStream::connect((bare, port))
            .await
            .map_err(connect_error)?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if url.scheme() == "wss" {
            let name = rustls_pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|_| Error::Config(format!("{bare:?} is not a valid TLS server name")))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(connect_error)?;
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        let auth = signer.ws_authorization(&Operation::Connect);
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Value::Object(auth).to_string());
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ws_error(&url_text, e))?;
        let protocols = HeaderValue::from_str(&format!("aws-appsync-event-ws, header-{header}"))
            .map_err(|_| Error::Config("the credentials do not fit in a header".into()))?;
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, protocols);
        let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE));
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
            .await
            .map_err(|e| upgrade_error(&url_text, e))?;
        Ok(Socket {
            ws,
            url: url_text,
            keepalive: DEFAULT_CONNECTION_TIMEOUT,
        })
    }

    pub(crate) async fn send(&mut self, msg: &Value) -> Result<(), Error> {
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| ws_error(&self.url, e))
    }

    /// The next JSON message, skipping control frames. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Result<Map<String, Value>, Closed> {
        loop {
            let text = match self.ws.next().await {
                None => return Err(Closed::ByServer(String::new())),
                Some(Err(e)) => return Err(Closed::Failed(ws_error(&self.url, e))),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Err(Closed::ByServer(format!(" ({frame})")));
                }
                Some(Ok(Message::Close(None))) => return Err(Closed::ByServer(String::new())),
                Some(Ok(_)) => continue, // ping/pong (answered by tungstenite), binary.
            };
            return match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(msg)) => Ok(msg),
                _ => Err(Closed::Failed(Error::Protocol(format!(
                    "a message that is not a JSON object: {}",
                    excerpt(&text)
                )))),
            };
        }
    }

    /// Sends a close frame; errors are moot, the socket is being dropped.
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

fn ws_error(url: &str, e: tungstenite::Error) -> Error {
    Error::WebSocket {
        url: url.to_owned(),
        source: Box::new(e),
    }
}

fn upgrade_error(url: &str, e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            Error::Upgrade {
                url: url.to_owned(),
                status: resp.status().as_u16(),
                body: excerpt(&body),
            }
        }
        e => ws_error(url, e),
    }
}
