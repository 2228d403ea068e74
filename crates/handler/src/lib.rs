//! Namespace handlers for Herald: AppSync-style `onPublish` / `onSubscribe` in embedded
//! JavaScript (QuickJS-ng via rquickjs) or as an HTTP endpoint ("direct Lambda" contract).
//!
//! Layout:
//! - `config`: [`EngineConfig`] (limits, threads), [`HandlerConfig`] (one per namespace) and
//!   [`DataSourceConfig`] (one per data source).
//! - `context`: [`PublishContext`] / [`SubscribeContext`] and their JSON form (spec §6).
//! - `outcome`: returned events → one [`EventOutcome`] per incoming event; the 240 KB check.
//! - `js`: the worker threads, each with a QuickJS runtime and a context per namespace, fed by
//!   one bounded queue per namespace served in turn (`js/queue.rs`), so that one namespace's
//!   slow or failing handler cannot delay the others' calls.
//! - `http`: POSTing the context to an HTTP handler and reading its answer; calls in flight are
//!   capped per namespace for the same reason.
//! - `source`: data sources (Lambda, DynamoDB, EventBridge, HTTP) that `{request, response}`
//!   handlers and `DIRECT` Lambda handlers call. A data-source handler is two JavaScript calls
//!   (`request`, `response`) with the service call between them made here, on the async
//!   runtime, under the data source's timeout and in-flight bound: no JavaScript thread waits.
//!
//! The server builds one [`Handlers`] at startup (load errors name the namespace and line) and
//! calls [`Handlers::on_publish`] / [`Handlers::on_subscribe`] from its async tasks.

#![warn(missing_docs)]

mod config;
mod context;
mod error;
mod http;
mod js;
mod outcome;
mod source;

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use config::{
    DataSourceConfig, DataSourceKind, EngineConfig, HandlerConfig, HttpHandlerConfig, InvokeType,
};
pub use context::{HeaderValue, IncomingEvent, PublishContext, RequestInfo, SubscribeContext};
pub use error::{HandlerError, LoadError, Operation};
pub use outcome::{
    CODE_HANDLER_ERROR, CODE_TOO_LARGE, EventOutcome, MAX_EVENT_BYTES, MESSAGE_TOO_LARGE,
};

use std::sync::Arc;

use http::{Answer, HttpInvoker, NamespaceSlots};
use js::{JsPool, JsSource, Phase};
use source::{CallError, DataSource};

/// Where one operation of a namespace goes.
enum Target {
    /// No handler: publish forwards everything, subscribe allows.
    None,
    /// JavaScript context at this index in the pool.
    Js(usize),
    /// A `{request, response}` export in the JavaScript context at `index`, calling `source`.
    JsData {
        index: usize,
        source: Arc<DataSource>,
    },
    /// `DIRECT`: the context is the payload of a Lambda Invoke.
    Direct {
        source: Arc<DataSource>,
        invoke: InvokeType,
    },
    /// An HTTP endpoint; `slots` is shared by the namespace's two operations.
    Http {
        config: HttpHandlerConfig,
        slots: NamespaceSlots,
    },
}

struct Namespace {
    publish: Target,
    subscribe: Target,
}

