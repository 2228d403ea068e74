//! `AMAZON_COGNITO_USER_POOLS` and `OPENID_CONNECT` modes: JWTs verified against the issuer's
//! JWKS.
//!
//! The header is read first and its `alg` must be one of the configured asymmetric algorithms
//! (default RS256 and ES256): `none` and HS* are refused before any key is looked up, which
//! closes algorithm confusion (an HS256 token "signed" with the public key). The key must also
//! belong to that algorithm's family and, when the JWK declares an `alg`, be that exact one.
//! Then: signature, `exp`/`nbf` with leeway, `iss`, audience (`aud` or Cognito's `client_id`
//! against `client_id` / `app_id_client_regex`), Cognito's `token_use`, and `iat_ttl`/`auth_ttl`.
//!
//! Cognito is OIDC with a derived issuer: `https://cognito-idp.<region>.amazonaws.com/<pool>`,
//! overridable so any self-hosted IdP can stand in.

mod jwks;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{AuthError, ConfigError};
use crate::identity::{AuthMode, Identity, JwtIdentity};
use jwks::{Jwks, JwksSettings};

/// Settings shared by both JWT modes (TOML keys beside the mode's own).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtOptions {
    /// Accepted `alg` values; only asymmetric ones (RS*, PS*, ES*, EdDSA) are allowed.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp` and `nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Use this JWKS URL instead of discovering it from the issuer.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// At most one JWKS fetch per this many seconds (unknown `kid`s cannot hammer the IdP).
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh_secs: u64,
    /// Refetch keys older than this (key rotation and revocation), seconds.
    #[serde(default = "default_max_age")]
    pub jwks_max_age_secs: u64,
    /// Timeout of each discovery/JWKS request, milliseconds.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_ms: u64,
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::ES256]
}
fn default_leeway() -> u64 {
    60
}
fn default_min_refresh() -> u64 {
    30
}
fn default_max_age() -> u64 {
    3600
}
fn default_http_timeout() -> u64 {
    5000
}

impl Default for JwtOptions {
    fn default() -> Self {
        JwtOptions {
            algorithms: default_algorithms(),
            leeway_secs: default_leeway(),
            jwks_uri: None,
            jwks_min_refresh_secs: default_min_refresh(),
            jwks_max_age_secs: default_max_age(),
            http_timeout_ms: default_http_timeout(),
        }
    }
}

/// `OPENID_CONNECT` provider (AppSync `openIDConnectConfig`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` every token must carry; discovery starts at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// When set, `aud` (or `client_id` when there is no `aud`) must equal it.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `iatTTL`: max age of `iat` in milliseconds; 0 = no limit.
    #[serde(default)]
    pub iat_ttl: u64,
    /// `authTTL`: max age of `auth_time` in milliseconds; 0 = no limit.
    #[serde(default)]
    pub auth_ttl: u64,
    /// Algorithms, leeway, JWKS caching.
    #[serde(default)]
    pub options: JwtOptions,
}

/// `AMAZON_COGNITO_USER_POOLS` provider (AppSync `cognitoConfig`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CognitoConfig {
    /// e.g. `us-east-1_AbCdEfGhI`.
    pub user_pool_id: String,
    /// e.g. `us-east-1`.
    pub aws_region: String,
    /// When set, `aud` / `client_id` must fully match this regex.
    #[serde(default)]
    pub app_id_client_regex: Option<String>,
    /// Override the derived issuer (`https://cognito-idp.<region>.amazonaws.com/<pool>`), to use
    /// any self-hosted IdP.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Algorithms, leeway, JWKS caching.
    #[serde(default)]
    pub options: JwtOptions,
}

enum AudienceCheck {
    None,
    Exact(String),
    Regex(Regex),
}

/// Verifies JWTs from one issuer. Share it behind an `Arc`; it caches that issuer's keys.
pub struct JwtVerifier {
    mode: AuthMode,
    issuer: String,
    audience: AudienceCheck,
    iat_ttl_ms: u64,
    auth_ttl_ms: u64,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    jwks: Jwks,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("mode", &self.mode)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// An `OPENID_CONNECT` verifier. Keys are fetched lazily, on the first token.
    pub fn oidc(config: OidcConfig) -> Result<Self, ConfigError> {
        let audience = match config.client_id {
            Some(id) if !id.is_empty() => AudienceCheck::Exact(id),
            _ => AudienceCheck::None,
        };
        Self::build(
            AuthMode::OpenIdConnect,
            config.issuer,
            audience,
            config.iat_ttl,
            config.auth_ttl,
            config.options,
        )
    }

