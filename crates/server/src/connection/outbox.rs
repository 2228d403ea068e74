//! The outbound queue of one connection.
//!
//! Publishers push into it from any task; the connection's own task drains everything queued in
//! one go and writes it with one syscall (write coalescing under load). The queue is bounded in
//! messages and bytes. Overflow rule: the connection is marked for closing as a slow consumer
//! (close code 4008); what is queued is dropped and nothing more is accepted, so a subscriber that
//! cannot keep up never delays the others nor grows memory without bound.
//!
//! Direct writes: on a plain TCP connection, a small fan-out writes its frames straight into the
//! socket from the delivering task when nothing is queued and the connection's task is not
//! writing — no wake-up, no hand-off to another thread. The socket takes them whole or in part
//! without blocking; what it does not take is queued first in line, so frames stay in order and
//! the bounds above apply unchanged. Large fan-outs always queue: there, each connection's task
//! coalesces many events into one write, which costs less than a write per event.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::transport::ws::{FrameHeader, OP_TEXT};

/// One queued item.
#[derive(Debug, Clone)]
pub enum Out {
    /// A whole text message.
    Text(Bytes),
    /// A `data` frame: the subscription's prefix followed by the event's shared body.
    Data { prefix: Bytes, body: Bytes },
    /// Close the connection with this code and reason after what is already queued.
    Close { code: u16, reason: &'static str },
    /// The configuration was reloaded: re-check every subscription against it.
    Recheck,
    /// The rest of frames a direct write began: written as they are.
    Raw(Bytes),
}

impl Out {
    fn cost(&self) -> usize {
        match self {
            Out::Text(b) | Out::Raw(b) => b.len(),
            Out::Data { prefix, body } => prefix.len() + body.len(),
            Out::Close { .. } | Out::Recheck => 0,
        }
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closing; the item was dropped.
    Closed,
    /// This push overflowed the queue; the connection is now closing as a slow consumer.
    Overflow,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Out>,
    bytes: usize,
    closing: bool,
    /// When the queue last went from empty to not, for the queueing-delay histogram; stamped
    /// on one such transition in [`SAMPLE`], so the clock read and the shared histogram stay off
    /// most deliveries.
    since: Option<Instant>,
    /// Empty-to-not transitions, for the sampling.
    transitions: u32,
    /// The connection's task has taken items (or has frames of its own) it has not finished
    /// writing: no direct write may go in between.
    writing: bool,
    /// The socket, for direct writes (plain TCP only; dropped when the connection ends).
    socket: Option<Arc<TcpStream>>,
}

/// Most events one direct write carries; more are queued (AppSync publishes carry at most 5).
pub const DIRECT_MAX_EVENTS: usize = 5;

/// What a push of data did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Frames and bytes written directly into the socket (counted by the caller, once per fan-out).
    pub frames: u64,
    pub bytes: u64,
}

/// The frame headers of one direct write.
pub struct Frames {
    headers: [FrameHeader; DIRECT_MAX_EVENTS],
    count: usize,
}

impl Frames {
    /// Headers for `bodies` (at most [`DIRECT_MAX_EVENTS`]; more are ignored) behind `prefix`.
    pub fn new(prefix: &Bytes, bodies: &[Bytes]) -> Frames {
        let mut f = Frames {
            headers: [FrameHeader::new(OP_TEXT, 0); DIRECT_MAX_EVENTS],
            count: bodies.len().min(DIRECT_MAX_EVENTS),
        };
        for (h, body) in f.headers.iter_mut().zip(bodies) {
            *h = FrameHeader::new(OP_TEXT, prefix.len() + body.len());
        }
        f
    }

    /// The frames as slices: header, prefix, body for each; `3 * count` of them are used.
    pub fn slices<'a>(
        &'a self,
        prefix: &'a Bytes,
        bodies: &'a [Bytes],
    ) -> [IoSlice<'a>; 3 * DIRECT_MAX_EVENTS] {
        let mut slices = [IoSlice::new(&[]); 3 * DIRECT_MAX_EVENTS];
        for ((slot, h), body) in slices.chunks_exact_mut(3).zip(&self.headers).zip(bodies) {
            if let [a, b, c] = slot {
                *a = IoSlice::new(h.as_bytes());
                *b = IoSlice::new(prefix);
                *c = IoSlice::new(body);
            }
        }
        slices
    }

