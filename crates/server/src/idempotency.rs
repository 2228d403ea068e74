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
//! Each node keeps its own table (at most `limits.max_idempotency_keys` keys; past it the oldest
//! are forgotten first). In cluster mode it is only a first-level cache: the claim and then the
//! outcome also live in a JetStream key-value bucket every node reads ([`SharedKeys`]), so a
//! retry on another node is recognised too. A claim is an atomic `create` (it fails when the key
//! exists); entries expire with the window (the bucket's `max_age`). When the bucket cannot be
//! reached while claiming, the publish is refused with an error saying it was not published.
//! Should a node die mid-publish, its claim stays pending (retries get 409) until the window ends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use herald_protocol::reply::{Accepted, PublishResult, Refused, StreamPosition};
use herald_protocol::{ErrorType, WireError};
use tokio::sync::OnceCell;

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

impl Entry {
    /// The answer to a publish that finds its key in this state.
    fn answer(&self) -> Begin<'static> {
        match self {
            Entry::Done(result) => Begin::Replay(result.clone()),
            Entry::Pending => Begin::Refuse(WireError::custom(
                ErrorType::LimitExceeded,
                "ConflictException",
                409,
                "a publish with this idempotency key is in progress; retry shortly",
            )),
            Entry::Unknown => Begin::Refuse(WireError::custom(
                ErrorType::Internal,
                "ConflictException",
                409,
                "an earlier publish with this idempotency key failed and may have been stored; \
                 it is not published again (check history, or use a new key)",
            )),
        }
    }
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

/// The remembered keys: this node's table, and in cluster mode the cluster's bucket.
pub struct Idempotency {
    window: Duration,
    max_keys: usize,
    table: Mutex<Table>,
    /// Cluster mode: the keys every node sees.
    shared: Option<Arc<SharedKeys>>,
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
    /// Cluster mode: the bucket entry this claim created.
    held: Option<Held>,
}

impl Idempotency {
    /// `shared`: the cluster's bucket, in cluster mode.
    pub fn new(window: Duration, max_keys: usize, shared: Option<Arc<SharedKeys>>) -> Idempotency {
        Idempotency {
            window,
            max_keys,
            table: Mutex::new(Table::default()),
            shared,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks a key up in a namespace, claiming it when it is new: in this node's table, then
    /// (cluster mode) in the cluster's bucket.
    pub async fn begin(&self, namespace: &str, key: &str) -> Begin<'_> {
        let mut claim = match self.begin_here(namespace, key) {
            Begin::Fresh(claim) => claim,
            known => return known,
        };
        let Some(shared) = &self.shared else {
            return Begin::Fresh(claim);
        };
        match shared.claim(namespace, key).await {
            Ok(Claimed::Ours(held)) => {
                claim.held = Some(held);
                Begin::Fresh(claim)
            }
            // Another node has it; dropping `claim` releases this node's entry.
            Ok(Claimed::Theirs(entry)) => entry.answer(),
            Err(e) => Begin::Refuse(e.into_wire()),
        }
    }

    /// The lookup in this node's table.
    fn begin_here(&self, namespace: &str, key: &str) -> Begin<'_> {
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
        if let Some((entry, _)) = t.entries.get(&id) {
            return entry.answer();
        }
        // Room for one more: the oldest go first.
        while t.order.len() >= self.max_keys.max(1) {
            t.forget_oldest();
        }
        t.entries.insert(id.clone(), (Entry::Pending, now));
        t.order.push_back((id.clone(), now));
        Begin::Fresh(Claim {
            owner: self,
            key: Some(id),
            held: None,
        })
    }
}

