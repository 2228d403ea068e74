//! A connection: one task owns the socket, sends what the [`Connection`] handles and
//! [`Subscription`]s ask for, routes the server's replies by id, watches the keep-alive, and
//! reconnects with backoff, resubscribing every subscription with a resume from its last
//! position.
//!
//! The contract a subscriber may rely on (on Herald namespaces with history): per channel,
//! events arrive in offset order, each once, across reconnects. Positions are recorded when the
//! task reads a frame, before it is queued for the subscription, so a resume asks for exactly
//! what was not read; frames at or below the last offset of their channel and epoch are dropped,
//! so an overlapping replay cannot show twice. Where the server cannot replay (retention,
//! a namespace without history, AWS), the stream gets an [`Error::Gap`] notice and goes on live.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::auth::Operation;
use crate::error::{Error, ServerErrors};
use crate::message::{Event, Position, PublishReply, ResumeFrom, ResumeOutcome};
use crate::socket::{Closed, Socket};
use crate::subscription::Subscription;
use crate::{Inner, publish};

/// Most per-channel positions one resume may carry (Herald's `MAX_RESUME_POSITIONS`).
const MAX_RESUME_POSITIONS: usize = 1000;

/// An open WebSocket connection: subscribe and publish over it. Cheap to clone; every clone
/// shares the one socket. The socket closes when [`Connection::close`] is called or when every
/// clone and every [`Subscription`] is dropped.
#[derive(Clone)]
pub struct Connection {
    commands: mpsc::UnboundedSender<Command>,
    inner: Arc<Inner>,
}

pub(crate) enum Command {
    Subscribe {
        id: String,
        channel: String,
        resume: Option<ResumeFrom>,
        events: mpsc::Sender<Result<Event, Error>>,
        ready: oneshot::Sender<Result<Option<ResumeOutcome>, Error>>,
    },
    Unsubscribe {
        id: String,
    },
    Publish {
        id: String,
        channel: String,
        events: Vec<String>,
        reply: oneshot::Sender<Result<PublishReply, Error>>,
    },
    Close,
}

impl Connection {
    pub(crate) async fn open(inner: Arc<Inner>) -> Result<Connection, Error> {
        let socket =
            Socket::open(&inner.endpoint, &inner.signer, &inner.tls, inner.timeout).await?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = Task {
            inner: inner.clone(),
            commands: receiver,
            subs: HashMap::new(),
            publishes: HashMap::new(),
            last_heard: Instant::now(),
        };
        tokio::spawn(task.run(socket));
        Ok(Connection { commands, inner })
    }

    /// Subscribes to a channel (`/ns/a/b`) or a wildcard (`/ns/a/*`) and waits for the server's
    /// `subscribe_success`. Events published from then on arrive on the returned stream.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, Error> {
        self.subscribe_inner(channel, None).await
    }

    /// Like [`Connection::subscribe`], but first replays what was stored from `from` (Herald's
    /// history extension); [`Subscription::resume_outcome`] says whether it could.
    pub async fn subscribe_from(
        &self,
        channel: &str,
        from: ResumeFrom,
    ) -> Result<Subscription, Error> {
        self.subscribe_inner(channel, Some(from)).await
    }

    async fn subscribe_inner(
        &self,
        channel: &str,
        resume: Option<ResumeFrom>,
    ) -> Result<Subscription, Error> {
        let id = herald_protocol::id::uuid_v4();
        let (events, receiver) = mpsc::channel(self.inner.subscription_buffer.max(1));
        let (ready, answer) = oneshot::channel();
        self.commands
            .send(Command::Subscribe {
                id: id.clone(),
                channel: channel.to_owned(),
                resume,
                events,
                ready,
            })
            .map_err(|_| Error::Closed)?;
        let outcome = match tokio::time::timeout(self.inner.timeout, answer).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => {
                let _ = self.commands.send(Command::Unsubscribe { id });
                return Err(Error::Timeout {
                    what: "subscribe_success",
                    after: self.inner.timeout,
                });
            }
        };
        Ok(Subscription::new(
            id,
            channel.to_owned(),
            receiver,
            self.commands.clone(),
            outcome,
        ))
    }

    /// Publishes 1 to 5 events (each serialized to JSON) to a channel over the socket.
    pub async fn publish<E: serde::Serialize>(
        &self,
        channel: &str,
        events: &[E],
    ) -> Result<PublishReply, Error> {
        self.publish_raw(channel, &publish::serialize(events)?)
            .await
    }

    /// Publishes 1 to 5 events given as JSON text, sent byte for byte.
    ///
    /// While the connection is re-establishing itself the publish waits for it (within the
    /// client's timeout; one that timed out before it could be sent is dropped). If the socket
    /// drops after the publish was sent and before the reply, the result is
    /// [`Error::ConnectionLost`] with `may_have_published`: it is not sent again. A
    /// [`Error::Timeout`] after it was sent leaves it unknown whether it was published.
    pub async fn publish_raw(
        &self,
        channel: &str,
        events: &[String],
    ) -> Result<PublishReply, Error> {
        publish::check(events)?;
        let id = herald_protocol::id::uuid_v4();
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Publish {
                id,
                channel: channel.to_owned(),
                events: events.to_vec(),
                reply,
            })
            .map_err(|_| Error::Closed)?;
        match tokio::time::timeout(self.inner.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout {
                what: "publish reply",
                after: self.inner.timeout,
            }),
        }
    }

    /// Closes the socket. Every subscription's stream ends; later operations fail with
    /// [`Error::Closed`].
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}

