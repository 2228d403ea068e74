//! Data-source handlers (`{request, response}` and `DIRECT`) against loopback fixtures of the
//! Lambda Invoke, EventBridge and HTTP APIs that check each request's SigV4 signature (re-signed
//! with `aws-sigv4`) and its exact payload.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use herald_handler::{
    DataSourceConfig, DataSourceKind, EngineConfig, EventOutcome, HandlerConfig, HandlerError,
    Handlers, HttpHandlerConfig, IncomingEvent, InvokeType, LoadError, PublishContext, RequestInfo,
    SubscribeContext,
};
use herald_testkit::fixture::{self, Fixture, Hit, Reply};
use herald_testkit::sigv4::{Key, Signer};
use serde_json::{Value, json};

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "eu-west-1";

fn engine() -> EngineConfig {
    EngineConfig {
        js_workers: 1,
        js_time_limit_ms: 500,
        ..EngineConfig::default()
    }
}

fn source(name: &str, kind: DataSourceKind, endpoint: &str) -> DataSourceConfig {
    DataSourceConfig {
        name: name.into(),
        kind,
        region: Some(REGION.into()),
        endpoint: Some(endpoint.into()),
        access_key_id: Some(KEY_ID.into()),
        secret_access_key: Some(SECRET.into()),
        session_token: None,
        function: Some("arn:aws:lambda:eu-west-1:123456789012:function:enrich".into()),
        table: None,
        event_bus: Some("chat-bus".into()),
        headers: Default::default(),
        database_url: None,
        pool_size: 10,
        timeout_ms: 2_000,
        max_in_flight: 8,
    }
}

fn code(code: &str, data_source: &str) -> HandlerConfig {
    HandlerConfig {
        code: Some(code.into()),
        data_source: Some(data_source.into()),
        ..Default::default()
    }
}

fn publish(events: &[(&str, Value)]) -> PublishContext {
    PublishContext {
        channel: "/chat/room1".into(),
        identity: Some(json!({"sub": "u1"})),
        request: RequestInfo::default(),
        events: events
            .iter()
            .map(|(id, payload)| IncomingEvent {
                id: (*id).into(),
                payload: payload.to_string(),
            })
            .collect(),
    }
}

fn subscribe() -> SubscribeContext {
    SubscribeContext {
        presence_info: None,
        channel: "/chat/room1".into(),
        identity: Some(json!({"sub": "u1"})),
        request: RequestInfo::default(),
    }
}

