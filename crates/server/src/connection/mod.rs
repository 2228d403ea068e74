//! One WebSocket connection: a single task that reads frames, runs the AppSync protocol
//! (spec §2), and writes whatever its [`Outbox`] holds.
//!
//! The task alternates between writing everything queued (one syscall for many frames) and
//! waiting for more input, more output, or the end of a resume (which runs in a task of its own).
//! Publishing happens inline: a `publish` frame fans out from this task before the reply is
//! queued.

pub mod outbox;
mod session;
pub mod sse;

pub use session::{Caller, admit};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use herald_protocol::{AuthFields, ErrorType, WireError, reply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::{Action, Presented};
use crate::state::State;
use crate::transport::ws::{self, Message, Reader, close};
use outbox::{Out, Outbox};
use session::Session;

/// Bytes read into the task's own small buffer while no message is in progress.
const TINY_READ: usize = 64;
/// Largest drained-queue allocation kept between writes, in items.
const KEEP_QUEUE: usize = 32;
/// Largest write buffer kept between writes: busy connections reallocate per batch rather than
/// every connection holding its peak.
const KEEP_WRITE_BUFFER: usize = 2 * 1024;
/// Most bytes handed to the socket before the task lets others run: a replay of a megabyte
/// written in one go keeps a runtime thread in the kernel for milliseconds, and the tasks
/// queued on that thread (other clients' deliveries) wait that long.
const WRITE_SLICE: usize = 64 * 1024;

/// Runs a connection until it closes. `io` is what the task reads and writes; `shared`, the same
/// socket for direct writes by small fan-outs when it is plain TCP. `fields` is the connect
/// authorization (from the `header-` subprotocol or the upgrade request's headers). Separate
/// arguments, not a struct: a destructured argument would be stored twice in the task.
pub async fn run<S>(
    state: Arc<State>,
    mut io: S,
    shared: Option<Arc<tokio::net::TcpStream>>,
    fields: AuthFields,
    source_ip: Vec<String>,
    event_path: Option<Arc<str>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &state.fixed.limits;
    let metrics = &state.metrics;
    metrics.connect_requests.inc();
    let outbox = Arc::new(Outbox::new(
        limits.max_queued_bytes,
        limits.max_queued_messages,
        shared,
    ));
    let Some(_registration) = state
        .connections
        .register(outbox.clone(), limits.max_connections)
    else {
        let err = WireError::new(
            ErrorType::LimitExceeded,
            "the server has reached its maximum number of connections; try again later",
        );
        metrics.connect_client_error.inc();
        refuse(&mut io, &err).await;
        return;
    };
    let live = state.live();
    let admitted = live.access.authorize(
        Action::Connect,
        Presented::fields_at(
            &fields,
            event_path
                .as_deref()
                .unwrap_or(crate::auth::DEFAULT_EVENT_PATH),
        ),
        metrics,
    );
    // Boxed: verifying a token is a large future; inline, it would enlarge every idle
    // connection's task.
    // The identity is only needed for its place under the per-identity socket cap, held until
    // the connection ends; it is confined to this match so the connection's task does not store
    // it (every later operation is authorized on its own).
    let place = match Box::pin(admitted).await {
        Ok(identity) => state.admission.identity_connect(&identity),
        Err(err) => {
            metrics.connect_client_error.inc();
            refuse(&mut io, &err).await;
            return;
        }
    };
    drop(live);
    let _identity_place = match place {
        Ok(place) => place,
        Err(refusal) => {
            metrics.rate_limited.inc();
            metrics.connect_client_error.inc();
            let err = WireError::new(ErrorType::LimitExceeded, refusal.message());
            refuse(&mut io, &err).await;
            return;
        }
    };
    metrics.connect_success.inc();
    metrics.active_connections.inc();
    let mut session = Session::new(state.clone(), outbox.clone(), fields, source_ip, event_path);
    let reason = pump(&state, &mut io, &outbox, &mut session).await;
    // First refuse everything for this connection, so resumes still running stop short of going
    // live; then release its subscriptions and abort its resumes.
    outbox.shut();
    session.end();
    metrics.active_connections.dec();
    metrics.disconnects.inc();
    if outbox.overflowed() {
        metrics.slow_consumer_disconnects.inc();
    }
    if let Err(e) = reason {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// Sends `connection_error` and closes with a normal close code, as AppSync does.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, err: &WireError) {
    let mut out = Vec::new();
    let msg = reply::connection_error(std::slice::from_ref(err));
    ws::write_frame(&mut out, ws::OP_TEXT, &[&msg]);
    ws::write_close(&mut out, close::NORMAL, "");
    if io.write_all(&out).await.is_ok() {
        linger(io).await;
    }
}

/// After our close frame: half-close and drain briefly, so the peer reads everything we sent
/// instead of seeing a reset caused by its own unread frames.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) {
    let _ = io.flush().await;
    let _ = io.shutdown().await;
    let mut sink = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Which deadline a connection is under.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    /// A message has begun and must be completed.
    Message,
    /// No subscription: the client must send something.
    Idle,
}

#[derive(Debug, thiserror::Error)]
enum End {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the socket")]
    Eof,
    #[error("peer sent close")]
    PeerClose,
    #[error("closed by server with code {0}")]
    Closed(u16),
}

/// Reads what is available. With nothing buffered it waits on a small buffer inside the task, so
/// idle connections hold no heap buffer; once a message is in progress it reads straight into
/// the connection's buffer, `initial` bytes or more at a time.
async fn read_some<S: AsyncRead + Unpin>(
    io: &mut S,
    rbuf: &mut BytesMut,
    tiny: &mut [u8; TINY_READ],
    initial: usize,
    busy: bool,
) -> std::io::Result<(usize, bool)> {
    if rbuf.is_empty() && !busy {
        let n = io.read(tiny).await?;
        rbuf.extend_from_slice(tiny.get(..n).unwrap_or_default());
        return Ok((n, n == TINY_READ));
    }
    if rbuf.capacity() - rbuf.len() < 128 {
        rbuf.reserve(initial);
    }
    let room = rbuf.capacity() - rbuf.len();
    let n = io.read_buf(rbuf).await?;
    Ok((n, n == room))
}

/// Runs one message's handling while writing what other tasks queue meanwhile, so a slow
/// authorizer, identity provider or handler never holds up this connection's deliveries or
/// keep-alives. Items that need the session (`Recheck`, `Close`) wait in `held` until it is free.
async fn write_while<S: AsyncWrite + Unpin>(
    mut handling: std::pin::Pin<Box<impl std::future::Future<Output = ()>>>,
    state: &State,
    io: &mut S,
    outbox: &Outbox,
    held: &mut VecDeque<Out>,
) -> std::io::Result<()> {
    let mut batch = VecDeque::new();
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut handling => return Ok(()),
            _ = outbox.ready() => {
                let queued_at = outbox.drain(&mut batch);
                let mut frames = 0u64;
                for item in batch.drain(..) {
                    match item {
                        Out::Text(b) => ws::write_frame(&mut buf, ws::OP_TEXT, &[&b]),
                        Out::Data { prefix, body } => {
                            ws::write_frame(&mut buf, ws::OP_TEXT, &[&prefix, &body])
                        }
                        // Counted when its direct write began.
                        Out::Raw(b) => {
                            buf.extend_from_slice(&b);
                            continue;
                        }
                        other => {
                            held.push_back(other);
                            continue;
                        }
                    }
                    frames += 1;
                }
                if !buf.is_empty() {
                    record_write(state, frames, buf.len(), queued_at);
                    write_sliced(io, &buf).await?;
                    buf.clear();
                }
            }
        }
    }
}

