//! The one error type of the crate, and the server's own error lists it carries.

use std::fmt;

use serde::Deserialize;

/// A boxed underlying error (HTTP client, TLS, WebSocket), kept as the `source()` so the whole
/// chain can be printed without exposing those crates' types in this API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong. Most variants end what was being done; two are notices on a
/// subscription's stream after which it keeps going: [`Error::Gap`] and [`Error::Broadcast`]
/// (see [`Error::is_fatal`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client was configured with something unusable (endpoint, CA file, credentials,
    /// region); nothing was sent.
    #[error("{0}")]
    Config(String),
    /// An event given to publish is not one JSON value (checked before anything is sent).
    #[error("event {number} is not JSON ({reason}): {excerpt}")]
    InvalidEvent {
        /// 1-based, as people count arguments.
        number: usize,
        reason: String,
        excerpt: String,
    },
    /// A publish takes 1 to 5 events.
    #[error("{0} events given; a publish takes 1 to 5")]
    EventCount(usize),
    /// The TCP connection or the TLS handshake failed.
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP request failed before a reply (connection, TLS, reading the body).
    #[error("{method} {url} failed")]
    Http {
        method: &'static str,
        url: String,
        #[source]
        source: BoxError,
    },
    /// The server refused the WebSocket upgrade with an HTTP status.
    #[error("{url} refused the WebSocket upgrade: HTTP {status}: {body}")]
    Upgrade {
        url: String,
        status: u16,
        body: String,
    },
    /// The WebSocket handshake or a later read or write failed.
    #[error("WebSocket error on {url}")]
    WebSocket {
        url: String,
        #[source]
        source: BoxError,
    },
    /// The server refused the connection (`connection_error`), usually its credentials.
    #[error("the server rejected the connection: {0}")]
    ConnectionRejected(ServerErrors),
    /// The server refused a subscription (`subscribe_error`).
    #[error("subscribe to {channel} failed: {errors}")]
    SubscribeRejected {
        channel: String,
        errors: ServerErrors,
    },
    /// The server refused a publish: HTTP with its status, or `publish_error` on the socket.
    #[error("{errors}{}", .status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    PublishRejected {
        status: Option<u16>,
        errors: ServerErrors,
    },
    /// The server answered with something that is not the protocol (an HTTP error page, a
    /// frame that is not JSON).
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// Nothing arrived in time: `what` names what was awaited.
    #[error("no {what} from the server within {} ms", .after.as_millis())]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
    /// The connection dropped and is not coming back (reconnecting is off, or was refused).
    /// For a publish in flight, `may_have_published` says the server may have stored it.
    #[error("the connection was lost: {reason}")]
    ConnectionLost {
        reason: String,
        may_have_published: bool,
    },
    /// The connection was closed by this client ([`crate::Connection::close`]).
    #[error("the connection is closed")]
    Closed,
    /// Notice, not fatal: after a reconnect, the server could not replay what this subscription
    /// missed (`reason` is Herald's, e.g. `expired`, `too_many`, `no_history`, or `unsupported`
    /// for a server without the resume extension, such as AWS). Events may be missing; the
    /// subscription goes on live.
    #[error("events may be missing on {channel}: the resume was not served ({reason})")]
    Gap { channel: String, reason: String },
    /// Notice, not fatal: the server could not deliver an event to this subscription
    /// (`broadcast_error`).
    #[error("broadcast error on {channel}: {errors}")]
    Broadcast {
        channel: String,
        errors: ServerErrors,
    },
}

impl Error {
    /// False for the notices after which a subscription keeps delivering ([`Error::Gap`],
    /// [`Error::Broadcast`]); true for everything else, which ends the stream.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Error::Gap { .. } | Error::Broadcast { .. })
    }

    /// The server's error types (`UnauthorizedException`, …) when the server refused.
    pub fn server_errors(&self) -> Option<&ServerErrors> {
        match self {
            Error::ConnectionRejected(e)
            | Error::SubscribeRejected { errors: e, .. }
            | Error::PublishRejected { errors: e, .. }
            | Error::Broadcast { errors: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// One entry of the server's `errors` list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerError {
    /// `UnauthorizedException`, `BadRequestException`, `LimitExceededError`, …
    #[serde(rename = "errorType", default)]
    pub error_type: String,
    #[serde(default)]
    pub message: String,
    #[serde(rename = "errorCode", default)]
    pub error_code: Option<i64>,
}

/// The server's `errors` list, shown as `Type: message; Type: message`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerErrors(pub Vec<ServerError>);

impl ServerErrors {
    /// Whether any entry has this `errorType`.
    pub fn has(&self, error_type: &str) -> bool {
        self.0.iter().any(|e| e.error_type == error_type)
    }

    /// The `errors` of a reply or frame; a frame without them becomes one entry describing it.
    pub(crate) fn from_message(msg: &serde_json::Map<String, serde_json::Value>) -> ServerErrors {
        let list: Vec<ServerError> = msg
            .get("errors")
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        if list.is_empty() {
            let kind = msg.get("type").and_then(|t| t.as_str()).unwrap_or("reply");
            return ServerErrors(vec![ServerError {
                error_type: "Error".into(),
                message: format!(
                    "{kind} with no error details: {}",
                    excerpt(&serde_json::Value::Object(msg.clone()).to_string())
                ),
                error_code: None,
            }]);
        }
        ServerErrors(list)
    }
}

impl fmt::Display for ServerErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let kind = if e.error_type.is_empty() {
                "Error"
            } else {
                &e.error_type
            };
            if e.message.is_empty() {
                f.write_str(kind)?;
            } else {
                write!(f, "{kind}: {}", e.message)?;
            }
        }
        Ok(())
    }
}

/// At most 300 characters of a reply, for error messages.
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", text.get(..i).unwrap_or(text)),
        None => text.to_owned(),
    }
}
