//! The AppSync protocol state of one connection: its subscriptions, its publish rate, and the
//! reply to each client message (spec §2.2).
//!
//! A subscription that resumes from history goes live in a task of its own (reading history
//! takes a while), so the connection keeps reading meanwhile — and notices when its client
//! leaves, which aborts the resume. At most `history.max_resumes_per_connection` run at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use herald_protocol::message::Operation as FrameOp;
use herald_protocol::reply::{self, ErrorKind, ResumeReport, SuccessKind};
use herald_protocol::{AuthFields, Channel, ClientMessage, ErrorType, Pattern, Resume, WireError};
use tokio::task::{JoinError, JoinSet};

use super::outbox::{Out, Outbox};
use crate::auth::{Action, Identity, Presented};
use crate::broker::Subscriber;
use crate::metrics::{Namespace, Transport};
use crate::presence::{Joining, Membership, identity_name};
use crate::publish;
use crate::state::State;
use crate::subscription::Pending;
use herald_protocol::channel::namespace_of;
use herald_protocol::message::Event;

pub struct Session {
    state: Arc<State>,
    outbox: Arc<Outbox>,
    /// Connect credentials: used for an operation that carries no `authorization` of its own.
    connect_fields: AuthFields,
    /// The API's HTTP path when the socket's path named the API (`/apis/{apiId}/event`), which
    /// SigV4 clients sign at; `None`: `/event`.
    event_path: Option<Arc<str>>,
    /// Live subscriptions, with the identity each was admitted with (re-checked on reload).
    subscriptions: HashMap<String, Held>,
    /// This connection's id as presence shows it; made at its first membership.
    connection_id: Option<Arc<str>>,
    /// The client's address, for handlers' `ctx.identity.sourceIp`.
    source_ip: Vec<String>,
    /// The same address parsed, for the per-address publish budget (`None`: unknown, not charged).
    client: Option<std::net::IpAddr>,
    bucket: TokenBucket,
    /// Subscriptions still resuming, by id; each runs in a task of `resumes`.
    resuming: HashMap<String, Resuming>,
    /// The resumes' tasks, aborted when the connection ends.
    resumes: JoinSet<Resumed>,
}

/// A live subscription.
struct Held {
    pattern: Pattern,
    subscriber: Arc<Subscriber>,
    /// What it was admitted with (re-checked on reload).
    identity: Identity,
    /// Its connection's place in the channel, on namespaces with presence on; dropped with it.
    _membership: Option<Membership>,
}

/// A subscription still resuming.
struct Resuming {
    pattern: Pattern,
    identity: Identity,
    presence: PresenceAsked,
    task: tokio::task::Id,
    /// The client unsubscribed meanwhile: release it once the resume ends.
    unsubscribed: bool,
}

/// A resume's end: the subscription id, and the subscription gone live or why not.
pub struct Resumed {
    id: String,
    outcome: Result<(ResumeReport, Pending), WireError>,
}

/// Counts how a resume ended, once, even if its task is aborted: gone live (a subscribe
/// success), refused (a subscribe client error), or abandoned because its connection ended.
struct Ending {
    metrics: Arc<Namespace>,
    /// Set when the resume ended on its own.
    ended: Option<Ended>,
}

enum Ended {
    Live { recovered: bool },
    Refused,
}

impl Drop for Ending {
    fn drop(&mut self) {
        let m = &self.metrics;
        match self.ended {
            Some(Ended::Live { recovered }) => {
                m.subscribe_success.inc();
                m.resumes.inc();
                if !recovered {
                    m.resumes_unrecovered.inc();
                }
            }
            Some(Ended::Refused) => {
                m.subscribe_client_error.inc();
            }
            None => {
                m.resumes_abandoned.inc();
            }
        }
    }
}

/// What a subscribe asked for beyond its channel (Herald extensions).
#[derive(Debug, Default)]
pub struct Asked {
    /// Replay what was missed from here, then go live.
    pub resume: Option<Resume>,
    /// Name the channel in every `data` frame (`withChannel`).
    pub with_channel: bool,
    pub presence: PresenceAsked,
}

/// What a subscription brings to presence (`presence` on `subscribe`).
#[derive(Debug, Default, Clone)]
pub struct PresenceAsked {
    /// The member's info, a JSON object within the namespace's `max_info_bytes`.
    pub info: Option<String>,
    /// Receive joins and leaves.
    pub events: bool,
}

/// What a subscribe did.
pub enum Subscribed {
    Live,
    /// Resuming in its own task; [`Session::resumed`] takes it from there.
    Resuming,
}

