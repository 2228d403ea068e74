//! One namespace's slow or failing handlers cannot delay another namespace's calls (issue 20,
//! finding 6): JavaScript workers serve namespaces fairly, and HTTP calls are capped per namespace.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use herald_handler::{
    EngineConfig, EventOutcome, HandlerConfig, HandlerError, Handlers, HttpHandlerConfig,
    IncomingEvent, InvokeType, PublishContext, RequestInfo,
};

/// Short, so that a test failing against a shared queue fails within a second or two.
const TIME_LIMIT_MS: u64 = 250;
/// As many publishes into the slow namespace as in the finding.
const FLOOD: usize = 60;

type Outcome = Result<Vec<EventOutcome>, HandlerError>;

fn publish(namespace: &str, n: usize) -> PublishContext {
    PublishContext {
        channel: format!("/{namespace}/room"),
        identity: None,
        request: RequestInfo::default(),
        events: vec![IncomingEvent {
            id: n.to_string(),
            payload: format!(r#"{{"n":{n}}}"#),
        }],
    }
}

fn js(code: &str) -> HandlerConfig {
    HandlerConfig {
        code: Some(code.to_owned()),
        ..Default::default()
    }
}

/// `a` never returns (every call hits the time limit); `b` forwards its events.
fn slow_and_fast(engine: &EngineConfig) -> Arc<Handlers> {
    let handlers = Handlers::new(
        engine,
        [
            ("a", js("export function onPublish(ctx) { for (;;) {} }")),
            (
                "b",
                js("export function onPublish(ctx) { return ctx.events }"),
            ),
        ],
    )
    .unwrap();
    Arc::new(handlers)
}

/// Starts `calls` publishes into `namespace`, each in its own task, and returns once every one
/// has been polled once. A call is queued (or refused) during its first poll, so every call is
/// then ahead of anything the test starts next. Results arrive on the returned channel.
async fn flood(
    handlers: &Arc<Handlers>,
    namespace: &'static str,
    calls: usize,
) -> mpsc::UnboundedReceiver<Outcome> {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (polled_tx, mut polled_rx) = mpsc::unbounded_channel();
    for n in 0..calls {
        let handlers = Arc::clone(handlers);
        let (done, polled) = (done_tx.clone(), polled_tx.clone());
        tokio::spawn(async move {
            let mut call = pin!(handlers.on_publish(namespace, publish(namespace, n)));
            let mut first = true;
            let result = poll_fn(|cx| {
                let poll = call.as_mut().poll(cx);
                if std::mem::take(&mut first) {
                    let _ = polled.send(());
                }
                poll
            })
            .await;
            let _ = done.send(result);
        });
    }
    for _ in 0..calls {
        polled_rx.recv().await.unwrap();
    }
    done_rx
}

/// Awaits `call` while counting the flood's timeouts; panics once `max_timeouts` of them
/// finished first. Returns the call's result and how many timeouts it waited for.
async fn before_timeouts<T>(
    call: impl Future<Output = T>,
    flood: &mut mpsc::UnboundedReceiver<Outcome>,
    max_timeouts: usize,
) -> (T, usize) {
    let mut call = pin!(call);
    let mut timeouts = 0;
    loop {
        tokio::select! {
            biased;
            result = &mut call => return (result, timeouts),
            Some(other) = flood.recv() => {
                if matches!(other, Err(HandlerError::Timeout { .. })) {
                    timeouts += 1;
                    assert!(
                        timeouts < max_timeouts,
                        "the call was still waiting after {timeouts} of the other namespace's timeouts"
                    );
                }
            }
        }
    }
}

/// Floods `a` with [`FLOOD`] calls served by `workers` threads, then publishes into `b`, which
/// must succeed before `max_timeouts` of a's calls time out.
async fn publish_behind_flood(workers: usize, max_timeouts: usize) {
    let engine = EngineConfig {
        js_workers: workers,
        js_time_limit_ms: TIME_LIMIT_MS,
        ..EngineConfig::default()
    };
    let h = slow_and_fast(&engine);
    let mut a = flood(&h, "a", FLOOD).await;
    let started = Instant::now();
    let call = h.on_publish("b", publish("b", 0));
    let (b, waited) = before_timeouts(call, &mut a, max_timeouts).await;
    let took = started.elapsed();
    assert_eq!(b.unwrap(), vec![EventOutcome::Deliver(r#"{"n":0}"#.into())]);
    eprintln!("{workers} worker(s): b's publish took {took:?}, after {waited} of a's timeouts");
}

/// The finding: 60 publishes into a namespace whose handler hits its time limit, then one into
/// another namespace. It must not wait for the backlog (a shared queue made it wait 29.6 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_namespace_does_not_delay_another() {
    publish_behind_flood(2, 3).await;
}

/// With a single worker nothing can be reserved, but the next free turn goes to the other
/// namespace: it waits for at most the one call running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_serves_namespaces_in_turn() {
    publish_behind_flood(1, 2).await;
}

/// When the queue shared by all namespaces is full, the namespace with the most waiting pays:
/// another namespace's calls displace its newest ones instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shared_queue_refuses_the_longest_namespace() {
    const TOTAL: usize = 4;
    let engine = EngineConfig {
        js_workers: 1,
        js_time_limit_ms: TIME_LIMIT_MS,
        js_queue: TOTAL,
        js_namespace_queue: 2 * TOTAL,
        ..EngineConfig::default()
    };
    let h = slow_and_fast(&engine);
    // TOTAL of a's calls wait (one more may already run); the rest are refused.
    let mut a = flood(&h, "a", 2 * TOTAL).await;
    let mut b = flood(&h, "b", 2).await;
    for _ in 0..2 {
        assert!(
            b.recv().await.unwrap().is_ok(),
            "b's calls are never refused"
        );
    }
    let (mut displaced, mut timeouts) = (0, 0);
    for _ in 0..2 * TOTAL {
        let result = a.recv().await.unwrap();
        match &result {
            Err(HandlerError::Timeout { .. }) => timeouts += 1,
            Err(HandlerError::Overloaded(text)) if text.contains("make room") => displaced += 1,
            _ => assert_overloaded(&result),
        }
    }
    // Two unless a worker took a's first call only after the queue had filled, freeing a slot.
    assert!(
        (1..=2).contains(&displaced),
        "{displaced} of a's calls displaced"
    );
    assert!(
        timeouts <= TOTAL + 1 - displaced,
        "{timeouts} of a's calls ran"
    );
}

/// A call waits at most `js_queue_timeout_ms` for a worker, then fails as overloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waits_for_a_worker_no_longer_than_the_queue_timeout() {
    let engine = EngineConfig {
        js_workers: 1,
        js_time_limit_ms: 4 * TIME_LIMIT_MS,
        js_queue_timeout_ms: TIME_LIMIT_MS / 2,
        ..EngineConfig::default()
    };
    let h = slow_and_fast(&engine);
    let mut a = flood(&h, "a", 2).await;
    // The call that waited gives up long before the one running reaches its time limit.
    assert_overloaded(&a.recv().await.unwrap());
    assert!(matches!(
        a.recv().await.unwrap(),
        Err(HandlerError::Timeout { .. })
    ));
}

