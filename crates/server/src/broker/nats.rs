//! Cluster mode's broker: several Herald nodes share NATS as their backplane ([`NatsBroker`]).
//!
//! Channels map to NATS subjects: `/ns/a/b` → `<prefix>.ns.a.b`, and a subscription `/ns/a/*`
//! listens on `<prefix>.ns.a.>` (channel segments are `[A-Za-z0-9-]`, valid NATS tokens). A
//! publish on any node goes to NATS only; every node — the publisher's too — delivers what NATS
//! hands it to its local subscriptions, so each matching subscriber gets an event exactly once
//! and one publisher's events on a channel keep their order (NATS preserves per-publisher order).
//!
//! Each node holds one NATS subscription per distinct local key (exact channel, or wildcard
//! prefix), shared by all local subscribers of that key and dropped with the last of them. An
//! event that matches both an exact and a wildcard key arrives once per NATS subscription; each
//! copy is delivered only to the index that subscription serves, so nobody gets it twice.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use herald_protocol::{Channel, Pattern};

use super::local::Hub;
use super::{Broker, BrokerError, PublishFuture, ReadyFuture, Subscriber};
use crate::idempotency::SharedKeys;

/// `[cluster]` settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server(s), e.g. `nats://10.0.0.5:4222`; several comma-separated. Empty: no cluster.
    pub nats_url: String,
    /// First token of every subject, so several Herald deployments can share one NATS.
    pub subject_prefix: String,
    /// A name for this node in NATS's monitoring.
    pub node_name: Option<String>,
    /// User name for NATS (with `password`).
    pub user: Option<String>,
    /// Password for NATS (with `user`).
    pub password: Option<String>,
    /// Token for NATS.
    pub token: Option<String>,
    /// A NATS `.creds` file (JWT and NKey seed, as `nsc` issues them).
    pub credentials_file: Option<PathBuf>,
    /// PEM CA certificate(s) that signed the NATS servers' certificates; implies TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, when NATS requires mutual TLS (with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS, even for a `nats://` URL.
    pub tls_required: bool,
    /// Copies JetStream keeps of each history stream and of the idempotency-key bucket: 1 for a
    /// single NATS server, 3 for a NATS cluster (so they survive losing a NATS server). Default 1.
    pub history_replicas: usize,
    /// How often each node tells the others it is alive, for presence (`docs/extensions.md`).
    pub presence_heartbeat_ms: u64,
    /// A node not heard from for this long is dead: its presence members are removed on the
    /// others.
    pub presence_ttl_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: String::new(),
            subject_prefix: String::new(),
            node_name: None,
            user: None,
            password: None,
            token: None,
            credentials_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            history_replicas: 0,
            presence_heartbeat_ms: 1000,
            presence_ttl_ms: 5000,
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    pub fn check(&self, problems: &mut Vec<String>) {
        if !self.enabled() {
            return;
        }
        if self.user.is_some() != self.password.is_some() {
            problems.push("cluster.user / cluster.password: set both, or neither".into());
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            problems
                .push("cluster.tls_cert_file / cluster.tls_key_file: set both, or neither".into());
        }
        for (key, file) in [
            ("cluster.credentials_file", &self.credentials_file),
            ("cluster.tls_ca_file", &self.tls_ca_file),
            ("cluster.tls_cert_file", &self.tls_cert_file),
            ("cluster.tls_key_file", &self.tls_key_file),
        ] {
            if let Some(f) = file.as_ref().filter(|f| !f.is_file()) {
                problems.push(format!("{key}: {} is not a readable file", f.display()));
            }
        }
        if !(50..=60_000).contains(&self.presence_heartbeat_ms) {
            problems.push("cluster.presence_heartbeat_ms: must be 50 to 60000".into());
        }
        if self.presence_ttl_ms < self.presence_heartbeat_ms.saturating_mul(2) {
            problems.push(
                "cluster.presence_ttl_ms: must be at least twice cluster.presence_heartbeat_ms, or one late beat kills a node"
                    .into(),
            );
        }
        if self.history_replicas > 5 {
            problems.push("cluster.history_replicas: JetStream allows 1 to 5 replicas".into());
        }
        let p = &self.subject_prefix;
        if p.contains(['*', '>', ' ']) || p.starts_with('.') || p.ends_with('.') {
            problems.push(format!("cluster.subject_prefix: {p:?} is not a NATS subject prefix (tokens separated by '.', no wildcards or spaces)"));
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        if self.subject_prefix.is_empty() {
            "herald"
        } else {
            &self.subject_prefix
        }
    }
}

