//! Data sources: the services `{request, response}` handlers and `DIRECT` Lambda handlers call
//! (AppSync's data source integrations).
//!
//! A call runs on the async runtime, never on a JavaScript thread: the handler's `request`
//! returns the request object, the caller awaits [`DataSource::call`], then `response` runs in a
//! second JavaScript call. Each data source has its own timeout and bound on calls in flight,
//! so a slow service delays only the namespaces that use it, and never a JavaScript thread.
//!
//! - `lambda`: the Lambda Invoke API; `eventbridge`: `PutEvents`; `dynamodb`: AppSync's DynamoDB
//!   request objects translated to the DynamoDB JSON API; `http`: AppSync's HTTP request object;
//!   `rds`: AppSync's SQL request objects run directly on PostgreSQL or MySQL/MariaDB;
//!   `opensearch`: AppSync's OpenSearch request object, signed for `es`.
//! - `sigv4`: signing for the AWS ones, on herald-auth's canonicalisation.

mod dynamodb;
mod eventbridge;
mod http;
mod lambda;
mod opensearch;
mod rds;
pub(crate) mod sigv4;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::{DataSourceConfig, DataSourceKind, InvokeType};
use crate::error::LoadError;
use sigv4::{Credentials, Signer};

/// Largest answer read from a data source.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a call produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The data source has `max_in_flight` calls running: refused at once.
    Overloaded(String),
    /// The request object is not one this data source takes (the handler's mistake).
    Invalid(String),
    /// The service failed or answered with an error: becomes `ctx.error` for `response`.
    Failed {
        /// `ctx.error.message`.
        message: String,
        /// `ctx.error.type`, `<Service>:<code>` as AppSync writes it.
        error_type: String,
    },
}

impl CallError {
    fn failed(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        CallError::Failed {
            message: message.into(),
            error_type: error_type.into(),
        }
    }
}

/// What a service answered over HTTP.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

enum Kind {
    Lambda {
        url: reqwest::Url,
        signer: Signer,
    },
    DynamoDb {
        url: reqwest::Url,
        table: Option<String>,
        signer: Signer,
    },
    EventBridge {
        url: reqwest::Url,
        bus: Option<String>,
        signer: Signer,
    },
    Http {
        endpoint: reqwest::Url,
        headers: BTreeMap<String, String>,
    },
    Sql(rds::Database),
    OpenSearch {
        endpoint: reqwest::Url,
        signer: Signer,
    },
}

/// One configured data source, ready to call. Shared by the namespaces that reference it.
pub(crate) struct DataSource {
    pub name: String,
    kind: Kind,
    timeout: Duration,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    client: reqwest::Client,
}

impl std::fmt::Debug for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// All data sources by name.
pub(crate) type DataSources = HashMap<String, Arc<DataSource>>;

/// Builds every data source, checking the keys each type needs. Credentials missing from the
/// config are read from the environment now.
pub(crate) fn build(configs: &[DataSourceConfig]) -> Result<DataSources, LoadError> {
    let mut out = HashMap::with_capacity(configs.len());
    if configs.is_empty() {
        return Ok(out);
    }
    // reqwest is built without a bundled provider; make ring the process default (no-op if the
    // server already installed one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| LoadError::Engine(format!("cannot build the HTTP client: {e}")))?;
    for config in configs {
        let err = |reason: String| LoadError::DataSource {
            name: config.name.clone(),
            reason,
        };
        if config.name.is_empty() {
            return Err(err("a data source needs a name".into()));
        }
        if out.contains_key(&config.name) {
            return Err(err("two data sources have this name".into()));
        }
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let kind = kind(config, timeout).map_err(err)?;
        let max_in_flight = config.max_in_flight.max(1);
        out.insert(
            config.name.clone(),
            Arc::new(DataSource {
                name: config.name.clone(),
                kind,
                timeout,
                permits: Arc::new(Semaphore::new(max_in_flight)),
                max_in_flight,
                client: client.clone(),
            }),
        );
    }
    Ok(out)
}