/// All namespaces' handlers. `Send + Sync`; share it behind an `Arc`.
///
/// Dropping it stops the JavaScript threads after their current call.
pub struct Handlers {
    namespaces: HashMap<String, Namespace>,
    js: Option<JsPool>,
    http: Option<HttpInvoker>,
    max_event_bytes: usize,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Handlers {
    /// Loads every namespace's handlers: reads code files, compiles and evaluates each module
    /// on every JavaScript worker, and checks the HTTP URLs. Blocks until done (milliseconds);
    /// call it at startup or from `check-config`.
    ///
    /// Fails with the namespace (and line, for syntax errors) when code does not load, when a
    /// module exports neither handler, or when an operation is both exported and sent to HTTP.
    pub fn new<I, S>(engine: &EngineConfig, namespaces: I) -> Result<Self, LoadError>
    where
        I: IntoIterator<Item = (S, HandlerConfig)>,
        S: Into<String>,
    {
        Self::with_data_sources(engine, &[], namespaces)
    }

    /// [`Handlers::new`] with the API's data sources (`[[data_sources]]`), which namespaces
    /// reference by name. Also fails when a reference names no data source, or a `DIRECT`
    /// handler names one that is not a Lambda.
    pub fn with_data_sources<I, S>(
        engine: &EngineConfig,
        data_sources: &[DataSourceConfig],
        namespaces: I,
    ) -> Result<Self, LoadError>
    where
        I: IntoIterator<Item = (S, HandlerConfig)>,
        S: Into<String>,
    {
        let data = source::build(data_sources)?;
        let mut configs = Vec::new();
        let mut sources = Vec::new();
        for (name, config) in namespaces {
            let name = name.into();
            if configs.iter().any(|(n, _, _)| *n == name) {
                return Err(LoadError::Config {
                    namespace: name,
                    reason: "handlers are configured twice for this namespace".into(),
                });
            }
            let source = read_code(&name, &config)?;
            for http in [&config.on_publish, &config.on_subscribe]
                .into_iter()
                .flatten()
            {
                match (&http.lambda, http.url.is_empty()) {
                    (None, _) => check_url(&name, &http.url)?,
                    (Some(_), true) => {}
                    (Some(_), false) => {
                        return Err(LoadError::Config {
                            namespace: name,
                            reason: "set either http or lambda for an operation, not both".into(),
                        });
                    }
                }
            }
            let js_index = source.map(|s| {
                sources.push(s);
                sources.len() - 1
            });
            configs.push((name, config, js_index));
        }
        let (js, exports) = if sources.is_empty() {
            (None, Vec::new())
        } else {
            let (pool, exports) = JsPool::start(sources, engine)?;
            (Some(pool), exports)
        };
        let mut map = HashMap::with_capacity(configs.len());
        let mut any_http = false;
        for (name, config, js_index) in configs {
            let exported = js_index
                .and_then(|i| exports.get(i).copied())
                .unwrap_or_default();
            if js_index.is_some() && !exported.on_publish && !exported.on_subscribe {
                return Err(LoadError::Config {
                    namespace: name,
                    reason: "the handler code exports neither onPublish nor onSubscribe".into(),
                });
            }
            let slots = NamespaceSlots::new(engine.http_namespace_max_in_flight);
            let publish_source = config
                .publish_data_source
                .as_ref()
                .or(config.data_source.as_ref());
            let subscribe_source = config
                .subscribe_data_source
                .as_ref()
                .or(config.data_source.as_ref());
            let publish = target(
                &name,
                Operation::Publish,
                config.on_publish,
                Exported {
                    any: exported.on_publish,
                    request: exported.publish_request,
                },
                js_index,
                &slots,
                (&data, publish_source),
            )?;
            let subscribe = target(
                &name,
                Operation::Subscribe,
                config.on_subscribe,
                Exported {
                    any: exported.on_subscribe,
                    request: exported.subscribe_request,
                },
                js_index,
                &slots,
                (&data, subscribe_source),
            )?;
            any_http |=
                matches!(publish, Target::Http { .. }) || matches!(subscribe, Target::Http { .. });
            map.insert(name, Namespace { publish, subscribe });
        }
        let http = if any_http {
            Some(HttpInvoker::new(engine.http_max_in_flight).map_err(LoadError::Engine)?)
        } else {
            None
        };
        Ok(Self {
            namespaces: map,
            js,
            http,
            max_event_bytes: MAX_EVENT_BYTES,
        })
    }

    /// Sets the largest event delivered after transformation (default [`MAX_EVENT_BYTES`]);
    /// pass the server's `limits.max_event_bytes`.
    #[must_use]
    pub fn with_max_event_bytes(mut self, max_event_bytes: usize) -> Self {
        self.max_event_bytes = max_event_bytes;
        self
    }

    /// Whether publishing to `namespace` runs a handler. When false, `on_publish` forwards the
    /// events unchanged and the server may skip calling it.
    pub fn has_on_publish(&self, namespace: &str) -> bool {
        self.namespaces
            .get(namespace)
            .is_some_and(|n| !matches!(n.publish, Target::None))
    }

    /// Whether subscribing in `namespace` runs a handler.
    pub fn has_on_subscribe(&self, namespace: &str) -> bool {
        self.namespaces
            .get(namespace)
            .is_some_and(|n| !matches!(n.subscribe, Target::None))
    }

    /// Runs `onPublish`. On success returns one outcome per `ctx.events` entry, in order:
    /// deliver (possibly transformed, at most the event size limit), dropped, or failed.
    /// On error the whole publish fails (see [`HandlerError`] for the wire mapping).
    pub async fn on_publish(
        &self,
        namespace: &str,
        ctx: PublishContext,
    ) -> Result<Vec<EventOutcome>, HandlerError> {
        let op = Operation::Publish;
        let target = self
            .namespaces
            .get(namespace)
            .map_or(&Target::None, |n| &n.publish);
        let returned = match target {
            Target::None => return Ok(unchanged(ctx, self.max_event_bytes)),
            Target::Js(index) => {
                let json = ctx
                    .to_json(namespace)
                    .map_err(|r| context::invalid_input(namespace, op, r))?;
                let out = self
                    .js_call(*index, namespace, op, Phase::Handler, json, None)
                    .await?;
                js_result(namespace, op, &out)?
            }
            Target::JsData { index, source } => {
                let json = ctx
                    .to_json(namespace)
                    .map_err(|r| context::invalid_input(namespace, op, r))?;
                self.data_call(*index, source, namespace, op, json).await?
            }
            Target::Direct { source, invoke } => {
                let json = ctx
                    .to_json(namespace)
                    .map_err(|r| context::invalid_input(namespace, op, r))?;
                match direct_call(source, *invoke, namespace, op, json).await? {
                    None => return Ok(unchanged(ctx, self.max_event_bytes)),
                    Some(body) => match http::publish_events(&body) {
                        Ok(Ok(events)) => events,
                        Ok(Err(message)) => return Err(rejected(namespace, op, message)),
                        Err(reason) => return Err(logged(invalid(namespace, op, reason))),
                    },
                }
            }
            Target::Http { config, slots } => {
                let json = ctx
                    .to_json(namespace)
                    .map_err(|r| context::invalid_input(namespace, op, r))?;
                match self.http_call(namespace, op, config, slots, json).await? {
                    Answer::Sent => return Ok(unchanged(ctx, self.max_event_bytes)),
                    Answer::Body(body) => match http::publish_events(&body) {
                        Ok(Ok(events)) => events,
                        Ok(Err(message)) => return Err(rejected(namespace, op, message)),
                        Err(reason) => return Err(logged(invalid(namespace, op, reason))),
                    },
                }
            }
        };
        let ids: Vec<&str> = ctx.events.iter().map(|e| e.id.as_str()).collect();
        outcome::match_events(&ids, &returned, self.max_event_bytes)
            .map_err(|reason| logged(invalid(namespace, op, reason)))
    }

    /// Runs `onSubscribe`: `Ok(())` allows the subscription.
    pub async fn on_subscribe(
        &self,
        namespace: &str,
        ctx: SubscribeContext,
    ) -> Result<(), HandlerError> {
        let op = Operation::Subscribe;
        let target = self
            .namespaces
            .get(namespace)
            .map_or(&Target::None, |n| &n.subscribe);
        match target {
            Target::None => Ok(()),
            Target::Js(index) => {
                let json = ctx
                    .to_json(namespace)
                    .map_err(|r| context::invalid_input(namespace, op, r))?;
                let out = self
                    .js_call(*index, namespace, op, Phase::Handler, json, None)
                    .await?;
                // onSubscribe's return value is ignored, as in AppSync.
                js_result(namespace, op, &out).map(|_| ())
            }
            Target::JsData { index, source } => {
                let json = ctx
                    .to_json(namespace)
                    .map_err(|r| context::invalid_input(namespace, op, r))?;
                self.data_call(*index, source, namespace, op, json)
                    .await
                    .map(|_| ())
            }
            Target::Direct { source, invoke } => {
                let json = ctx
                    .to_json(namespace)
                    .map_err(|r| context::invalid_input(namespace, op, r))?;
                match direct_call(source, *invoke, namespace, op, json).await? {
                    None => Ok(()),
                    Some(body) => match http::subscribe_verdict(&body) {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(message)) => Err(rejected(namespace, op, message)),
                        Err(reason) => Err(logged(invalid(namespace, op, reason))),
                    },
                }
            }
            Target::Http { config, slots } => {
                let json = ctx
                    .to_json(namespace)
                    .map_err(|r| context::invalid_input(namespace, op, r))?;
                match self.http_call(namespace, op, config, slots, json).await? {
                    Answer::Sent => Ok(()),
                    Answer::Body(body) => match http::subscribe_verdict(&body) {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(message)) => Err(rejected(namespace, op, message)),
                        Err(reason) => Err(logged(invalid(namespace, op, reason))),
                    },
                }
            }
        }
    }

    async fn js_call(
        &self,
        index: usize,
        namespace: &str,
        op: Operation,
        phase: Phase,
        json: String,
        extra: Option<String>,
    ) -> Result<String, HandlerError> {
        let Some(js) = &self.js else {
            return Err(HandlerError::Internal(
                "no JavaScript engine is running".into(),
            ));
        };
        js.call(index, namespace, op, phase, json, extra)
            .await
            .map_err(logged)
    }

    /// A `{request, response}` handler: `request` on a JavaScript thread, the data source call
    /// here on the async runtime (no JavaScript thread waits for it), then `response` on a
    /// JavaScript thread with `ctx.result` / `ctx.error` and the stash `request` left. Returns
    /// the value's JSON text, as [`js_result`].
    async fn data_call(
        &self,
        index: usize,
        source: &DataSource,
        namespace: &str,
        op: Operation,
        json: String,
    ) -> Result<String, HandlerError> {
        let out = self
            .js_call(index, namespace, op, Phase::Request, json.clone(), None)
            .await?;
        let (request, stash) = match js_request(namespace, op, &out)? {
            Step::Done(value) => return Ok(value), // runtime.earlyReturn: no call, no response
            Step::Call { request, stash } => (request, stash),
        };
        let (result, error) = match source.call(request).await {
            Ok(value) => (value, serde_json::Value::Null),
            Err(CallError::Overloaded(reason)) => {
                return Err(logged(HandlerError::Overloaded(reason)));
            }
            Err(CallError::Invalid(reason)) => {
                return Err(logged(invalid(
                    namespace,
                    op,
                    format!("request object for data source {}: {reason}", source.name),
                )));
            }
            Err(CallError::Failed {
                message,
                error_type,
            }) => {
                tracing::debug!(namespace, operation = %op, source = %source.name,
                    error_type = %error_type, message = %message, "data source call failed");
                (
                    serde_json::Value::Null,
                    serde_json::json!({ "message": message, "type": error_type }),
                )
            }
        };
        let extra = serde_json::json!({ "result": result, "error": error, "stash": stash });
        let out = self
            .js_call(
                index,
                namespace,
                op,
                Phase::Response,
                json,
                Some(extra.to_string()),
            )
            .await?;
        js_result(namespace, op, &out)
    }

    async fn http_call(
        &self,
        namespace: &str,
        op: Operation,
        config: &HttpHandlerConfig,
        slots: &NamespaceSlots,
        json: String,
    ) -> Result<Answer, HandlerError> {
        let Some(http) = &self.http else {
            return Err(HandlerError::Internal("no HTTP client was built".into()));
        };
        http.invoke(namespace, op, config, slots, json)
            .await
            .map_err(logged)
    }
}

