//! `AWS_IAM` mode: SigV4 verification against a configured access-key table.
//!
//! A self-hosted server has no IAM, so each access key is configured with its secret, an optional
//! session token, the actions it may take (`EventConnect`, `EventPublish`, `EventSubscribe`) and
//! the namespaces those apply to. Two request forms are verified:
//!
//! * HTTP `POST /event`: the real request ([`SigV4Verifier::verify_http`]).
//! * WebSocket connect/subscribe/publish: the `authorization` object (or the upgrade headers)
//!   over the synthetic `POST /event` request of spec §4.2, whose body [`synthetic`] rebuilds
//!   ([`SigV4Verifier::verify_ws`]).
//!
//! Checks, in order: `Authorization` parses; the key exists; `x-amz-date` is within the skew
//! window and matches the scope date; the scope names `appsync` and an accepted region; the
//! payload hash (and `x-amz-content-sha256` when sent); the signature (constant time); the
//! session token; then the action and namespace grants. A valid signature can be replayed
//! within the skew window, as with AWS itself.

pub mod canonical;
pub mod synthetic;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{AuthError, ConfigError};
use crate::identity::{IamIdentity, Identity, Operation, ct_eq};

pub use synthetic::{connect_body, publish_body, subscribe_body};

/// Whether an `Authorization` value is a SigV4 signature, which selects `AWS_IAM`.
pub fn is_sigv4(authorization: &str) -> bool {
    authorization
        .strip_prefix(canonical::ALGORITHM)
        .is_some_and(|rest| rest.starts_with(' '))
}

/// An IAM action a key may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IamAction {
    /// WebSocket connect.
    EventConnect,
    /// HTTP or WebSocket publish.
    EventPublish,
    /// WebSocket subscribe.
    EventSubscribe,
}

impl IamAction {
    fn of(op: Operation) -> Self {
        match op {
            Operation::Connect => IamAction::EventConnect,
            Operation::Publish => IamAction::EventPublish,
            Operation::Subscribe => IamAction::EventSubscribe,
        }
    }
}

/// One access key (TOML: `[[auth.providers.keys]]` under an `AWS_IAM` provider).
/// Serializing redacts the secret and the session token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    /// The public key id clients put in `Credential=`.
    pub access_key_id: String,
    /// The shared secret. Never logged.
    #[serde(serialize_with = "crate::config::redact")]
    pub secret_access_key: String,
    /// When set, requests must carry this `x-amz-security-token`. Never logged.
    #[serde(default, serialize_with = "crate::config::redact_opt")]
    pub session_token: Option<String>,
    /// Actions granted. Empty means none.
    pub actions: Vec<IamAction>,
    /// Namespaces the publish/subscribe grants apply to; `"*"` means all. Connect is API-wide
    /// and ignores this list.
    #[serde(default = "all_namespaces")]
    pub namespaces: Vec<String>,
    /// A name for the caller, shown to handlers as `username`/`userArn` (an ARN or a label).
    pub principal: String,
    /// Shown to handlers as `accountId`.
    #[serde(default)]
    pub account_id: Option<String>,
}

fn all_namespaces() -> Vec<String> {
    vec!["*".to_owned()]
}

impl std::fmt::Debug for AccessKeyConfig {
    // Hand-written so secrets never reach a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyConfig")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("actions", &self.actions)
            .field("namespaces", &self.namespaces)
            .field("principal", &self.principal)
            .field("account_id", &self.account_id)
            .finish()
    }
}

/// The `AWS_IAM` provider's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Config {
    /// Accept only this signing region; `None` accepts any.
    #[serde(default)]
    pub region: Option<String>,
    /// Signing service name. AppSync clients sign for `appsync`; only tests change it.
    #[serde(default = "default_service")]
    pub service: String,
    /// Allowed distance between `x-amz-date` and the server clock.
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: u64,
    /// The access-key table.
    pub keys: Vec<AccessKeyConfig>,
}

fn default_service() -> String {
    "appsync".to_owned()
}

fn default_skew() -> u64 {
    300
}

impl Default for SigV4Config {
    fn default() -> Self {
        SigV4Config {
            region: None,
            service: default_service(),
            max_clock_skew_secs: default_skew(),
            keys: Vec::new(),
        }
    }
}

/// What is being asked for: the operation and, for subscribe/publish, the channel's namespace.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// Connect, subscribe or publish.
    pub operation: Operation,
    /// The namespace (first channel segment); `None` for connect.
    pub namespace: Option<&'a str>,
}

/// A request as the client signed it. Header values are raw bytes; names any case.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The path as on the wire (percent-encoded), e.g. `/event`.
    pub path: &'a str,
    /// The raw query string without `?` ("" when none).
    pub query: &'a str,
    /// Every header, in arrival order.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// Verifies SigV4 signatures. Cheap to share behind an `Arc`; holds no mutable state.
#[derive(Debug)]
pub struct SigV4Verifier {
    keys: HashMap<String, AccessKeyConfig>,
    region: Option<String>,
    service: String,
    max_skew: Duration,
}

