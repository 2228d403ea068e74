//! What every connection and request shares: configuration, authorizer, broker, connection
//! registry.
//!
//! The parts a reload may change (namespaces and their modes, rules and handlers; keys and
//! providers; CORS) live in [`Live`], swapped whole on reload; an operation reads one snapshot.
//! The rest (listener, TLS, limits, history store) is fixed at startup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use herald_protocol::{ErrorType, EventLimits, WireError};

use crate::auth::{AuthMode, Authorizer};
use crate::config::Config;
use crate::connection::outbox::{Out, Outbox};
use crate::hub::{Broker, Hub};

/// Which list of modes applies.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    Publish,
    Subscribe,
}

/// Fetches identity providers' signing keys in the background, so the first token does not wait
/// for discovery.
fn prefetch_keys(live: Arc<Live>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move { live.authorizer.prefetch_keys().await });
    }
}

/// What a reload replaces, as one unit.
pub struct Live {
    pub config: Config,
    pub authorizer: Authorizer,
    /// Namespace handlers, when any namespace has them.
    pub handlers: Option<herald_handler::Handlers>,
    /// Access rules of the namespaces that have them.
    rules: HashMap<String, crate::rules::Rules>,
}

impl Live {
    fn build(config: Config) -> Result<Live, crate::server::StartError> {
        let handlers = config.load_handlers()?;
        let mut rules = HashMap::new();
        for ns in &config.namespaces {
            if let Some(r) = &ns.rules {
                let parsed =
                    crate::rules::Rules::parse(r, &ns.name, &format!("namespace {}", ns.name))
                        .map_err(|problems| crate::config::ConfigError { problems })?;
                rules.insert(ns.name.clone(), parsed);
            }
        }
        let authorizer = Authorizer::new(&config.auth).map_err(|e| crate::config::ConfigError {
            problems: vec![format!("auth.providers: {e}")],
        })?;
        Ok(Live {
            config,
            authorizer,
            handlers,
            rules,
        })
    }

    /// The modes accepted for an operation in a namespace; `None` if the namespace does not exist.
    pub fn modes(&self, namespace: &str, access: Access) -> Option<&[AuthMode]> {
        let ns = self.config.namespace(namespace)?;
        let auth = &self.config.auth;
        Some(match access {
            Access::Publish => ns
                .publish_auth_modes
                .as_deref()
                .unwrap_or(&auth.default_publish_auth_modes),
            Access::Subscribe => ns
                .subscribe_auth_modes
                .as_deref()
                .unwrap_or(&auth.default_subscribe_auth_modes),
        })
    }
}

pub struct State {
    /// The configuration at startup: the source of everything a reload cannot change.
    pub config: Config,
    live: RwLock<Arc<Live>>,
    pub broker: Arc<dyn Broker>,
    pub event_limits: EventLimits,
    pub connections: Registry,
    /// Stored history, when any namespace keeps it.
    pub history: Option<crate::history::History>,
    pub metrics: crate::metrics::Metrics,
    /// Reads the configuration again (the file and flags the server started from).
    reload_source: std::sync::OnceLock<ReloadSource>,
}

/// Produces a fresh configuration for a reload.
pub type ReloadSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// A reload that was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Invalid(#[from] crate::server::StartError),
    #[error("{0} cannot change without a restart; the running configuration is kept")]
    NeedsRestart(String),
    #[error("cannot read the configuration: {0}; the running configuration is kept")]
    Source(String),
    #[error("this server has no configuration source to reload from")]
    NoSource,
}

impl State {
    /// Builds the shared state; opens the history store when a namespace keeps history.
    pub fn new(config: Config) -> Result<State, crate::server::StartError> {
        let broker: Arc<dyn Broker> = Arc::new(Hub::new());
        let history = crate::history::History::start(&config, broker.clone())?;
        State::with_broker(config, broker, history)
    }