/// `DIRECT` Lambda: the answer body (`None` for `EVENT`), or the failure as a handler error.
async fn direct_call(
    source: &DataSource,
    invoke: InvokeType,
    namespace: &str,
    op: Operation,
    json: String,
) -> Result<Option<Vec<u8>>, HandlerError> {
    source
        .invoke_direct(json, invoke)
        .await
        .map_err(|e| match e {
            CallError::Overloaded(reason) => HandlerError::Overloaded(reason),
            CallError::Invalid(reason) => invalid(namespace, op, reason),
            CallError::Failed {
                message,
                error_type,
            } => HandlerError::DataSource {
                namespace: namespace.to_owned(),
                operation: op,
                source_name: source.name.clone(),
                reason: format!("{error_type}: {message}"),
            },
        })
        .map_err(logged)
}

/// What a `request` step decided.
enum Step {
    /// `runtime.earlyReturn(value)`: the handler's value, as JSON text.
    Done(String),
    /// Call the data source with this request object; carry the stash to `response`.
    Call {
        request: serde_json::Value,
        stash: serde_json::Value,
    },
}

fn js_request(namespace: &str, op: Operation, out: &str) -> Result<Step, HandlerError> {
    #[derive(Deserialize)]
    struct RequestOut {
        t: String,
        #[serde(default)]
        v: serde_json::Value,
        #[serde(default)]
        s: serde_json::Value,
    }
    if let Ok(RequestOut { t, v, s }) = serde_json::from_str::<RequestOut>(out)
        && t == "request"
    {
        return Ok(Step::Call {
            request: v,
            stash: s,
        });
    }
    js_result(namespace, op, out).map(Step::Done)
}