impl SigV4Verifier {
    /// Validates the configuration and builds the verifier.
    pub fn new(config: SigV4Config) -> Result<Self, ConfigError> {
        let mut keys = HashMap::with_capacity(config.keys.len());
        for key in config.keys {
            if key.access_key_id.is_empty() || key.access_key_id.contains(['/', ' ', ',']) {
                return Err(ConfigError::invalid(
                    "keys.access_key_id",
                    "must be non-empty without '/', ' ' or ','",
                ));
            }
            if key.secret_access_key.is_empty() {
                return Err(ConfigError::invalid(
                    format!("keys[{}].secret_access_key", key.access_key_id),
                    "must not be empty",
                ));
            }
            let id = key.access_key_id.clone();
            if keys.insert(id.clone(), key).is_some() {
                return Err(ConfigError::invalid(
                    "keys.access_key_id",
                    format!("{id:?} is configured twice"),
                ));
            }
        }
        Ok(SigV4Verifier {
            keys,
            region: config.region,
            service: config.service,
            max_skew: Duration::from_secs(config.max_clock_skew_secs),
        })
    }

    /// Verifies a real HTTP request (`POST /event`) over its exact body bytes. For HTTP/2 the
    /// `:authority` stands in for a missing `host` header.
    pub fn verify_http(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        access: Access<'_>,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        self.verify(&http_request(parts, body), access, now)
    }

    /// [`SigV4Verifier::verify_signature`] over a real HTTP request of any method and path.
    pub fn verify_http_signature(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<&AccessKeyConfig, AuthError> {
        self.verify_signature(&http_request(parts, body), now)
    }

    /// Verifies a WebSocket operation: `auth` is the operation's `authorization` object (keys any
    /// case; non-string values ignored), `body` the synthetic body from [`connect_body`],
    /// [`subscribe_body`] or [`publish_body`].
    pub fn verify_ws(
        &self,
        auth: &Map<String, Value>,
        body: &[u8],
        access: Access<'_>,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        let fields = auth
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)));
        self.verify_ws_fields(fields, body, access, now)
    }

    /// [`SigV4Verifier::verify_ws`] over any list of (key, value) string fields, e.g. the
    /// server's already-parsed authorization fields.
    pub fn verify_ws_fields<'a>(
        &self,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
        access: Access<'_>,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        self.verify_ws_fields_at("/event", fields, body, access, now)
    }

    /// [`SigV4Verifier::verify_ws_fields`] for an API whose HTTP path is `path` (clients sign
    /// the synthetic request at the endpoint they were given, e.g. `/apis/{apiId}/event`).
    pub fn verify_ws_fields_at<'a>(
        &self,
        path: &str,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
        access: Access<'_>,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        let headers = fields.into_iter().map(|(k, v)| (k, v.as_bytes())).collect();
        self.verify(&ws_request(headers, body, path), access, now)
    }

    /// Like [`SigV4Verifier::verify_ws`], for clients (Swift, Kotlin) that send the auth fields as
    /// real headers on the upgrade request; verifies the connect over `{}`.
    pub fn verify_ws_upgrade(
        &self,
        headers: &http::HeaderMap,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let access = Access {
            operation: Operation::Connect,
            namespace: None,
        };
        self.verify(
            &ws_request(headers, connect_body().as_bytes(), "/event"),
            access,
            now,
        )
    }

    /// Verifies any signed request. The building block of the other `verify_*` methods.
    pub fn verify(
        &self,
        req: &SignedRequest<'_>,
        access: Access<'_>,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        let key = self.verify_signature(req, now)?;
        authorize(key, access)?;
        Ok(Identity::Iam(IamIdentity {
            access_key_id: key.access_key_id.clone(),
            principal: key.principal.clone(),
            account_id: key.account_id.clone(),
        }))
    }

    /// Checks the signature, date, scope and session token of a request, and returns the key
    /// that signed it, without looking at its grants: for callers whose keys are granted
    /// everything they can reach (the control plane's administrators).
    pub fn verify_signature(
        &self,
        req: &SignedRequest<'_>,
        now: SystemTime,
    ) -> Result<&AccessKeyConfig, AuthError> {
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        let text = |name: &'static str| -> Result<Option<&str>, AuthError> {
            header(name)
                .map(|v| {
                    std::str::from_utf8(v)
                        .map_err(|_| AuthError::Malformed(format!("{name} is not UTF-8")))
                })
                .transpose()
        };

        let authz = text("authorization")?
            .ok_or(AuthError::MissingCredential("Authorization (SigV4) header"))?;
        let auth = canonical::parse_authorization(authz)?;
        let key = self
            .keys
            .get(auth.access_key_id)
            .ok_or_else(|| AuthError::UnknownAccessKey {
                access_key_id: auth.access_key_id.to_owned(),
            })?;

        let amz_date = text("x-amz-date")?.ok_or(AuthError::MissingCredential("x-amz-date"))?;
        let signed_at = canonical::parse_amz_date(amz_date).ok_or_else(|| {
            AuthError::Malformed("x-amz-date must be YYYYMMDDTHHMMSSZ".to_owned())
        })?;
        let now_secs = unix_secs(now);
        let skew = now_secs.abs_diff(signed_at);
        if skew > self.max_skew.as_secs() {
            return Err(AuthError::DateSkew {
                request_time: amz_date.to_owned(),
                skew_secs: skew,
                max_skew_secs: self.max_skew.as_secs(),
            });
        }
        self.check_scope(&auth, amz_date)?;

        let body_hash = canonical::sha256_hex(req.body);
        if let Some(declared) = text("x-amz-content-sha256")? {
            // A declared hash is part of what was signed; it must describe this body. Unsigned
            // or streaming payloads are refused: the events would not be covered by the signature.
            if !declared.eq_ignore_ascii_case(&body_hash) {
                return Err(AuthError::Malformed(
                    "x-amz-content-sha256 does not match the body (UNSIGNED-PAYLOAD and streaming are not accepted)"
                        .to_owned(),
                ));
            }
        }
        let signed_lower = auth.signed_headers.to_ascii_lowercase();
        if !signed_lower.split(';').any(|h| h == "host") {
            return Err(AuthError::Malformed(
                "SignedHeaders must include host".to_owned(),
            ));
        }
        let creq = canonical::canonical_request(
            req.method,
            req.path,
            req.query,
            &req.headers,
            auth.signed_headers,
            &body_hash,
        )?;
        let sts = canonical::string_to_sign(amz_date, auth.scope, &creq);
        let signing_key = canonical::signing_key(
            &key.secret_access_key,
            auth.scope_date,
            auth.scope_region,
            auth.scope_service,
        );
        if !canonical::signature_matches(&signing_key, &sts, &auth.signature) {
            return Err(AuthError::BadSignature {
                access_key_id: key.access_key_id.clone(),
            });
        }

        let presented_token = header("x-amz-security-token");
        let token_ok = match (&key.session_token, presented_token) {
            (Some(expected), Some(got)) => ct_eq(expected.as_bytes(), got),
            (None, None) => true,
            _ => false,
        };
        if !token_ok {
            return Err(AuthError::BadSessionToken {
                access_key_id: key.access_key_id.clone(),
            });
        }
        Ok(key)
    }

    fn check_scope(
        &self,
        auth: &canonical::AuthorizationHeader<'_>,
        amz_date: &str,
    ) -> Result<(), AuthError> {
        let refuse = |reason: String| AuthError::BadScope {
            scope: auth.scope.to_owned(),
            reason,
        };
        if amz_date.get(..8) != Some(auth.scope_date) {
            return Err(refuse(format!(
                "scope date is not the date of x-amz-date {amz_date}"
            )));
        }
        if auth.scope_service != self.service {
            return Err(refuse(format!("service must be {:?}", self.service)));
        }
        if let Some(region) = &self.region
            && auth.scope_region != region
        {
            return Err(refuse(format!("region must be {region:?}")));
        }
        Ok(())
    }
}