    /// Slices in use.
    pub fn used(&self) -> usize {
        3 * self.count
    }
}

/// An outbox locked for a direct write sent with others (see [`Outbox::claim_direct`]).
pub struct Claimed<'a> {
    outbox: &'a Outbox,
    state: std::sync::MutexGuard<'a, State>,
    fd: std::os::fd::RawFd,
}

impl Claimed<'_> {
    /// The connection's socket.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.fd
    }

    /// The send of `count` frames as `bytes` took `written` of them (negative: an error,
    /// nothing written): the rest is queued first in line, and the outbox unlocked.
    pub fn finish(mut self, bytes: &[u8], count: usize, written: i32) -> Result<Sent, PushError> {
        let written = usize::try_from(written).unwrap_or(0);
        self.outbox
            .written_direct(&mut self.state, count, &[IoSlice::new(bytes)], written)
    }
}

/// One queueing-delay observation per this many empty-to-not transitions of a queue.
pub const SAMPLE: u32 = 16;

/// A bounded, multi-producer queue drained by the connection task.
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    max_bytes: usize,
    max_messages: usize,
    /// Set once the slow-consumer rule fired, for metrics and logs.
    overflowed: AtomicBool,
}

impl Outbox {
    /// An outbox; with `socket`, small fan-outs may write into it directly.
    pub fn new(max_bytes: usize, max_messages: usize, socket: Option<Arc<TcpStream>>) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                socket,
                ..State::default()
            }),
            notify: Notify::new(),
            max_bytes,
            max_messages,
            overflowed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item, applying the overflow rule.
    pub fn push(&self, item: Out) -> Result<(), PushError> {
        let mut s = self.lock();
        let was_empty = s.queue.is_empty();
        self.enqueue(&mut s, item)?;
        drop(s);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Queues under the lock, applying the overflow rule (which wakes the task itself).
    fn enqueue(&self, s: &mut State, item: Out) -> Result<(), PushError> {
        if s.closing {
            return Err(PushError::Closed);
        }
        let cost = item.cost();
        if s.queue.len() >= self.max_messages || s.bytes + cost > self.max_bytes {
            s.queue.clear();
            s.bytes = 0;
            s.closing = true;
            s.queue.push_back(Out::Close {
                code: crate::transport::ws::close::SLOW_CONSUMER,
                reason: "slow consumer: outbound queue full",
            });
            self.overflowed.store(true, Ordering::Relaxed);
            self.notify.notify_one();
            return Err(PushError::Overflow);
        }
        if s.queue.is_empty() {
            if s.transitions.is_multiple_of(SAMPLE) {
                s.since = Some(Instant::now());
            }
            s.transitions = s.transitions.wrapping_add(1);
        }
        s.bytes += cost;
        s.queue.push_back(item);
        Ok(())
    }

    /// Delivers `bodies` as `data` frames behind `prefix`: written straight into the socket
    /// when `direct` is allowed, the connection can take it and nothing is ahead of them; queued
    /// otherwise. A full queue closes the connection as a slow consumer, as [`Outbox::push`].
    pub fn push_data(
        &self,
        prefix: &Bytes,
        bodies: &[Bytes],
        direct: bool,
    ) -> Result<Sent, PushError> {
        let mut s = self.lock();
        if direct
            && !s.closing
            && !s.writing
            && s.queue.is_empty()
            && bodies.len() <= DIRECT_MAX_EVENTS
            && let Some(socket) = s.socket.clone()
        {
            return self.write_direct(&mut s, &socket, prefix, bodies);
        }
        let was_empty = s.queue.is_empty();
        for body in bodies {
            self.enqueue(
                &mut s,
                Out::Data {
                    prefix: prefix.clone(),
                    body: body.clone(),
                },
            )?;
        }
        drop(s);
        if was_empty && !bodies.is_empty() {
            self.notify.notify_one();
        }
        Ok(Sent::default())
    }

    /// One non-blocking vectored write of the frames, under the lock so nothing interleaves.
    fn write_direct(
        &self,
        s: &mut State,
        socket: &TcpStream,
        prefix: &Bytes,
        bodies: &[Bytes],
    ) -> Result<Sent, PushError> {
        let frames = Frames::new(prefix, bodies);
        let slices = frames.slices(prefix, bodies);
        let used = slices.get(..3 * frames.count).unwrap_or_default();
        // A broken socket (an error other than "would block") writes nothing here either: the
        // connection's task finds out on its next read or write.
        let written = socket.try_write_vectored(used).unwrap_or(0);
        self.written_direct(s, frames.count, used, written)
    }

    /// After a direct write of `frames` (as `used`) that took `written` bytes: the rest goes
    /// first in line, as it is.
    fn written_direct(
        &self,
        s: &mut State,
        count: usize,
        used: &[IoSlice<'_>],
        written: usize,
    ) -> Result<Sent, PushError> {
        let sent = Sent {
            frames: count as u64,
            bytes: written as u64,
        };
        let total: usize = used.iter().map(|s| s.len()).sum();
        if written >= total {
            return Ok(sent);
        }
        let mut rest = Vec::with_capacity(total - written);
        let mut skip = written;
        for slice in used {
            let take = slice.get(skip.min(slice.len())..).unwrap_or_default();
            skip = skip.saturating_sub(slice.len());
            rest.extend_from_slice(take);
        }
        let was_empty = s.queue.is_empty();
        let result = self.enqueue(s, Out::Raw(Bytes::from(rest)));
        if was_empty {
            self.notify.notify_one();
        }
        result.map(|()| sent)
    }

    /// For a batch of direct writes sent together: the outbox, locked without waiting, when a
    /// direct write of `events` events may go ahead now. `None` (busy, closing, queued, TLS):
    /// deliver with [`Outbox::push_data`] instead.
    pub fn claim_direct(&self, events: usize) -> Option<Claimed<'_>> {
        if events > DIRECT_MAX_EVENTS {
            return None;
        }
        let state = match self.state.try_lock() {
            Ok(s) => s,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        if state.closing || state.writing || !state.queue.is_empty() {
            return None;
        }
        let fd = state.socket.as_ref()?.as_raw_fd();
        Some(Claimed {
            outbox: self,
            state,
            fd,
        })
    }

    /// Queues a close after what is already queued; later pushes are dropped.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut s = self.lock();
        if s.closing {
            return;
        }
        s.closing = true;
        s.queue.push_back(Out::Close { code, reason });
        drop(s);
        self.notify.notify_one();
    }

    /// The connection ended: drops what is queued and refuses everything from now on.
    pub fn shut(&self) {
        let mut s = self.lock();
        s.closing = true;
        s.queue = VecDeque::new();
        s.bytes = 0;
        s.socket = None;
    }

    /// Whether the connection is closing or gone: work for it (a resume reading history) can
    /// stop.
    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// Moves everything queued into `into` (which the caller keeps to reuse its allocation),
    /// and marks the connection's task as writing until [`Outbox::written`]. Returns when the
    /// oldest of those items was queued, if any were.
    pub fn drain(&self, into: &mut VecDeque<Out>) -> Option<Instant> {
        let mut s = self.lock();
        s.writing = true;
        if into.is_empty() {
            std::mem::swap(&mut s.queue, into);
        } else {
            into.extend(s.queue.drain(..));
        }
        s.bytes = 0;
        // An idle connection should not keep a large queue allocation around.
        if s.queue.capacity() > 32 {
            s.queue = VecDeque::new();
        }
        s.since.take()
    }

    /// The connection's task wrote everything it had: direct writes may go ahead again.
    pub fn written(&self) {
        self.lock().writing = false;
    }

    /// Resolves when something was queued since the last wait.
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_as_slow_consumer() {
        let o = Outbox::new(10, 100, None);
        o.push(Out::Text(Bytes::from_static(b"12345"))).unwrap();
        o.push(Out::Text(Bytes::from_static(b"12345"))).unwrap();
        assert_eq!(
            o.push(Out::Text(Bytes::from_static(b"1"))),
            Err(PushError::Overflow)
        );
        assert_eq!(
            o.push(Out::Text(Bytes::from_static(b"1"))),
            Err(PushError::Closed)
        );
        let mut q = VecDeque::new();
        o.drain(&mut q);
        assert!(matches!(q.pop_front(), Some(Out::Close { code: 4008, .. })));
        assert!(q.is_empty());
        assert!(o.overflowed());
    }

    #[test]
    fn message_count_is_bounded_too() {
        let o = Outbox::new(1 << 20, 2, None);
        o.push(Out::Text(Bytes::new())).unwrap();
        o.push(Out::Text(Bytes::new())).unwrap();
        assert_eq!(o.push(Out::Text(Bytes::new())), Err(PushError::Overflow));
    }
}
