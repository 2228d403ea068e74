//! JavaScript handlers end to end: real QuickJS workers, real limits.

use std::time::{Duration, Instant};

use herald_handler::{
    CODE_TOO_LARGE, EngineConfig, EventOutcome, HandlerConfig, HandlerError, Handlers,
    IncomingEvent, LoadError, PublishContext, RequestInfo, SubscribeContext,
};
use serde_json::{Value, json};

const TIME_LIMIT_MS: u64 = 200;

fn engine() -> EngineConfig {
    EngineConfig {
        js_workers: 1,
        js_queue: 8,
        js_time_limit_ms: TIME_LIMIT_MS,
        js_memory_limit_mib: 16,
        ..EngineConfig::default()
    }
}

fn load(code: &str) -> Result<Handlers, LoadError> {
    let config = HandlerConfig {
        code: Some(code.to_owned()),
        ..Default::default()
    };
    Handlers::new(&engine(), [("chat", config)])
}

fn handlers(code: &str) -> Handlers {
    load(code).expect("handler code loads")
}

fn publish(events: &[(&str, Value)], identity: Option<Value>) -> PublishContext {
    PublishContext {
        channel: "/chat/room1".into(),
        identity,
        request: RequestInfo::from_pairs([("x-trace", "t1")], None),
        events: events
            .iter()
            .map(|(id, payload)| IncomingEvent {
                id: (*id).into(),
                payload: payload.to_string(),
            })
            .collect(),
    }
}

fn subscribe(identity: Option<Value>) -> SubscribeContext {
    SubscribeContext {
        presence_info: None,
        channel: "/chat/*".into(),
        identity,
        request: RequestInfo::default(),
    }
}

fn delivered(outcome: &EventOutcome) -> Value {
    match outcome {
        EventOutcome::Deliver(text) => {
            serde_json::from_str(text).expect("delivered payload is JSON")
        }
        other => panic!("expected Deliver, got {other:?}"),
    }
}

#[tokio::test]
async fn filters_events() {
    let h = handlers(
        "export function onPublish(ctx) { return ctx.events.filter(e => !e.payload.spam) }",
    );
    let out = h
        .on_publish(
            "chat",
            publish(
                &[("1", json!({"spam": true})), ("2", json!({"text": "hi"}))],
                None,
            ),
        )
        .await
        .unwrap();
    assert_eq!(out[0], EventOutcome::Dropped);
    assert_eq!(delivered(&out[1]), json!({"text": "hi"}));
    assert!(h.has_on_publish("chat"));
    assert!(!h.has_on_subscribe("chat"));
}

#[tokio::test]
async fn transforms_and_enriches_from_identity() {
    let h = handlers(
        "export function onPublish(ctx) {
           return ctx.events.map(({id, payload}) => ({
             id, payload: {...payload, text: payload.text.toUpperCase(), from: ctx.identity.sub,
                           channel: ctx.info.channel.path, ns: ctx.info.channelNamespace.name,
                           op: ctx.info.operation, trace: ctx.request.headers['x-trace']}
           }))
         }",
    );
    let out = h
        .on_publish(
            "chat",
            publish(
                &[("a", json!({"text": "hello"}))],
                Some(json!({"sub": "user-7"})),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        delivered(&out[0]),
        json!({"text": "HELLO", "from": "user-7", "channel": "/chat/room1", "ns": "chat",
               "op": "PUBLISH", "trace": "t1"})
    );
}

#[tokio::test]
async fn denies_subscription_by_identity() {
    let h = handlers(
        "import { util } from '@aws-appsync/utils';
         export function onSubscribe(ctx) {
           if (!(ctx.identity && ctx.identity.groups && ctx.identity.groups.includes('admins'))) util.unauthorized();
         }",
    );
    assert_eq!(
        h.on_subscribe("chat", subscribe(None)).await,
        Err(HandlerError::Unauthorized)
    );
    let member = Some(json!({"sub": "u", "groups": ["users"]}));
    assert_eq!(
        h.on_subscribe("chat", subscribe(member)).await,
        Err(HandlerError::Unauthorized)
    );
    let admin = Some(json!({"sub": "u", "groups": ["admins"]}));
    assert_eq!(h.on_subscribe("chat", subscribe(admin)).await, Ok(()));
    // No onPublish exported: publishing forwards unchanged.
    let out = h
        .on_publish("chat", publish(&[("1", json!(1))], None))
        .await
        .unwrap();
    assert_eq!(out, vec![EventOutcome::Deliver("1".into())]);
}

