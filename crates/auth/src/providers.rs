//! One entry point for the four modes this crate verifies: the server passes the modes an
//! operation accepts and the credential; the credential picks the mode.
//!
//! Selection (AppSync does not document its order; spec §11 q9):
//! 1. `Authorization` starting with `AWS4-HMAC-SHA256 ` → `AWS_IAM`.
//! 2. A JWT whose (unverified) `iss` names a configured Cognito/OIDC issuer → that verifier.
//! 3. Any other token → `AWS_LAMBDA`.
//!
//! Each step only applies when the mode is both allowed for the operation and configured;
//! otherwise the request is refused (never passed to another mode). API keys stay with the server.

use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::config::ProviderConfig;
use crate::error::{AuthError, ConfigError};
use crate::identity::{AuthMode, Identity, Operation};
use crate::jwt::{self, JwtVerifier};
use crate::lambda::{LambdaAuthorizer, LambdaRequest};
use crate::sigv4::{self, Access, SigV4Verifier};

/// How the credential arrived.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// A WebSocket connect/subscribe/publish: the authorization fields (from the frame's
    /// `authorization` object, the `header-` subprotocol, or the upgrade headers) and, for
    /// publish, the frame's events as decoded strings (for the SigV4 synthetic body).
    WebSocket {
        /// (name, value) pairs, names any case.
        fields: &'a [(&'a str, &'a str)],
        /// The publish frame's events, decoded; empty for connect and subscribe.
        events: &'a [&'a str],
        /// The API's HTTP path, which SigV4 clients sign the synthetic request at: `/event`,
        /// or `/apis/{apiId}/event` where a path names the API.
        path: &'a str,
    },
    /// HTTP `POST /event`: the request head and the exact body bytes.
    Http {
        /// Method, URI and headers.
        parts: &'a http::request::Parts,
        /// The body as received.
        body: &'a [u8],
    },
}

/// One authorization question.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// Connect, subscribe or publish.
    pub operation: Operation,
    /// The channel's namespace; `None` for connect.
    pub namespace: Option<&'a str>,
    /// The channel exactly as the client sent it (SigV4 signs it verbatim); `None` for connect.
    pub channel: Option<&'a str>,
    /// The credential.
    pub credential: Credential<'a>,
    /// A unique id for this request, passed to the Lambda authorizer.
    pub request_id: &'a str,
    /// `requestHeaders` for the Lambda authorizer (see [`crate::lambda::request_headers`]).
    pub request_headers: &'a Map<String, Value>,
}

/// The verifiers built from `[[auth.providers]]`.
#[derive(Debug, Default)]
pub struct Providers {
    iam: Option<SigV4Verifier>,
    jwt: Vec<JwtVerifier>,
    lambda: Option<LambdaAuthorizer>,
    api_key_declared: bool,
}

impl Providers {
    /// Builds every verifier. At most one `AWS_IAM` and one `AWS_LAMBDA` entry (AppSync allows one
    /// Lambda authorizer per API); any number of Cognito/OIDC entries with distinct issuers.
    pub fn new(configs: &[ProviderConfig]) -> Result<Self, ConfigError> {
        let mut p = Providers::default();
        for c in configs {
            match c {
                ProviderConfig::ApiKey => p.api_key_declared = true,
                ProviderConfig::Iam(cfg) => {
                    if p.iam.is_some() {
                        return Err(ConfigError::invalid(
                            "auth.providers",
                            "more than one AWS_IAM provider; put all keys in one",
                        ));
                    }
                    p.iam = Some(SigV4Verifier::new(cfg.clone())?);
                }
                ProviderConfig::Lambda(cfg) => {
                    if p.lambda.is_some() {
                        return Err(ConfigError::invalid(
                            "auth.providers",
                            "more than one AWS_LAMBDA provider",
                        ));
                    }
                    p.lambda = Some(LambdaAuthorizer::new(cfg.clone())?);
                }
                ProviderConfig::Cognito(cfg) => p.push_jwt(JwtVerifier::cognito(cfg.clone())?)?,
                ProviderConfig::Oidc(cfg) => p.push_jwt(JwtVerifier::oidc(cfg.clone())?)?,
            }
        }
        Ok(p)
    }

    fn push_jwt(&mut self, v: JwtVerifier) -> Result<(), ConfigError> {
        if self.jwt.iter().any(|o| o.issuer() == v.issuer()) {
            return Err(ConfigError::invalid(
                "auth.providers.issuer",
                format!("issuer {:?} is configured twice", v.issuer()),
            ));
        }
        self.jwt.push(v);
        Ok(())
    }

