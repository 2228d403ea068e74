//! Configuration: engine-wide limits ([`EngineConfig`]) and one [`HandlerConfig`] per namespace.
//!
//! Both deserialize from the server's TOML with serde; see `docs/handlers.md` for the exact shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Engine-wide settings shared by every namespace (`[handlers]` in the server config).
///
/// Every field has a default, so an absent table is valid.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Dedicated OS threads running JavaScript. Each owns one QuickJS runtime holding every
    /// namespace's compiled module, so memory grows with `js_workers`.
    pub js_workers: usize,
    /// Calls that may wait for a free JavaScript thread, all namespaces together. When full, the
    /// newest waiting call of the namespace with the most waiting is refused
    /// ([`HandlerError::Overloaded`](crate::HandlerError::Overloaded)) to make room; if that is
    /// the caller's own namespace, the new call is refused instead. So one namespace's backlog
    /// never refuses another namespace's calls.
    pub js_queue: usize,
    /// Calls of one namespace that may wait for a JavaScript thread. Past it, that namespace's
    /// calls fail at once with `Overloaded`; other namespaces' queues are separate.
    pub js_namespace_queue: usize,
    /// JavaScript threads one namespace may occupy at once. Absent: `js_workers - 1` when two or
    /// more namespaces have JavaScript handlers (one thread is always left to the others), else
    /// `js_workers`. Clamped to `1..=js_workers`. Namespaces with waiting calls take free threads
    /// in turn, whatever the length of their queues.
    pub js_namespace_workers: Option<usize>,
    /// Longest time a call waits for a JavaScript thread; past it, it fails with `Overloaded`
    /// (the time limit of the call itself is `js_time_limit_ms`).
    pub js_queue_timeout_ms: u64,
    /// Wall-clock limit for one handler call (and for a module's top-level code at load).
    pub js_time_limit_ms: u64,
    /// Heap limit of each worker's runtime, in MiB: all namespaces on that worker share it.
    pub js_memory_limit_mib: usize,
    /// Fire-and-forget (`EVENT`) HTTP invocations allowed in flight at once, all namespaces
    /// together; past this, the operation fails with `Overloaded` rather than piling up requests.
    pub http_max_in_flight: usize,
    /// HTTP handler calls (both invoke types) one namespace may have in flight at once; past it,
    /// that namespace's calls fail at once with `Overloaded`. Keeps a namespace whose endpoint
    /// hangs from holding every request slot and socket.
    pub http_namespace_max_in_flight: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            js_workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            js_queue: 256,
            js_namespace_queue: 64,
            js_namespace_workers: None,
            js_queue_timeout_ms: 5_000,
            js_time_limit_ms: 1_000,
            js_memory_limit_mib: 64,
            http_max_in_flight: 256,
            http_namespace_max_in_flight: 64,
        }
    }
}

/// One namespace's handlers (`[namespaces.<name>.handlers]`, or wherever the server nests it).
///
/// JavaScript comes from `code` or `code_file` (one module exporting `onPublish` and/or
/// `onSubscribe`); an operation can instead go to an HTTP endpoint with `on_publish` /
/// `on_subscribe`. An operation may not be both exported by the code and sent over HTTP:
/// loading fails and says which.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// Inline JavaScript module source.
    pub code: Option<String>,
    /// Path of a JavaScript module file, read once at load. Relative paths are resolved by the
    /// caller (see [`HandlerConfig::resolve_paths`]); otherwise against the working directory.
    pub code_file: Option<PathBuf>,
    /// Send `onPublish` to an HTTP endpoint instead of JavaScript.
    pub on_publish: Option<HttpHandlerConfig>,
    /// Send `onSubscribe` to an HTTP endpoint instead of JavaScript.
    pub on_subscribe: Option<HttpHandlerConfig>,
    /// The data source (a `[[data_sources]]` name) that `{request, response}` exports call:
    /// AppSync's `integration.dataSourceName` with `behavior = CODE`, for both operations unless
    /// overridden below.
    pub data_source: Option<String>,
    /// `onPublish`'s data source, when it differs from `data_source`.
    pub publish_data_source: Option<String>,
    /// `onSubscribe`'s data source, when it differs from `data_source`.
    pub subscribe_data_source: Option<String>,
}

impl HandlerConfig {
    /// Makes a relative `code_file` relative to `base` (usually the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(path) = &self.code_file
            && path.is_relative()
        {
            self.code_file = Some(base.join(path));
        }
    }
}

/// An HTTP handler ("direct Lambda" style): the context JSON is POSTed to `url`; or, with
/// `lambda`, AppSync's `DIRECT` behaviour: the context is the payload of a Lambda Invoke through
/// that `AWS_LAMBDA` data source. Exactly one of the two is set.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpHandlerConfig {
    /// `http://` or `https://` URL that receives the POST; empty when `lambda` is set.
    #[serde(rename = "http", default)]
    pub url: String,
    /// Name of an `AWS_LAMBDA` data source to invoke directly (`DIRECT` in AppSync).
    #[serde(default)]
    pub lambda: Option<String>,
    /// Wait for the answer (`REQUEST_RESPONSE`, default) or fire and forget (`EVENT`).
    #[serde(default)]
    pub invoke_type: InvokeType,
    /// Limit for the whole exchange (connect, send, answer); past it the operation fails.
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra request headers, e.g. a shared secret the endpoint checks.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl HttpHandlerConfig {
    /// AppSync's `DIRECT` behaviour through the `AWS_LAMBDA` data source `data_source`, with the
    /// default timeout and no extra headers.
    pub fn direct_lambda(data_source: &str, invoke_type: InvokeType) -> HttpHandlerConfig {
        HttpHandlerConfig {
            url: String::new(),
            lambda: Some(data_source.to_owned()),
            invoke_type,
            timeout_ms: default_http_timeout_ms(),
            headers: BTreeMap::new(),
        }
    }
}

