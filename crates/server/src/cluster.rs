//! Cluster mode: several Herald nodes share NATS as their backplane ([`NatsBroker`]).
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use herald_protocol::{Channel, Pattern};

use crate::hub::{Broker, BrokerError, Hub, PublishFuture, ReadyFuture, Subscriber};

/// `[cluster]` settings.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server(s), e.g. `nats://10.0.0.5:4222`; several comma-separated. Empty: no cluster.
    pub nats_url: String,
    /// First token of every subject, so several Herald deployments can share one NATS.
    pub subject_prefix: String,
    /// A name for this node in NATS's monitoring.
    pub node_name: Option<String>,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    fn prefix(&self) -> &str {
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
}

/// The cluster could not be joined.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot connect to NATS at {url}: {source} (check cluster.nats_url, and that NATS is running)"
)]
pub struct ClusterError {
    url: String,
    source: async_nats::ConnectError,
}

impl NatsBroker {
    /// Connects to NATS. Later disconnections are retried by the client, which restores every
    /// subscription on reconnect; local subscribers stay connected meanwhile.
    pub async fn connect(config: &ClusterConfig) -> Result<NatsBroker, ClusterError> {
        let mut options = async_nats::ConnectOptions::new()
            .event_callback(|event| async move { tracing::info!(%event, "NATS") });
        if let Some(name) = &config.node_name {
            options = options.name(name);
        }
        let url = config.nats_url.trim().to_owned();
        let client = options
            .connect(url.as_str())
            .await
            .map_err(|source| ClusterError { url, source })?;
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
            hub: Arc::new(Hub::new()),
            prefix: config.prefix().to_owned(),
            remote: Mutex::new(HashMap::new()),
        })
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
                    "not connected to NATS; the event was not published, retry".into(),
                ));
            }
            let subject = self.subject(Kind::Exact, channel.as_str());
            for body in bodies {
                self.client
                    .publish(subject.clone(), body.clone())
                    .await
                    .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
            }
            // Subscribers on other nodes cannot be counted from here.
            Ok(None)
        })
    }

    fn prepare<'a>(&'a self, pattern: &'a Pattern) -> ReadyFuture<'a> {
        Box::pin(async move {
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

    fn unsubscribe(&self, pattern: &Pattern, subscriber: &Arc<Subscriber>) {
        self.hub.unsubscribe(pattern, subscriber);
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