    /// Builds the shared state around a broker (the local hub, or the cluster backplane) and
    /// the history it delivers with.
    pub fn with_broker(
        config: Config,
        broker: Arc<dyn Broker>,
        history: Option<crate::history::History>,
    ) -> Result<State, crate::server::StartError> {
        let event_limits = EventLimits {
            max_event_bytes: config.limits.max_event_bytes,
            max_events: config.limits.max_events_per_publish,
        };
        let metrics =
            crate::metrics::Metrics::new(config.namespaces.iter().map(|n| n.name.as_str()));
        let live = Arc::new(Live::build(config.clone())?);
        prefetch_keys(live.clone());
        Ok(State {
            metrics,
            live: RwLock::new(live),
            broker,
            event_limits,
            connections: Registry::new(),
            history,
            config,
            reload_source: std::sync::OnceLock::new(),
        })
    }

    /// Sets where reloads read the configuration from (once).
    pub fn set_reload_source(&self, source: ReloadSource) {
        let _ = self.reload_source.set(source);
    }

    /// Reads the configuration from its source and applies it ([`State::reload`]).
    pub fn reload_from_source(&self) -> Result<(), ReloadError> {
        let source = self.reload_source.get().ok_or(ReloadError::NoSource)?;
        let config = source().map_err(ReloadError::Source)?;
        self.reload(config)
    }

    /// The current reloadable configuration.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces namespaces, keys, providers, rules, handlers and CORS without dropping
    /// connections, then asks every connection to re-check its subscriptions. A configuration
    /// that fails validation, or changes what needs a restart, is refused.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        config.validate().map_err(crate::server::StartError::from)?;
        let fixed = |c: &Config| {
            let history: Vec<_> = c
                .namespaces
                .iter()
                .map(|n| (n.name.clone(), serde_json::to_value(&n.history).ok()))
                .filter(|(_, h)| h.as_ref().is_some_and(|h| !h.is_null()))
                .collect();
            serde_json::json!({
                "listen": c.listen, "data_dir": c.data_dir, "tls": c.tls, "limits": c.limits,
                "websocket": c.websocket, "history": c.history, "namespace history": history,
                "cluster": c.cluster,
            })
        };
        let (old, new) = (fixed(&self.config), fixed(&config));
        if old != new {
            let changed: Vec<&str> = [
                "listen",
                "data_dir",
                "tls",
                "limits",
                "websocket",
                "history",
                "namespace history",
                "cluster",
            ]
            .into_iter()
            .filter(|k| old.get(k) != new.get(k))
            .collect();
            return Err(ReloadError::NeedsRestart(changed.join(", ")));
        }
        let live = Live::build(config)?;
        self.metrics
            .add_namespaces(live.config.namespaces.iter().map(|n| n.name.as_str()));
        let live = Arc::new(live);
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live.clone();
        prefetch_keys(live);
        self.connections.broadcast(Out::Recheck);
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Authorizes an operation, counting refusals.
    pub async fn authorize(
        &self,
        modes: &[AuthMode],
        check: crate::auth::Check<'_>,
    ) -> Result<crate::auth::Identity, WireError> {
        let live = self.live();
        let r = live.authorizer.authorize(modes, check).await;
        if r.is_err() {
            self.metrics.unauthorized.inc();
        }
        r
    }

    /// Authorizes a subscribe or publish on a channel of `namespace` with that namespace's modes.
    /// `raw_channel` is the channel as the client sent it (SigV4 signs it verbatim).
    pub async fn admit(
        &self,
        namespace: &str,
        access: Access,
        raw_channel: &str,
        credential: crate::auth::Presented<'_>,
    ) -> Result<crate::auth::Identity, WireError> {
        let modes = self
            .modes(namespace, access)
            .ok_or_else(|| unknown_namespace(namespace))?;
        let operation = match access {
            Access::Publish => crate::auth::Operation::Publish,
            Access::Subscribe => crate::auth::Operation::Subscribe,
        };
        self.authorize(
            &modes,
            crate::auth::Check {
                operation,
                namespace: Some(namespace),
                channel: Some(raw_channel),
                credential,
            },
        )
        .await
    }

