//! Idempotent publishes (Herald extension): a publish that carries an idempotency key — the
//! `Idempotency-Key` header over HTTP, `idempotencyKey` on a socket `publish` — is published once
//! per key and namespace within `limits.idempotency_window_secs`; a retry gets the first
//! publish's result again (same identifiers and positions), not a second copy of the events.
//!
//! The first publish *claims* its key. While it runs, a retry gets 409 `ConflictException` ("in
//! progress; retry"). A publish that failed releases its claim, so a retry publishes — except
//! when the failure may have stored the events (the error says so): then the claim stays until
//! the window ends and retries are told the outcome is unknown, instead of risking a duplicate.
//!
//! Bounds: at most `limits.max_idempotency_keys` keys are remembered; past it the oldest are
//! forgotten first. The table is per node: in cluster mode a retry on another node is not
//! recognised.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_protocol::reply::PublishResult;
use herald_protocol::{ErrorType, WireError};

/// What is known of one key.
#[derive(Debug, Clone)]
enum Entry {
    /// Its first publish is running.
    Pending,
    /// Published; a retry gets this again.
    Done(Arc<PublishResult>),
    /// Failed in a way that may have stored the events.
    Unknown,
}

#[derive(Default)]
struct Table {
    entries: HashMap<(String, String), (Entry, Instant)>,
    /// Keys in the order they were claimed, for expiry and eviction.
    order: VecDeque<((String, String), Instant)>,
}

impl Table {
    fn forget_oldest(&mut self) {
        if let Some((old, at)) = self.order.pop_front()
            && self.entries.get(&old).is_some_and(|(_, a)| *a == at)
        {
            self.entries.remove(&old);
        }
    }
}

/// The remembered keys of this node.
pub struct Idempotency {
    window: Duration,
    max_keys: usize,
    table: Mutex<Table>,
}

/// What to do with a keyed publish.
pub enum Begin<'a> {
    /// First of its key: publish, then [`Claim::finish`].
    Fresh(Claim<'a>),
    /// Already published: answer with this.
    Replay(Arc<PublishResult>),
    /// Answer with this error.
    Refuse(WireError),
}

/// The right to publish under a key; dropped without [`Claim::finish`], it is released.
pub struct Claim<'a> {
    owner: &'a Idempotency,
    key: Option<(String, String)>,
}

impl Idempotency {
    pub fn new(window: Duration, max_keys: usize) -> Idempotency {
        Idempotency {
            window,
            max_keys,
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks a key up in a namespace, claiming it when it is new.
    pub fn begin(&self, namespace: &str, key: &str) -> Begin<'_> {
        let now = Instant::now();
        let id = (namespace.to_owned(), key.to_owned());
        let mut t = self.lock();
        // Forget what is past the window.
        while t
            .order
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= self.window)
        {
            t.forget_oldest();
        }
        match t.entries.get(&id) {
            Some((Entry::Done(result), _)) => Begin::Replay(result.clone()),
            Some((Entry::Pending, _)) => Begin::Refuse(WireError::custom(
                ErrorType::LimitExceeded,
                "ConflictException",
                409,
                "a publish with this idempotency key is in progress; retry shortly",
            )),
            Some((Entry::Unknown, _)) => Begin::Refuse(WireError::custom(
                ErrorType::Internal,
                "ConflictException",
                409,
                "an earlier publish with this idempotency key failed and may have been stored; \
                 it is not published again (check history, or use a new key)",
            )),
            None => {
                // Room for one more: the oldest go first.
                while t.order.len() >= self.max_keys.max(1) {
                    t.forget_oldest();
                }
                t.entries.insert(id.clone(), (Entry::Pending, now));
                t.order.push_back((id.clone(), now));
                Begin::Fresh(Claim {
                    owner: self,
                    key: Some(id),
                })
            }
        }
    }
}

impl Claim<'_> {
    /// Records the outcome: a result is replayed to retries; an error that may have stored the
    /// events blocks them; any other error releases the key.
    pub fn finish(mut self, outcome: &Result<PublishResult, WireError>) {
        let Some(key) = self.key.take() else { return };
        let mut t = self.owner.lock();
        let entry = match outcome {
            Ok(result) => Entry::Done(Arc::new(result.clone())),
            Err(e) if may_be_stored(e) => Entry::Unknown,
            Err(_) => {
                t.entries.remove(&key);
                return;
            }
        };
        if let Some(slot) = t.entries.get_mut(&key) {
            slot.0 = entry;
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.owner.lock().entries.remove(&key);
        }
    }
}

/// How every error that may have stored or delivered the events begins: a failure after they
/// were handed to the store or the backplane.
pub const MAY_BE_STORED: &str = "the event may have been stored and delivered";

/// Whether a failed publish may still have stored or delivered its events.
pub fn may_be_stored(e: &WireError) -> bool {
    e.kind == ErrorType::Internal && e.message.starts_with(MAY_BE_STORED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_published_once_within_its_window() {
        let table = Idempotency::new(Duration::from_secs(60), 10);
        let Begin::Fresh(claim) = table.begin("ns", "k") else {
            panic!("a new key is claimed")
        };
        assert!(matches!(table.begin("ns", "k"), Begin::Refuse(e) if e.http_status() == 409));
        assert!(matches!(table.begin("other", "k"), Begin::Fresh(_)));
        claim.finish(&Ok(PublishResult::default()));
        assert!(matches!(table.begin("ns", "k"), Begin::Replay(_)));
        // A failure that stored nothing releases the key.
        let Begin::Fresh(claim) = table.begin("ns", "k2") else {
            panic!()
        };
        claim.finish(&Err(WireError::new(ErrorType::Unauthorized, "no")));
        assert!(matches!(table.begin("ns", "k2"), Begin::Fresh(_)));
    }

    #[test]
    fn expired_and_excess_keys_are_forgotten() {
        let table = Idempotency::new(Duration::ZERO, 10);
        if let Begin::Fresh(c) = table.begin("ns", "k") {
            c.finish(&Ok(PublishResult::default()));
        }
        assert!(matches!(table.begin("ns", "k"), Begin::Fresh(_)));
        let table = Idempotency::new(Duration::from_secs(60), 2);
        for k in ["a", "b", "c"] {
            if let Begin::Fresh(c) = table.begin("ns", k) {
                c.finish(&Ok(PublishResult::default()));
            }
        }
        assert!(matches!(table.begin("ns", "a"), Begin::Fresh(_)));
        assert!(matches!(table.begin("ns", "c"), Begin::Replay(_)));
    }
}