    /// An `AMAZON_COGNITO_USER_POOLS` verifier. Keys are fetched lazily, on the first token.
    pub fn cognito(config: CognitoConfig) -> Result<Self, ConfigError> {
        let issuer = match config.issuer {
            Some(iss) => iss,
            None => {
                let ok = |s: &str| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                };
                if !ok(&config.aws_region) || !ok(&config.user_pool_id) {
                    return Err(ConfigError::invalid(
                        "user_pool_id / aws_region",
                        "must be like \"us-east-1_AbCdEfGhI\" / \"us-east-1\"",
                    ));
                }
                format!(
                    "https://cognito-idp.{}.amazonaws.com/{}",
                    config.aws_region, config.user_pool_id
                )
            }
        };
        let audience = match config.app_id_client_regex {
            Some(re) if !re.is_empty() => {
                AudienceCheck::Regex(Regex::new(&format!("^(?:{re})$")).map_err(|source| {
                    ConfigError::Regex {
                        field: "app_id_client_regex",
                        source,
                    }
                })?)
            }
            _ => AudienceCheck::None,
        };
        Self::build(
            AuthMode::CognitoUserPools,
            issuer,
            audience,
            0,
            0,
            config.options,
        )
    }

    fn build(
        mode: AuthMode,
        issuer: String,
        audience: AudienceCheck,
        iat_ttl_ms: u64,
        auth_ttl_ms: u64,
        options: JwtOptions,
    ) -> Result<Self, ConfigError> {
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(ConfigError::invalid(
                "issuer",
                format!("{issuer:?} must be an http(s) URL"),
            ));
        }
        if options.algorithms.is_empty() {
            return Err(ConfigError::invalid("algorithms", "must not be empty"));
        }
        if let Some(alg) = options
            .algorithms
            .iter()
            .find(|a| a.family() == AlgorithmFamily::Hmac)
        {
            return Err(ConfigError::invalid(
                "algorithms",
                format!(
                    "{alg:?} is symmetric; only RS*, PS*, ES* and EdDSA can be verified with public keys"
                ),
            ));
        }
        let client = crate::http::client(Duration::from_millis(options.http_timeout_ms))?;
        let jwks = Jwks::new(JwksSettings {
            issuer: issuer.clone(),
            jwks_uri: options.jwks_uri,
            min_refresh: Duration::from_secs(options.jwks_min_refresh_secs),
            max_age: Duration::from_secs(options.jwks_max_age_secs),
            client,
        });
        Ok(JwtVerifier {
            mode,
            issuer,
            audience,
            iat_ttl_ms,
            auth_ttl_ms,
            algorithms: options.algorithms,
            leeway: options.leeway_secs,
            jwks,
        })
    }

    /// The issuer tokens must carry (for picking a verifier with [`unverified_issuer`]).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The mode this verifier serves.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Fetches the issuer's keys now (subject to the refresh rate limit), e.g. at startup so the
    /// first client does not wait. Failing here is not fatal: verification retries later.
    pub async fn prefetch(&self) -> Result<(), AuthError> {
        self.jwks.refresh().await.map(|_| ())
    }

    /// Verifies a token (the `Authorization` value; a `Bearer ` prefix is accepted) and returns
    /// the caller's identity.
    pub async fn verify(&self, authorization: &str) -> Result<Identity, AuthError> {
        let token = strip_bearer(authorization);
        let (alg, kid) = self.read_header(token)?;
        let key = self.jwks.key_for(kid.as_deref(), alg).await?;

        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.validate_aud = false; // checked below: Cognito access tokens use client_id
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        let claims = match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
            Ok(data) => data.claims,
            Err(e) => return Err(self.map_jwt_error(e.kind(), token)),
        };
        self.check_claims(&claims)?;
        Ok(Identity::Jwt(identity(self.mode, claims)))
    }

    /// Reads `alg` and `kid` from the header and refuses any algorithm not configured.
    fn read_header(&self, token: &str) -> Result<(Algorithm, Option<String>), AuthError> {
        #[derive(Deserialize)]
        struct RawHeader {
            alg: String,
            #[serde(default)]
            kid: Option<String>,
        }
        let malformed = |why: &str| AuthError::Malformed(format!("JWT: {why}"));
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("expected three dot-separated parts"));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| malformed("header is not base64url"))?;
        let header: RawHeader = serde_json::from_slice(&bytes)
            .map_err(|_| malformed("header is not a JSON object with alg"))?;
        let allowed = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.algorithms.contains(a));
        match allowed {
            Some(alg) => Ok((alg, header.kid)),
            None => Err(AuthError::AlgorithmNotAllowed(truncate(&header.alg))),
        }
    }

    fn map_jwt_error(&self, kind: &ErrorKind, token: &str) -> AuthError {
        match kind {
            ErrorKind::ExpiredSignature => AuthError::TokenExpired,
            ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer {
                expected: self.issuer.clone(),
                found: unverified_issuer(token)
                    .map(|s| truncate(&s))
                    .unwrap_or_default(),
            },
            ErrorKind::InvalidAlgorithm => {
                AuthError::AlgorithmNotAllowed("(key/algorithm mismatch)".to_owned())
            }
            ErrorKind::InvalidSignature => {
                AuthError::InvalidToken("signature does not verify".to_owned())
            }
            ErrorKind::MissingRequiredClaim(c) => {
                AuthError::InvalidToken(format!("missing claim {c}"))
            }
            ErrorKind::InvalidClaimFormat(c) => {
                AuthError::InvalidToken(format!("claim {c} has the wrong type"))
            }
            other => AuthError::InvalidToken(format!("{other:?}")),
        }
    }

    fn check_claims(&self, claims: &Value) -> Result<(), AuthError> {
        // Audience: ID tokens carry `aud`; Cognito access tokens carry `client_id` instead.
        let seen: Vec<&str> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => claims
                .get("client_id")
                .and_then(Value::as_str)
                .into_iter()
                .collect(),
        };
        let ok = match &self.audience {
            AudienceCheck::None => true,
            AudienceCheck::Exact(id) => seen.iter().any(|a| a == id),
            AudienceCheck::Regex(re) => seen.iter().any(|a| re.is_match(a)),
        };
        if !ok {
            return Err(AuthError::WrongAudience {
                found: truncate(&seen.join(",")),
            });
        }
        if self.mode == AuthMode::CognitoUserPools
            && let Some(use_) = claims.get("token_use")
            && use_ != "id"
            && use_ != "access"
        {
            return Err(AuthError::InvalidToken(
                "token_use must be id or access".to_owned(),
            ));
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        for (claim, ttl_name, ttl_ms) in [
            ("iat", "iatTTL", self.iat_ttl_ms),
            ("auth_time", "authTTL", self.auth_ttl_ms),
        ] {
            if ttl_ms == 0 {
                continue;
            }
            let at_ms = claims
                .get(claim)
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    AuthError::InvalidToken(format!(
                        "{ttl_name} is set but the token has no numeric {claim}"
                    ))
                })?
                .saturating_mul(1000);
            if now_ms.saturating_sub(at_ms) > ttl_ms {
                return Err(AuthError::TokenTooOld {
                    claim,
                    ttl_name,
                    ttl_ms,
                });
            }
        }
        Ok(())
    }
}