fn delivered(outcome: &EventOutcome) -> Value {
    match outcome {
        EventOutcome::Deliver(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected Deliver, got {other:?}"),
    }
}

fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Re-signs what the fixture received with `aws-sigv4`, at the request's own `x-amz-date`,
/// over the headers it signed, and compares the `authorization` header.
fn assert_signed(fixture: &Fixture, hit: &Hit, service: &str) {
    assert_signed_with(fixture, hit, service, None);
}

fn assert_signed_with(fixture: &Fixture, hit: &Hit, service: &str, session_token: Option<&str>) {
    let authorization = header(hit, "authorization");
    let signed_names: Vec<&str> = authorization
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .split(';')
        .collect();
    let headers: Vec<(&str, String)> = signed_names
        .iter()
        .filter(|n| !matches!(**n, "x-amz-date" | "x-amz-security-token"))
        .map(|n| (*n, header(hit, n).to_owned()))
        .collect();
    let date = header(hit, "x-amz-date");
    let time = herald_auth_time(date);
    let url = if hit.query.is_empty() {
        fixture.url(&hit.path)
    } else {
        format!("{}?{}", fixture.url(&hit.path), hit.query)
    };
    let expected = Signer::new(
        Key {
            id: KEY_ID,
            secret: SECRET,
            session_token,
        },
        REGION,
    )
    .at(time)
    .sign_for(service, &hit.method, &url, &headers, hit.body.as_bytes());
    let expected = expected
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .unwrap();
    assert_eq!(authorization, expected, "signature of {service} request");
    assert!(
        authorization.contains(&format!("/{REGION}/{service}/aws4_request")),
        "{authorization}"
    );
}

/// `YYYYMMDDTHHMMSSZ` → time.
fn herald_auth_time(amz_date: &str) -> SystemTime {
    let n = |r: std::ops::Range<usize>| amz_date[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

const LAMBDA_PATH: &str = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Aenrich/invocations";

#[tokio::test]
async fn lambda_request_response_with_stash_and_result() {
    let lambda = fixture::serve(|_, body| {
        let event: Value = serde_json::from_str(body).unwrap();
        let n = event["events"].as_array().map_or(0, Vec::len);
        Reply::Json(
            200,
            json!({"score": n, "echo": event["channel"]}).to_string(),
        )
    })
    .await;
    let h = Handlers::with_data_sources(
        &engine(),
        &[source("enrich", DataSourceKind::AwsLambda, &lambda.url(""))],
        [(
            "chat",
            code(
                r#"import { util } from '@aws-appsync/utils';
                export const onPublish = {
                  request(ctx) {
                    ctx.stash.started = 'yes';
                    return { operation: 'Invoke', payload: { channel: ctx.info.channel.path, events: ctx.events } };
                  },
                  response(ctx) {
                    if (ctx.error) util.error(ctx.error.message, ctx.error.type);
                    return ctx.events.map(({ id, payload }) => ({
                      id, payload: { ...payload, score: ctx.result.score, echo: ctx.result.echo, stash: ctx.stash.started },
                    }));
                  },
                };"#,
                "enrich",
            ),
        )],
    )
    .unwrap();
    let out = h
        .on_publish(
            "chat",
            publish(&[("a", json!({"text": "hi"})), ("b", json!(2))]),
        )
        .await
        .unwrap();
    assert_eq!(
        delivered(&out[0]),
        json!({"text": "hi", "score": 2, "echo": "/chat/room1", "stash": "yes"})
    );
    let hit = lambda.last().unwrap();
    assert_eq!(hit.method, "POST");
    assert_eq!(hit.path, LAMBDA_PATH);
    assert_eq!(header(&hit, "x-amz-invocation-type"), "RequestResponse");
    assert_eq!(
        serde_json::from_str::<Value>(&hit.body).unwrap(),
        json!({"channel": "/chat/room1", "events": [
            {"id": "a", "payload": {"text": "hi"}}, {"id": "b", "payload": 2}]})
    );
    assert_signed(&lambda, &hit, "lambda");
}

#[tokio::test]
async fn lambda_function_error_reaches_response_as_ctx_error() {
    let lambda = fixture::serve(|_, _| {
        Reply::JsonWithHeaders(
            200,
            vec![("x-amz-function-error", "Unhandled".into())],
            json!({"errorMessage": "boom", "errorType": "Error"}).to_string(),
        )
    })
    .await;
    let h = Handlers::with_data_sources(
        &engine(),
        &[source("fn", DataSourceKind::AwsLambda, &lambda.url(""))],
        [(
            "chat",
            code(
                r#"import { util } from '@aws-appsync/utils';
                export const onPublish = {
                  request: (ctx) => ({ operation: 'Invoke', payload: {} }),
                  response(ctx) { util.error(ctx.error.message, ctx.error.type); },
                };
                // Without response, the error is passed on the same way.
                export const onSubscribe = { request: () => ({ operation: 'Invoke', payload: {} }) };"#,
                "fn",
            ),
        )],
    )
    .unwrap();
    let expected = HandlerError::Error {
        message: "boom".into(),
        error_type: Some("Lambda:Unhandled".into()),
    };
    let err = h.on_publish("chat", publish(&[("a", json!(1))])).await;
    assert_eq!(err.unwrap_err(), expected);
    let err = h.on_subscribe("chat", subscribe()).await;
    assert_eq!(err.unwrap_err(), expected);
}

#[tokio::test]
async fn early_return_skips_the_call_and_response() {
    let lambda = fixture::serve(|_, _| Reply::Json(200, "{}".into())).await;
    let h = Handlers::with_data_sources(
        &engine(),
        &[source("fn", DataSourceKind::AwsLambda, &lambda.url(""))],
        [(
            "chat",
            code(
                r#"import { runtime } from '@aws-appsync/utils';
                export const onPublish = {
                  request(ctx) {
                    runtime.earlyReturn(ctx.events.map(({ id }) => ({ id, payload: 'early' })));
                  },
                  response() { throw new Error('response must not run'); },
                };"#,
                "fn",
            ),
        )],
    )
    .unwrap();
    let out = h
        .on_publish("chat", publish(&[("a", json!(1))]))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!("early"));
    assert_eq!(lambda.count(), 0);
}

#[tokio::test]
async fn per_event_results_and_util_error_in_request() {
    let lambda = fixture::serve(|_, _| Reply::Json(200, json!({"bad": ["b"]}).to_string())).await;
    let h = Handlers::with_data_sources(
        &engine(),
        &[source("fn", DataSourceKind::AwsLambda, &lambda.url(""))],
        [(
            "chat",
            code(
                r#"import { util } from '@aws-appsync/utils';
                export const onPublish = {
                  request(ctx) {
                    if (ctx.events.length > 2) util.error('too many', 'TooMany');
                    return { operation: 'Invoke', payload: ctx.events };
                  },
                  response: (ctx) => ctx.events.map(({ id, payload }) =>
                    ctx.result.bad.includes(id) ? { id, error: 'rejected by the function' } : { id, payload }),
                };"#,
                "fn",
            ),
        )],
    )
    .unwrap();
    let out = h
        .on_publish("chat", publish(&[("a", json!(1)), ("b", json!(2))]))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!(1));
    assert!(
        matches!(&out[1], EventOutcome::Failed { message, .. } if message == "rejected by the function")
    );
    let err = h
        .on_publish(
            "chat",
            publish(&[("a", json!(1)), ("b", json!(2)), ("c", json!(3))]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HandlerError::Error {
            message: "too many".into(),
            error_type: Some("TooMany".into())
        }
    );
    assert_eq!(lambda.count(), 1, "util.error in request makes no call");
}

#[tokio::test]
async fn direct_lambda_both_invoke_types() {
    let lambda = fixture::serve(|_, body| {
        let ctx: Value = serde_json::from_str(body).unwrap();
        if ctx["info"]["operation"] == "SUBSCRIBE" {
            return Reply::Json(200, json!({"error": "no entry"}).to_string());
        }
        let events: Vec<Value> = ctx["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| json!({"id": e["id"], "payload": {"wrapped": e["payload"]}}))
            .collect();
        Reply::Json(200, json!({ "events": events }).to_string())
    })
    .await;
    let direct = |invoke_type| HttpHandlerConfig {
        url: String::new(),
        lambda: Some("fn".into()),
        invoke_type,
        timeout_ms: 5_000,
        headers: Default::default(),
    };
    let h = Handlers::with_data_sources(
        &engine(),
        &[source("fn", DataSourceKind::AwsLambda, &lambda.url(""))],
        [
            (
                "sync",
                HandlerConfig {
                    on_publish: Some(direct(InvokeType::RequestResponse)),
                    on_subscribe: Some(direct(InvokeType::RequestResponse)),
                    ..Default::default()
                },
            ),
            (
                "async",
                HandlerConfig {
                    on_publish: Some(direct(InvokeType::Event)),
                    ..Default::default()
                },
            ),
        ],
    )
    .unwrap();
    let out = h
        .on_publish("sync", publish(&[("a", json!(1))]))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!({"wrapped": 1}));
    let hit = lambda.last().unwrap();
    let sent: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(sent["info"]["channelNamespace"]["name"], "sync");
    assert_eq!(sent["events"], json!([{"id": "a", "payload": 1}]));
    assert_eq!(header(&hit, "x-amz-invocation-type"), "RequestResponse");
    assert_signed(&lambda, &hit, "lambda");
    let err = h.on_subscribe("sync", subscribe()).await.unwrap_err();
    assert_eq!(err.client_message(), "no entry");

    let out = h
        .on_publish("async", publish(&[("a", json!(1))]))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!(1), "EVENT forwards unchanged");
    let hit = lambda.last().unwrap();
    assert_eq!(header(&hit, "x-amz-invocation-type"), "Event");
}

#[tokio::test]
async fn eventbridge_put_events() {
    let bus = fixture::serve(|_, _| {
        Reply::Json(
            200,
            json!({"Entries": [{"EventId": "e-1"}], "FailedEntryCount": 0}).to_string(),
        )
    })
    .await;
    let h = Handlers::with_data_sources(
        &engine(),
        &[source("bus", DataSourceKind::AmazonEventbridge, &bus.url(""))],
        [(
            "chat",
            code(
                r#"export const onPublish = {
                  request(ctx) {
                    return {
                      operation: 'PutEvents',
                      events: ctx.events.map((e) => ({
                        source: ctx.info.channel.path, detail: { payload: e.payload }, detailType: 'channel.publish',
                      })),
                    };
                  },
                  response(ctx) {
                    return ctx.events.map(({ id, payload }) => ({ id, payload: { payload, eventId: ctx.result.Entries[0].EventId } }));
                  },
                };"#,
                "bus",
            ),
        )],
    )
    .unwrap();
    let out = h
        .on_publish("chat", publish(&[("a", json!({"t": 1}))]))
        .await
        .unwrap();
    assert_eq!(
        delivered(&out[0]),
        json!({"payload": {"t": 1}, "eventId": "e-1"})
    );
    let hit = bus.last().unwrap();
    assert_eq!(hit.path, "/");
    assert_eq!(header(&hit, "x-amz-target"), "AWSEvents.PutEvents");
    assert_eq!(header(&hit, "content-type"), "application/x-amz-json-1.1");
    assert_eq!(
        serde_json::from_str::<Value>(&hit.body).unwrap(),
        json!({"Entries": [{"Source": "/chat/room1", "Detail": "{\"payload\":{\"t\":1}}",
            "DetailType": "channel.publish", "EventBusName": "chat-bus"}]})
    );
    assert_signed(&bus, &hit, "events");
}