fn default_http_timeout_ms() -> u64 {
    5_000
}

/// How an HTTP handler is invoked, named as AppSync names Lambda invoke types.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvokeType {
    /// Wait for the answer and apply it.
    #[default]
    RequestResponse,
    /// Send and do not wait: publish broadcasts the events unchanged, subscribe is allowed.
    Event,
}

/// One data source (`[[data_sources]]` in the server config): a service that
/// `{request, response}` handlers and `DIRECT` Lambda handlers call. Which keys apply depends
/// on `type`; loading checks that the ones a type needs are set.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataSourceConfig {
    /// Referenced by `data_source` / `lambda` in a namespace's handlers.
    pub name: String,
    /// AppSync's data source type.
    #[serde(rename = "type")]
    pub kind: DataSourceKind,
    /// AWS region for signing and the default endpoint. Absent: `AWS_REGION`, then
    /// `AWS_DEFAULT_REGION`, then `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Base URL of the service: required for `HTTP`; for AWS types it replaces
    /// `https://<service>.<region>.amazonaws.com` (e.g. a local DynamoDB).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Static credentials; absent: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    /// `AWS_SESSION_TOKEN` from the environment when the data source is loaded.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret of `access_key_id`. Never logged.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials. Never logged.
    #[serde(default)]
    pub session_token: Option<String>,
    /// `AWS_LAMBDA`: the function name or ARN.
    #[serde(default)]
    pub function: Option<String>,
    /// `AMAZON_DYNAMODB`: the table single-item operations, queries and scans use.
    #[serde(default)]
    pub table: Option<String>,
    /// `AMAZON_EVENTBRIDGE`: the event bus name or ARN.
    #[serde(default)]
    pub event_bus: Option<String>,
    /// `HTTP`: headers added to every request (a request's own headers win).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `RELATIONAL_DATABASE`: `postgres://user:password@host:port/db` or `mysql://…` (MySQL and
    /// MariaDB). Holds a password: never logged, never in an error a client sees.
    #[serde(default)]
    pub database_url: Option<String>,
    /// `RELATIONAL_DATABASE`: connections the pool keeps open at most. A call that finds none
    /// free waits for one within `timeout_ms`.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Limit of one call (connect, send, answer); past it the call fails with `ctx.error`.
    #[serde(default = "default_source_timeout_ms")]
    pub timeout_ms: u64,
    /// Calls to this data source in flight at once, all namespaces together; past it a call
    /// fails at once with `LimitExceededError` rather than queueing behind a slow service.
    #[serde(default = "default_source_max_in_flight")]
    pub max_in_flight: usize,
}

impl std::fmt::Debug for DataSourceConfig {
    // By hand: the secret and the session token must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSourceConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("function", &self.function)
            .field("table", &self.table)
            .field("event_bus", &self.event_bus)
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

fn default_source_timeout_ms() -> u64 {
    5_000
}

fn default_pool_size() -> u32 {
    10
}

fn default_source_max_in_flight() -> usize {
    64
}

/// Data source types, named as AppSync names them.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DataSourceKind {
    /// Lambda Invoke API (SigV4 service `lambda`).
    AwsLambda,
    /// DynamoDB JSON API (SigV4 service `dynamodb`).
    AmazonDynamodb,
    /// EventBridge `PutEvents` (SigV4 service `events`).
    AmazonEventbridge,
    /// Any HTTP endpoint, unsigned.
    Http,
    /// An OpenSearch (or Elasticsearch-compatible) domain: its REST API, signed for `es`.
    AmazonOpensearchService,
    /// PostgreSQL or MySQL/MariaDB, reached directly with a connection pool (AppSync reaches
    /// Aurora through the RDS Data API; the request objects are the same).
    RelationalDatabase,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_handler_defaults() {
        let cfg: HandlerConfig = serde_json::from_str(
            r#"{"code":"export const onSubscribe = () => {}",
                "on_publish":{"http":"http://127.0.0.1:9/p","invoke_type":"EVENT"}}"#,
        )
        .unwrap();
        let http = cfg.on_publish.unwrap();
        assert_eq!(http.invoke_type, InvokeType::Event);
        assert_eq!(http.timeout_ms, 5_000);
        assert!(cfg.on_subscribe.is_none());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<HandlerConfig>(r#"{"cod":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn relative_code_file_is_resolved() {
        let mut cfg = HandlerConfig {
            code_file: Some("h/chat.js".into()),
            ..Default::default()
        };
        cfg.resolve_paths(Path::new("/etc/herald"));
        assert_eq!(cfg.code_file.unwrap(), Path::new("/etc/herald/h/chat.js"));
    }
}
