//! The JavaScript engine: a few dedicated OS threads, each owning a QuickJS runtime
//! ([`engine::Engine`]) with every namespace's module loaded, fed by a [`queue::FairQueue`] with
//! one bounded lane per namespace.
//!
//! JavaScript never runs on the async runtime's workers: callers queue a job without blocking
//! (a full queue fails fast with `Overloaded`) and await a oneshot reply, for at most
//! `js_queue_timeout_ms` before a worker takes it. A call that hits the time or heap limit fails
//! alone; its worker then rebuilds its runtime from the sources.

mod engine;
mod queue;
mod util;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::EngineConfig;
use crate::error::{HandlerError, LoadError, Operation};
use engine::{CallFailure, Engine, JS_STACK_BYTES, Limits};
pub(crate) use engine::{Exports, JsSource, Phase};
use queue::{Bounds, FairQueue, Ran, Refused};

/// OS stack for worker threads: QuickJS's own limit plus room for the native frames around it.
const WORKER_STACK_BYTES: usize = JS_STACK_BYTES * 4;

/// One call; its lane (the namespace's context index, in the order of the sources) is the
/// queue's.
struct Job {
    operation: Operation,
    phase: Phase,
    ctx_json: String,
    /// For [`Phase::Response`]: `{result, error, stash}` as JSON.
    extra: Option<String>,
    reply: oneshot::Sender<Reply>,
}

enum Reply {
    /// A worker ran the call.
    Ran(Result<String, CallFailure>),
    /// The queue was full and this call, the newest of the longest lane, made room for another.
    Displaced,
}

/// Handle to the worker threads. Dropping it closes the queue: waiting calls fail, workers
/// finish their current call and exit.
pub(crate) struct JsPool {
    queue: Arc<FairQueue<Job>>,
    queue_timeout: Duration,
    limits: Limits,
}

impl JsPool {
    /// Starts the workers and waits until each has compiled every module. Returns what each
    /// source exports, in order. Any load error stops all workers.
    pub(crate) fn start(
        sources: Vec<JsSource>,
        config: &EngineConfig,
    ) -> Result<(Self, Vec<Exports>), LoadError> {
        let limits = Limits {
            time: Duration::from_millis(config.js_time_limit_ms.max(1)),
            memory_bytes: config
                .js_memory_limit_mib
                .max(1)
                .saturating_mul(1024 * 1024),
        };
        let workers = config.js_workers.max(1);
        // With other namespaces to protect, one namespace leaves them a thread by default.
        let shared = if sources.len() > 1 { 1 } else { 0 };
        let lane_workers = config
            .js_namespace_workers
            .unwrap_or(workers - shared)
            .clamp(1, workers);
        let bounds = Bounds {
            lane_waiting: config.js_namespace_queue.max(1),
            total_waiting: config.js_queue.max(1),
            lane_workers,
        };
        let queue = Arc::new(FairQueue::new(sources.len(), bounds));
        // From here on, an early return drops the pool, which closes the queue and stops the
        // workers already started.
        let pool = JsPool {
            queue: Arc::clone(&queue),
            queue_timeout: Duration::from_millis(config.js_queue_timeout_ms.max(1)),
            limits,
        };
        let sources: Arc<[JsSource]> = sources.into();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for id in 0..workers {
            let queue = Arc::clone(&queue);
            let sources = Arc::clone(&sources);
            let ready = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("herald-js-{id}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || worker(&queue, &sources, limits, ready))
                .map_err(|e| {
                    LoadError::Engine(format!("cannot spawn a JavaScript worker thread: {e}"))
                })?;
        }
        drop(ready_tx);
        let mut exports = None;
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(e)) => exports = Some(e),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(LoadError::Engine(
                        "a JavaScript worker stopped while loading".into(),
                    ));
                }
            }
        }
        let exports =
            exports.ok_or_else(|| LoadError::Engine("no JavaScript worker started".into()))?;
        Ok((pool, exports))
    }

    /// Runs one call (or one step of a data-source handler) on a worker; returns the wrapper's
    /// JSON text.
    pub(crate) async fn call(
        &self,
        index: usize,
        namespace: &str,
        operation: Operation,
        phase: Phase,
        ctx_json: String,
        extra: Option<String>,
    ) -> Result<String, HandlerError> {
        let (reply, mut answer) = oneshot::channel();
        let job = Job {
            operation,
            phase,
            ctx_json,
            extra,
            reply,
        };
        let queued = self
            .queue
            .push(index, job)
            .map_err(|(refused, _)| self.refused(namespace, refused))?;
        if let Some(displaced) = queued.displaced {
            let _ = displaced.reply.send(Reply::Displaced);
        }
        let mut ticket = Ticket {
            queue: &self.queue,
            lane: index,
            seq: queued.seq,
            waiting: true,
        };
        let reply = match tokio::time::timeout(self.queue_timeout, &mut answer).await {
            Ok(reply) => reply,
            Err(_) if ticket.cancel() => {
                return Err(HandlerError::Overloaded(format!(
                    "namespace {namespace}: waited {} ms for a JavaScript worker; \
                     raise js_workers or js_queue_timeout_ms if this persists",
                    self.queue_timeout.as_millis()
                )));
            }
            // A worker took it just now: the time limit bounds the rest.
            Err(_) => answer.await,
        };
        ticket.waiting = false;
        let reply = reply
            .map_err(|_| HandlerError::Internal("a JavaScript worker dropped the call".into()))?;
        let result = match reply {
            Reply::Ran(result) => result,
            Reply::Displaced => {
                return Err(HandlerError::Overloaded(format!(
                    "namespace {namespace}: call dropped from the full JavaScript queue \
                     ({} calls) to make room for a namespace with fewer waiting; \
                     raise js_queue or js_workers if this persists",
                    self.queue.bounds().total_waiting
                )));
            }
        };
        result.map_err(|failure| match failure {
            CallFailure::Timeout => HandlerError::Timeout {
                namespace: namespace.to_owned(),
                operation,
                limit_ms: u64::try_from(self.limits.time.as_millis()).unwrap_or(u64::MAX),
            },
            CallFailure::OutOfMemory => HandlerError::OutOfMemory {
                namespace: namespace.to_owned(),
                operation,
                limit_mib: self.limits.memory_bytes / (1024 * 1024),
            },
            CallFailure::Engine(message) => HandlerError::Thrown {
                namespace: namespace.to_owned(),
                operation,
                message,
            },
        })
    }

    fn refused(&self, namespace: &str, refused: Refused) -> HandlerError {
        let bounds = self.queue.bounds();
        match refused {
            Refused::LaneFull => HandlerError::Overloaded(format!(
                "namespace {namespace}: {} JavaScript calls already waiting; \
                 raise js_namespace_queue or js_workers if this persists",
                bounds.lane_waiting
            )),
            Refused::TotalFull => HandlerError::Overloaded(format!(
                "namespace {namespace}: {} JavaScript calls already waiting in all namespaces, \
                 none with fewer than this one; raise js_queue or js_workers if this persists",
                bounds.total_waiting
            )),
            Refused::Closed => HandlerError::Internal("the JavaScript workers have stopped".into()),
        }
    }
}