fn kind(config: &DataSourceConfig, timeout: Duration) -> Result<Kind, String> {
    let aws = |service: &'static str| -> Result<(reqwest::Url, Signer), String> {
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com"));
        let url = parse_base(&endpoint)?;
        let credentials = credentials(config)?;
        Ok((
            url,
            Signer {
                credentials,
                region,
                service,
            },
        ))
    };
    match config.kind {
        DataSourceKind::AwsLambda => {
            let function = config
                .function
                .as_deref()
                .filter(|f| !f.is_empty())
                .ok_or("an AWS_LAMBDA data source needs `function` (a name or ARN)")?;
            let (base, signer) = aws("lambda")?;
            let path = format!(
                "2015-03-31/functions/{}/invocations",
                sigv4::encode_segment(function)
            );
            let url = base
                .join(&path)
                .map_err(|e| format!("cannot build the Invoke URL: {e}"))?;
            Ok(Kind::Lambda { url, signer })
        }
        DataSourceKind::AmazonDynamodb => {
            let (url, signer) = aws("dynamodb")?;
            Ok(Kind::DynamoDb {
                url,
                table: config.table.clone(),
                signer,
            })
        }
        DataSourceKind::AmazonEventbridge => {
            let (url, signer) = aws("events")?;
            Ok(Kind::EventBridge {
                url,
                bus: config.event_bus.clone(),
                signer,
            })
        }
        DataSourceKind::Http => {
            let endpoint = config
                .endpoint
                .as_deref()
                .ok_or("an HTTP data source needs `endpoint`")?;
            Ok(Kind::Http {
                endpoint: parse_base(endpoint)?,
                headers: config.headers.clone(),
            })
        }
        DataSourceKind::AmazonOpensearchService => {
            if config.endpoint.as_deref().is_none_or(str::is_empty) {
                return Err(
                    "an AMAZON_OPENSEARCH_SERVICE data source needs `endpoint` (the domain's URL)"
                        .into(),
                );
            }
            let (endpoint, signer) = aws("es")?;
            Ok(Kind::OpenSearch { endpoint, signer })
        }
        DataSourceKind::RelationalDatabase => {
            let url = config
                .database_url
                .as_deref()
                .filter(|u| !u.is_empty())
                .ok_or("a RELATIONAL_DATABASE data source needs `database_url`")?;
            Ok(Kind::Sql(rds::Database::new(
                url,
                config.pool_size,
                timeout,
            )?))
        }
    }
}

/// An endpoint as a base URL ending in `/`, so that joining keeps its path.
fn parse_base(endpoint: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("endpoint {endpoint:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(format!(
            "endpoint {endpoint:?} must be http:// or https:// with a host"
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn credentials(config: &DataSourceConfig) -> Result<Credentials, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (id, secret, token) = match (&config.access_key_id, &config.secret_access_key) {
        (Some(id), Some(secret)) => (id.clone(), secret.clone(), config.session_token.clone()),
        (None, None) => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => (id, secret, env("AWS_SESSION_TOKEN")),
            _ => {
                return Err(
                    "no credentials: set access_key_id and secret_access_key, or \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
                        .into(),
                );
            }
        },
        _ => return Err("set both access_key_id and secret_access_key, or neither".into()),
    };
    Ok(Credentials {
        access_key_id: id,
        secret_access_key: secret,
        session_token: token,
    })
}

impl DataSource {
    /// Whether this is an `AWS_LAMBDA` data source (the only kind `DIRECT` handlers take).
    pub(crate) fn is_lambda(&self) -> bool {
        matches!(self.kind, Kind::Lambda { .. })
    }

