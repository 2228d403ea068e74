//! The AppSync protocol state of one connection: its subscriptions, its publish rate, and the
//! reply to each client message (spec §2.2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use herald_protocol::message::Operation as FrameOp;
use herald_protocol::reply::{self, ErrorKind, SuccessKind};
use herald_protocol::{AuthFields, Channel, ClientMessage, ErrorType, Pattern, Resume, WireError};

use super::outbox::{Out, Outbox};
use crate::auth::{Identity, Presented};
use crate::hub::Subscriber;
use crate::publish;
use crate::state::{Access, State, Target};
use herald_protocol::message::Event;

pub struct Session {
    state: Arc<State>,
    outbox: Arc<Outbox>,
    /// Connect credentials: used for an operation that carries no `authorization` of its own.
    connect_fields: AuthFields,
    /// Who connected; kept for handlers and rules.
    #[allow(dead_code)]
    identity: Identity,
    /// Live subscriptions, with the identity each was admitted with (re-checked on reload).
    subscriptions: HashMap<String, (Pattern, Arc<Subscriber>, Identity)>,
    /// The client's address, for handlers' `ctx.identity.sourceIp`.
    source_ip: Vec<String>,
    bucket: TokenBucket,
}

impl Session {
    pub fn new(
        state: Arc<State>,
        outbox: Arc<Outbox>,
        connect_fields: AuthFields,
        identity: Identity,
        source_ip: Vec<String>,
    ) -> Session {
        let rate = state.config.limits.max_publishes_per_second;
        Session {
            state,
            outbox,
            connect_fields,
            identity,
            subscriptions: HashMap::new(),
            source_ip,
            bucket: TokenBucket::new(rate),
        }
    }

    fn send(&self, bytes: Bytes) {
        // Failure means the connection is already closing; there is no one left to tell.
        let _ = self.outbox.push(Out::Text(bytes));
    }

    fn fail(&self, kind: ErrorKind, id: Option<&str>, error: WireError) {
        self.send(reply::error(kind, id, std::slice::from_ref(&error)));
    }

    /// Handles one text message.
    pub async fn handle(&mut self, text: &str) {
        let message = match ClientMessage::parse(text, &self.state.event_limits) {
            Ok(m) => m,
            Err(e) => {
                let kind = match (e.operation, e.id.is_some()) {
                    (Some(FrameOp::Subscribe), true) => ErrorKind::Subscribe,
                    (Some(FrameOp::Unsubscribe), true) => ErrorKind::Unsubscribe,
                    (Some(FrameOp::Publish), true) => ErrorKind::Publish,
                    _ => ErrorKind::Generic,
                };
                return self.fail(kind, e.id.as_deref(), e.error);
            }
        };
        match message {
            ClientMessage::ConnectionInit => self.send(reply::connection_ack(
                self.state.config.websocket.connection_timeout_ms,
            )),
            ClientMessage::Subscribe {
                id,
                channel,
                authorization,
                resume,
            } => {
                let state = self.state.clone();
                let m = state.metrics.ns(namespace_of(&channel));
                match self.subscribe(&id, &channel, authorization, resume).await {
                    Ok(()) => {
                        m.subscribe_success.inc();
                        m.active_subscriptions.inc();
                    }
                    Err(e) => {
                        m.subscribe_client_error.inc();
                        self.fail(ErrorKind::Subscribe, Some(&id), e);
                    }
                }
            }
            ClientMessage::Unsubscribe { id } => match self.subscriptions.remove(&*id) {
                Some((pattern, sub, _)) => {
                    let m = self.state.metrics.ns(pattern.namespace());
                    m.unsubscribe_success.inc();
                    m.active_subscriptions.dec();
                    self.state.broker.unsubscribe(&pattern, &sub);
                    self.send(reply::success(SuccessKind::Unsubscribe, &id));
                }
                None => self.fail(
                    ErrorKind::Unsubscribe,
                    Some(&id),
                    WireError::new(
                        ErrorType::UnknownOperation,
                        format!("Unknown operation id {id}"),
                    ),
                ),
            },
            ClientMessage::Publish {
                id,
                channel,
                events,
                authorization,
            } => {
                let m = self.state.metrics.ns(namespace_of(&channel));
                if !self.bucket.take() {
                    m.publish_client_error.inc();
                    let limit = self.state.config.limits.max_publishes_per_second;
                    return self.fail(
                        ErrorKind::Publish,
                        Some(&id),
                        WireError::new(
                            ErrorType::LimitExceeded,
                            format!("more than {limit} publish requests per second on this connection; slow down"),
                        ),
                    );
                }
                let (channel, identity) = match self
                    .authorize_publish(&channel, &events, authorization)
                    .await
                {
                    Ok(admitted) => admitted,
                    Err(e) => {
                        m.publish_client_error.inc();
                        return self.fail(ErrorKind::Publish, Some(&id), e);
                    }
                };
                let events: Vec<_> = events.into_iter().map(Ok).collect();
                let caller = publish::Caller {
                    identity: &identity,
                    headers: &self.connect_fields,
                    source_ip: &self.source_ip,
                };
                match publish::publish(&self.state, &channel, &events, &caller).await {
                    Ok(result) => {
                        m.publish_success.inc();
                        self.send(reply::publish_success(&id, &result))
                    }
                    Err(e) => {
                        m.publish_server_error.inc();
                        self.fail(ErrorKind::Publish, Some(&id), e)
                    }
                }
            }
        }
    }