impl Drop for JsPool {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// A call's place in the queue while its caller waits. If the caller stops waiting (it timed
/// out, or its task was dropped because the client left), the call leaves the queue at once
/// instead of holding a slot until a worker skips it.
struct Ticket<'a> {
    queue: &'a FairQueue<Job>,
    lane: usize,
    seq: u64,
    waiting: bool,
}

impl Ticket<'_> {
    /// Takes the call out of the queue; false if a worker already has it.
    fn cancel(&mut self) -> bool {
        self.waiting = false;
        self.queue.cancel(self.lane, self.seq)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.waiting {
            self.queue.cancel(self.lane, self.seq);
        }
    }
}

type Ready = std::sync::mpsc::Sender<Result<Vec<Exports>, LoadError>>;

fn worker(queue: &FairQueue<Job>, sources: &[JsSource], limits: Limits, ready: Ready) {
    let mut engine = match Engine::new(sources, limits) {
        Ok((engine, exports)) => {
            let _ = ready.send(Ok(exports));
            Some(engine)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    drop(ready);
    let mut finished = None;
    while let Some((index, job)) = queue.next(finished.take()) {
        if job.reply.is_closed() {
            finished = Some((index, Ran::Skipped)); // the caller gave up (e.g. the client left)
            continue;
        }
        if engine.is_none() {
            engine = rebuild(sources, limits);
        }
        let result = match &engine {
            Some(e) => catch_unwind(AssertUnwindSafe(|| {
                e.call(
                    index,
                    job.operation,
                    job.phase,
                    &job.ctx_json,
                    job.extra.as_deref(),
                )
            }))
            .unwrap_or_else(|_| Err(CallFailure::Engine("the JavaScript engine panicked".into()))),
            None => Err(CallFailure::Engine(
                "the JavaScript engine could not be rebuilt".into(),
            )),
        };
        let ran = match &result {
            Err(CallFailure::Timeout | CallFailure::OutOfMemory) => Ran::OverLimit,
            _ => Ran::Within,
        };
        let broken = result.is_err();
        let _ = job.reply.send(Reply::Ran(result));
        if broken {
            // After an interrupt, an allocation failure or a stray exception the runtime may hold
            // half-built state: start from the sources again, before the next job arrives. The
            // rebuild counts as the namespace's time: it caused it.
            drop(engine.take()); // free the old heap before building the new one
            engine = rebuild(sources, limits);
        }
        finished = Some((index, ran));
    }
}

fn rebuild(sources: &[JsSource], limits: Limits) -> Option<Engine> {
    match Engine::new(sources, limits) {
        Ok((engine, _)) => {
            tracing::debug!("JavaScript runtime rebuilt");
            Some(engine)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot rebuild the JavaScript runtime");
            None
        }
    }
}