impl Claim<'_> {
    /// Records the outcome: a result is replayed to retries; an error that may have stored the
    /// events blocks them; any other error releases the key.
    pub async fn finish(mut self, outcome: &Result<PublishResult, WireError>) {
        let entry = match outcome {
            Ok(result) => Some(Entry::Done(Arc::new(result.clone()))),
            Err(e) if may_be_stored(e) => Some(Entry::Unknown),
            Err(_) => None,
        };
        if let Some(key) = self.key.take() {
            let mut t = self.owner.lock();
            match &entry {
                Some(entry) => {
                    if let Some(slot) = t.entries.get_mut(&key) {
                        slot.0 = entry.clone();
                    }
                }
                None => {
                    t.entries.remove(&key);
                }
            }
        }
        if let Some(held) = self.held.take() {
            held.record(entry.as_ref()).await;
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.owner.lock().entries.remove(&key);
        }
        if let Some(held) = self.held.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(held.record(None));
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

/// Longest a claim, a read or a record waits for JetStream.
const KV_TIMEOUT: Duration = Duration::from_secs(5);

/// Cluster mode: the idempotency keys every node sees, in the JetStream key-value bucket
/// `<PREFIX>_idempotency` (the cluster's subject prefix, like the history streams), created on
/// first use with the window as its `max_age`. An entry is a namespace's key
/// ([`entry_key`]) holding JSON: `{"state":"pending","by":<claim token>}`,
/// `{"state":"done","result":…}` or `{"state":"unknown"}`.
pub struct SharedKeys {
    client: async_nats::Client,
    bucket: String,
    /// The bucket's stream (`bucket::kv_stream`).
    stream: jetstream::stream::Config,
    /// Opened on first use; shared by the claims, which outlive a request when released late.
    store: OnceCell<Arc<kv::Store>>,
}

/// What a claim in the bucket found.
enum Claimed {
    /// The key is ours: publish.
    Ours(Held),
    /// Another publish (on any node) has it.
    Theirs(Entry),
}

/// The bucket could not be used; nothing was published.
#[derive(Debug, thiserror::Error)]
enum SharedError {
    #[error("not connected to NATS")]
    Disconnected,
    #[error("JetStream did not answer within {} s", KV_TIMEOUT.as_secs())]
    TimedOut,
    #[error(
        "cannot open the key-value bucket {bucket}: {error} (is JetStream enabled on the NATS server?)"
    )]
    Open { bucket: String, error: String },
    #[error("{0}")]
    Kv(String),
}

impl SharedError {
    fn into_wire(self) -> WireError {
        WireError::new(
            ErrorType::Internal,
            format!(
                "the idempotency store is unavailable, the event was not published: {self}; \
                 retry with the same idempotency key"
            ),
        )
    }
}

impl SharedKeys {
    /// The bucket of a cluster whose subject prefix is `prefix`, kept in `replicas` copies;
    /// `None` when the window is zero (nothing to remember, and JetStream would read a zero
    /// `max_age` as "forever").
    pub fn new(
        client: async_nats::Client,
        prefix: &str,
        replicas: usize,
        window: Duration,
    ) -> Option<SharedKeys> {
        if window.is_zero() {
            return None;
        }
        let bucket = bucket_name(prefix);
        let stream = crate::bucket::kv_stream(
            &bucket,
            "Herald: idempotency keys of recent publishes",
            replicas,
            window,
        );
        Some(SharedKeys {
            client,
            bucket,
            stream,
            store: OnceCell::new(),
        })
    }

    /// The bucket, created (or its window updated) on first use; a failure is retried on the
    /// next publish, so a node starts even while JetStream is away.
    async fn store(&self) -> Result<&Arc<kv::Store>, SharedError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(SharedError::Disconnected);
        }
        self.store
            .get_or_try_init(|| async {
                let js = jetstream::new(self.client.clone());
                let open = async {
                    js.create_or_update_stream(self.stream.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    js.get_key_value(&self.bucket)
                        .await
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                };
                let error = match tokio::time::timeout(KV_TIMEOUT, open).await {
                    Ok(Ok(store)) => return Ok(store),
                    Ok(Err(e)) => e,
                    Err(_) => "timed out".into(),
                };
                Err(SharedError::Open {
                    bucket: self.bucket.clone(),
                    error,
                })
            })
            .await
    }

    /// Claims a namespace's key with an atomic `create`, or reads what holds it.
    async fn claim(&self, namespace: &str, key: &str) -> Result<Claimed, SharedError> {
        let store = self.store().await?;
        let name = entry_key(namespace, key);
        let token = crate::id::uuid_v4();
        let pending = encode(&Stored::Pending { by: &token });
        // A claim released or expired between our `create` and our read is claimed again; past
        // a few rounds the key is busy.
        for _ in 0..3 {
            match tokio::time::timeout(KV_TIMEOUT, store.create(&name, pending.clone())).await {
                Ok(Ok(revision)) => {
                    return Ok(Claimed::Ours(Held {
                        store: store.clone(),
                        key: name,
                        revision,
                    }));
                }
                Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                failed => {
                    // The claim may have been stored all the same: take it back, or retries
                    // would be told "in progress" until the window ends.
                    tokio::spawn(forget_if_ours(store.clone(), name, token));
                    return Err(match failed {
                        Ok(Err(e)) => SharedError::Kv(e.to_string()),
                        _ => SharedError::TimedOut,
                    });
                }
            }
            if let Some(found) = within(store.entry(name.clone())).await?
                && found.operation == kv::Operation::Put
            {
                return Ok(Claimed::Theirs(decode(&found.value)));
            }
        }
        Ok(Claimed::Theirs(Entry::Pending))
    }
}