/// Writes `buf` [`WRITE_SLICE`] bytes at a time, yielding between slices.
async fn write_sliced<S: AsyncWrite + Unpin>(io: &mut S, buf: &[u8]) -> std::io::Result<()> {
    let mut slices = buf.chunks(WRITE_SLICE).peekable();
    while let Some(slice) = slices.next() {
        io.write_all(slice).await?;
        if slices.peek().is_some() {
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// Counts one coalesced write: its frames, bytes, and how long its oldest frame waited.
fn record_write(state: &State, frames: u64, bytes: usize, queued_at: Option<std::time::Instant>) {
    let m = &state.metrics;
    m.outbound_messages.inc_by(frames);
    m.outbound_bytes.inc_by(bytes as u64);
    if let Some(t) = queued_at {
        m.queue_delay_seconds.observe(t.elapsed());
    }
}

async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    state: &State,
    io: &mut S,
    outbox: &Outbox,
    session: &mut Session,
) -> Result<(), End> {
    let initial = state.fixed.websocket.read_buffer_bytes.max(256);
    let max_message = state.fixed.limits.max_request_bytes;
    // Empty while idle: an idle connection holds no read buffer on the heap (see `read_some`).
    let mut rbuf = BytesMut::new();
    let mut tiny = [0u8; TINY_READ];
    // Whether the last read filled its buffer: more is likely waiting, so read in bulk.
    let mut busy = false;
    let mut wbuf: Vec<u8> = Vec::new();
    let mut queue: VecDeque<Out> = VecDeque::new();
    // Items that need the session, set aside while it was busy with a message.
    let mut held: VecDeque<Out> = VecDeque::new();
    let mut reader = Reader::default();
    let ws = &state.fixed.websocket;
    let write_delay = Duration::from_micros(ws.write_delay_us);
    // When the message being received began, and when the client last sent anything.
    let mut message_since: Option<Instant> = None;
    let mut last_heard = Instant::now();
    loop {
        let queued_at = outbox.drain(&mut queue);
        while let Some(item) = held.pop_back() {
            queue.push_front(item);
        }
        let mut closing = None;
        let (mut frames, before) = (queue.len() as u64, wbuf.len());
        for item in queue.drain(..) {
            match item {
                Out::Text(b) => ws::write_frame(&mut wbuf, ws::OP_TEXT, &[&b]),
                Out::Data { prefix, body } => {
                    ws::write_frame(&mut wbuf, ws::OP_TEXT, &[&prefix, &body])
                }
                // The rest of a direct write, counted when it began.
                Out::Raw(b) => {
                    wbuf.extend_from_slice(&b);
                    frames = frames.saturating_sub(1);
                }
                Out::Recheck => session.recheck(),
                Out::Close { code, reason } => {
                    ws::write_close(&mut wbuf, code, reason);
                    closing = Some(code);
                    break;
                }
            }
        }
        if queue.capacity() > KEEP_QUEUE {
            queue = VecDeque::new();
        }
        if !wbuf.is_empty() {
            record_write(state, frames, wbuf.len() - before, queued_at);
            write_sliced(io, &wbuf).await?;
            wbuf.clear();
            if wbuf.capacity() > KEEP_WRITE_BUFFER {
                wbuf = Vec::new();
            }
        }
        if let Some(code) = closing {
            linger(io).await;
            return Err(End::Closed(code));
        }
        // A deadline only while a message is half-received, or while the connection holds no
        // subscription: subscribers that merely listen are never cut.
        let deadline = match message_since {
            Some(t) => Some((
                t + Duration::from_millis(ws.message_timeout_ms),
                Deadline::Message,
            )),
            None if !session.has_subscriptions() => Some((
                last_heard + Duration::from_millis(ws.idle_timeout_ms),
                Deadline::Idle,
            )),
            None => None,
        };
        // Everything is written: until the next drain, small fan-outs may write directly.
        outbox.written();
        tokio::select! {
            _ = outbox.ready() => {
                if !write_delay.is_zero() {
                    // Boxed for the same reason as the deadline's timer below.
                    Box::pin(tokio::time::sleep(write_delay)).await;
                }
            }
            // No timer unless this branch is enabled, and a boxed one then: inline, the timer
            // would enlarge every connection's task, deadline or not.
            _ = async { if let Some((at, _)) = deadline { Box::pin(tokio::time::sleep_until(at.into())).await } },
                if deadline.is_some() => {
                state.metrics.timeouts.inc();
                let (code, reason) = match deadline.map(|(_, d)| d) {
                    Some(Deadline::Message) => (close::POLICY_VIOLATION, "message not completed in time"),
                    _ => (close::NORMAL, "idle: no subscription and nothing sent"),
                };
                outbox.close(code, reason);
            }
            Some(done) = session.next_resumed() => session.resumed(done),
            read = read_some(io, &mut rbuf, &mut tiny, initial, busy) => {
                let (n, full) = read?;
                if n == 0 {
                    return Err(End::Eof);
                }
                busy = full;
                last_heard = Instant::now();
                loop {
                    let message = match reader.next(&mut rbuf, max_message) {
                        Ok(Some(m)) => m,
                        Ok(None) => break,
                        Err(e) => {
                            outbox.close(e.close_code(), "invalid WebSocket frame");
                            tracing::debug!(error = %e, "closing on a bad frame");
                            break;
                        }
                    };
                    match message {
                        Message::Text(text) => {
                            state.metrics.inbound_messages.inc();
                            // Boxed: handling may await large futures (identity providers,
                            // handlers); inline, they would enlarge every idle connection's task.
                            let handling = Box::pin(session.handle(&text));
                            write_while(handling, state, io, outbox, &mut held).await?;
                        }
                        Message::Binary => session.binary(),
                        Message::Ping(payload) => ws::write_frame(&mut wbuf, ws::OP_PONG, &[&payload]),
                        Message::Pong => {}
                        Message::Close(code) => {
                            // The peer's code echoed (the reader refused any a peer may not
                            // send, answering 1002), or 1000 for a close without one.
                            ws::write_close(&mut wbuf, code.unwrap_or(close::NORMAL), "");
                            // Nothing may follow the close frame, direct writes included.
                            outbox.shut();
                            let _ = io.write_all(&wbuf).await;
                            linger(io).await;
                            return Err(End::PeerClose);
                        }
                    }
                }
                if rbuf.is_empty() {
                    rbuf = BytesMut::new();
                }
                message_since = if rbuf.is_empty() && !reader.in_progress() {
                    None
                } else {
                    message_since.or(Some(last_heard))
                };
            }
        }
    }
}