/// One subscription as the task keeps it.
struct Sub {
    channel: String,
    events: mpsc::Sender<Result<Event, Error>>,
    /// Until the first answer: the caller of `subscribe` waits on it.
    ready: Option<oneshot::Sender<Result<Option<ResumeOutcome>, Error>>>,
    /// What the caller asked to resume from, used until the first `subscribe_success`.
    first_resume: Option<ResumeFrom>,
    /// Last position read per concrete channel: (epoch, offset, time_ms).
    last: HashMap<String, (String, u64, u64)>,
    /// Where channels without a position resume from after a reconnect.
    since_ms: u64,
    /// Subscribed on the current socket (`subscribe_success` received).
    live: bool,
    /// A `LimitExceededError` on resubscribing: when to try again, and how many times it was.
    retry_at: Option<Instant>,
    retries: u32,
}

impl Sub {
    /// The `resume` of the next `subscribe` frame.
    fn resume(&self) -> Option<ResumeFrom> {
        if self.ready.is_some() {
            return self.first_resume.clone();
        }
        if self.last.is_empty() {
            return Some(ResumeFrom::SinceMs(self.since_ms));
        }
        if !self.channel.ends_with("/*")
            && let Some((epoch, offset, _)) = self
                .last
                .get(&self.channel)
                .or_else(|| self.last.values().next())
        {
            return Some(ResumeFrom::After {
                epoch: epoch.clone(),
                offset: *offset,
            });
        }
        // The most recently active channels; any other replays from `since_ms`, and what this
        // subscription already read of it is dropped by the offset check.
        let mut recent: Vec<(&String, &(String, u64, u64))> = self.last.iter().collect();
        recent.sort_by_key(|entry| std::cmp::Reverse(entry.1.2));
        let positions = recent
            .into_iter()
            .take(MAX_RESUME_POSITIONS)
            .map(|(c, (e, o, _))| (c.clone(), (e.clone(), *o)))
            .collect();
        Some(ResumeFrom::Positions {
            positions,
            since_ms: Some(self.since_ms),
        })
    }
}

struct PendingPublish {
    channel: String,
    events: Vec<String>,
    reply: oneshot::Sender<Result<PublishReply, Error>>,
    sent: bool,
}

struct Task {
    inner: Arc<Inner>,
    commands: mpsc::UnboundedReceiver<Command>,
    subs: HashMap<String, Sub>,
    publishes: HashMap<String, PendingPublish>,
    /// When the server was last heard: silence past its `connectionTimeoutMs` is a dead link.
    last_heard: Instant,
}

/// What woke the task.
enum Step {
    Command(Option<Command>),
    Message(Map<String, Value>),
    Lost(String),
    Retry,
}