/// A claim in the cluster's bucket: its key and the revision that created it.
struct Held {
    store: Arc<kv::Store>,
    key: String,
    revision: u64,
}

impl Held {
    /// Records the outcome for retries on every node (`None`: the publish stored nothing, so
    /// the claim is released).
    async fn record(self, entry: Option<&Entry>) {
        let written = match entry {
            Some(entry) => {
                let value = match entry {
                    Entry::Done(result) => encode(&Stored::Done { result }),
                    Entry::Pending | Entry::Unknown => encode(&Stored::Unknown),
                };
                let update = self.store.update(&self.key, value, self.revision);
                within(update).await.map(drop)
            }
            None => {
                let delete = self
                    .store
                    .delete_expect_revision(&self.key, Some(self.revision));
                within(delete).await
            }
        };
        if let Err(e) = written {
            // Never a duplicate: retries on other nodes are told "in progress" until the
            // window ends.
            tracing::warn!(
                error = %e,
                "cannot record an idempotent publish's outcome in the cluster's bucket"
            );
        }
    }
}

/// Deletes a claim that a failed `create` may have stored, if it is still ours.
async fn forget_if_ours(store: Arc<kv::Store>, name: String, token: String) {
    if let Ok(Some(found)) = within(store.entry(name.clone())).await
        && found.operation == kv::Operation::Put
        && matches!(serde_json::from_slice(&found.value), Ok(Found::Pending { by }) if by == token)
    {
        let _ = within(store.delete_expect_revision(&name, Some(found.revision))).await;
    }
}

async fn within<T, E: std::fmt::Display>(
    request: impl Future<Output = Result<T, E>>,
) -> Result<T, SharedError> {
    match tokio::time::timeout(KV_TIMEOUT, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SharedError::Kv(e.to_string())),
        Err(_) => Err(SharedError::TimedOut),
    }
}

/// Bucket names may hold only `[A-Za-z0-9_-]`.
fn bucket_name(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}_idempotency")
}

/// The bucket key of a namespace's idempotency key: `<namespace>.<key in hex>`. Namespaces
/// follow the channel segment rules (`[A-Za-z0-9-]`), valid in a bucket key as they are; the
/// client's key (1 to 128 visible ASCII characters, checked on the way in) may hold characters
/// a bucket key cannot, so it is hex-encoded: at most 256 characters, and, unlike a hash, two
/// different keys (or namespaces) can never share an entry.
fn entry_key(namespace: &str, key: &str) -> String {
    use std::fmt::Write;
    let mut name = String::with_capacity(namespace.len() + 1 + 2 * key.len());
    name.push_str(namespace);
    name.push('.');
    for b in key.bytes() {
        let _ = write!(name, "{b:02x}");
    }
    name
}

/// A bucket entry, as written.
#[derive(serde::Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Stored<'a> {
    /// `by`: the claim's own token, so a claim whose `create` failed can be recognised.
    Pending {
        by: &'a str,
    },
    Done {
        result: &'a PublishResult,
    },
    Unknown,
}

fn encode(stored: &Stored<'_>) -> Bytes {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_vec(stored)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// A bucket entry, as read back (the protocol's reply types only serialize).
#[derive(serde::Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Found {
    Pending {
        #[serde(default)]
        by: String,
    },
    Done {
        result: FoundResult,
    },
    Unknown,
}

#[derive(serde::Deserialize)]
struct FoundResult {
    #[serde(default)]
    successful: Vec<FoundAccepted>,
    #[serde(default)]
    failed: Vec<FoundRefused>,
}

#[derive(serde::Deserialize)]
struct FoundAccepted {
    identifier: String,
    index: usize,
    #[serde(default)]
    delivered: Option<usize>,
    #[serde(default)]
    position: Option<FoundPosition>,
}

#[derive(serde::Deserialize)]
struct FoundPosition {
    /// A string on the wire (see `StreamPosition`).
    epoch: String,
    offset: u64,
}

#[derive(serde::Deserialize)]
struct FoundRefused {
    identifier: String,
    index: usize,
    code: String,
    message: String,
}