    /// A binary message: AppSync speaks JSON text only.
    pub fn binary(&self) {
        self.fail(
            ErrorKind::Generic,
            None,
            WireError::new(
                ErrorType::BadRequest,
                "binary messages are not supported: send JSON text messages",
            ),
        );
    }

    async fn subscribe(
        &mut self,
        id: &str,
        channel: &str,
        authorization: Option<AuthFields>,
        resume: Option<Resume>,
    ) -> Result<(), WireError> {
        if self.subscriptions.contains_key(id) {
            return Err(WireError::new(
                ErrorType::BadRequest,
                format!(
                    "subscription id {id} is already in use on this connection: the subscription message is duplicated"
                ),
            ));
        }
        let max = self.state.config.limits.max_subscriptions_per_connection;
        if self.subscriptions.len() >= max {
            return Err(WireError::new(
                ErrorType::MaxSubscriptions,
                format!("a connection may hold at most {max} subscriptions"),
            ));
        }
        let pattern = Pattern::parse(channel)
            .map_err(|e| WireError::new(ErrorType::BadRequest, e.to_string()))?;
        let namespace = pattern.namespace();
        let fields = authorization.as_ref().unwrap_or(&self.connect_fields);
        let credential = Presented::Fields {
            fields,
            events: &[],
        };
        let identity = self
            .state
            .admit(namespace, Access::Subscribe, channel, credential)
            .await?;
        // Order of checks: authorization, access rules, then the namespace's onSubscribe handler.
        self.state
            .check_rules(&identity, namespace, Target::Subscribe(&pattern))?;
        let live = self.state.live();
        if let Some(handlers) = live
            .handlers
            .as_ref()
            .filter(|h| h.has_on_subscribe(namespace))
        {
            let ctx = herald_handler::SubscribeContext {
                channel: pattern.to_string(),
                identity: Some(identity.verified.to_context_value(&self.source_ip))
                    .filter(|v| !v.is_null()),
                request: publish::request_info(&self.connect_fields),
            };
            handlers
                .on_subscribe(namespace, ctx)
                .await
                .map_err(|e| publish::handler_error(&e, herald_handler::Operation::Subscribe))?;
        }
        // In cluster mode, events for this pattern must reach this node before the client is
        // told the subscription is live.
        self.state.broker.prepare(&pattern).await.map_err(|e| {
            WireError::new(
                ErrorType::Internal,
                format!("the subscription could not be set up: {e}"),
            )
        })?;
        let sub = Arc::new(Subscriber {
            outbox: self.outbox.clone(),
            prefix: reply::data_prefix(id),
        });
        match (resume, self.state.history_of(namespace)) {
            (Some(from), Some(history)) => {
                // The lane replies, replays, then registers: see `history`.
                let report = match history.resume(id, &pattern, from, sub.clone()).await {
                    Ok(r) => r,
                    Err(e) => {
                        // Releases what `prepare` took.
                        self.state.broker.unsubscribe(&pattern, &sub);
                        return Err(e);
                    }
                };
                let m = self.state.metrics.ns(namespace);
                m.resumes.inc();
                if !report.recovered {
                    m.resumes_unrecovered.inc();
                }
            }
            (resume, _) => {
                // The reply is queued before the subscription goes live, so it precedes any data.
                match resume {
                    None => self.send(reply::success(SuccessKind::Subscribe, id)),
                    Some(_) => self.send(reply::subscribe_resumed(
                        id,
                        &reply::ResumeReport {
                            recovered: false,
                            replayed: 0,
                            reason: Some("no_history"),
                        },
                    )),
                }
                self.state.broker.subscribe(&pattern, sub.clone());
            }
        }
        self.subscriptions
            .insert(id.to_owned(), (pattern, sub, identity));
        Ok(())
    }