/// Kind of local index a NATS subscription feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Exact,
    Below,
}

struct Remote {
    /// Local subscriptions using this NATS subscription.
    users: usize,
    /// The task reading it; aborted with the last user.
    task: tokio::task::JoinHandle<()>,
}

/// A [`Broker`] that fans out through NATS to every node.
pub struct NatsBroker {
    client: async_nats::Client,
    hub: Arc<Hub>,
    prefix: String,
    remote: Mutex<HashMap<(Kind, String), Remote>>,
    /// Namespaces whose events reach this node from their JetStream stream (`history`), not
    /// from core NATS subscriptions.
    followed: HashSet<String>,
    /// Idempotency keys, in a JetStream bucket every node reads.
    shared_keys: Option<Arc<SharedKeys>>,
}

/// The cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "cannot connect to NATS at {url}: {error} (check cluster.nats_url, its credentials and TLS settings, and that NATS is running)"
    )]
    Connect {
        url: String,
        error: async_nats::ConnectError,
    },
    #[error(
        "cluster.nats_url: {url:?} is not a NATS URL: {error} (expected e.g. nats://10.0.0.5:4222, several separated by commas)"
    )]
    Url { url: String, error: String },
    // The I/O error is in the message, so it is not also a `#[source]`.
    #[error("cannot read cluster.credentials_file {}: {error}", path.display())]
    Credentials {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl NatsBroker {
    /// Connects to NATS. Later disconnections are retried by the client, which restores every
    /// subscription on reconnect; local subscribers stay connected meanwhile.
    /// `followed`: the history namespaces, whose events this node gets from JetStream. `hub`:
    /// this node's subscriptions, where events from NATS are delivered.
    pub async fn connect(
        config: &ClusterConfig,
        followed: HashSet<String>,
        hub: Arc<Hub>,
    ) -> Result<NatsBroker, ClusterError> {
        let mut options = async_nats::ConnectOptions::new()
            .event_callback(|event| async move { tracing::info!(%event, "NATS") })
            // Keep retrying while down: the node stays up and reports NATS errors per request.
            .max_reconnects(None);
        if let Some(name) = &config.node_name {
            options = options.name(name);
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(path) = &config.credentials_file {
            options = options.credentials_file(path).await.map_err(|error| {
                ClusterError::Credentials {
                    path: path.clone(),
                    error,
                }
            })?;
        }
        if let Some(ca) = &config.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if config.tls_required || config.tls_ca_file.is_some() {
            options = options.require_tls(true);
        }
        let url = config.nats_url.trim().to_owned();
        let servers = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                u.parse::<async_nats::ServerAddr>()
                    .map_err(|e| ClusterError::Url {
                        url: u.to_owned(),
                        error: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = options
            .connect(servers)
            .await
            .map_err(|error| ClusterError::Connect { url, error })?;
        // `connect` can return before the handshake is done; until it is, subscriptions would
        // only be queued, and the first subscribers could miss events.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while client.connection_state() != async_nats::connection::State::Connected
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(NatsBroker {
            client,
            hub,
            prefix: config.prefix().to_owned(),
            remote: Mutex::new(HashMap::new()),
            followed,
            shared_keys: None,
        })
    }

    /// Shares idempotency keys between the nodes through this bucket.
    pub fn with_shared_keys(mut self, keys: Option<SharedKeys>) -> NatsBroker {
        self.shared_keys = keys.map(Arc::new);
        self
    }

    /// The NATS connection, shared with JetStream history.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    async fn round_trip(&self) -> Result<(), BrokerError> {
        let fail = |e: &dyn std::fmt::Display| BrokerError::Unavailable(e.to_string());
        let inbox = self.client.new_inbox();
        let mut probe = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| fail(&e))?;
        self.client
            .publish(inbox, Bytes::new())
            .await
            .map_err(|e| fail(&e))?;
        match tokio::time::timeout(std::time::Duration::from_secs(5), probe.next()).await {
            Ok(Some(_)) => Ok(()),
            _ => Err(BrokerError::Unavailable(
                "NATS did not answer within 5 s".into(),
            )),
        }
    }

    fn subject(&self, kind: Kind, key: &str) -> String {
        let tokens = key.trim_start_matches('/').replace('/', ".");
        match kind {
            Kind::Exact => format!("{}.{tokens}", self.prefix),
            Kind::Below => format!("{}.{tokens}.>", self.prefix),
        }
    }

    fn key(pattern: &Pattern) -> (Kind, String) {
        match pattern {
            Pattern::Exact(c) => (Kind::Exact, c.as_str().to_owned()),
            Pattern::Below(c) => (Kind::Below, c.as_str().to_owned()),
        }
    }
}

impl Broker for NatsBroker {
    fn publish<'a>(&'a self, channel: &'a Channel, bodies: &'a [Bytes]) -> PublishFuture<'a> {
        Box::pin(async move {
            if self.client.connection_state() != async_nats::connection::State::Connected {
                return Err(BrokerError::Unavailable(
                    "not connected to NATS; retry".into(),
                ));
            }
            let subject = self.subject(Kind::Exact, channel.as_str());
            for (i, body) in bodies.iter().enumerate() {
                self.client
                    .publish(subject.clone(), body.clone())
                    .await
                    .map_err(|e| match i {
                        0 => BrokerError::Unavailable(e.to_string()),
                        _ => BrokerError::Uncertain(e.to_string()),
                    })?;
            }
            // Subscribers on other nodes cannot be counted from here.
            Ok(None)
        })
    }

    fn prepare<'a>(&'a self, pattern: &'a Pattern) -> ReadyFuture<'a> {
        Box::pin(async move {
            if self.followed.contains(pattern.namespace()) {
                // Every node follows the namespace's stream already.
                return Ok(());
            }
            let (kind, key) = Self::key(pattern);
            let fresh = {
                let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
                match remote.get_mut(&(kind, key.clone())) {
                    Some(r) => {
                        r.users += 1;
                        false
                    }
                    None => true,
                }
            };
            if !fresh {
                return Ok(());
            }
            if self.client.connection_state() != async_nats::connection::State::Connected {
                return Err(BrokerError::Unavailable(
                    "not connected to NATS; retry the subscription".into(),
                ));
            }
            let subject = self.subject(kind, &key);
            let mut sub = self
                .client
                .subscribe(subject)
                .await
                .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
            // The server must have the interest before the client hears subscribe_success:
            // a message to ourselves comes back only after NATS processed everything this
            // connection sent before it, the SUB included.
            self.round_trip().await?;
            let hub = self.hub.clone();
            let prefix_len = self.prefix.len() + 1;
            let task = tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    let path = format!(
                        "/{}",
                        msg.subject
                            .get(prefix_len..)
                            .unwrap_or_default()
                            .replace('.', "/")
                    );
                    let Ok(channel) = Channel::parse(&path) else {
                        continue;
                    };
                    let bodies = [msg.payload];
                    match kind {
                        Kind::Exact => hub.deliver_exact(&channel, &bodies),
                        Kind::Below => hub.deliver_below(&key, &channel, &bodies),
                    };
                }
            });
            let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
            match remote.get_mut(&(kind, key_of(pattern))) {
                // Another subscriber raced us to it: keep theirs.
                Some(r) => {
                    r.users += 1;
                    task.abort();
                }
                None => {
                    remote.insert((kind, key_of(pattern)), Remote { users: 1, task });
                }
            }
            Ok(())
        })
    }

    fn subscribe(&self, pattern: &Pattern, subscriber: Arc<Subscriber>) {
        self.hub.subscribe(pattern, subscriber);
    }

    fn shared_keys(&self) -> Option<Arc<SharedKeys>> {
        self.shared_keys.clone()
    }

    fn unsubscribe(&self, pattern: &Pattern, subscriber: &Arc<Subscriber>) {
        self.hub.unsubscribe(pattern, subscriber);
        if self.followed.contains(pattern.namespace()) {
            return;
        }
        let (kind, key) = Self::key(pattern);
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = remote.get_mut(&(kind, key.clone())) {
            r.users = r.users.saturating_sub(1);
            if r.users == 0 {
                // Dropping the subscriber inside the task unsubscribes from NATS.
                r.task.abort();
                remote.remove(&(kind, key));
            }
        }
    }
}

fn key_of(pattern: &Pattern) -> String {
    pattern.key().as_str().to_owned()
}
