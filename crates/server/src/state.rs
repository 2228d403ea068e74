//! What every connection and request shares: the settings (fixed, and the live part a reload
//! swaps), the broker, history, the connection registry and the metrics.

use std::sync::{Arc, OnceLock, RwLock};

use herald_protocol::EventLimits;

use crate::admission::Admission;
use crate::broker::Broker;
use crate::config::ReloadSource;
use crate::history::History;
use crate::idempotency::Idempotency;
use crate::metrics::Metrics;
use crate::metrics::Outbound;
use crate::presence::Presence;
use crate::registry::Registry;
use crate::settings::{Fixed, Live};
use crate::stream_token::Tokens;

pub struct State {
    /// What only a restart can change.
    pub fixed: Fixed,
    /// The current reloadable settings; read one snapshot per operation with [`State::live`].
    live: RwLock<Arc<Live>>,
    pub broker: Arc<dyn Broker>,
    /// Stored history, when any namespace keeps it.
    pub history: Option<History>,
    pub connections: Registry,
    /// Who may hold a socket; per-address rates.
    pub admission: Arc<Admission>,
    /// Idempotency keys of recent publishes (shared by the nodes in cluster mode).
    pub idempotency: Idempotency,
    pub metrics: Metrics,
    /// The per-event limits every publish is decoded with.
    pub event_limits: EventLimits,
    /// Where reloads read the configuration from.
    reload_source: OnceLock<ReloadSource>,
    /// Failed admin-key attempts, which close the admin API for a while (`http::admin`).
    pub admin_failures: crate::auth::admin_key::Failures,
    /// Tokens waiting for their Server-Sent Events stream.
    pub stream_tokens: Tokens,
    /// Who is subscribed where, on namespaces with presence on.
    pub presence: Arc<Presence>,
    /// Held while the live settings are rebuilt (a reload, a control-plane write), so that
    /// one never swaps in settings built before the other's.
    pub reconfiguring: tokio::sync::Mutex<()>,
    /// Cluster mode: the control plane's records in NATS, shared by every API of the node.
    pub records: Option<Arc<crate::control::replicated::Records>>,
}

impl State {
    pub fn new(
        fixed: Fixed,
        live: Live,
        broker: Arc<dyn Broker>,
        history: Option<History>,
        outbound: Outbound,
    ) -> State {
        let mut metrics = Metrics::new(live.namespaces.iter().map(String::as_str));
        metrics.outbound_messages = outbound.messages;
        metrics.outbound_bytes = outbound.bytes;
        let live = Arc::new(live);
        prefetch_keys(live.clone());
        let shared_keys = broker.shared_keys();
        let presence = Arc::new(Presence::new(
            &fixed.presence_namespaces,
            &metrics,
            Some(broker.clone()),
        ));
        State {
            event_limits: fixed.limits.events(),
            live: RwLock::new(live),
            broker,
            history,
            connections: Registry::new(),
            admission: Arc::new(Admission::new(&fixed.admission)),
            idempotency: Idempotency::new(
                std::time::Duration::from_secs(fixed.limits.idempotency_window_secs),
                fixed.limits.max_idempotency_keys,
                shared_keys,
            ),
            metrics,
            reload_source: OnceLock::new(),
            stream_tokens: Tokens::new(&fixed.sse),
            presence,
            fixed,
            admin_failures: Default::default(),
            reconfiguring: tokio::sync::Mutex::new(()),
            records: None,
        }
    }

    /// The current reloadable settings.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs new reloadable settings (see `reload`).
    pub(crate) fn swap_live(&self, live: Live) {
        self.metrics
            .add_namespaces(live.namespaces.iter().map(String::as_str));
        let live = Arc::new(live);
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live.clone();
        prefetch_keys(live);
    }

    /// Sets where reloads read the configuration from (once).
    pub fn set_reload_source(&self, source: ReloadSource) {
        let _ = self.reload_source.set(source);
    }

    pub(crate) fn reload_source(&self) -> Option<&ReloadSource> {
        self.reload_source.get()
    }

    /// History, when this namespace keeps it.
    pub fn history_of(&self, namespace: &str) -> Option<&History> {
        self.history.as_ref().filter(|h| h.keeps(namespace))
    }
}

/// Fetches identity providers' signing keys in the background, so the first token does not wait
/// for discovery.
fn prefetch_keys(live: Arc<Live>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move { live.access.prefetch_keys().await });
    }
}
