//! One Server-Sent Events stream (`GET /event/stream`): the subscriptions of a WebSocket session
//! written as an event stream. It has the same [`Session`] (subscriptions, resumes, re-checks on
//! reload), the same bounded [`Outbox`] and slow-consumer rule, and the same place in the
//! registry (keep-alive timer, lifetime, shutdown, `limits.max_connections`) as a socket.
//!
//! Each queued item becomes one SSE event: a `data` frame is written as `event: data` with the
//! frame as its `data:` line (every subscription of a stream asks for the channel, so the frame
//! names it), preceded on a history namespace by `id: <channel> <epoch>:<offset> <time_ms>`,
//! read back from the frame's own `position` (the shared body is never re-encoded); other
//! messages (`subscribe_success`, `subscribe_error`) are written as events of their `type`.
//! Every write goes through a channel of one chunk to the response body, so a client that
//! stops reading stops this task, and the outbox fills until the slow-consumer rule ends it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_protocol::{AuthFields, Channel, ErrorType, Pattern, Resume, WireError};
use tokio::sync::{mpsc, oneshot};

use super::outbox::{Out, Outbox};
use super::session::{Asked, Session, Subscribed};
use crate::auth::Identity;
use crate::state::State;

/// A subscription of the stream, already admitted (see `session::admit`).
pub struct Admitted {
    pub pattern: Pattern,
    pub identity: Identity,
}

/// Where a reconnecting stream left off: the `Last-Event-ID` it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSeen {
    pub channel: Channel,
    pub epoch: u64,
    pub offset: u64,
    pub time_ms: u64,
}

impl LastSeen {
    /// Reads an event id as this stream writes it: `<channel> <epoch>:<offset> <time_ms>`.
    pub fn parse(id: &str) -> Option<LastSeen> {
        let mut parts = id.split(' ');
        let channel = Channel::parse(parts.next()?).ok()?;
        let (epoch, offset) = parts.next()?.split_once(':')?;
        let time_ms = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(LastSeen {
            channel,
            epoch: epoch.parse().ok()?,
            offset: offset.parse().ok()?,
            time_ms,
        })
    }

    /// Where `pattern` resumes. The channel of the last event resumes exactly after it; the
    /// stream's other channels from its time, so events stored in that same millisecond on
    /// them may come again (never one missed).
    fn resume(&self, pattern: &Pattern) -> Resume {
        let exact = (self.epoch, self.offset);
        match pattern {
            Pattern::Exact(c) if *c == self.channel => Resume {
                after: Some(exact),
                ..Resume::default()
            },
            Pattern::Below(prefix) if self.channel.ancestors().any(|a| a == prefix.as_str()) => {
                Resume {
                    positions: vec![(self.channel.as_str().to_owned(), exact.0, exact.1)],
                    since_ms: Some(self.time_ms),
                    ..Resume::default()
                }
            }
            _ => Resume {
                since_ms: Some(self.time_ms),
                ..Resume::default()
            },
        }
    }
}

/// What the stream needs to start.
pub struct Opening {
    pub subscriptions: Vec<Admitted>,
    /// The identity that holds the stream's place under the per-identity caps.
    pub identity: Identity,
    pub last_seen: Option<LastSeen>,
    /// The request's headers, for handlers (credentials are left out there).
    pub headers: AuthFields,
    pub source_ip: Vec<String>,
}