/// The wrapper's answer (see `js/prelude.js`).
#[derive(Deserialize)]
struct JsOut<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    #[serde(borrow, default)]
    v: Option<&'a RawValue>,
    #[serde(default)]
    m: Option<String>,
    #[serde(default)]
    et: Option<String>,
}

/// Interprets the wrapper's JSON: the returned value's JSON text, or the error it signalled.
fn js_result(namespace: &str, op: Operation, out: &str) -> Result<String, HandlerError> {
    let out: JsOut<'_> = serde_json::from_str(out).map_err(|e| {
        HandlerError::Internal(format!("unreadable JavaScript wrapper answer: {e}"))
    })?;
    match out.t.as_ref() {
        "ok" => Ok(out
            .v
            .map_or_else(|| "null".to_owned(), |v| v.get().to_owned())),
        "error" => Err(HandlerError::Error {
            message: out.m.unwrap_or_default(),
            error_type: out.et,
        }),
        "unauthorized" => Err(HandlerError::Unauthorized),
        _ => Err(logged(HandlerError::Thrown {
            namespace: namespace.to_owned(),
            operation: op,
            message: out.m.unwrap_or_default(),
        })),
    }
}

fn unchanged(ctx: PublishContext, max_bytes: usize) -> Vec<EventOutcome> {
    ctx.events
        .into_iter()
        .map(|e| EventOutcome::deliver(e.payload, max_bytes))
        .collect()
}