    /// Applies the namespace's access rules (after authorization, before handlers). A refusal is
    /// `UnauthorizedException`, counted in `herald_rule_denials_total`.
    pub fn check_rules(
        &self,
        identity: &crate::auth::Identity,
        namespace: &str,
        target: Target<'_>,
    ) -> Result<(), WireError> {
        let live = self.live();
        let Some(rules) = live.rules.get(namespace) else {
            return Ok(());
        };
        let allowed = match target {
            Target::Subscribe(p) => rules.allows_subscribe(identity, p),
            Target::Publish(c) => rules.allows_publish(identity, c),
        };
        if allowed {
            return Ok(());
        }
        self.metrics.ns(namespace).rule_denials.inc();
        self.metrics.unauthorized.inc();
        tracing::debug!(namespace, ?target, "refused by access rules");
        Err(WireError::unauthorized())
    }

    /// History, when this namespace keeps it.
    pub fn history_of(&self, namespace: &str) -> Option<&crate::history::History> {
        self.history.as_ref().filter(|h| h.keeps(namespace))
    }

    /// The modes accepted for an operation in a namespace; `None` if the namespace does not exist.
    pub fn modes(&self, namespace: &str, access: Access) -> Option<Vec<AuthMode>> {
        self.live()
            .modes(namespace, access)
            .map(<[AuthMode]>::to_vec)
    }
}

const REGISTRY_SHARDS: usize = 16;

struct Entry {
    outbox: Arc<Outbox>,
    opened: Instant,
}

/// Open WebSocket connections, so that keep-alives, the lifetime limit and shutdown reach them
/// all from one timer instead of one timer per connection.
pub struct Registry {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    next_id: AtomicU64,
    count: AtomicUsize,
}

/// Removes a connection from the registry when dropped.
pub struct Registration<'a> {
    registry: &'a Registry,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.lock(self.id).remove(&self.id);
        self.registry.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registry {
    fn new() -> Registry {
        Registry {
            shards: (0..REGISTRY_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            next_id: AtomicU64::new(1),
            count: AtomicUsize::new(0),
        }
    }

    fn lock(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // The modulo keeps the index in range.
        self.shards[(id as usize) % REGISTRY_SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; `None` when `max` connections are already open.
    pub fn register(&self, outbox: Arc<Outbox>, max: usize) -> Option<Registration<'_>> {
        if self.count.fetch_add(1, Ordering::Relaxed) >= max {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock(id).insert(
            id,
            Entry {
                outbox,
                opened: Instant::now(),
            },
        );
        Some(Registration { registry: self, id })
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Queues a keep-alive on every connection and closes those past their lifetime.
    pub fn tick(&self, ka: &bytes::Bytes, max_age: std::time::Duration) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for entry in map.values() {
                if now.duration_since(entry.opened) >= max_age {
                    entry.outbox.close(
                        crate::transport::ws::close::NORMAL,
                        "maximum connection lifetime reached",
                    );
                } else {
                    // A full queue closes the connection; nothing else to do here.
                    let _ = entry.outbox.push(Out::Text(ka.clone()));
                }
            }
        }
    }

    /// Bytes waiting in every outbound queue (for `/metrics`).
    pub fn queued_bytes(&self) -> u64 {
        let mut total = 0u64;
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            total += map
                .values()
                .map(|e| e.outbox.queued_bytes() as u64)
                .sum::<u64>();
        }
        total
    }

    /// Queues an item on every connection.
    pub fn broadcast(&self, item: Out) {
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for entry in map.values() {
                let _ = entry.outbox.push(item.clone());
            }
        }
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for entry in map.values() {
                entry.outbox.close(code, reason);
            }
        }
    }
}

/// What an access rule is checked against.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Subscribe(&'a herald_protocol::Pattern),
    Publish(&'a herald_protocol::Channel),
}

/// The error for a channel outside every configured namespace.
pub fn unknown_namespace(namespace: &str) -> WireError {
    WireError::new(
        ErrorType::NamespaceNotFound,
        format!(
            "namespace {namespace:?} does not exist: channels must start with a configured namespace"
        ),
    )
}
