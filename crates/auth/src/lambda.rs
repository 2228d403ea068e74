//! `AWS_LAMBDA` mode: the Lambda authorizer as an HTTP webhook.
//!
//! Herald POSTs the request AppSync would send the Lambda (spec §4.3):
//! `{"authorizationToken","requestContext":{"apiId","accountId","requestId","operation",
//! "channelNamespaceName","channel"},"requestHeaders":{...}}` and reads the documented response
//! `{"isAuthorized":bool,"handlerContext":{...},"ttlOverride":n}`. Anything else denies: a
//! timeout, a connection error, a non-2xx status, a body that is not that object. A redirect is
//! never followed (it would carry `webhook_headers` and the token elsewhere): it denies too.
//! Logs show the webhook as `scheme://host:port` only, since its path may hold a secret.
//!
//! Before calling, the token must fully match `identity_validation_expression` (when set).
//! Decisions (allow and deny) are cached per (token, operation, channel) for
//! `authorizer_result_ttl_in_seconds`, or the response's `ttlOverride`; 0 disables caching.
//! Failures are never cached. The cache keys on a SHA-256 of the token, so tokens are not kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::error::{AuthError, ConfigError};
use crate::identity::{Identity, LambdaIdentity, Operation};

/// Largest authorizer response we read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// AppSync's ceiling for `authorizerResultTtlInSeconds` and `ttlOverride`.
const MAX_TTL_SECS: u64 = 3600;

/// The `AWS_LAMBDA` provider's settings (AppSync `lambdaAuthorizerConfig`, with a URL in place
/// of the function ARN). Serializing redacts the webhook header values.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {
    /// Where to POST the authorizer request (`http://` or `https://`).
    pub authorizer_url: String,
    /// Cache decisions this long (0–3600 s; 0 = no cache) unless the response overrides it.
    #[serde(default)]
    pub authorizer_result_ttl_in_seconds: u64,
    /// Regex the whole token must match before the webhook is called.
    #[serde(default)]
    pub identity_validation_expression: Option<String>,
    /// Give up on the webhook after this many milliseconds (then deny).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `requestContext.apiId` sent to the webhook.
    #[serde(default = "default_api_id")]
    pub api_id: String,
    /// `requestContext.accountId` sent to the webhook.
    #[serde(default)]
    pub account_id: String,
    /// Extra headers on every webhook call, e.g. a shared secret the webhook checks. Never logged.
    #[serde(default, serialize_with = "crate::config::redact_map")]
    pub webhook_headers: BTreeMap<String, String>,
    /// Bound on cached decisions; when full, expired entries are dropped, then everything.
    #[serde(default = "default_max_cache_entries")]
    pub max_cache_entries: usize,
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_api_id() -> String {
    "herald".to_owned()
}
fn default_max_cache_entries() -> usize {
    10_000
}

impl std::fmt::Debug for LambdaConfig {
    // Hand-written so webhook header values (secrets) never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaConfig")
            .field("authorizer_url", &crate::http::origin(&self.authorizer_url))
            .field(
                "authorizer_result_ttl_in_seconds",
                &self.authorizer_result_ttl_in_seconds,
            )
            .field(
                "identity_validation_expression",
                &self.identity_validation_expression,
            )
            .field("timeout_ms", &self.timeout_ms)
            .field("api_id", &self.api_id)
            .field("account_id", &self.account_id)
            .field(
                "webhook_headers",
                &self.webhook_headers.keys().collect::<Vec<_>>(),
            )
            .field("max_cache_entries", &self.max_cache_entries)
            .finish()
    }
}

/// One authorization question for the webhook.
#[derive(Debug, Clone, Copy)]
pub struct LambdaRequest<'a> {
    /// The `Authorization` value as the client sent it.
    pub token: &'a str,
    /// Connect, subscribe or publish.
    pub operation: Operation,
    /// The namespace; `None` for connect (sent as null).
    pub namespace: Option<&'a str>,
    /// The channel as the client sent it; `None` for connect (sent as null).
    pub channel: Option<&'a str>,
    /// A unique id for this request (`requestContext.requestId`), e.g. a UUID.
    pub request_id: &'a str,
    /// Sent as `requestHeaders`: the HTTP headers, or for WebSocket operations the upgrade
    /// headers / authorization object, as the server decides.
    pub request_headers: &'a Map<String, Value>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    token_hash: [u8; 32],
    operation: Operation,
    channel: Option<String>,
}

