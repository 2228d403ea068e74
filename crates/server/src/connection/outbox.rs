//! The outbound queue of one connection.
//!
//! Publishers push into it from any task; the connection's own task drains everything queued in
//! one go and writes it with one syscall (write coalescing under load). The queue is bounded in
//! messages and bytes. Overflow rule: the connection is marked for closing as a slow consumer
//! (close code 4008); what is queued is dropped and nothing more is accepted, so a subscriber that
//! cannot keep up never delays the others nor grows memory without bound.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

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
}

impl Out {
    fn cost(&self) -> usize {
        match self {
            Out::Text(b) => b.len(),
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
    pub fn new(max_bytes: usize, max_messages: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
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
            drop(s);
            self.overflowed.store(true, Ordering::Relaxed);
            self.notify.notify_one();
            return Err(PushError::Overflow);
        }
        let was_empty = s.queue.is_empty();
        if was_empty {
            if s.transitions.is_multiple_of(SAMPLE) {
                s.since = Some(Instant::now());
            }
            s.transitions = s.transitions.wrapping_add(1);
        }
        s.bytes += cost;
        s.queue.push_back(item);
        drop(s);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
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
    }

    /// Whether the connection is closing or gone: work for it (a resume reading history) can
    /// stop.
    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// Moves everything queued into `into` (which the caller keeps to reuse its allocation).
    /// Returns when the oldest of those items was queued, if any were.
    pub fn drain(&self, into: &mut VecDeque<Out>) -> Option<Instant> {
        let mut s = self.lock();
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
        let o = Outbox::new(10, 100);
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
        let o = Outbox::new(1 << 20, 2);
        o.push(Out::Text(Bytes::new())).unwrap();
        o.push(Out::Text(Bytes::new())).unwrap();
        assert_eq!(o.push(Out::Text(Bytes::new())), Err(PushError::Overflow));
    }
}