/// The EventBridge example of docs/handlers.md, as written.
#[tokio::test]
async fn eventbridge_doc_example() {
    const DOC: &str = include_str!("../../../docs/handlers.md");
    let marker = "<!-- test: eventbridge -->";
    let after = &DOC[DOC.find(marker).unwrap() + marker.len()..];
    let start = after.find("```js\n").unwrap() + "```js\n".len();
    let code_text = &after[start..start + after[start..].find("```").unwrap()];
    let bus = fixture::serve(|_, _| {
        Reply::Json(
            200,
            json!({"Entries": [{"EventId": "1"}], "FailedEntryCount": 0}).to_string(),
        )
    })
    .await;
    let h = Handlers::with_data_sources(
        &engine(),
        &[source(
            "bus",
            DataSourceKind::AmazonEventbridge,
            &bus.url(""),
        )],
        [("chat", code(code_text, "bus"))],
    )
    .unwrap();
    let out = h
        .on_publish("chat", publish(&[("a", json!({"text": "hi"}))]))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!({"text": "hi"}));
    let sent: Value = serde_json::from_str(&bus.last().unwrap().body).unwrap();
    assert_eq!(
        sent["Entries"][0],
        json!({"Source": "chat", "DetailType": "message", "EventBusName": "chat-bus",
            "Detail": "{\"channel\":\"/chat/room1\",\"payload\":{\"text\":\"hi\"}}"})
    );
}