#[derive(Clone)]
enum Decision {
    Allow(Map<String, Value>),
    Deny,
}

/// Time-bounded decisions, bounded in size. Takes `now` so tests need no sleeping.
struct DecisionCache {
    entries: HashMap<CacheKey, (Instant, Decision)>,
    max_entries: usize,
}

impl DecisionCache {
    fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Decision> {
        match self.entries.get(key) {
            Some((expires, d)) if *expires > now => Some(d.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: CacheKey, decision: Decision, ttl: Duration, now: Instant) {
        if ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        if self.entries.len() >= self.max_entries {
            self.entries.retain(|_, (expires, _)| *expires > now);
            if self.entries.len() >= self.max_entries {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (now + ttl, decision));
    }
}

/// Calls the authorizer webhook and caches its answers. Share it behind an `Arc`.
pub struct LambdaAuthorizer {
    config: LambdaConfig,
    validation: Option<Regex>,
    client: reqwest::Client,
    cache: Mutex<DecisionCache>,
}

impl std::fmt::Debug for LambdaAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaAuthorizer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AuthorizerResponse {
    #[serde(rename = "isAuthorized")]
    is_authorized: bool,
    #[serde(rename = "handlerContext", default)]
    handler_context: Option<Map<String, Value>>,
    #[serde(rename = "ttlOverride", default)]
    ttl_override: Option<u64>,
}

impl LambdaAuthorizer {
    /// Validates the configuration and builds the authorizer.
    pub fn new(config: LambdaConfig) -> Result<Self, ConfigError> {
        if !(config.authorizer_url.starts_with("http://")
            || config.authorizer_url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "authorizer_url",
                "must be an http:// or https:// URL",
            ));
        }
        if config.authorizer_result_ttl_in_seconds > MAX_TTL_SECS {
            return Err(ConfigError::invalid(
                "authorizer_result_ttl_in_seconds",
                "must be between 0 and 3600",
            ));
        }
        if config.timeout_ms == 0 {
            return Err(ConfigError::invalid("timeout_ms", "must be positive"));
        }
        let validation = match &config.identity_validation_expression {
            Some(expr) if !expr.is_empty() => Some(Regex::new(&format!("^(?:{expr})$")).map_err(
                |source| ConfigError::Regex {
                    field: "identity_validation_expression",
                    source,
                },
            )?),
            _ => None,
        };
        let client =
            crate::http::client_without_redirects(Duration::from_millis(config.timeout_ms))?;
        let cache = Mutex::new(DecisionCache {
            entries: HashMap::new(),
            max_entries: config.max_cache_entries,
        });
        Ok(LambdaAuthorizer {
            config,
            validation,
            client,
            cache,
        })
    }

    /// Asks the webhook (or the cache) whether `req` is allowed.
    pub async fn authorize(&self, req: &LambdaRequest<'_>) -> Result<Identity, AuthError> {
        if req.token.is_empty() {
            return Err(AuthError::MissingCredential("Authorization token"));
        }
        if let Some(re) = &self.validation
            && !re.is_match(req.token)
        {
            return Err(AuthError::TokenFailedValidation);
        }
        let key = CacheKey {
            token_hash: Sha256::digest(req.token.as_bytes()).into(),
            operation: req.operation,
            channel: req.channel.map(str::to_owned),
        };
        if let Some(d) = self.with_cache(|c| c.get(&key, Instant::now())) {
            return decide(d);
        }

        let resp = self.call(req).await?;
        let ttl = resp
            .ttl_override
            .unwrap_or(self.config.authorizer_result_ttl_in_seconds)
            .min(MAX_TTL_SECS);
        let decision = if resp.is_authorized {
            Decision::Allow(resp.handler_context.unwrap_or_default())
        } else {
            Decision::Deny
        };
        self.with_cache(|c| {
            c.insert(
                key,
                decision.clone(),
                Duration::from_secs(ttl),
                Instant::now(),
            );
        });
        decide(decision)
    }

    fn with_cache<T>(&self, f: impl FnOnce(&mut DecisionCache) -> T) -> T {
        match self.cache.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    async fn call(&self, req: &LambdaRequest<'_>) -> Result<AuthorizerResponse, AuthError> {
        let body = json!({
            "authorizationToken": req.token,
            "requestContext": {
                "apiId": self.config.api_id,
                "accountId": self.config.account_id,
                "requestId": req.request_id,
                "operation": req.operation.lambda_operation(),
                "channelNamespaceName": req.namespace,
                "channel": req.channel,
            },
            "requestHeaders": req.request_headers,
        });
        let mut builder = self
            .client
            .post(&self.config.authorizer_url)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in &self.config.webhook_headers {
            builder = builder.header(k, v);
        }
        let unavailable = |why: String| {
            tracing::warn!(webhook = %crate::http::origin(&self.config.authorizer_url), reason = %why, "authorizer webhook failed; denying");
            AuthError::AuthorizerUnavailable(why)
        };
        let resp = builder
            .send()
            .await
            .map_err(|e| unavailable(crate::http::describe(e)))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(unavailable(format!(
                "the webhook answered with a redirect (HTTP {status}), which is not followed: set authorizer_url to the final URL"
            )));
        }
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let bytes = crate::http::read_limited(resp, MAX_RESPONSE_BYTES)
            .await
            .map_err(unavailable)?;
        // Parse as an object first: serde would also accept a JSON array for the struct.
        let parsed = serde_json::from_slice::<Map<String, Value>>(&bytes)
            .and_then(|obj| serde_json::from_value::<AuthorizerResponse>(Value::Object(obj)));
        parsed.map_err(|e| {
            tracing::warn!(webhook = %crate::http::origin(&self.config.authorizer_url), error = %e, "authorizer response is not {{\"isAuthorized\": bool, ...}}; denying");
            AuthError::AuthorizerInvalidResponse(e.to_string())
        })
    }
}

/// Builds `requestHeaders` from (name, value) pairs: names lower-cased, repeated names become
/// arrays (as AppSync shows multi-valued headers), `authorization` and `cookie` left out so
/// the token appears only once, as `authorizationToken`.
pub fn request_headers<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in pairs {
        let name = name.to_ascii_lowercase();
        if name == "authorization" || name == "cookie" {
            continue;
        }
        let value = Value::String(value.to_owned());
        match out.get_mut(&name) {
            Some(Value::Array(a)) => a.push(value),
            Some(prev) => {
                let first = prev.take();
                *prev = Value::Array(vec![first, value]);
            }
            None => {
                out.insert(name, value);
            }
        }
    }
    out
}