fn invalid(namespace: &str, op: Operation, reason: String) -> HandlerError {
    HandlerError::Invalid {
        namespace: namespace.to_owned(),
        operation: op,
        reason,
    }
}

/// `{"error": msg}` from an HTTP handler: rejects like `util.error`; AppSync only logs the text.
fn rejected(namespace: &str, op: Operation, message: String) -> HandlerError {
    tracing::info!(namespace, operation = %op, message, "HTTP handler rejected the request");
    HandlerError::Error {
        message,
        error_type: None,
    }
}

/// Logs handler failures whose details the client will not see.
fn logged(error: HandlerError) -> HandlerError {
    match &error {
        HandlerError::Unauthorized | HandlerError::Error { .. } => {}
        HandlerError::Overloaded(_) => tracing::debug!(error = %error, "handler call refused"),
        _ => tracing::warn!(error = %error, "handler failed"),
    }
    error
}

fn read_code(namespace: &str, config: &HandlerConfig) -> Result<Option<JsSource>, LoadError> {
    let (code, module_name) = match (&config.code, &config.code_file) {
        (Some(_), Some(_)) => {
            return Err(LoadError::Config {
                namespace: namespace.to_owned(),
                reason: "set either code or code_file, not both".into(),
            });
        }
        (Some(code), None) => (code.clone(), format!("{namespace}.js")),
        (None, Some(path)) => {
            let code = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
                namespace: namespace.to_owned(),
                path: path.clone(),
                error,
            })?;
            (code, path.display().to_string())
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(JsSource {
        namespace: namespace.to_owned(),
        module_name,
        code,
    }))
}

fn check_url(namespace: &str, url: &str) -> Result<(), LoadError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        Ok(_) => Err(LoadError::Config {
            namespace: namespace.to_owned(),
            reason: format!("HTTP handler URL {url:?} must be http:// or https:// with a host"),
        }),
        Err(e) => Err(LoadError::Config {
            namespace: namespace.to_owned(),
            reason: format!("HTTP handler URL {url:?} is invalid: {e}"),
        }),
    }
}

/// What the module exports for one operation.
#[derive(Clone, Copy)]
struct Exported {
    /// Anything (a function or a `{request, response}` object).
    any: bool,
    /// A `{request, response}` object.
    request: bool,
}

fn target(
    namespace: &str,
    op: Operation,
    http: Option<HttpHandlerConfig>,
    exported: Exported,
    js_index: Option<usize>,
    slots: &NamespaceSlots,
    (sources, data_source): (&source::DataSources, Option<&String>),
) -> Result<Target, LoadError> {
    let config_error = |reason: String| LoadError::Config {
        namespace: namespace.to_owned(),
        reason,
    };
    let find = |name: &str| {
        sources.get(name).cloned().ok_or_else(|| {
            config_error(format!(
                "{} references data source {name:?}, which is not in [[data_sources]]",
                op.handler_name()
            ))
        })
    };
    match (http, exported.any, js_index) {
        (Some(_), true, _) => Err(config_error(format!(
            "{} is both exported by the code and configured as an HTTP handler (or a direct Lambda); remove one",
            op.handler_name()
        ))),
        (Some(config), false, _) => match &config.lambda {
            Some(name) => {
                let source = find(name)?;
                if !source.is_lambda() {
                    return Err(config_error(format!(
                        "{}: data source {name:?} is not AWS_LAMBDA; only a Lambda can be invoked directly",
                        op.handler_name()
                    )));
                }
                Ok(Target::Direct {
                    source,
                    invoke: config.invoke_type,
                })
            }
            None => Ok(Target::Http {
                config,
                slots: slots.clone(),
            }),
        },
        (None, true, Some(index)) if exported.request => match data_source {
            Some(name) => Ok(Target::JsData {
                index,
                source: find(name)?,
            }),
            None => Err(config_error(format!(
                "{} is a {{request, response}} data-source handler: set data_source for it",
                op.handler_name()
            ))),
        },
        (None, true, Some(index)) => Ok(Target::Js(index)),
        _ => Ok(Target::None),
    }
}