#[tokio::test]
async fn thrown_error_fails_the_call() {
    let h = handlers("export function onPublish(ctx) { throw new TypeError('boom') }");
    let err = h
        .on_publish("chat", publish(&[("1", json!({}))], None))
        .await
        .unwrap_err();
    match &err {
        HandlerError::Thrown {
            namespace, message, ..
        } => {
            assert_eq!(namespace, "chat");
            assert!(message.contains("TypeError: boom"), "{message}");
        }
        other => panic!("expected Thrown, got {other:?}"),
    }
    assert_eq!(err.http_status(), 500);
    assert_eq!(err.client_message(), "Unable to process request");
}

#[tokio::test]
async fn util_error_and_unauthorized() {
    let h = handlers(
        "import { util } from '@aws-appsync/utils';
         export function onPublish(ctx) {
           if (ctx.events[0].payload === 'deny') util.unauthorized();
           util.error('not today', 'Custom');
         }",
    );
    let err = h
        .on_publish("chat", publish(&[("1", json!("x"))], None))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HandlerError::Error {
            message: "not today".into(),
            error_type: Some("Custom".into())
        }
    );
    assert_eq!(err.http_status(), 403);
    let err = h
        .on_publish("chat", publish(&[("1", json!("deny"))], None))
        .await
        .unwrap_err();
    assert_eq!(err, HandlerError::Unauthorized);
    assert_eq!(err.http_status(), 401);
}

#[tokio::test]
async fn infinite_loop_times_out_and_the_next_call_works() {
    let h = handlers(
        "export function onPublish(ctx) {
           if (ctx.events[0].payload.loop) { while (true) {} }
           return ctx.events;
         }",
    );
    let started = Instant::now();
    let err = h
        .on_publish("chat", publish(&[("1", json!({"loop": true}))], None))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            HandlerError::Timeout {
                limit_ms: TIME_LIMIT_MS,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(TIME_LIMIT_MS),
        "{elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let out = h
        .on_publish("chat", publish(&[("1", json!({"loop": false}))], None))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!({"loop": false}));
}

#[tokio::test]
async fn memory_bomb_fails_and_the_next_call_works() {
    let h = handlers(
        "export function onPublish(ctx) {
           if (ctx.events[0].payload.bomb) { const a = []; while (true) a.push('x'.repeat(65536) + a.length) }
           return ctx.events;
         }",
    );
    let err = h
        .on_publish("chat", publish(&[("1", json!({"bomb": true}))], None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandlerError::OutOfMemory { limit_mib: 16, .. }),
        "{err:?}"
    );
    let out = h
        .on_publish("chat", publish(&[("1", json!({"bomb": false}))], None))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!({"bomb": false}));
}

