//! What every connection and request shares: configuration, authorizer, broker, connection
//! registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

pub struct State {
    pub config: Config,
    pub authorizer: Authorizer,
    pub broker: Arc<dyn Broker>,
    pub event_limits: EventLimits,
    pub connections: Registry,
    /// Stored history, when any namespace keeps it.
    pub history: Option<crate::history::History>,
    pub metrics: crate::metrics::Metrics,
    /// Namespace handlers, when any namespace has them.
    pub handlers: Option<herald_handler::Handlers>,
    /// Access rules of the namespaces that have them.
    rules: HashMap<String, crate::rules::Rules>,
}

impl State {
    /// Builds the shared state; opens the history store when a namespace keeps history.
    pub fn new(config: Config) -> Result<State, crate::server::StartError> {
        let event_limits = EventLimits {
            max_event_bytes: config.limits.max_event_bytes,
            max_events: config.limits.max_events_per_publish,
        };
        let broker: Arc<dyn Broker> = Arc::new(Hub::new());
        let history = crate::history::History::start(&config, broker.clone())?;
        let metrics =
            crate::metrics::Metrics::new(config.namespaces.iter().map(|n| n.name.as_str()));
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
        Ok(State {
            metrics,
            handlers,
            rules,
            authorizer: Authorizer::new(&config.auth).map_err(|e| crate::config::ConfigError {
                problems: vec![format!("auth.providers: {e}")],
            })?,
            broker,
            event_limits,
            connections: Registry::new(),
            history,
            config,
        })
    }

    /// Authorizes an operation, counting refusals.
    pub async fn authorize(
        &self,
        modes: &[AuthMode],
        check: crate::auth::Check<'_>,
    ) -> Result<crate::auth::Identity, WireError> {
        let r = self.authorizer.authorize(modes, check).await;
        if r.is_err() {
            self.metrics.unauthorized.inc();
        }
        r
    }

    /// Applies the namespace's access rules (after authorization, before handlers). A refusal is
    /// `UnauthorizedException`, counted in `herald_rule_denials_total`.
    pub fn check_rules(
        &self,
        identity: &crate::auth::Identity,
        namespace: &str,
        target: Target<'_>,
    ) -> Result<(), WireError> {
        let Some(rules) = self.rules.get(namespace) else {
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
