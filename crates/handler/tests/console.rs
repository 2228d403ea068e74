//! `console.*` in a handler reaches tracing, tagged with the namespace. Its own test binary: the
//! capturing subscriber must be process-global because handlers log from the JavaScript threads.

use std::sync::Mutex;

use herald_handler::{
    EngineConfig, HandlerConfig, Handlers, IncomingEvent, PublishContext, RequestInfo,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// (level, namespace, message) of every console event.
static SEEN: Mutex<Vec<(Level, String, String)>> = Mutex::new(Vec::new());

struct Capture;

#[derive(Default)]
struct Fields {
    namespace: String,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "namespace" {
            self.namespace = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "herald_handler::console"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Ok(mut seen) = SEEN.lock() {
            seen.push((*event.metadata().level(), fields.namespace, fields.message));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn console_goes_to_tracing_with_the_namespace() {
    tracing::subscriber::set_global_default(Capture).unwrap();
    let config = HandlerConfig {
        code: Some(
            "export function onPublish(ctx) {
               console.log('got', ctx.events.length, {channel: ctx.info.channel.path});
               console.warn('careful');
               console.error(new Error('bad'));
               console.debug('x'.repeat(10000));
               return ctx.events;
             }"
            .into(),
        ),
        ..Default::default()
    };
    let h = Handlers::new(&EngineConfig::default(), [("logs", config)]).unwrap();
    let ctx = PublishContext {
        channel: "/logs/a".into(),
        identity: None,
        request: RequestInfo::default(),
        events: vec![IncomingEvent {
            id: "1".into(),
            payload: "1".into(),
        }],
    };
    h.on_publish("logs", ctx).await.unwrap();
    // The call has returned, so its console events were recorded before the reply was sent.
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|(_, ns, _)| ns == "logs"));
    assert_eq!(
        (seen[0].0, seen[0].2.as_str()),
        (Level::INFO, r#"got 1 {"channel":"/logs/a"}"#)
    );
    assert_eq!((seen[1].0, seen[1].2.as_str()), (Level::WARN, "careful"));
    assert_eq!(seen[2].0, Level::ERROR);
    assert!(seen[2].2.starts_with("Error: bad"), "{}", seen[2].2);
    assert_eq!(seen[3].0, Level::DEBUG);
    assert_eq!(seen[3].2.len(), 4096, "long lines are cut");
}