impl Task {
    async fn run(mut self, socket: Socket) {
        let mut socket = Some(socket);
        loop {
            let Some(sock) = socket.as_mut() else {
                match self.reconnect().await {
                    Some(s) => {
                        socket = Some(s);
                        if let Some(s) = socket.as_mut()
                            && let Err(reason) = self.resume_all(s).await
                        {
                            self.lost(&reason);
                            socket = None;
                        }
                        continue;
                    }
                    None => return,
                }
            };
            let deadline = self.last_heard + sock.keepalive;
            let retry = self.subs.values().filter_map(|s| s.retry_at).min();
            let step = tokio::select! {
                cmd = self.commands.recv() => Step::Command(cmd),
                msg = tokio::time::timeout_at(deadline, sock.recv()) => match msg {
                    Ok(Ok(msg)) => Step::Message(msg),
                    Ok(Err(Closed::ByServer(why))) => {
                        Step::Lost(format!("the server closed the connection{why}"))
                    }
                    Ok(Err(Closed::Failed(e))) => Step::Lost(error_text(&e)),
                    Err(_) => Step::Lost(format!(
                        "no events or keep-alives from the server within {} ms",
                        sock.keepalive.as_millis()
                    )),
                },
                () = sleep_until(retry) => Step::Retry,
            };
            let result = match step {
                Step::Command(None | Some(Command::Close)) => {
                    if let Some(s) = socket.take() {
                        s.close().await;
                    }
                    self.end(|| Error::Closed);
                    return;
                }
                Step::Command(Some(cmd)) => self.command(cmd, Some(sock)).await,
                Step::Message(msg) => {
                    self.last_heard = Instant::now();
                    self.message(msg, sock).await
                }
                Step::Lost(reason) => Err(reason),
                Step::Retry => self.retry_due(sock).await,
            };
            if let Err(reason) = result {
                socket = None;
                self.lost(&reason);
                if self.inner.reconnect.is_none() {
                    self.end(|| Error::ConnectionLost {
                        reason: reason.clone(),
                        may_have_published: false,
                    });
                    return;
                }
            }
        }
    }

    /// Handles a command; `Err` when the socket failed.
    async fn command(&mut self, cmd: Command, sock: Option<&mut Socket>) -> Result<(), String> {
        match cmd {
            Command::Subscribe {
                id,
                channel,
                resume,
                events,
                ready,
            } => {
                let mut last = HashMap::new();
                let now = now_ms();
                let skew = u64::try_from(self.inner.clock_skew.as_millis()).unwrap_or(u64::MAX);
                let mut since_ms = now.saturating_sub(skew);
                match &resume {
                    Some(ResumeFrom::After { epoch, offset }) => {
                        last.insert(channel.clone(), (epoch.clone(), *offset, 0));
                    }
                    Some(ResumeFrom::SinceMs(ms)) => since_ms = *ms,
                    Some(ResumeFrom::Positions {
                        positions,
                        since_ms: since,
                    }) => {
                        for (c, (e, o)) in positions {
                            last.insert(c.clone(), (e.clone(), *o, 0));
                        }
                        since_ms = since.unwrap_or(0);
                    }
                    None => {}
                }
                let sub = Sub {
                    channel,
                    events,
                    ready: Some(ready),
                    first_resume: resume,
                    last,
                    since_ms,
                    live: false,
                    retry_at: None,
                    retries: 0,
                };
                let frame = self.subscribe_frame(&id, &sub);
                self.subs.insert(id, sub);
                if let Some(sock) = sock {
                    send(sock, &frame).await?;
                }
            }
            Command::Unsubscribe { id } => {
                if let Some(sub) = self.subs.remove(&id)
                    && let (true, Some(sock)) = (sub.live, sock)
                {
                    send(sock, &json!({"type": "unsubscribe", "id": id})).await?;
                }
            }
            Command::Publish {
                id,
                channel,
                events,
                reply,
            } => {
                let mut pending = PendingPublish {
                    channel,
                    events,
                    reply,
                    sent: false,
                };
                if let Some(sock) = sock {
                    let frame = self.publish_frame(&id, &pending);
                    pending.sent = true;
                    self.publishes.insert(id, pending);
                    send(sock, &frame).await?;
                } else {
                    self.publishes.insert(id, pending);
                }
            }
            Command::Close => {}
        }
        Ok(())
    }

    fn subscribe_frame(&self, id: &str, sub: &Sub) -> Value {
        let auth = self.inner.signer.ws_authorization(&Operation::Subscribe {
            channel: &sub.channel,
        });
        let mut frame = json!({
            "type": "subscribe",
            "id": id,
            "channel": sub.channel,
            "authorization": auth,
        });
        if let Some(resume) = sub.resume() {
            frame["resume"] = resume.to_json();
        }
        if self.inner.with_channel {
            frame["withChannel"] = Value::Bool(true);
        }
        frame
    }