impl Session {
    fn event_path(&self) -> &str {
        self.event_path
            .as_deref()
            .unwrap_or(crate::auth::DEFAULT_EVENT_PATH)
    }

    pub fn new(
        state: Arc<State>,
        outbox: Arc<Outbox>,
        connect_fields: AuthFields,
        source_ip: Vec<String>,
        event_path: Option<Arc<str>>,
    ) -> Session {
        let rate = state.fixed.limits.max_publishes_per_second;
        let client = source_ip.first().and_then(|ip| ip.parse().ok());
        Session {
            client,
            state,
            outbox,
            connect_fields,
            event_path,
            subscriptions: HashMap::new(),
            connection_id: None,
            source_ip,
            bucket: TokenBucket::new(rate),
            resuming: HashMap::new(),
            resumes: JoinSet::new(),
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
                    (Some(FrameOp::Presence), true) => ErrorKind::Presence,
                    _ => ErrorKind::Generic,
                };
                return self.fail(kind, e.id.as_deref(), e.error);
            }
        };
        match message {
            ClientMessage::ConnectionInit => self.send(reply::connection_ack(
                self.state.fixed.websocket.connection_timeout_ms,
            )),
            ClientMessage::Subscribe {
                id,
                channel,
                authorization,
                resume,
                with_channel,
                presence,
            } => {
                let state = self.state.clone();
                let m = state.metrics.ns(namespace_of(&channel));
                let asked = Asked {
                    resume,
                    with_channel,
                    presence: PresenceAsked {
                        info: presence.info.map(|i| i.get().to_owned()),
                        events: presence.events,
                    },
                };
                match self.subscribe(&id, &channel, authorization, asked).await {
                    Ok(Subscribed::Live) => {
                        m.subscribe_success.inc();
                        m.active_subscriptions.inc();
                    }
                    Ok(Subscribed::Resuming) => {}
                    Err(e) => {
                        m.subscribe_client_error.inc();
                        self.fail(ErrorKind::Subscribe, Some(&id), e);
                    }
                }
            }
            ClientMessage::Unsubscribe { id } => match self.subscriptions.remove(&*id) {
                // Answered once the resume ends, after any live events it let through.
                None if self
                    .resuming
                    .get_mut(&*id)
                    .is_some_and(|r| !std::mem::replace(&mut r.unsubscribed, true)) => {}
                Some(held) => {
                    let m = self.state.metrics.ns(held.pattern.namespace());
                    m.unsubscribe_success.inc();
                    m.active_subscriptions.dec();
                    self.state
                        .broker
                        .unsubscribe(&held.pattern, &held.subscriber);
                    // The leave (if a member) comes before the answer.
                    drop(held);
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
            ClientMessage::Presence {
                id,
                channel,
                authorization,
                count_only,
                after,
                limit,
            } => {
                let fields = authorization.as_ref().unwrap_or(&self.connect_fields);
                let query = crate::presence::read::Query {
                    channel: &channel,
                    count_only,
                    after: after.as_deref(),
                    limit,
                };
                let credential = Presented::fields_at(fields, self.event_path());
                match crate::presence::read::read(&self.state, &query, credential).await {
                    Ok(fields) => self.send(crate::presence::read::result_frame(&id, &fields)),
                    Err(e) => self.fail(ErrorKind::Presence, Some(&id), e),
                }
            }
            ClientMessage::Publish {
                id,
                channel,
                events,
                authorization,
                idempotency_key,
            } => {
                let m = self.state.metrics.ns(namespace_of(&channel));
                let started = Instant::now();
                if !self.bucket.take() {
                    m.publish_client_error.inc();
                    let limit = self.state.fixed.limits.max_publishes_per_second;
                    return self.fail(
                        ErrorKind::Publish,
                        Some(&id),
                        WireError::new(
                            ErrorType::LimitExceeded,
                            format!("more than {limit} publish requests per second on this connection; slow down"),
                        ),
                    );
                }
                if let Some(client) = self.client
                    && !self.state.admission.socket_publish(client)
                {
                    m.publish_client_error.inc();
                    self.state.metrics.rate_limited.inc();
                    let limit = self
                        .state
                        .fixed
                        .admission
                        .max_socket_publishes_per_address_per_second;
                    return self.fail(
                        ErrorKind::Publish,
                        Some(&id),
                        WireError::new(
                            ErrorType::LimitExceeded,
                            format!("more than {limit} publish requests per second from this address over WebSockets; slow down"),
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
                let key = idempotency_key.as_deref();
                let outcome = publish::publish(&self.state, &channel, &events, &caller, key).await;
                m.publish_seconds(Transport::WebSocket)
                    .observe(started.elapsed());
                match outcome {
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

    /// Whether any subscription is live or resuming (an idle connection without one may be
    /// closed).
    pub fn has_subscriptions(&self) -> bool {
        !self.subscriptions.is_empty() || !self.resumes.is_empty()
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
        asked: Asked,
    ) -> Result<Subscribed, WireError> {
        if self.subscriptions.contains_key(id) || self.resuming.contains_key(id) {
            return Err(WireError::new(
                ErrorType::BadRequest,
                format!(
                    "subscription id {id} is already in use on this connection: the subscription message is duplicated"
                ),
            ));
        }
        let max = self.state.fixed.limits.max_subscriptions_per_connection;
        if self.subscriptions.len() + self.resuming.len() >= max {
            return Err(WireError::new(
                ErrorType::MaxSubscriptions,
                format!("a connection may hold at most {max} subscriptions"),
            ));
        }
        let max = self.state.fixed.history.max_resumes_per_connection;
        if asked.resume.is_some() && self.resuming.len() >= max {
            // Resumes that ended since the connection task last looked are no longer in progress.
            while let Some(done) = self.resumes.try_join_next() {
                self.resumed(done);
            }
        }
        if asked.resume.is_some() && self.resuming.len() >= max {
            return Err(WireError::new(
                ErrorType::LimitExceeded,
                format!(
                    "a connection may resume at most {max} subscriptions at once; wait for their subscribe_success"
                ),
            ));
        }
        let pattern = Pattern::parse(channel)
            .map_err(|e| WireError::new(ErrorType::BadRequest, e.to_string()))?;
        check_presence_info(&self.state, &pattern, &asked.presence)?;
        let fields = authorization.as_ref().unwrap_or(&self.connect_fields);
        let caller = Caller {
            headers: &self.connect_fields,
            source_ip: &self.source_ip,
            presence_info: asked
                .presence
                .info
                .as_deref()
                .filter(|_| self.state.presence.of(pattern.namespace()).is_some()),
        };
        let identity = admit(
            &self.state,
            &pattern,
            channel,
            Presented::fields_at(fields, self.event_path()),
            &caller,
        )
        .await?;
        self.go_live(id, pattern, identity, asked).await
    }

    /// Makes an admitted subscription live (or starts its resume), under `id`.
    pub async fn go_live(
        &mut self,
        id: &str,
        pattern: Pattern,
        identity: Identity,
        asked: Asked,
    ) -> Result<Subscribed, WireError> {
        let Asked {
            resume,
            with_channel,
            presence,
        } = asked;
        let namespace = pattern.namespace();
        // In cluster mode, events for this pattern must reach this node before the client is
        // told the subscription is live.
        let broker = &*self.state.broker;
        broker.prepare(&pattern).await.map_err(|e| {
            WireError::new(
                ErrorType::Internal,
                format!("the subscription could not be set up: {e}"),
            )
        })?;
        let sub = Arc::new(Subscriber {
            outbox: self.outbox.clone(),
            prefix: if with_channel {
                reply::data_head(id)
            } else {
                reply::data_prefix(id)
            },
            with_channel,
        });
        match (resume, self.state.history_of(namespace)) {
            (Some(from), Some(_)) => {
                self.start_resume(id, pattern, from, sub, identity, presence);
                return Ok(Subscribed::Resuming);
            }
            (None, _) => {
                crate::subscription::activate(broker, id, &pattern, sub.clone(), None, Vec::new())
            }
            (Some(_), None) => {
                let report = reply::ResumeReport {
                    recovered: false,
                    replayed: 0,
                    reason: Some("no_history"),
                };
                crate::subscription::activate(
                    broker,
                    id,
                    &pattern,
                    sub.clone(),
                    Some(&report),
                    Vec::new(),
                )
            }
        }
        self.hold(id.to_owned(), pattern, sub, identity, &presence);
        Ok(Subscribed::Live)
    }

    /// The session holds a subscription gone live; on a namespace with presence on, its
    /// connection joins the channel.
    fn hold(
        &mut self,
        id: String,
        pattern: Pattern,
        subscriber: Arc<Subscriber>,
        identity: Identity,
        presence: &PresenceAsked,
    ) {
        let presence_table = &self.state.presence;
        let membership = presence_table.of(pattern.namespace()).map(|_| {
            let connection = self
                .connection_id
                .get_or_insert_with(|| presence_table.connection_id())
                .clone();
            presence_table.join(
                &pattern.to_string(),
                Joining {
                    connection: &connection,
                    identity: identity_name(&identity),
                    info: presence.info.as_deref(),
                    events: presence.events.then(|| subscriber.clone()),
                },
            )
        });
        self.subscriptions.insert(
            id,
            Held {
                pattern,
                subscriber,
                identity,
                _membership: membership,
            },
        );
    }

    /// Starts resuming `sub` in a task of its own: history replies, replays and registers it
    /// (see `history`), then [`Session::resumed`] takes it over.
    fn start_resume(
        &mut self,
        id: &str,
        pattern: Pattern,
        from: Resume,
        sub: Arc<Subscriber>,
        identity: Identity,
        presence: PresenceAsked,
    ) {
        let pending = Pending::new(self.state.broker.clone(), pattern.clone(), sub);
        let state = self.state.clone();
        let (task_id, task_pattern) = (id.to_owned(), pattern.clone());
        // Made here, so that a task aborted before it first ran counts too.
        let ending = Ending {
            metrics: state.metrics.ns(pattern.namespace()),
            ended: None,
        };
        let task = self.resumes.spawn(async move {
            // The whole guard moves in, not just the field set below.
            let mut ending = ending;
            let outbox = pending.subscriber().outbox.clone();
            let outcome = match state.history_of(task_pattern.namespace()) {
                Some(history) => history.resume(&task_id, &task_pattern, from, pending).await,
                None => Err(WireError::new(
                    ErrorType::Internal,
                    "this namespace keeps no history",
                )),
            };
            ending.ended = match &outcome {
                Ok((report, _)) => Some(Ended::Live {
                    recovered: report.recovered,
                }),
                // Stopped because the connection is closing: abandoned.
                Err(_) if outbox.is_closing() => None,
                Err(_) => Some(Ended::Refused),
            };
            Resumed {
                id: task_id,
                outcome,
            }
        });
        self.resuming.insert(
            id.to_owned(),
            Resuming {
                pattern,
                identity,
                presence,
                task: task.id(),
                unsubscribed: false,
            },
        );
    }

    /// The next resume to end; `None` at once when none is in progress.
    pub async fn next_resumed(&mut self) -> Option<Result<Resumed, JoinError>> {
        self.resumes.join_next().await
    }

    /// A resume ended: the subscription is live (the session holds it from now on), or the
    /// client is told why not.
    pub fn resumed(&mut self, done: Result<Resumed, JoinError>) {
        let (id, outcome) = match done {
            Ok(Resumed { id, outcome }) => (id, outcome),
            Err(e) => {
                // A panicked task; its subscription released itself.
                let Some(id) = self
                    .resuming
                    .iter()
                    .find(|(_, r)| r.task == e.id())
                    .map(|(id, _)| id.clone())
                else {
                    return;
                };
                let error = WireError::new(ErrorType::Internal, "the resume failed");
                (id, Err(error))
            }
        };
        let Some(resuming) = self.resuming.remove(&id) else {
            return;
        };
        // How it ended is counted in its task (see `Ending`); here, what the session holds.
        let m = self.state.metrics.ns(resuming.pattern.namespace());
        match outcome {
            Ok((_, pending)) => {
                let allowed = self
                    .state
                    .live()
                    .access
                    .still_allows(&resuming.identity, &resuming.pattern);
                if resuming.unsubscribed {
                    drop(pending);
                    m.unsubscribe_success.inc();
                    self.send(reply::success(SuccessKind::Unsubscribe, &id));
                } else if !allowed {
                    // A reload while it resumed no longer allows it (see `recheck`).
                    drop(pending);
                    self.fail(ErrorKind::Subscribe, Some(&id), no_longer_allowed());
                } else {
                    m.active_subscriptions.inc();
                    let (pattern, sub) = pending.hold();
                    self.hold(id, pattern, sub, resuming.identity, &resuming.presence);
                }
            }
            // The connection is closing: nobody to tell.
            Err(_) if self.outbox.is_closing() => {}
            Err(e) => {
                self.fail(ErrorKind::Subscribe, Some(&id), e);
                if resuming.unsubscribed {
                    self.send(reply::success(SuccessKind::Unsubscribe, &id));
                }
            }
        }
    }

    async fn authorize_publish(
        &self,
        raw_channel: &str,
        events: &[Event<'_>],
        authorization: Option<AuthFields>,
    ) -> Result<(Channel, Identity), WireError> {
        let channel = Channel::parse(raw_channel)
            .map_err(|e| WireError::new(ErrorType::BadRequest, e.to_string()))?;
        let fields = authorization.as_ref().unwrap_or(&self.connect_fields);
        let action = Action::Publish {
            channel: &channel,
            raw: raw_channel,
        };
        let identity = self
            .state
            .live()
            .access
            .authorize(
                action,
                Presented::Fields {
                    fields,
                    events,
                    path: self.event_path(),
                },
                &self.state.metrics,
            )
            .await?;
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
            .filter(|(_, h)| !live.access.still_allows(&h.identity, &h.pattern))
            .map(|(id, _)| id.clone())
            .collect();
        for id in revoked {
            if let Some(held) = self.subscriptions.remove(&id) {
                self.state
                    .broker
                    .unsubscribe(&held.pattern, &held.subscriber);
                self.state
                    .metrics
                    .ns(held.pattern.namespace())
                    .active_subscriptions
                    .dec();
                drop(held);
                self.fail(ErrorKind::Subscribe, Some(&id), no_longer_allowed());
            }
        }
    }

    /// Removes every subscription and stops every resume (the connection is gone).
    pub fn end(&mut self) {
        // Each aborted resume releases its subscription (see `subscription::Pending`).
        self.resumes.abort_all();
        self.resuming.clear();
        for (_, held) in self.subscriptions.drain() {
            self.state
                .metrics
                .ns(held.pattern.namespace())
                .active_subscriptions
                .dec();
            self.state
                .broker
                .unsubscribe(&held.pattern, &held.subscriber);
        }
    }
}

/// Who subscribes, for `onSubscribe` handlers (`ctx.request.headers`, `ctx.identity.sourceIp`,
/// and on a presence namespace `ctx.presence.info`).
pub struct Caller<'a> {
    pub headers: &'a AuthFields,
    pub source_ip: &'a [String],
    pub presence_info: Option<&'a str>,
}

/// Whether `credential` may subscribe to `pattern` (`raw` as the client wrote it): authorization
/// and access rules, then the namespace's `onSubscribe` handler. The identity admitted, or the
/// client's error. The one check for every transport (WebSocket, Server-Sent Events).
pub async fn admit(
    state: &State,
    pattern: &Pattern,
    raw: &str,
    credential: Presented<'_>,
    caller: &Caller<'_>,
) -> Result<Identity, WireError> {
    let namespace = pattern.namespace();
    let live = state.live();
    let action = Action::Subscribe { pattern, raw };
    // Order of checks: authorization and access rules, then the onSubscribe handler.
    let identity = live
        .access
        .authorize(action, credential, &state.metrics)
        .await?;
    if let Some(handlers) = live
        .handlers
        .as_ref()
        .filter(|h| h.has_on_subscribe(namespace))
    {
        let ctx = herald_handler::SubscribeContext {
            channel: pattern.to_string(),
            identity: Some(identity.to_context_value(caller.source_ip)).filter(|v| !v.is_null()),
            request: publish::request_info(caller.headers),
            presence_info: caller.presence_info.map(str::to_owned),
        };
        let started = Instant::now();
        // Boxed: a handler call is a large future, which would size every connection's task.
        let outcome = Box::pin(handlers.on_subscribe(namespace, ctx)).await;
        let m = state.metrics.ns(namespace);
        m.on_subscribe_seconds.observe(started.elapsed());
        outcome.map_err(|e| publish::handler_error(&e, herald_handler::Operation::Subscribe))?;
    }
    Ok(identity)
}

/// A subscription's `presence.info` must fit its namespace's bound; on namespaces without
/// presence it is ignored, as unknown fields are.
fn check_presence_info(
    state: &State,
    pattern: &Pattern,
    asked: &PresenceAsked,
) -> Result<(), WireError> {
    let (Some(config), Some(info)) = (state.presence.of(pattern.namespace()), &asked.info) else {
        return Ok(());
    };
    if info.len() > config.max_info_bytes {
        return Err(WireError::new(
            ErrorType::BadRequest,
            format!(
                "'presence.info' is {} bytes; this namespace takes at most {}",
                info.len(),
                config.max_info_bytes
            ),
        ));
    }
    Ok(())
}

fn no_longer_allowed() -> WireError {
    WireError::new(
        ErrorType::Unauthorized,
        "the subscription is no longer allowed after a configuration change",
    )
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