#[tokio::test]
async fn http_data_source_request_object() {
    let api = fixture::serve(|path, _| {
        if path == "/v1/users/u1" {
            Reply::Json(200, json!({"name": "Ada"}).to_string())
        } else {
            Reply::Json(404, "{}".into())
        }
    })
    .await;
    let mut config = source("api", DataSourceKind::Http, &api.url("/v1"));
    config.headers = [("x-api-key".to_owned(), "k".to_owned())].into();
    let h = Handlers::with_data_sources(
        &engine(),
        &[config],
        [(
            "chat",
            code(
                r#"import { util } from '@aws-appsync/utils';
                export const onPublish = {
                  request(ctx) {
                    return {
                      method: 'POST', resourcePath: '/users/' + ctx.identity.sub,
                      params: { query: { v: '2' }, headers: { 'content-type': 'application/json' },
                                body: JSON.stringify({ n: ctx.events.length }) },
                    };
                  },
                  response(ctx) {
                    if (ctx.result.statusCode !== 200) util.error('lookup failed');
                    const user = JSON.parse(ctx.result.body);
                    return ctx.events.map(({ id, payload }) => ({ id, payload: { ...payload, from: user.name } }));
                  },
                };
                export const onSubscribe = {
                  request: () => ({ method: 'GET', resourcePath: '/nobody' }),
                  response(ctx) { if (ctx.result.statusCode === 404) util.unauthorized(); },
                };"#,
                "api",
            ),
        )],
    )
    .unwrap();
    let out = h
        .on_publish("chat", publish(&[("a", json!({"text": "hi"}))]))
        .await
        .unwrap();
    assert_eq!(delivered(&out[0]), json!({"text": "hi", "from": "Ada"}));
    let hit = api.hits().into_iter().next().unwrap();
    assert_eq!(hit.method, "POST");
    assert_eq!(hit.path, "/v1/users/u1");
    assert_eq!(hit.query, "v=2");
    assert_eq!(header(&hit, "x-api-key"), "k");
    assert_eq!(hit.body, r#"{"n":1}"#);
    assert_eq!(
        h.on_subscribe("chat", subscribe()).await.unwrap_err(),
        HandlerError::Unauthorized
    );
}

/// AppSync's OpenSearch request object (the search of its resolver reference): method, path,
/// query string and body reach the domain signed for `es`; an error answer is `ctx.error`.
#[tokio::test]
async fn opensearch_request_object() {
    let domain = fixture::serve(|path, _| {
        if path == "/posts/_search" {
            Reply::Json(
                200,
                json!({"hits": {"total": {"value": 1}, "hits": [{"_id": "1", "_source": {"title": "Hello"}}]}})
                    .to_string(),
            )
        } else {
            Reply::Json(
                404,
                json!({"error": {"type": "index_not_found_exception", "reason": "no such index [missing]"}, "status": 404})
                    .to_string(),
            )
        }
    })
    .await;
    let h = Handlers::with_data_sources(
        &engine(),
        &[source(
            "search",
            DataSourceKind::AmazonOpensearchService,
            &domain.url(""),
        )],
        [(
            "chat",
            code(
                r#"export const onPublish = {
                  request(ctx) {
                    const index = ctx.events[0].payload.index ?? 'posts'
                    return {
                      operation: 'GET',
                      path: `/${index}/_search`,
                      params: { headers: {}, queryString: { q: 'title:hello' }, body: { from: 0, size: 50 } },
                    }
                  },
                  response(ctx) {
                    if (ctx.error) return ctx.events.map(({ id }) => ({ id, payload: { error: ctx.error } }))
                    const titles = ctx.result.hits.hits.map((hit) => hit._source.title)
                    return ctx.events.map(({ id, payload }) => ({ id, payload: { ...payload, titles } }))
                  },
                };"#,
                "search",
            ),
        )],
    )
    .unwrap();
    let out = h
        .on_publish("chat", publish(&[("a", json!({"text": "hi"}))]))
        .await
        .unwrap();
    assert_eq!(
        delivered(&out[0]),
        json!({"text": "hi", "titles": ["Hello"]})
    );
    let hit = domain.last().unwrap();
    assert_eq!(hit.method, "GET");
    assert_eq!(hit.path, "/posts/_search");
    assert_eq!(hit.query, "q=title%3Ahello");
    assert_eq!(header(&hit, "content-type"), "application/json");
    assert_eq!(hit.body, r#"{"from":0,"size":50}"#);
    assert_signed(&domain, &hit, "es");

    let out = h
        .on_publish("chat", publish(&[("a", json!({"index": "missing"}))]))
        .await
        .unwrap();
    assert_eq!(
        delivered(&out[0]),
        json!({"error": {"type": "OpenSearch:index_not_found_exception", "message": "no such index [missing]"}})
    );
}

/// A data source that does not answer: the call times out into `ctx.error`, a second call
/// beyond `max_in_flight` is refused at once, and meanwhile the only JavaScript thread keeps
/// serving another namespace (the call is not made on it).
#[tokio::test]
async fn slow_data_source_blocks_no_javascript_thread() {
    let slow = fixture::serve(|_, _| Reply::Hang).await;
    let mut config = source("slow", DataSourceKind::AwsLambda, &slow.url(""));
    config.timeout_ms = 1_500;
    config.max_in_flight = 1;
    let h = Arc::new(
        Handlers::with_data_sources(
            &engine(),
            &[config],
            [
                (
                    "slow",
                    code(
                        r#"export const onPublish = {
                          request: () => ({ operation: 'Invoke', payload: {} }),
                          response: (ctx) => ctx.events.map(({ id }) => ({ id, payload: ctx.error })),
                        };"#,
                        "slow",
                    ),
                ),
                (
                    "quick",
                    HandlerConfig {
                        code: Some("export const onPublish = (ctx) => ctx.events".into()),
                        ..Default::default()
                    },
                ),
            ],
        )
        .unwrap(),
    );
    let first = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.on_publish("slow", publish(&[("a", json!(1))])).await })
    };
    // Wait until the first call reached the service.
    while slow.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let quick = h
        .on_publish("quick", publish(&[("q", json!(1))]))
        .await
        .unwrap();
    assert_eq!(delivered(&quick[0]), json!(1));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the other namespace waited {:?}",
        started.elapsed()
    );
    let refused = h
        .on_publish("slow", publish(&[("b", json!(1))]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, HandlerError::Overloaded(_)),
        "{refused:?}"
    );
    let out = first.await.unwrap().unwrap();
    let error = delivered(&out[0]);
    assert_eq!(error["type"], "TimeoutError");
}

