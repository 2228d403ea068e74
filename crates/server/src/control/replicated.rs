//! Cluster mode: every API's record (what `store` keeps in one node's data directory) in the
//! JetStream key-value bucket `<PREFIX>_control`, one key per API id, so a change made on one
//! node is seen by every node, which applies it (`api::follow`). Kept in `history_replicas`
//! copies, with no expiry: a record lives until its API is deleted.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use super::store::ApiRecord;

/// How long one key-value operation may take before the change is refused.
const KV_TIMEOUT: Duration = Duration::from_secs(10);

/// The bucket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplicatedError {
    #[error(
        "cannot open the key-value bucket {bucket}: {error} (is JetStream enabled on the NATS server?)"
    )]
    Open { bucket: String, error: String },
    #[error("the key-value bucket {bucket}: {error}")]
    Kv { bucket: String, error: String },
    #[error("JetStream did not answer within {} s", KV_TIMEOUT.as_secs())]
    TimedOut,
}

/// A change another node (or this one) made.
pub enum Change {
    Put(String, Box<ApiRecord>),
    Deleted(String),
}

/// The cluster's records.
pub struct Records {
    store: kv::Store,
    bucket: String,
}

/// The bucket of a cluster whose subject prefix is `prefix`.
fn bucket_name(prefix: &str) -> String {
    format!("{}_control", prefix.replace('.', "_"))
}

async fn timed<T>(f: impl Future<Output = T>) -> Result<T, ReplicatedError> {
    tokio::time::timeout(KV_TIMEOUT, f)
        .await
        .map_err(|_| ReplicatedError::TimedOut)
}

impl Records {
    /// Opens (creating when missing) the bucket.
    pub async fn open(
        client: async_nats::Client,
        prefix: &str,
        replicas: usize,
    ) -> Result<Records, ReplicatedError> {
        let bucket = bucket_name(prefix);
        let js = jetstream::new(client);
        let config = crate::bucket::kv_stream(
            &bucket,
            "Herald: the control plane's APIs, namespaces and keys",
            replicas,
            Duration::ZERO,
        );
        let open = async {
            js.create_or_update_stream(config)
                .await
                .map_err(|e| e.to_string())?;
            js.get_key_value(&bucket).await.map_err(|e| e.to_string())
        };
        let store = timed(open).await?.map_err(|error| ReplicatedError::Open {
            bucket: bucket.clone(),
            error,
        })?;
        Ok(Records { store, bucket })
    }

    fn kv_error(&self, error: impl ToString) -> ReplicatedError {
        ReplicatedError::Kv {
            bucket: self.bucket.clone(),
            error: error.to_string(),
        }
    }

    /// Stores an API's record.
    pub async fn put(&self, api_id: &str, record: &ApiRecord) -> Result<(), ReplicatedError> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.kv_error(e))?;
        timed(self.store.put(api_id, bytes.into()))
            .await?
            .map_err(|e| self.kv_error(e))?;
        Ok(())
    }

    /// Removes a deleted API's record.
    pub async fn delete(&self, api_id: &str) -> Result<(), ReplicatedError> {
        timed(self.store.delete(api_id))
            .await?
            .map_err(|e| self.kv_error(e))
    }

    /// Every record now.
    pub async fn all(&self) -> Result<Vec<(String, ApiRecord)>, ReplicatedError> {
        let read = async {
            let mut keys = self.store.keys().await.map_err(|e| self.kv_error(e))?;
            let mut out = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|e| self.kv_error(e))?;
                if let Some(bytes) = self
                    .store
                    .get(key.clone())
                    .await
                    .map_err(|e| self.kv_error(e))?
                {
                    match serde_json::from_slice(&bytes) {
                        Ok(record) => out.push((key, record)),
                        Err(e) => {
                            tracing::error!(api_id = %key, error = %e, "a stored API record does not read; left out")
                        }
                    }
                }
            }
            Ok(out)
        };
        timed(read).await?
    }

    /// Every change from now on (after the current value of each key, which the caller has
    /// applied or compares against). Ends when the connection to NATS does.
    pub async fn changes(
        &self,
    ) -> Result<impl futures_util::Stream<Item = Change> + Send + 'static, ReplicatedError> {
        let watch = timed(self.store.watch_with_history(">"))
            .await?
            .map_err(|e| self.kv_error(e))?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry
                .inspect_err(|e| tracing::warn!(error = %e, "control plane watch"))
                .ok()?;
            match entry.operation {
                kv::Operation::Put => match serde_json::from_slice(&entry.value) {
                    Ok(record) => Some(Change::Put(entry.key, Box::new(record))),
                    Err(e) => {
                        tracing::error!(api_id = %entry.key, error = %e, "a stored API record does not read; ignored");
                        None
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => Some(Change::Deleted(entry.key)),
            }
        }))
    }
}