    fn publish_frame(&self, id: &str, p: &PendingPublish) -> Value {
        let auth = self.inner.signer.ws_authorization(&Operation::Publish {
            channel: &p.channel,
            events: &p.events,
        });
        json!({
            "type": "publish",
            "id": id,
            "channel": p.channel,
            "events": p.events,
            "authorization": auth,
        })
    }

    /// Handles one server message; `Err` when the socket failed or the server ended it.
    async fn message(&mut self, msg: Map<String, Value>, sock: &mut Socket) -> Result<(), String> {
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let id = msg.get("id").and_then(Value::as_str).unwrap_or("");
        match kind {
            "data" => self.data(id, &msg, sock).await?,
            "subscribe_success" => {
                if let Some(sub) = self.subs.get_mut(id) {
                    sub.live = true;
                    sub.retries = 0;
                    let outcome = msg
                        .contains_key("resume")
                        .then(|| ResumeOutcome::from_reply(&msg));
                    if let Some(ready) = sub.ready.take() {
                        let asked = sub.first_resume.is_some();
                        let outcome = asked.then(|| ResumeOutcome::from_reply(&msg));
                        let _ = ready.send(Ok(outcome));
                    } else {
                        // A resubscription: say so if what was missed could not be replayed.
                        let outcome = outcome.unwrap_or_else(|| ResumeOutcome::from_reply(&msg));
                        if !outcome.recovered {
                            let gap = Error::Gap {
                                channel: sub.channel.clone(),
                                reason: outcome.reason.unwrap_or_else(|| "unknown".into()),
                            };
                            if sub.events.send(Err(gap)).await.is_err() {
                                self.drop_sub(id, sock).await?;
                            }
                        }
                    }
                }
            }
            "subscribe_error" => {
                let errors = ServerErrors::from_message(&msg);
                if let Some(sub) = self.subs.get_mut(id) {
                    let first = sub.ready.is_some();
                    // Too many resumes at once on the server: retry after a short, growing delay.
                    if !first && errors.has("LimitExceededError") {
                        sub.retries += 1;
                        sub.retry_at = Some(Instant::now() + backoff(&self.inner, sub.retries));
                        return Ok(());
                    }
                    if let Some(sub) = self.subs.remove(id) {
                        let error = Error::SubscribeRejected {
                            channel: sub.channel.clone(),
                            errors,
                        };
                        match sub.ready {
                            Some(ready) => {
                                let _ = ready.send(Err(error));
                            }
                            None => {
                                let _ = sub.events.send(Err(error)).await;
                            }
                        }
                    }
                }
            }
            "broadcast_error" => {
                if let Some(sub) = self.subs.get(id) {
                    let error = Error::Broadcast {
                        channel: sub.channel.clone(),
                        errors: ServerErrors::from_message(&msg),
                    };
                    if sub.events.send(Err(error)).await.is_err() {
                        self.drop_sub(id, sock).await?;
                    }
                }
            }
            "publish_success" => {
                if let Some(p) = self.publishes.remove(id) {
                    let reply = serde_json::from_value::<PublishReply>(Value::Object(msg.clone()))
                        .map_err(|e| Error::Protocol(format!("publish_success: {e}")));
                    let _ = p.reply.send(reply);
                }
            }
            "publish_error" | "error" => {
                if let Some(p) = self.publishes.remove(id) {
                    let _ = p.reply.send(Err(Error::PublishRejected {
                        status: None,
                        errors: ServerErrors::from_message(&msg),
                    }));
                } else if kind == "error"
                    && self.subs.get(id).is_some_and(|sub| sub.ready.is_some())
                    && let Some(sub) = self.subs.remove(id)
                    && let Some(ready) = sub.ready
                {
                    // An `error` naming a subscription not yet acknowledged refuses it.
                    let _ = ready.send(Err(Error::SubscribeRejected {
                        channel: sub.channel,
                        errors: ServerErrors::from_message(&msg),
                    }));
                }
            }
            // The server ends the connection: what follows is its close.
            "connection_error" => {
                return Err(format!(
                    "the server ended the connection: {}",
                    ServerErrors::from_message(&msg)
                ));
            }
            _ => {} // ka, unsubscribe replies, and anything else a server may add.
        }
        Ok(())
    }

