//! The examples in docs/handlers.md work as written.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use herald_handler::{
    EngineConfig, EventOutcome, HandlerConfig, HandlerError, Handlers, HttpHandlerConfig,
    IncomingEvent, InvokeType, PublishContext, RequestInfo, SubscribeContext,
};
use serde::Deserialize;
use serde_json::{Value, json};
use support::block;

fn publish(texts: &[&str], identity: Option<Value>) -> PublishContext {
    PublishContext {
        channel: "/chat/room1".into(),
        identity,
        request: RequestInfo::default(),
        events: texts
            .iter()
            .enumerate()
            .map(|(i, text)| IncomingEvent {
                id: i.to_string(),
                payload: json!({ "text": text }).to_string(),
            })
            .collect(),
    }
}

fn subscribe(channel: &str, identity: Option<Value>) -> SubscribeContext {
    SubscribeContext {
        presence_info: None,
        channel: channel.into(),
        identity,
        request: RequestInfo::default(),
    }
}

fn payload(outcome: &EventOutcome) -> Value {
    match outcome {
        EventOutcome::Deliver(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected Deliver, got {other:?}"),
    }
}

#[test]
fn config_example_parses() {
    #[derive(Deserialize)]
    struct Namespace {
        name: String,
        handlers: HandlerConfig,
    }
    #[derive(Deserialize)]
    struct Doc {
        handlers: EngineConfig,
        namespaces: Vec<Namespace>,
    }
    let doc: Doc = toml::from_str(block("config")).unwrap();
    // The values shown are the defaults.
    assert_eq!(
        doc.handlers,
        EngineConfig {
            js_workers: 2,
            ..EngineConfig::default()
        }
    );
    assert_eq!(doc.namespaces[0].name, "chat");
    assert!(doc.namespaces[0].handlers.code_file.is_some());
    let moderated = &doc.namespaces[1].handlers;
    let on_publish = moderated.on_publish.as_ref().unwrap();
    assert_eq!(
        (on_publish.invoke_type, on_publish.timeout_ms),
        (InvokeType::RequestResponse, 2000)
    );
    let on_subscribe = moderated.on_subscribe.as_ref().unwrap();
    assert_eq!(on_subscribe.headers["x-shared-secret"], "change-me");
}

#[tokio::test]
async fn javascript_example_works() {
    let config = HandlerConfig {
        code: Some(block("js-handler").to_owned()),
        ..Default::default()
    };
    let h = Handlers::new(&EngineConfig::default(), [("chat", config)]).unwrap();
    let out = h
        .on_publish(
            "chat",
            publish(&["hello", "buy spam now"], Some(json!({"sub": "ana"}))),
        )
        .await
        .unwrap();
    let first = payload(&out[0]);
    assert_eq!(
        (first["text"].as_str(), first["from"].as_str()),
        (Some("hello"), Some("ana"))
    );
    assert!(first["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(out[1], EventOutcome::Dropped);
    let out = h.on_publish("chat", publish(&["hi"], None)).await.unwrap();
    assert_eq!(payload(&out[0])["from"], "anonymous");

    let guest = Some(json!({"sub": "g", "groups": []}));
    let staff = Some(json!({"sub": "s", "groups": ["staff"]}));
    assert_eq!(
        h.on_subscribe("chat", subscribe("/chat/room1", guest.clone()))
            .await,
        Ok(())
    );
    assert_eq!(
        h.on_subscribe("chat", subscribe("/chat/staff/*", guest))
            .await,
        Err(HandlerError::Unauthorized)
    );
    assert_eq!(
        h.on_subscribe("chat", subscribe("/chat/staff/*", staff))
            .await,
        Ok(())
    );
}

#[tokio::test]
async fn http_example_works_when_node_is_installed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let script = block("http-handler").replace(
        ".listen(9000, '127.0.0.1');",
        &format!(".listen({port}, '127.0.0.1', () => console.log('ready'));"),
    );
    assert!(
        script.contains("console.log('ready')"),
        "the example's listen line changed"
    );
    let child = Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("node is not installed; skipping the HTTP example");
        return;
    };
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let url = format!("http://127.0.0.1:{port}/");
    let http = HttpHandlerConfig {
        url,
        lambda: None,
        invoke_type: InvokeType::RequestResponse,
        timeout_ms: 5_000,
        headers: Default::default(),
    };
    let config = HandlerConfig {
        on_publish: Some(http.clone()),
        on_subscribe: Some(http),
        ..Default::default()
    };
    let h = Handlers::new(&EngineConfig::default(), [("moderated", config)]).unwrap();
    let result = async {
        let out = h
            .on_publish("moderated", publish(&["hello", "spam"], None))
            .await?;
        let denied = h
            .on_subscribe("moderated", subscribe("/moderated/a", None))
            .await;
        let allowed = h
            .on_subscribe(
                "moderated",
                subscribe("/moderated/a", Some(json!({"sub": "u"}))),
            )
            .await;
        Ok::<_, HandlerError>((out, denied, allowed))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (out, denied, allowed) = result.unwrap();
    assert_eq!(payload(&out[0]), json!({"text": "hello", "checked": true}));
    assert!(
        matches!(&out[1], EventOutcome::Failed { message, .. } if message == "spam is not allowed")
    );
    assert!(
        matches!(&denied, Err(HandlerError::Error { message, .. }) if message == "sign in to subscribe")
    );
    assert_eq!(allowed, Ok(()));
}
