//! Embedded or cluster: the one place the choice is made — which broker fans events out, which
//! store keeps history, and who delivers stored events. Everything else sees only the
//! [`Broker`] trait and [`History`].
//!
//! - Embedded: the local subscription index is the broker; history is fjall (or memory), and
//!   each history namespace's lane delivers what it stored.
//! - Cluster (`[cluster] nats_url`): NATS fans out to every node's local index; history is
//!   JetStream, and every node's follower delivers what any node stored; idempotency keys are
//!   shared in a JetStream key-value bucket; presence members are replicated over core NATS
//!   (`presence::cluster`).

use std::sync::Arc;
use std::time::Duration;

use herald_history::{HistoryError, JetStreamOptions, JetStreamStore};

use crate::broker::Broker;
use crate::broker::local::Hub;
use crate::broker::nats::{ClusterError, NatsBroker};
use crate::history::{History, ReadLimits, retention};
use crate::idempotency::SharedKeys;
use crate::metrics::Outbound;
use crate::settings::Fixed;

/// How events reach subscribers, and where history is kept.
pub struct Backplane {
    pub broker: Arc<dyn Broker>,
    pub history: Option<History>,
    /// The counters the fan-out adds its direct writes to, for the server's metrics.
    pub outbound: Outbound,
    /// The NATS connection in cluster mode, which presence replicates its members over.
    pub nats: Option<async_nats::Client>,
}

/// The backplane could not start.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot open the history store")]
    History(#[from] HistoryError),
}

/// Starts the backplane the settings ask for.
pub async fn start(fixed: &Fixed) -> Result<Backplane, BackplaneError> {
    let outbound = Outbound::default();
    let hub = Arc::new(
        Hub::new(outbound.clone(), fixed.websocket.direct_write_max_fanout)
            .with_io_uring(fixed.websocket.direct_write_io_uring),
    );
    let limits = ReadLimits::new(&fixed.history, fixed.limits.max_event_bytes);
    if !fixed.cluster.enabled() {
        let broker: Arc<dyn Broker> = hub;
        let history = History::embedded(
            &fixed.history,
            limits,
            &fixed.data_dir,
            &fixed.history_namespaces,
            broker.clone(),
        )?;
        return Ok(Backplane {
            broker,
            history,
            outbound,
            nats: None,
        });
    }
    let followed = fixed
        .history_namespaces
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let nats = NatsBroker::connect(&fixed.cluster, followed, hub.clone()).await?;
    let client = nats.client();
    let keys = SharedKeys::new(
        client.clone(),
        fixed.cluster.prefix(),
        fixed.cluster.history_replicas,
        Duration::from_secs(fixed.limits.idempotency_window_secs),
    );
    let nats = nats.with_shared_keys(keys);
    let broker: Arc<dyn Broker> = Arc::new(nats);
    if fixed.history_namespaces.is_empty() {
        return Ok(Backplane {
            broker,
            history: None,
            outbound,
            nats: Some(client),
        });
    }
    let namespaces: Vec<_> = fixed
        .history_namespaces
        .iter()
        .map(|(n, h)| (n.clone(), retention(h)))
        .collect();
    let options = JetStreamOptions {
        subject_prefix: fixed.cluster.prefix().to_owned(),
        replicas: fixed.cluster.history_replicas.max(1),
    };
    let store = Arc::new(JetStreamStore::open(client.clone(), &options, &namespaces).await?);
    let history = History::cluster(store, &namespaces, hub, limits).await?;
    Ok(Backplane {
        broker,
        history: Some(history),
        outbound,
        nats: Some(client),
    })
}