/// Refusals are immediate and say "retry later" on the wire.
fn assert_overloaded(result: &Outcome) {
    match result {
        Err(e @ HandlerError::Overloaded(_)) => assert_eq!(e.http_status(), 503),
        other => panic!("expected Overloaded, got {other:?}"),
    }
}

/// A handler endpoint on 127.0.0.1: a POST to `/hang` is never answered; any other path answers
/// with the events it was sent. Each request's path arrives on the channel once its body is read.
async fn endpoint() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen_tx.clone();
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    let path = request.uri().path().to_owned();
                    let body = request.into_body().collect().await?.to_bytes();
                    let _ = seen.send(path.clone());
                    if path == "/hang" {
                        std::future::pending::<()>().await;
                    }
                    let ctx: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let answer = json!({ "events": ctx["events"] }).to_string();
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(answer))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, seen_rx)
}

/// `a` publishes to the endpoint's `/hang`, `b` to `/echo`, both invoked as `invoke_type`.
fn hanging_and_answering(
    engine: &EngineConfig,
    url: &str,
    invoke_type: InvokeType,
) -> Arc<Handlers> {
    let http = |path: &str| HandlerConfig {
        on_publish: Some(HttpHandlerConfig {
            url: format!("{url}{path}"),
            lambda: None,
            invoke_type,
            // Far beyond the test: `a`'s calls must not end while `b`'s is checked.
            timeout_ms: 60_000,
            headers: Default::default(),
        }),
        ..Default::default()
    };
    Arc::new(Handlers::new(engine, [("a", http("/hang")), ("b", http("/echo"))]).unwrap())
}

/// Waits until the endpoint has received `count` requests on `path`.
async fn received(seen: &mut mpsc::UnboundedReceiver<String>, path: &str, count: usize) {
    let mut got = 0;
    while got < count {
        if seen.recv().await.unwrap() == path {
            got += 1;
        }
    }
}

/// A namespace whose endpoint hangs holds at most its share of calls in flight; the rest of its
/// calls are refused at once, and another namespace's calls go through meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_another_namespace() {
    const SHARE: usize = 8;
    let (url, mut seen) = endpoint().await;
    let engine = EngineConfig {
        http_namespace_max_in_flight: SHARE,
        ..EngineConfig::default()
    };
    let h = hanging_and_answering(&engine, &url, InvokeType::RequestResponse);
    let mut a = flood(&h, "a", FLOOD).await;
    for _ in SHARE..FLOOD {
        assert_overloaded(&a.recv().await.unwrap());
    }
    received(&mut seen, "/hang", SHARE).await;
    let b = h.on_publish("b", publish("b", 0)).await;
    assert_eq!(b.unwrap(), vec![EventOutcome::Deliver(r#"{"n":0}"#.into())]);
    assert!(
        a.try_recv().is_err(),
        "a's calls in flight are still hanging"
    );
}

/// Fire-and-forget calls to a hanging endpoint cannot use up the slots all namespaces share
/// (`http_max_in_flight`): one namespace's share is smaller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_event_calls_leave_room_for_another_namespace() {
    const TOTAL: usize = 16;
    const SHARE: usize = 4;
    let (url, mut seen) = endpoint().await;
    let engine = EngineConfig {
        http_max_in_flight: TOTAL,
        http_namespace_max_in_flight: SHARE,
        ..EngineConfig::default()
    };
    let h = hanging_and_answering(&engine, &url, InvokeType::Event);
    let mut sent = 0;
    for n in 0..TOTAL {
        let result = h.on_publish("a", publish("a", n)).await;
        if result.is_ok() {
            sent += 1;
        } else {
            assert_overloaded(&result);
        }
    }
    assert_eq!(sent, SHARE);
    received(&mut seen, "/hang", SHARE).await;
    let b = h.on_publish("b", publish("b", 0)).await;
    assert_eq!(b.unwrap(), vec![EventOutcome::Deliver(r#"{"n":0}"#.into())]);
    received(&mut seen, "/echo", 1).await;
}
