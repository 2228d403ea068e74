//! HTTP handlers end to end, against a real HTTP server on 127.0.0.1 inside the test.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use herald_handler::{
    EngineConfig, EventOutcome, HandlerConfig, HandlerError, Handlers, HttpHandlerConfig,
    IncomingEvent, InvokeType, PublishContext, RequestInfo, SubscribeContext,
};
use serde_json::{Value, json};

/// What the test server answers for a request body: `Some((status, body))`, or `None` to never answer.
type Script = Arc<dyn Fn(&Value) -> Option<(u16, String)> + Send + Sync>;

/// A request the server received: headers of interest and the parsed body.
struct Received {
    secret: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// Serves `script` on 127.0.0.1:0; returns the base URL and the stream of received requests.
async fn server(script: Script) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let script = Arc::clone(&script);
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let script = Arc::clone(&script);
                    let tx = tx.clone();
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let (secret, content_type) = (header("x-secret"), header("content-type"));
                        let bytes = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        let answer = script(&body);
                        let _ = tx
                            .send(Received {
                                secret,
                                content_type,
                                body,
                            })
                            .await;
                        let Some((status, text)) = answer else {
                            // Never answer: the client's timeout must fire.
                            return std::future::pending().await;
                        };
                        let response = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, rx)
}

fn http_handler(url: &str, invoke_type: InvokeType, timeout_ms: u64) -> HttpHandlerConfig {
    HttpHandlerConfig {
        url: url.to_owned(),
        lambda: None,
        invoke_type,
        timeout_ms,
        headers: [("x-secret".to_owned(), "s3cret".to_owned())].into(),
    }
}

fn load(
    on_publish: Option<HttpHandlerConfig>,
    on_subscribe: Option<HttpHandlerConfig>,
) -> Handlers {
    let config = HandlerConfig {
        on_publish,
        on_subscribe,
        ..Default::default()
    };
    Handlers::new(&EngineConfig::default(), [("default", config)]).unwrap()
}

fn publish() -> PublishContext {
    PublishContext {
        channel: "/default/channel".into(),
        identity: Some(json!({"sub": "user-1"})),
        request: RequestInfo::from_pairs([("x-forwarded-for", "1.1.1.1")], None),
        events: vec![
            IncomingEvent {
                id: "1".into(),
                payload: r#"{"data":"data_1"}"#.into(),
            },
            IncomingEvent {
                id: "2".into(),
                payload: r#"{"data":"data_2"}"#.into(),
            },
        ],
    }
}

fn subscribe(sub: &str) -> SubscribeContext {
    SubscribeContext {
        presence_info: None,
        channel: "/default/*".into(),
        identity: Some(json!({"sub": sub})),
        request: RequestInfo::default(),
    }
}