/// A real HTTP request as signed. For HTTP/2 the `:authority` stands in for a missing `host`.
fn http_request<'a>(parts: &'a http::request::Parts, body: &'a [u8]) -> SignedRequest<'a> {
    let mut headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        headers.push(("host", authority.as_str().as_bytes()));
    }
    SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers,
        body,
    }
}

fn ws_request<'a>(
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
    path: &'a str,
) -> SignedRequest<'a> {
    SignedRequest {
        method: "POST",
        path,
        query: "",
        headers,
        body,
    }
}

fn authorize(key: &AccessKeyConfig, access: Access<'_>) -> Result<(), AuthError> {
    let action = IamAction::of(access.operation);
    if !key.actions.contains(&action) {
        return Err(AuthError::ActionNotAllowed {
            access_key_id: key.access_key_id.clone(),
            action: access.operation.iam_action(),
        });
    }
    if access.operation == Operation::Connect {
        return Ok(());
    }
    let allowed = key
        .namespaces
        .iter()
        .any(|ns| ns == "*" || Some(ns.as_str()) == access.namespace);
    if !allowed {
        return Err(AuthError::NamespaceNotAllowed {
            access_key_id: key.access_key_id.clone(),
            action: access.operation.iam_action(),
            namespace: access.namespace.unwrap_or("").to_owned(),
        });
    }
    Ok(())
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::is_sigv4;

    #[test]
    fn sigv4_is_told_from_other_tokens() {
        assert!(is_sigv4(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/appsync/aws4_request"
        ));
        for other in [
            "AWS4-HMAC-SHA256Credential=x",
            "aws4-hmac-sha256 Credential=x",
            "Bearer AWS4-HMAC-SHA256 x",
            "eyJhbGciOiJSUzI1NiJ9.e30.sig",
            "",
        ] {
            assert!(!is_sigv4(other), "{other}");
        }
    }
}