/// Runs a stream: answers `opened` (the stream is live, or why it is refused), then writes its
/// events into `tx` until the client leaves, the connection is closed (slow consumer, lifetime,
/// shutdown) or no subscription is left.
pub async fn run(
    state: Arc<State>,
    opening: Opening,
    opened: oneshot::Sender<Result<(), WireError>>,
    tx: mpsc::Sender<Bytes>,
) {
    let limits = &state.fixed.limits;
    let metrics = &state.metrics;
    let outbox = Arc::new(Outbox::new(
        limits.max_queued_bytes,
        limits.max_queued_messages,
        None,
    ));
    let Some(_registration) = state
        .connections
        .register(outbox.clone(), limits.max_connections)
    else {
        let _ = opened.send(Err(WireError::new(
            ErrorType::LimitExceeded,
            "the server has reached its maximum number of connections; try again later",
        )));
        return;
    };
    let _identity_place = match state.admission.identity_connect(&opening.identity) {
        Ok(place) => place,
        Err(refusal) => {
            metrics.rate_limited.inc();
            let _ = opened.send(Err(WireError::new(
                ErrorType::LimitExceeded,
                refusal.message(),
            )));
            return;
        }
    };
    let mut session = Session::new(
        state.clone(),
        outbox.clone(),
        opening.headers,
        opening.source_ip,
        // Subscriptions were authorized on the opening request; a stream sends no operations
        // that SigV4 would sign.
        None,
    );
    for (n, admitted) in opening.subscriptions.into_iter().enumerate() {
        let Admitted { pattern, identity } = admitted;
        let m = metrics.ns(pattern.namespace());
        let resume = opening
            .last_seen
            .as_ref()
            .filter(|_| state.history_of(pattern.namespace()).is_some())
            .map(|last| last.resume(&pattern));
        let asked = Asked {
            resume,
            with_channel: true,
            presence: Default::default(),
        };
        match session
            .go_live(&n.to_string(), pattern, identity, asked)
            .await
        {
            Ok(Subscribed::Live) => {
                m.subscribe_success.inc();
                m.active_subscriptions.inc();
            }
            Ok(Subscribed::Resuming) => {}
            Err(e) => {
                m.subscribe_client_error.inc();
                outbox.shut();
                session.end();
                let _ = opened.send(Err(e));
                return;
            }
        }
    }
    if opened.send(Ok(())).is_err() {
        outbox.shut();
        session.end();
        return;
    }
    metrics.active_connections.inc();
    metrics.active_sse_streams.inc();
    let keepalive = Duration::from_millis(state.fixed.sse.keepalive_interval_ms);
    let reason = pump(&state, &outbox, &mut session, &tx, keepalive).await;
    outbox.shut();
    session.end();
    metrics.active_connections.dec();
    metrics.active_sse_streams.dec();
    metrics.disconnects.inc();
    if outbox.overflowed() {
        metrics.slow_consumer_disconnects.inc();
    }
    tracing::debug!(reason, "event stream ended");
}

/// Writes what the outbox holds until the stream ends; returns why it ended.
async fn pump(
    state: &State,
    outbox: &Outbox,
    session: &mut Session,
    tx: &mpsc::Sender<Bytes>,
    keepalive: Duration,
) -> &'static str {
    let mut queue = VecDeque::new();
    let mut ka = tokio::time::interval(keepalive);
    ka.reset();
    loop {
        let queued_at = outbox.drain(&mut queue);
        let mut buf = Vec::new();
        let mut frames = 0u64;
        let mut closing = None;
        for item in queue.drain(..) {
            match item {
                Out::Data { prefix, body } => {
                    write_data(&mut buf, &prefix, &body);
                    frames += 1;
                }
                Out::Text(text) => {
                    if write_message(&mut buf, &text) {
                        frames += 1;
                    }
                }
                // Direct writes need a socket; a stream has none.
                Out::Raw(_) => {}
                Out::Recheck => session.recheck(),
                Out::Close { code, reason } => {
                    write_close(&mut buf, code, reason);
                    closing = Some(reason);
                    break;
                }
            }
        }
        if !buf.is_empty() {
            super::record_write(state, frames, buf.len(), queued_at);
            if tx.send(Bytes::from(buf)).await.is_err() {
                return "client gone";
            }
            ka.reset();
        }
        outbox.written();
        if let Some(reason) = closing {
            return reason;
        }
        if !session.has_subscriptions() {
            // What a re-check queued (the `subscribe_error`s) goes out first.
            if outbox.queued_bytes() > 0 {
                continue;
            }
            return "no subscription left";
        }
        tokio::select! {
            _ = outbox.ready() => {}
            _ = ka.tick() => {
                if tx.send(Bytes::from_static(b": ka\n\n")).await.is_err() {
                    return "client gone";
                }
            }
            Some(done) = session.next_resumed() => session.resumed(done),
            _ = tx.closed() => return "client gone",
        }
    }
}

/// `id: …` (on a history namespace), `event: data` and the frame.
fn write_data(buf: &mut Vec<u8>, prefix: &[u8], body: &[u8]) {
    if let Some(id) = event_id(body) {
        buf.extend_from_slice(b"id: ");
        buf.extend_from_slice(id.as_bytes());
        buf.push(b'\n');
    }
    buf.extend_from_slice(b"event: data\ndata: ");
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(body);
    buf.extend_from_slice(b"\n\n");
}