    /// Runs the request object a handler's `request` returned; the value is `ctx.result`.
    pub(crate) async fn call(&self, request: Value) -> Result<Value, CallError> {
        let _permit = self.permit()?;
        let work = async {
            match &self.kind {
                Kind::Lambda { url, signer } => lambda::call(self, url, signer, request).await,
                Kind::DynamoDb { url, table, signer } => {
                    dynamodb::call(self, url, table.as_deref(), signer, request).await
                }
                Kind::EventBridge { url, bus, signer } => {
                    eventbridge::call(self, url, bus.as_deref(), signer, request).await
                }
                Kind::Http { endpoint, headers } => {
                    http::call(self, endpoint, headers, request).await
                }
                Kind::Sql(database) => rds::call(self, database, request).await,
                Kind::OpenSearch { endpoint, signer } => {
                    opensearch::call(self, endpoint, signer, request).await
                }
            }
        };
        if matches!(self.kind, Kind::Sql(_)) {
            // Keeps its own deadline, to close a connection whose statement outlives it.
            return work.await;
        }
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out()),
        }
    }

    /// `DIRECT`: invokes the Lambda with the handler context as its payload. `None` for
    /// `EVENT` (nothing to wait for); else the function's answer.
    pub(crate) async fn invoke_direct(
        &self,
        payload: String,
        invoke: InvokeType,
    ) -> Result<Option<Vec<u8>>, CallError> {
        let Kind::Lambda { url, signer } = &self.kind else {
            return Err(CallError::Invalid(format!(
                "data source {} is not an AWS_LAMBDA data source",
                self.name
            )));
        };
        let permit = self.permit()?;
        let work = lambda::invoke(self, url, signer, payload, invoke);
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => {
                drop(permit);
                result
            }
            Err(_) => Err(self.timed_out()),
        }
    }

    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, CallError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            CallError::Overloaded(format!(
                "data source {}: {} calls already in flight; raise its max_in_flight if this persists",
                self.name, self.max_in_flight
            ))
        })
    }

    pub(crate) fn timed_out(&self) -> CallError {
        CallError::failed(
            "TimeoutError",
            format!(
                "data source {} did not answer within {} ms",
                self.name,
                self.timeout.as_millis()
            ),
        )
    }

    /// Sends one request and reads the whole answer (at most [`MAX_RESPONSE_BYTES`]). Transport
    /// failures become `ctx.error` without the URL.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, CallError> {
        let unreachable = |e: reqwest::Error| {
            CallError::failed(
                "NetworkError",
                format!("data source {}: {}", self.name, e.without_url()),
            )
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(CallError::failed(
                    "ResponseTooLarge",
                    format!(
                        "data source {} answered more than {MAX_RESPONSE_BYTES} bytes",
                        self.name
                    ),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// POSTs a signed AWS JSON request (`target` is the `X-Amz-Target`, if the API uses one).
    pub(crate) async fn post_aws(
        &self,
        url: &reqwest::Url,
        signer: &Signer,
        content_type: &str,
        extra: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, CallError> {
        let mut headers: Vec<(&str, &str)> = vec![("content-type", content_type)];
        headers.extend_from_slice(extra);
        self.signed("POST", url, signer, &headers, body).await
    }

    /// Sends a request signed with SigV4 over `headers` (all of them signed) and the body.
    pub(crate) async fn signed(
        &self,
        method: &str,
        url: &reqwest::Url,
        signer: &Signer,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, CallError> {
        let signed = signer.sign(method, url, headers, &body, std::time::SystemTime::now());
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| CallError::Invalid(format!("invalid HTTP method {method:?}")))?;
        let mut request = self.client.request(method, url.clone());
        for &(name, value) in headers {
            request = request.header(name, value);
        }
        for (name, value) in signed {
            request = request.header(name, value);
        }
        self.send(request.body(body)).await
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// The error of an AWS JSON API answer (`__type` / `x-amzn-errortype`, `message`), as
/// `ctx.error` with type `<service>:<code>`.
pub(crate) fn aws_error(service: &str, answer: &Answer) -> CallError {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let code = answer
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            body.get("__type")
                .or_else(|| body.get("Type"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("HTTP{}", answer.status));
    // `com.amazonaws.dynamodb.v20120810#ResourceNotFoundException`, `Code:http://…`.
    let code = code.rsplit('#').next().unwrap_or_default();
    let code = code.split(':').next().unwrap_or_default();
    let message = body
        .get("message")
        .or_else(|| body.get("Message"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP {}", answer.status), str::to_owned);
    CallError::failed(format!("{service}:{code}"), message)
}

/// A request-object value as text: strings as they are, anything else as JSON.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a JSON answer body (`null` when empty).
pub(crate) fn json_body(service: &str, answer: &Answer) -> Result<Value, CallError> {
    if answer.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| CallError::failed(format!("{service}:InvalidResponse"), e.to_string()))
}