    /// Whether a provider for `mode` is configured (API_KEY: declared with `auth_type = "API_KEY"`).
    pub fn is_configured(&self, mode: AuthMode) -> bool {
        match mode {
            AuthMode::ApiKey => self.api_key_declared,
            AuthMode::Iam => self.iam.is_some(),
            AuthMode::Lambda => self.lambda.is_some(),
            AuthMode::CognitoUserPools | AuthMode::OpenIdConnect => {
                self.jwt.iter().any(|j| j.mode() == mode)
            }
        }
    }

    /// Startup check that every non-API-key mode in a mode list has a provider, as AppSync
    /// requires. `field` names the list in the error (e.g. `namespaces[chat].publish_auth_modes`).
    pub fn check_modes(&self, field: &str, modes: &[AuthMode]) -> Result<(), ConfigError> {
        match modes
            .iter()
            .find(|m| **m != AuthMode::ApiKey && !self.is_configured(**m))
        {
            Some(m) => Err(ConfigError::invalid(
                field,
                format!(
                    "{} is listed but no [[auth.providers]] entry has auth_type = \"{}\"",
                    m.as_str(),
                    m.as_str()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Fetches every JWT issuer's keys now; failures are logged and retried on demand.
    pub async fn prefetch_keys(&self) {
        for v in &self.jwt {
            if let Err(e) = v.prefetch().await {
                tracing::warn!(issuer = v.issuer(), error = %e, "could not prefetch JWKS; will retry on first token");
            }
        }
    }

    /// Verifies the credential with the mode it selects among `allowed`. Returns the identity, or
    /// why it was refused (always `UnauthorizedException`/401 on the wire).
    pub async fn authorize(
        &self,
        allowed: &[AuthMode],
        req: &AuthRequest<'_>,
    ) -> Result<Identity, AuthError> {
        let token = match req.credential {
            Credential::WebSocket { fields, .. } => fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| *v),
            Credential::Http { parts, .. } => parts
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| {
                    v.to_str().map_err(|_| {
                        AuthError::Malformed("Authorization is not visible ASCII".to_owned())
                    })
                })
                .transpose()?,
        }
        .filter(|t| !t.trim().is_empty())
        .ok_or(AuthError::MissingCredential("Authorization"))?;

        let refused = |mode: AuthMode| AuthError::ModeNotAllowed {
            mode: mode.as_str(),
            reason: if self.is_configured(mode) {
                "not allowed for this operation"
            } else {
                "not configured"
            },
        };

        if sigv4::is_sigv4(token) {
            let iam = self
                .iam
                .as_ref()
                .filter(|_| allowed.contains(&AuthMode::Iam))
                .ok_or_else(|| refused(AuthMode::Iam))?;
            return self.verify_iam(iam, req);
        }

        if jwt::looks_like_jwt(token)
            && let Some(iss) = jwt::unverified_issuer(token)
            && let Some(v) = self
                .jwt
                .iter()
                .find(|v| v.issuer().trim_end_matches('/') == iss.trim_end_matches('/'))
        {
            if !allowed.contains(&v.mode()) {
                return Err(refused(v.mode()));
            }
            return v.verify(token).await;
        }

        let lambda = self
            .lambda
            .as_ref()
            .filter(|_| allowed.contains(&AuthMode::Lambda))
            .ok_or(AuthError::NoMatchingMode)?;
        lambda
            .authorize(&LambdaRequest {
                token,
                operation: req.operation,
                namespace: req.namespace,
                channel: req.channel,
                request_id: req.request_id,
                request_headers: req.request_headers,
            })
            .await
    }

    fn verify_iam(
        &self,
        iam: &SigV4Verifier,
        req: &AuthRequest<'_>,
    ) -> Result<Identity, AuthError> {
        let access = Access {
            operation: req.operation,
            namespace: req.namespace,
        };
        let now = SystemTime::now();
        match req.credential {
            Credential::Http { parts, body } => iam.verify_http(parts, body, access, now),
            Credential::WebSocket {
                fields,
                events,
                path,
            } => {
                let channel = req.channel.unwrap_or("");
                let body = match req.operation {
                    Operation::Connect => sigv4::connect_body().to_owned(),
                    Operation::Subscribe => sigv4::subscribe_body(channel),
                    Operation::Publish => sigv4::publish_body(channel, events),
                };
                iam.verify_ws_fields_at(path, fields.iter().copied(), body.as_bytes(), access, now)
            }
        }
    }
}