    /// A `data` frame: recorded, checked against the last offset of its channel, queued.
    async fn data(
        &mut self,
        id: &str,
        msg: &Map<String, Value>,
        sock: &mut Socket,
    ) -> Result<(), String> {
        let Some(sub) = self.subs.get_mut(id) else {
            return Ok(());
        };
        let Some(data) = msg.get("event").and_then(Value::as_str) else {
            return Ok(());
        };
        let position: Option<Position> = msg
            .get("position")
            .and_then(|p| serde_json::from_value(p.clone()).ok());
        // The concrete channel: a frame's own `channel` (Herald, when the subscription asked for
        // it), else its position's, else the pattern subscribed to.
        let channel = msg
            .get("channel")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| position.as_ref().and_then(|p| p.channel.clone()))
            .unwrap_or_else(|| sub.channel.clone());
        if let Some(p) = &position {
            if let Some((epoch, offset, _)) = sub.last.get(&channel)
                && *epoch == p.epoch
                && p.offset <= *offset
            {
                return Ok(()); // Already read: an overlapping replay.
            }
            sub.last.insert(
                channel.clone(),
                (p.epoch.clone(), p.offset, p.time_ms.unwrap_or(0)),
            );
        }
        let event = Event {
            channel,
            data: data.to_owned(),
            position,
        };
        if sub.events.send(Ok(event)).await.is_err() {
            self.drop_sub(id, sock).await?;
        }
        Ok(())
    }

    /// The stream was dropped: forget the subscription and tell the server.
    async fn drop_sub(&mut self, id: &str, sock: &mut Socket) -> Result<(), String> {
        if let Some(sub) = self.subs.remove(id)
            && sub.live
        {
            send(sock, &json!({"type": "unsubscribe", "id": id})).await?;
        }
        Ok(())
    }

    async fn retry_due(&mut self, sock: &mut Socket) -> Result<(), String> {
        let now = Instant::now();
        let due: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(sub) = self.subs.get_mut(&id) else {
                continue;
            };
            sub.retry_at = None;
            let frame = match self.subs.get(&id) {
                Some(sub) => self.subscribe_frame(&id, sub),
                None => continue,
            };
            send(sock, &frame).await?;
        }
        Ok(())
    }

    /// The socket is gone: publishes sent and unanswered fail (they may have been stored), and
    /// every subscription waits to be resubscribed.
    fn lost(&mut self, reason: &str) {
        let sent: Vec<String> = self
            .publishes
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(id, _)| id.clone())
            .collect();
        for id in sent {
            if let Some(p) = self.publishes.remove(&id) {
                let _ = p.reply.send(Err(Error::ConnectionLost {
                    reason: reason.to_owned(),
                    may_have_published: true,
                }));
            }
        }
        for sub in self.subs.values_mut() {
            sub.live = false;
            sub.retry_at = None;
        }
    }

    /// Ends every subscription and publish with `error`.
    fn end(&mut self, error: impl Fn() -> Error) {
        for (_, p) in self.publishes.drain() {
            let _ = p.reply.send(Err(error()));
        }
        for (_, sub) in self.subs.drain() {
            match sub.ready {
                Some(ready) => {
                    let _ = ready.send(Err(error()));
                }
                // Without waiting: a full stream just misses the reason, it still ends.
                None => {
                    let _ = sub.events.try_send(Err(error()));
                }
            }
        }
    }

    /// Opens a new socket with backoff, taking commands meanwhile. `None`: the task is over
    /// (closed, every handle dropped, refused, or out of attempts).
    async fn reconnect(&mut self) -> Option<Socket> {
        let policy = self.inner.reconnect.clone()?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let wait = tokio::time::sleep(backoff(&self.inner, attempt));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    cmd = self.commands.recv() => match cmd {
                        None | Some(Command::Close) => {
                            self.end(|| Error::Closed);
                            return None;
                        }
                        // Nothing is sent without a socket, so this cannot fail.
                        Some(cmd) => { let _ = self.command(cmd, None).await; }
                    },
                }
            }
            match Socket::open(
                &self.inner.endpoint,
                &self.inner.signer,
                &self.inner.tls,
                self.inner.timeout,
            )
            .await
            {
                Ok(socket) => {
                    self.last_heard = Instant::now();
                    return Some(socket);
                }
                // Credentials refused: retrying cannot help.
                Err(Error::ConnectionRejected(errors)) => {
                    self.end(|| Error::ConnectionRejected(errors.clone()));
                    return None;
                }
                Err(e) => {
                    if policy.max_attempts.is_some_and(|max| attempt >= max) {
                        let reason = format!(
                            "{attempt} reconnect attempts failed, the last: {}",
                            error_text(&e)
                        );
                        self.end(|| Error::ConnectionLost {
                            reason: reason.clone(),
                            may_have_published: false,
                        });
                        return None;
                    }
                }
            }
        }
    }

    /// On a new socket: every subscription again (resuming), then the publishes not yet sent.
    async fn resume_all(&mut self, sock: &mut Socket) -> Result<(), String> {
        let frames: Vec<Value> = self
            .subs
            .iter()
            .map(|(id, sub)| self.subscribe_frame(id, sub))
            .collect();
        for frame in frames {
            send(sock, &frame).await?;
        }
        // A caller that stopped waiting (its timeout) got an error: not published later.
        self.publishes.retain(|_, p| p.sent || !p.reply.is_closed());
        let ids: Vec<String> = self
            .publishes
            .iter()
            .filter(|(_, p)| !p.sent)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let frame = match self.publishes.get(&id) {
                Some(p) => self.publish_frame(&id, p),
                None => continue,
            };
            if let Some(p) = self.publishes.get_mut(&id) {
                p.sent = true;
            }
            send(sock, &frame).await?;
        }
        Ok(())
    }
}