/// Another server message, as an event named by its `type`; keep-alive frames are left out
/// (the stream sends its own comments). Returns whether anything was written.
fn write_message(buf: &mut Vec<u8>, text: &[u8]) -> bool {
    // Every server message begins with its type (`herald_protocol::reply`).
    let kind = text
        .strip_prefix(br#"{"type":""#)
        .and_then(|rest| rest.split(|b| *b == b'"').next())
        .unwrap_or(b"message");
    if kind == b"ka" {
        return false;
    }
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(kind);
    buf.extend_from_slice(b"\ndata: ");
    buf.extend_from_slice(text);
    buf.extend_from_slice(b"\n\n");
    true
}

/// The last event: why the stream ends, with the WebSocket close code of the same cause.
fn write_close(buf: &mut Vec<u8>, code: u16, reason: &str) {
    let data = serde_json::json!({"type": "close", "code": code, "reason": reason});
    buf.extend_from_slice(b"event: close\ndata: ");
    buf.extend_from_slice(data.to_string().as_bytes());
    buf.extend_from_slice(b"\n\n");
}

/// The event id of a frame's body on a history namespace, from the `position` its end carries:
/// `<channel> <epoch>:<offset> <time_ms>`. The body's event is a JSON string token, inside
/// which every quote is escaped, so the last unescaped `,"position":{` is the one Herald wrote.
fn event_id(body: &[u8]) -> Option<String> {
    const MARK: &[u8] = br#","position":{"channel":""#;
    let at = body.windows(MARK.len()).rposition(|w| w == MARK)?;
    let rest = std::str::from_utf8(body.get(at + MARK.len()..)?).ok()?;
    let (channel, rest) = rest.split_once(r#"","epoch":""#)?;
    let (epoch, rest) = rest.split_once(r#"","offset":"#)?;
    let (offset, rest) = rest.split_once(r#","time_ms":"#)?;
    let time_ms = rest.split_once('}')?.0;
    Some(format!("{channel} {epoch}:{offset} {time_ms}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::reply;

    #[test]
    fn ids_come_from_the_position_and_read_back() {
        let pos = reply::StreamPosition {
            epoch: u64::MAX,
            offset: 7,
        };
        // An event whose text mimics a position cannot fool it.
        let token = serde_json::to_string(r#"x","position":{"channel":"/f/a","epoch":"1"#).unwrap();
        let body = reply::channel_body("/ns/a", &reply::data_body_at(&token, "/ns/a", pos, 5));
        let id = event_id(&body).unwrap();
        assert_eq!(id, format!("/ns/a {}:7 5", u64::MAX));
        let last = LastSeen::parse(&id).unwrap();
        assert_eq!((last.epoch, last.offset, last.time_ms), (u64::MAX, 7, 5));
        assert_eq!(event_id(&reply::data_body(&token)), None);
        assert_eq!(LastSeen::parse("/ns/a 1:2"), None);
        assert_eq!(LastSeen::parse("/ns/a x:2 3"), None);
        assert_eq!(LastSeen::parse("/n&s 1:2 3"), None);
    }

    #[test]
    fn resume_points_per_pattern() {
        let last = LastSeen::parse("/ns/a/b 9:4 100").unwrap();
        let exact = last.resume(&Pattern::parse("/ns/a/b").unwrap());
        assert_eq!(exact.after, Some((9, 4)));
        let below = last.resume(&Pattern::parse("/ns/*").unwrap());
        assert_eq!(below.positions, vec![("/ns/a/b".to_owned(), 9, 4)]);
        assert_eq!(below.since_ms, Some(100));
        let other = last.resume(&Pattern::parse("/ns/c").unwrap());
        assert_eq!((other.after, other.since_ms), (None, Some(100)));
    }

    #[test]
    fn messages_become_named_events() {
        let mut buf = Vec::new();
        assert!(!write_message(&mut buf, reply::KA.as_bytes()));
        assert!(write_message(
            &mut buf,
            &reply::success(reply::SuccessKind::Subscribe, "0")
        ));
        assert_eq!(
            buf,
            b"event: subscribe_success\ndata: {\"type\":\"subscribe_success\",\"id\":\"0\"}\n\n"
        );
    }
}
