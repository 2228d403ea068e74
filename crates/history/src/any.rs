//! [`AnyStore`]: pick the backend at runtime (from config) without making callers generic.

use bytes::Bytes;

use crate::fjall_store::FjallStore;
use crate::jetstream::JetStreamStore;
use crate::memory::MemoryStore;
use crate::store::HistoryStore;
use crate::types::{HistoryError, Position, ReadOutcome, Retention, Since};

/// One of the built-in stores. [`HistoryStore`] returns `impl Future`, so it is not object-safe;
/// this enum is the cheap way to hold "whichever store the config chose".
pub enum AnyStore {
    /// In-memory history.
    Memory(MemoryStore),
    /// Durable history in a directory.
    Fjall(FjallStore),
    /// History in NATS JetStream, shared by a cluster.
    /// Shared: the cluster follower reads the same store.
    JetStream(std::sync::Arc<JetStreamStore>),
}

impl From<MemoryStore> for AnyStore {
    fn from(s: MemoryStore) -> Self {
        Self::Memory(s)
    }
}

impl From<FjallStore> for AnyStore {
    fn from(s: FjallStore) -> Self {
        Self::Fjall(s)
    }
}

impl HistoryStore for AnyStore {
    async fn append(
        &self,
        namespace: &str,
        channel: &str,
        events: Vec<Bytes>,
        time_ms: u64,
    ) -> Result<Vec<Position>, HistoryError> {
        match self {
            Self::Memory(s) => s.append(namespace, channel, events, time_ms).await,
            Self::Fjall(s) => s.append(namespace, channel, events, time_ms).await,
            Self::JetStream(s) => s.append(namespace, channel, events, time_ms).await,
        }
    }

    async fn read(
        &self,
        channel: &str,
        since: Since,
        limit: usize,
    ) -> Result<ReadOutcome, HistoryError> {
        match self {
            Self::Memory(s) => s.read(channel, since, limit).await,
            Self::Fjall(s) => s.read(channel, since, limit).await,
            Self::JetStream(s) => s.read(channel, since, limit).await,
        }
    }

    async fn top(&self, channel: &str) -> Result<Position, HistoryError> {
        match self {
            Self::Memory(s) => s.top(channel).await,
            Self::Fjall(s) => s.top(channel).await,
            Self::JetStream(s) => s.top(channel).await,
        }
    }

    async fn channels_under(&self, prefix: &str) -> Result<Vec<String>, HistoryError> {
        match self {
            Self::Memory(s) => s.channels_under(prefix).await,
            Self::Fjall(s) => s.channels_under(prefix).await,
            Self::JetStream(s) => s.channels_under(prefix).await,
        }
    }

    fn set_retention(&self, namespace: &str, retention: Retention) {
        match self {
            Self::Memory(s) => s.set_retention(namespace, retention),
            Self::Fjall(s) => s.set_retention(namespace, retention),
            Self::JetStream(s) => s.set_retention(namespace, retention),
        }
    }
}