#[test]
fn syntax_error_names_namespace_and_line() {
    let err = load("export function onPublish(ctx) {\n  return ctx.events\n  let = = 3;\n}\n")
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, LoadError::Syntax { line: Some(3), .. }),
        "{text}"
    );
    assert!(text.contains("namespace chat"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn load_errors_are_clear() {
    let err = load("import fs from 'fs'; export const onPublish = (c) => c.events").unwrap_err();
    assert!(err.to_string().contains("only @aws-appsync/utils"), "{err}");
    let err = load("export const nothing = 1").unwrap_err();
    assert!(
        err.to_string()
            .contains("neither onPublish nor onSubscribe"),
        "{err}"
    );
    // A data-source handler needs a data source.
    let err = load("export const onPublish = { request() {}, response() {} }").unwrap_err();
    assert!(err.to_string().contains("set data_source"), "{err}");
    let err = load("export const onPublish = 5").unwrap_err();
    assert!(err.to_string().contains("must be a function"), "{err}");
    let err = load("while (true) {}\nexport const onPublish = (c) => c.events").unwrap_err();
    assert!(err.to_string().contains("did not finish"), "{err}");
    let err = load("throw new Error('top-level')").unwrap_err();
    assert!(err.to_string().contains("top-level"), "{err}");
}

#[tokio::test]
async fn code_is_compiled_once_and_code_file_works() {
    let path = std::env::temp_dir().join(format!("herald-handler-test-{}.js", std::process::id()));
    std::fs::write(
        &path,
        "let evaluations = 0; evaluations++;\n\
         export const onPublish = (ctx) => ctx.events.map(e => ({id: e.id, payload: evaluations}));\n",
    )
    .unwrap();
    let config = HandlerConfig {
        code_file: Some(path.clone()),
        ..Default::default()
    };
    let h = Handlers::new(&engine(), [("chat", config)]).unwrap();
    std::fs::remove_file(&path).unwrap();
    for _ in 0..3 {
        let out = h
            .on_publish("chat", publish(&[("1", json!(0))], None))
            .await
            .unwrap();
        assert_eq!(out, vec![EventOutcome::Deliver("1".into())]);
    }
}

#[tokio::test]
async fn utilities_and_early_return() {
    let h = handlers(
        "import { util, runtime } from '@aws-appsync/utils';
         export function onPublish(ctx) {
           console.log('publishing', ctx.events.length, {to: ctx.info.channel.segments});
           if (ctx.events[0].payload === 'early') runtime.earlyReturn([{id: ctx.events[0].id, payload: 'short'}]);
           const id = util.autoId();
           return [{id: ctx.events[0].id, payload: {
             enc: util.urlEncode('a b&c/é!'), dec: util.urlDecode('a+b%26c'),
             b64: util.base64Encode('hi'), unb64: util.base64Decode('aGk='),
             idOk: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id),
             ms: util.time.nowEpochMilliSeconds() > 1.7e12, s: util.time.nowEpochSeconds() > 1.7e9,
             iso: util.time.nowISO8601().endsWith('Z'),
           }}];
         }",
    );
    let out = h
        .on_publish("chat", publish(&[("1", json!("x"))], None))
        .await
        .unwrap();
    assert_eq!(
        delivered(&out[0]),
        json!({"enc": "a+b%26c%2F%C3%A9%21", "dec": "a b&c", "b64": "aGk=", "unb64": "hi",
               "idOk": true, "ms": true, "s": true, "iso": true})
    );
    let out = h
        .on_publish("chat", publish(&[("1", json!("early"))], None))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!("short"));
}

#[tokio::test]
async fn return_semantics() {
    let h = handlers(
        "export function onPublish(ctx) {
           const mode = ctx.events[0].payload;
           if (mode === 'null') return null;
           if (mode === 'none') return;
           if (mode === 'empty') return [];
           if (mode === 'unknown') return [{id: 'nope', payload: 1}];
           if (mode === 'error') return [null, {id: ctx.events[1].id, error: 'bad event'}];
           if (mode === 'big') return [{id: ctx.events[0].id, payload: 'x'.repeat(250 * 1024)}];
           return ctx.events;
         }",
    );
    let two = |mode: &str| publish(&[("a", json!(mode)), ("b", json!(2))], None);
    for mode in ["null", "none", "empty"] {
        let out = h.on_publish("chat", two(mode)).await.unwrap();
        assert_eq!(
            out,
            vec![EventOutcome::Dropped, EventOutcome::Dropped],
            "{mode}"
        );
    }
    let err = h.on_publish("chat", two("unknown")).await.unwrap_err();
    assert!(
        matches!(&err, HandlerError::Invalid { reason, .. } if reason.contains("unknown id")),
        "{err:?}"
    );
    let out = h.on_publish("chat", two("error")).await.unwrap();
    assert_eq!(out[0], EventOutcome::Dropped);
    assert!(matches!(&out[1], EventOutcome::Failed { message, .. } if message == "bad event"));
    let out = h.on_publish("chat", two("big")).await.unwrap();
    assert!(matches!(&out[0], EventOutcome::Failed { code, .. } if *code == CODE_TOO_LARGE));
    assert_eq!(out[1], EventOutcome::Dropped);
}