async fn send(sock: &mut Socket, frame: &Value) -> Result<(), String> {
    sock.send(frame).await.map_err(|e| error_text(&e))
}

/// An error and its causes on one line.
fn error_text(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Waits until `at`, or forever when `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The delay before attempt `n` (from 1): doubling from the initial delay up to the maximum,
/// each with up to half of it taken off at random, so clients dropped together do not come
/// back together.
fn backoff(inner: &Inner, n: u32) -> Duration {
    let policy = inner.reconnect.clone().unwrap_or_default();
    let doubled = policy
        .initial_delay
        .saturating_mul(1u32 << n.saturating_sub(1).min(16));
    let delay = doubled.min(policy.max_delay);
    let jitter = herald_protocol::id::next_u64() % 1000;
    delay.saturating_sub(delay.mul_f64(jitter as f64 / 2000.0))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(channel: &str, last: &[(&str, u64, u64)]) -> Sub {
        let (events, _) = mpsc::channel(1);
        Sub {
            channel: channel.into(),
            events,
            ready: None,
            first_resume: None,
            last: last
                .iter()
                .map(|(c, offset, time)| ((*c).to_owned(), ("7".to_owned(), *offset, *time)))
                .collect(),
            since_ms: 1000,
            live: false,
            retry_at: None,
            retries: 0,
        }
    }

    #[test]
    fn resumes_follow_what_was_read() {
        assert_eq!(sub("/a/b", &[]).resume(), Some(ResumeFrom::SinceMs(1000)));
        assert_eq!(
            sub("/a/b", &[("/a/b", 42, 5)]).resume(),
            Some(ResumeFrom::After {
                epoch: "7".into(),
                offset: 42
            })
        );
        let Some(ResumeFrom::Positions {
            positions,
            since_ms,
        }) = sub("/a/*", &[("/a/x", 3, 5), ("/a/y", 9, 6)]).resume()
        else {
            panic!("a wildcard resumes by positions");
        };
        assert_eq!(since_ms, Some(1000));
        assert_eq!(positions["/a/x"], ("7".to_owned(), 3));
        assert_eq!(positions["/a/y"], ("7".to_owned(), 9));
    }

    #[test]
    fn a_wildcard_names_its_most_recent_channels() {
        let channels: Vec<String> = (0..1500).map(|i| format!("/a/c{i}")).collect();
        let last: Vec<(&str, u64, u64)> = channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), 1, i as u64))
            .collect();
        let Some(ResumeFrom::Positions { positions, .. }) = sub("/a/*", &last).resume() else {
            panic!("a wildcard resumes by positions");
        };
        assert_eq!(positions.len(), MAX_RESUME_POSITIONS);
        assert!(positions.contains_key("/a/c1499"));
        assert!(!positions.contains_key("/a/c0"));
    }
}
