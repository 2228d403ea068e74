//! The JavaScript engine: a few dedicated OS threads, each owning a QuickJS runtime
//! ([`engine::Engine`]) with every namespace's module loaded, fed by one bounded queue.
//!
//! JavaScript never runs on the async runtime's workers: callers enqueue a job without blocking
//! (a full queue fails fast with `Overloaded`) and await a oneshot reply. A call that hits the
//! time or heap limit fails alone; its worker then rebuilds its runtime from the sources.

mod engine;
mod util;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::EngineConfig;
use crate::error::{HandlerError, LoadError, Operation};
use engine::{CallFailure, Engine, JS_STACK_BYTES, Limits};
pub(crate) use engine::{Exports, JsSource};

/// OS stack for worker threads: QuickJS's own limit plus room for the native frames around it.
const WORKER_STACK_BYTES: usize = JS_STACK_BYTES * 4;

struct Job {
    /// Index of the namespace's context (order of the sources).
    index: usize,
    operation: Operation,
    ctx_json: String,
    reply: oneshot::Sender<Result<String, CallFailure>>,
}

/// Handle to the worker threads. Dropping it closes the queue; workers finish their current
/// call and exit.
pub(crate) struct JsPool {
    queue: SyncSender<Job>,
    capacity: usize,
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
        let capacity = config.js_queue.max(1);
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Job>(capacity);
        let jobs = Arc::new(Mutex::new(jobs));
        let sources: Arc<[JsSource]> = sources.into();
        let workers = config.js_workers.max(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for id in 0..workers {
            let jobs = Arc::clone(&jobs);
            let sources = Arc::clone(&sources);
            let ready = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("herald-js-{id}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn(move || worker(&jobs, &sources, limits, ready))
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
        Ok((
            JsPool {
                queue,
                capacity,
                limits,
            },
            exports,
        ))
    }

    /// Runs one call on a worker; returns the wrapper's JSON text.
    pub(crate) async fn call(
        &self,
        index: usize,
        namespace: &str,
        operation: Operation,
        ctx_json: String,
    ) -> Result<String, HandlerError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            index,
            operation,
            ctx_json,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(HandlerError::Overloaded(format!(
                    "{} JavaScript calls already queued; raise js_workers or js_queue if this persists",
                    self.capacity
                )));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(HandlerError::Internal(
                    "the JavaScript workers have stopped".into(),
                ));
            }
        }
        let result = answer
            .await
            .map_err(|_| HandlerError::Internal("a JavaScript worker dropped the call".into()))?;
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
}

type Ready = std::sync::mpsc::Sender<Result<Vec<Exports>, LoadError>>;

fn worker(jobs: &Mutex<Receiver<Job>>, sources: &[JsSource], limits: Limits, ready: Ready) {
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
    loop {
        // The lock is held only while waiting for the next job; std's Receiver is single-consumer.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        if job.reply.is_closed() {
            continue; // the caller gave up (e.g. the client disconnected)
        }
        if engine.is_none() {
            engine = rebuild(sources, limits);
        }
        let result = match &engine {
            Some(e) => catch_unwind(AssertUnwindSafe(|| {
                e.call(job.index, job.operation, &job.ctx_json)
            }))
            .unwrap_or_else(|_| Err(CallFailure::Engine("the JavaScript engine panicked".into()))),
            None => Err(CallFailure::Engine(
                "the JavaScript engine could not be rebuilt".into(),
            )),
        };
        let broken = result.is_err();
        let _ = job.reply.send(result);
        if broken {
            // After an interrupt, an allocation failure or a stray exception the runtime may hold
            // half-built state: start from the sources again, before the next job arrives.
            drop(engine.take()); // free the old heap before building the new one
            engine = rebuild(sources, limits);
        }
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