fn decide(d: Decision) -> Result<Identity, AuthError> {
    match d {
        Decision::Allow(handler_context) => {
            Ok(Identity::Lambda(LambdaIdentity { handler_context }))
        }
        Decision::Deny => Err(AuthError::AuthorizerDenied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheKey {
        CacheKey {
            token_hash: [n; 32],
            operation: Operation::Publish,
            channel: Some("/a/b".into()),
        }
    }

    #[test]
    fn request_headers_shape() {
        let h = request_headers([
            ("Host", "h"),
            ("X-A", "1"),
            ("x-a", "2"),
            ("Authorization", "secret"),
            ("Cookie", "c"),
        ]);
        assert_eq!(Value::Object(h), json!({"host": "h", "x-a": ["1", "2"]}));
    }

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let mut c = DecisionCache {
            entries: HashMap::new(),
            max_entries: 2,
        };
        let t0 = Instant::now();
        c.insert(key(1), Decision::Deny, Duration::from_secs(10), t0);
        assert!(c.get(&key(1), t0 + Duration::from_secs(9)).is_some());
        assert!(c.get(&key(1), t0 + Duration::from_secs(10)).is_none());
        assert!(c.entries.is_empty(), "expired entry removed on read");

        c.insert(key(1), Decision::Deny, Duration::from_secs(1), t0);
        c.insert(key(2), Decision::Deny, Duration::from_secs(100), t0);
        // Full: the expired key(1) makes room.
        c.insert(
            key(3),
            Decision::Deny,
            Duration::from_secs(100),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(c.entries.len(), 2);
        assert!(c.entries.contains_key(&key(3)));
        // Full with nothing expired: everything goes.
        c.insert(
            key(4),
            Decision::Deny,
            Duration::from_secs(100),
            t0 + Duration::from_secs(6),
        );
        assert_eq!(c.entries.len(), 1);
        // TTL 0 caches nothing.
        c.insert(key(5), Decision::Deny, Duration::ZERO, t0);
        assert!(!c.entries.contains_key(&key(5)));
    }
}