impl FoundResult {
    fn into_result(self) -> Option<PublishResult> {
        let successful = self
            .successful
            .into_iter()
            .map(|a| {
                let position = match a.position {
                    Some(p) => Some(StreamPosition {
                        epoch: p.epoch.parse().ok()?,
                        offset: p.offset,
                    }),
                    None => None,
                };
                Some(Accepted {
                    identifier: a.identifier,
                    index: a.index,
                    delivered: a.delivered,
                    position,
                })
            })
            .collect::<Option<_>>()?;
        let failed = self
            .failed
            .into_iter()
            .map(|r| Refused {
                identifier: r.identifier,
                index: r.index,
                code: r.code,
                message: r.message,
            })
            .collect();
        Some(PublishResult { successful, failed })
    }
}

/// What a bucket entry says; one that cannot be read is treated as a possibly stored outcome,
/// never as a reason to publish again.
fn decode(value: &[u8]) -> Entry {
    match serde_json::from_slice(value) {
        Ok(Found::Pending { .. }) => Entry::Pending,
        Ok(Found::Unknown) => Entry::Unknown,
        Ok(Found::Done { result }) => match result.into_result() {
            Some(result) => Entry::Done(Arc::new(result)),
            None => Entry::Unknown,
        },
        Err(e) => {
            tracing::warn!(error = %e, "unreadable entry in the idempotency bucket");
            Entry::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_published_once_within_its_window() {
        let table = Idempotency::new(Duration::from_secs(60), 10, None);
        let Begin::Fresh(claim) = table.begin("ns", "k").await else {
            panic!("a new key is claimed")
        };
        assert!(matches!(table.begin("ns", "k").await, Begin::Refuse(e) if e.http_status() == 409));
        assert!(matches!(table.begin("other", "k").await, Begin::Fresh(_)));
        claim.finish(&Ok(PublishResult::default())).await;
        assert!(matches!(table.begin("ns", "k").await, Begin::Replay(_)));
        // A failure that stored nothing releases the key.
        let Begin::Fresh(claim) = table.begin("ns", "k2").await else {
            panic!()
        };
        claim
            .finish(&Err(WireError::new(ErrorType::Unauthorized, "no")))
            .await;
        assert!(matches!(table.begin("ns", "k2").await, Begin::Fresh(_)));
    }

    #[tokio::test]
    async fn expired_and_excess_keys_are_forgotten() {
        let table = Idempotency::new(Duration::ZERO, 10, None);
        if let Begin::Fresh(c) = table.begin("ns", "k").await {
            c.finish(&Ok(PublishResult::default())).await;
        }
        assert!(matches!(table.begin("ns", "k").await, Begin::Fresh(_)));
        let table = Idempotency::new(Duration::from_secs(60), 2, None);
        for k in ["a", "b", "c"] {
            if let Begin::Fresh(c) = table.begin("ns", k).await {
                c.finish(&Ok(PublishResult::default())).await;
            }
        }
        assert!(matches!(table.begin("ns", "a").await, Begin::Fresh(_)));
        assert!(matches!(table.begin("ns", "c").await, Begin::Replay(_)));
    }

    #[test]
    fn bucket_keys_are_valid_and_distinct() {
        assert_eq!(entry_key("default", "a.b *>"), "default.612e62202a3e");
        assert_ne!(entry_key("ns", "ab"), entry_key("nsa", "b"));
        assert_eq!(bucket_name("herald.test"), "herald_test_idempotency");
    }

    #[test]
    fn a_stored_result_reads_back_the_same() {
        let result = PublishResult {
            successful: vec![Accepted {
                identifier: "id-1".into(),
                index: 0,
                delivered: None,
                position: Some(StreamPosition {
                    epoch: u64::MAX,
                    offset: 4096,
                }),
            }],
            failed: vec![Refused {
                identifier: "id-2".into(),
                index: 1,
                code: "EventTooLargeException".into(),
                message: "too big".into(),
            }],
        };
        let Entry::Done(back) = decode(&encode(&Stored::Done { result: &result })) else {
            panic!("a result reads back as done")
        };
        assert_eq!(
            serde_json::to_value(&*back).ok(),
            serde_json::to_value(&result).ok()
        );
        assert!(matches!(
            decode(&encode(&Stored::Pending { by: "t" })),
            Entry::Pending
        ));
        assert!(matches!(decode(&encode(&Stored::Unknown)), Entry::Unknown));
        assert!(matches!(decode(b"not json"), Entry::Unknown));
    }
}