fn identity(mode: AuthMode, claims: Value) -> JwtIdentity {
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    let sub = s("sub").unwrap_or_default();
    let username = s("cognito:username")
        .or_else(|| s("username"))
        .unwrap_or_else(|| sub.clone());
    let groups = claims
        .get("cognito:groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    JwtIdentity {
        mode,
        issuer: s("iss").unwrap_or_default(),
        sub,
        username,
        groups,
        claims,
        default_auth_strategy: "ALLOW",
    }
}

/// Strips an optional `Bearer ` scheme (any case).
fn strip_bearer(v: &str) -> &str {
    let v = v.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v.get(7..).unwrap_or("").trim_start(),
        _ => v,
    }
}

/// Client-supplied text in log messages is cut short.
fn truncate(s: &str) -> String {
    s.chars().take(128).collect()
}

/// The `iss` claim of a token, **unverified**: only for choosing which configured verifier to
/// try when several JWT providers are allowed. Never trust it otherwise.
pub fn unverified_issuer(authorization: &str) -> Option<String> {
    let payload = strip_bearer(authorization).split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// True if the value looks like a JWT (three base64url parts), as opposed to an opaque Lambda
/// token or a SigV4 header. A routing hint only.
pub fn looks_like_jwt(authorization: &str) -> bool {
    let t = strip_bearer(authorization);
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 3
        && parts.iter().take(2).all(|p| !p.is_empty())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_prefix_is_optional() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("bearer  abc"), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
        assert_eq!(strip_bearer("Bear"), "Bear");
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("custom-lambda-token"));
        assert!(!looks_like_jwt("AWS4-HMAC-SHA256 Credential=x"));
    }

    #[test]
    fn hmac_algorithms_are_refused_in_config() {
        let cfg = OidcConfig {
            issuer: "https://idp.example".into(),
            client_id: None,
            iat_ttl: 0,
            auth_ttl: 0,
            options: JwtOptions {
                algorithms: vec![Algorithm::RS256, Algorithm::HS256],
                ..JwtOptions::default()
            },
        };
        assert!(JwtVerifier::oidc(cfg).is_err());
    }

    #[test]
    fn cognito_issuer_is_derived() {
        let v = JwtVerifier::cognito(CognitoConfig {
            user_pool_id: "us-east-1_AbC".into(),
            aws_region: "us-east-1".into(),
            app_id_client_regex: Some("abc|def".into()),
            issuer: None,
            options: JwtOptions::default(),
        })
        .unwrap();
        assert_eq!(
            v.issuer(),
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC"
        );
    }
}