#[tokio::test]
async fn request_response_publish_transforms_and_fails_items() {
    let (url, mut rx) = server(Arc::new(|body: &Value| {
        let first = &body["events"][0];
        let answer = json!({"events": [
            {"id": first["id"], "payload": {"data": first["payload"]["data"], "by": body["identity"]["sub"]}},
            {"id": "2", "error": "rejected by policy"},
        ]});
        Some((200, answer.to_string()))
    }))
    .await;
    let h = load(
        Some(http_handler(
            &format!("{url}/publish"),
            InvokeType::RequestResponse,
            2_000,
        )),
        None,
    );
    assert!(h.has_on_publish("default") && !h.has_on_subscribe("default"));
    let out = h.on_publish("default", publish()).await.unwrap();
    let EventOutcome::Deliver(first) = &out[0] else {
        panic!("expected Deliver, got {:?}", out[0]);
    };
    assert_eq!(
        serde_json::from_str::<Value>(first).unwrap(),
        json!({"data": "data_1", "by": "user-1"})
    );
    assert!(
        matches!(&out[1], EventOutcome::Failed { message, .. } if message == "rejected by policy")
    );

    let got = rx.recv().await.unwrap();
    assert_eq!(got.secret.as_deref(), Some("s3cret"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.body,
        json!({"identity": {"sub": "user-1"}, "result": null,
               "request": {"headers": {"x-forwarded-for": "1.1.1.1"}, "domainName": null},
               "info": {"channel": {"path": "/default/channel", "segments": ["default", "channel"]},
                        "channelNamespace": {"name": "default"}, "operation": "PUBLISH"},
               "error": null, "prev": null, "stash": {}, "outErrors": [],
               "events": [{"id": "1", "payload": {"data": "data_1"}}, {"id": "2", "payload": {"data": "data_2"}}]})
    );
}

#[tokio::test]
async fn request_response_publish_error_rejects_the_request() {
    let (url, _rx) = server(Arc::new(|_: &Value| {
        Some((200, r#"{"error":"not allowed"}"#.to_owned()))
    }))
    .await;
    let h = load(
        Some(http_handler(&url, InvokeType::RequestResponse, 2_000)),
        None,
    );
    let err = h.on_publish("default", publish()).await.unwrap_err();
    assert_eq!(
        err,
        HandlerError::Error {
            message: "not allowed".into(),
            error_type: None
        }
    );
}

#[tokio::test]
async fn request_response_subscribe_allows_and_denies() {
    let (url, mut rx) = server(Arc::new(|body: &Value| {
        assert_eq!(body["info"]["operation"], "SUBSCRIBE");
        assert_eq!(body["events"], Value::Null);
        if body["identity"]["sub"] == "admin" {
            Some((200, "null".to_owned()))
        } else {
            Some((200, r#"{"error":"admins only"}"#.to_owned()))
        }
    }))
    .await;
    let h = load(
        None,
        Some(http_handler(&url, InvokeType::RequestResponse, 2_000)),
    );
    assert_eq!(h.on_subscribe("default", subscribe("admin")).await, Ok(()));
    let err = h
        .on_subscribe("default", subscribe("guest"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HandlerError::Error { message, .. } if message == "admins only"),
        "{err:?}"
    );
    assert_eq!(
        rx.recv().await.unwrap().body["info"]["channel"]["path"],
        "/default/*"
    );
}

#[tokio::test]
async fn event_invocation_is_fire_and_forget() {
    // The server's answer would drop everything; EVENT must ignore it and broadcast unchanged.
    let (url, mut rx) = server(Arc::new(|_: &Value| {
        Some((200, r#"{"events":[]}"#.to_owned()))
    }))
    .await;
    let h = load(
        Some(http_handler(&url, InvokeType::Event, 2_000)),
        Some(http_handler(&url, InvokeType::Event, 2_000)),
    );
    let out = h.on_publish("default", publish()).await.unwrap();
    assert_eq!(
        out,
        vec![
            EventOutcome::Deliver(r#"{"data":"data_1"}"#.into()),
            EventOutcome::Deliver(r#"{"data":"data_2"}"#.into()),
        ]
    );
    let got = rx.recv().await.unwrap();
    assert_eq!(got.body["events"][1]["id"], "2");
    assert_eq!(h.on_subscribe("default", subscribe("anyone")).await, Ok(()));
    assert_eq!(
        rx.recv().await.unwrap().body["info"]["operation"],
        "SUBSCRIBE"
    );
}

#[tokio::test]
async fn timeout_fails_the_operation() {
    let (url, _rx) = server(Arc::new(|_: &Value| None)).await;
    let h = load(
        Some(http_handler(&url, InvokeType::RequestResponse, 150)),
        None,
    );
    let started = std::time::Instant::now();
    let err = h.on_publish("default", publish()).await.unwrap_err();
    assert!(
        matches!(err, HandlerError::Timeout { limit_ms: 150, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn transport_and_status_errors_fail_the_operation() {
    let (url, _rx) = server(Arc::new(|_: &Value| Some((500, "oops".to_owned())))).await;
    let h = load(
        Some(http_handler(&url, InvokeType::RequestResponse, 2_000)),
        None,
    );
    let err = h.on_publish("default", publish()).await.unwrap_err();
    assert!(
        matches!(&err, HandlerError::Http { reason, .. } if reason.contains("500")),
        "{err:?}"
    );

    // A port nobody listens on: bind, note the port, close.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let h = load(
        Some(http_handler(&closed, InvokeType::RequestResponse, 2_000)),
        None,
    );
    let err = h.on_publish("default", publish()).await.unwrap_err();
    assert!(matches!(err, HandlerError::Http { .. }), "{err:?}");
}

#[tokio::test]
async fn malformed_answer_is_invalid() {
    let (url, _rx) = server(Arc::new(|_: &Value| {
        Some((200, r#"{"events":[{"id":"9","payload":1}]}"#.to_owned()))
    }))
    .await;
    let h = load(
        Some(http_handler(&url, InvokeType::RequestResponse, 2_000)),
        None,
    );
    let err = h.on_publish("default", publish()).await.unwrap_err();
    assert!(
        matches!(&err, HandlerError::Invalid { reason, .. } if reason.contains("unknown id")),
        "{err:?}"
    );
}

#[test]
fn config_conflicts_and_bad_urls_fail_at_load() {
    let both = HandlerConfig {
        code: Some("export const onPublish = (c) => c.events".into()),
        on_publish: Some(http_handler(
            "http://127.0.0.1:9",
            InvokeType::RequestResponse,
            100,
        )),
        ..Default::default()
    };
    let err = Handlers::new(&EngineConfig::default(), [("default", both)]).unwrap_err();
    assert!(
        err.to_string()
            .contains("both exported by the code and configured as an HTTP handler"),
        "{err}"
    );

    let bad = HandlerConfig {
        on_subscribe: Some(http_handler(
            "ftp://127.0.0.1/x",
            InvokeType::RequestResponse,
            100,
        )),
        ..Default::default()
    };
    let err = Handlers::new(&EngineConfig::default(), [("default", bad)]).unwrap_err();
    assert!(err.to_string().contains("namespace default"), "{err}");
}