#[tokio::test]
async fn a_full_queue_fails_fast() {
    let engine = EngineConfig {
        js_workers: 1,
        js_queue: 1,
        js_time_limit_ms: TIME_LIMIT_MS,
        ..engine()
    };
    let config = HandlerConfig {
        code: Some("export function onPublish(ctx) { while (true) {} }".into()),
        ..Default::default()
    };
    let h = Handlers::new(&engine, [("chat", config)]).unwrap();
    let ctx = || publish(&[("1", json!(1))], None);
    // One call runs (until its time limit), one waits in the queue; the third cannot fit.
    let (a, b, c) = tokio::join!(
        h.on_publish("chat", ctx()),
        h.on_publish("chat", ctx()),
        h.on_publish("chat", ctx())
    );
    let overloaded = [a, b, c]
        .into_iter()
        .filter(|r| matches!(r, Err(HandlerError::Overloaded(_))))
        .count();
    assert!(overloaded >= 1);
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let a = HandlerConfig {
        code: Some("globalThis.shared = 'a'; export const onPublish = (c) => [{id: c.events[0].id, payload: globalThis.shared}]".into()),
        ..Default::default()
    };
    let b = HandlerConfig {
        code: Some("export const onPublish = (c) => [{id: c.events[0].id, payload: String(globalThis.shared)}]".into()),
        ..Default::default()
    };
    let h = Handlers::new(&engine(), [("a", a), ("b", b)]).unwrap();
    let out = h
        .on_publish("b", publish(&[("1", json!(0))], None))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!("undefined"));
    let out = h
        .on_publish("a", publish(&[("1", json!(0))], None))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!("a"));
    // A namespace without handlers forwards unchanged.
    let out = h
        .on_publish("other", publish(&[("1", json!(5))], None))
        .await
        .unwrap();
    assert_eq!(out, vec![EventOutcome::Deliver("5".into())]);
}

#[tokio::test]
async fn async_handlers_and_promise_jobs_are_handled() {
    let h = handlers(
        "export async function onPublish(ctx) { return ctx.events }
         export function onSubscribe(ctx) { Promise.resolve().then(() => { while (true) {} }) }",
    );
    let err = h
        .on_publish("chat", publish(&[("1", json!(1))], None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HandlerError::Thrown { message, .. } if message.contains("synchronous")),
        "{err:?}"
    );
    // A queued job that never ends is stopped by the same time limit.
    let err = h.on_subscribe("chat", subscribe(None)).await.unwrap_err();
    assert!(matches!(err, HandlerError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn runaway_recursion_is_a_thrown_error() {
    let h = handlers(
        "function down(n) { return down(n + 1) + 1 }\nexport const onPublish = (ctx) => down(0)",
    );
    let err = h
        .on_publish("chat", publish(&[("1", json!(1))], None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HandlerError::Thrown { message, .. } if message.contains("stack")),
        "{err:?}"
    );
    let err = h
        .on_publish("chat", publish(&[("1", json!(1))], None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandlerError::Thrown { .. }),
        "the worker survives: {err:?}"
    );
}

#[test]
fn api_is_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let h = handlers("export const onPublish = (c) => c.events");
    send_sync(&h);
    send(h.on_publish("chat", publish(&[], None)));
    send(h.on_subscribe("chat", subscribe(None)));
}

#[tokio::test]
async fn catastrophic_regex_is_stopped_by_the_time_limit() {
    let h = handlers(
        "export const onPublish = (ctx) => /^(a+)+$/.test('a'.repeat(40) + 'b') ? [] : ctx.events",
    );
    let started = Instant::now();
    let err = h
        .on_publish("chat", publish(&[("1", json!(1))], None))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn on_subscribe_sees_presence_info() {
    let h = handlers(
        "import { util } from '@aws-appsync/utils';\nexport function onSubscribe(ctx) { if (ctx.presence && ctx.presence.info.role === 'admin') util.unauthorized(); }",
    );
    let with = |info: Option<&str>| SubscribeContext {
        presence_info: info.map(str::to_owned),
        ..subscribe(None)
    };
    let r = h
        .on_subscribe("chat", with(Some(r#"{"role":"admin"}"#)))
        .await;
    assert!(matches!(r, Err(HandlerError::Unauthorized)), "{r:?}");
    let r = h
        .on_subscribe("chat", with(Some(r#"{"role":"guest"}"#)))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(h.on_subscribe("chat", with(None)).await.is_ok());
}