#[tokio::test]
async fn load_errors_name_the_problem() {
    let err = |configs: &[DataSourceConfig], handlers: HandlerConfig| {
        Handlers::with_data_sources(&engine(), configs, [("chat", handlers)])
            .unwrap_err()
            .to_string()
    };
    let ddb = source(
        "table",
        DataSourceKind::AmazonDynamodb,
        "http://127.0.0.1:9",
    );
    let rr = "export const onPublish = { request: () => ({}), response: (ctx) => ctx.events }";
    let no_source = HandlerConfig {
        code: Some(rr.into()),
        ..Default::default()
    };
    assert!(
        err(&[], no_source).contains("set data_source"),
        "request/response needs a data source"
    );
    assert!(err(&[], code(rr, "missing")).contains("not in [[data_sources]]"));
    let direct = HandlerConfig {
        on_publish: Some(HttpHandlerConfig {
            url: String::new(),
            lambda: Some("table".into()),
            invoke_type: InvokeType::RequestResponse,
            timeout_ms: 1,
            headers: Default::default(),
        }),
        ..Default::default()
    };
    assert!(err(std::slice::from_ref(&ddb), direct).contains("not AWS_LAMBDA"));
    let mut no_fn = source("fn", DataSourceKind::AwsLambda, "http://127.0.0.1:9");
    no_fn.function = None;
    assert!(matches!(
        Handlers::with_data_sources(&engine(), &[no_fn], Vec::<(String, HandlerConfig)>::new()),
        Err(LoadError::DataSource { .. })
    ));
    let bad_export = code("export const onPublish = { response() {} }", "table");
    assert!(err(&[ddb], bad_export).contains("needs a request(ctx) function"));
}