    async fn authorize_publish(
        &self,
        raw_channel: &str,
        events: &[Event<'_>],
        authorization: Option<AuthFields>,
    ) -> Result<(Channel, Identity), WireError> {
        let channel = Channel::parse(raw_channel)
            .map_err(|e| WireError::new(ErrorType::BadRequest, e.to_string()))?;
        let namespace = channel.namespace();
        let fields = authorization.as_ref().unwrap_or(&self.connect_fields);
        let identity = self
            .state
            .admit(
                namespace,
                Access::Publish,
                raw_channel,
                Presented::Fields { fields, events },
            )
            .await?;
        self.state
            .check_rules(&identity, namespace, Target::Publish(&channel))?;
        Ok((channel, identity))
    }

    /// After a reload: ends every subscription the new configuration no longer allows (its
    /// namespace is gone, its mode is no longer accepted, or the access rules refuse it), telling
    /// the client with `subscribe_error` `UnauthorizedException`.
    pub fn recheck(&mut self) {
        let live = self.state.live();
        let revoked: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, (pattern, _, identity))| {
                let namespace = pattern.namespace();
                let mode_ok = live
                    .modes(namespace, Access::Subscribe)
                    .is_some_and(|m| m.contains(&identity.mode()));
                !mode_ok
                    || self
                        .state
                        .check_rules(identity, namespace, Target::Subscribe(pattern))
                        .is_err()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in revoked {
            if let Some((pattern, sub, _)) = self.subscriptions.remove(&id) {
                self.state.broker.unsubscribe(&pattern, &sub);
                self.state
                    .metrics
                    .ns(pattern.namespace())
                    .active_subscriptions
                    .dec();
                self.fail(
                    ErrorKind::Subscribe,
                    Some(&id),
                    WireError::new(
                        ErrorType::Unauthorized,
                        "the subscription is no longer allowed after a configuration change",
                    ),
                );
            }
        }
    }

    /// Removes every subscription (the connection is gone).
    pub fn end(&mut self) {
        for (_, (pattern, sub, _)) in self.subscriptions.drain() {
            self.state
                .metrics
                .ns(pattern.namespace())
                .active_subscriptions
                .dec();
            self.state.broker.unsubscribe(&pattern, &sub);
        }
    }
}

/// The namespace a raw channel string names, for metrics (may not exist).
fn namespace_of(channel: &str) -> &str {
    channel
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

/// Publish rate limit: `rate` tokens per second, at most `rate` saved up.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