/// Neither the secret nor the session token appears in errors or in `Debug` output.
#[tokio::test]
async fn credentials_stay_out_of_errors_and_debug() {
    let lambda =
        fixture::serve(|_, _| Reply::Json(403, json!({"message": "denied"}).to_string())).await;
    let mut config = source("fn", DataSourceKind::AwsLambda, &lambda.url(""));
    config.session_token = Some("TOKEN-SECRET".into());
    assert!(!format!("{config:?}").contains(SECRET));
    assert!(!format!("{config:?}").contains("TOKEN-SECRET"));
    let seen = Arc::new(Mutex::new(String::new()));
    let h = Handlers::with_data_sources(
        &engine(),
        &[config],
        [(
            "chat",
            code(
                r#"export const onPublish = {
                  request: () => ({ operation: 'Invoke', payload: {} }),
                  response(ctx) { return ctx.events.map(({ id }) => ({ id, payload: ctx.error })); },
                };"#,
                "fn",
            ),
        )],
    )
    .unwrap();
    let out = h
        .on_publish("chat", publish(&[("a", json!(1))]))
        .await
        .unwrap();
    let error = delivered(&out[0]);
    assert_eq!(error["type"], "Lambda:HTTP403");
    assert_eq!(error["message"], "denied");
    *seen.lock().unwrap() = format!("{h:?} {error}");
    let text = seen.lock().unwrap().clone();
    assert!(!text.contains(SECRET) && !text.contains("TOKEN-SECRET"));
    let hit = lambda.last().unwrap();
    assert_eq!(header(&hit, "x-amz-security-token"), "TOKEN-SECRET");
    assert_signed_with(&lambda, &hit, "lambda", Some("TOKEN-SECRET"));
}
