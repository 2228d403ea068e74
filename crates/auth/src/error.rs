//! Why a credential was refused, and how that maps to the AppSync wire.

use thiserror::Error;

/// The AppSync `errorType` of every authorization failure.
pub const UNAUTHORIZED_ERROR_TYPE: &str = "UnauthorizedException";

/// The message AppSync sends with [`UNAUTHORIZED_ERROR_TYPE`]. Clients never see the precise reason:
/// it would help an attacker probe keys and clocks. The reason goes to the server log instead.
pub const UNAUTHORIZED_MESSAGE: &str = "You are not authorized to make this call.";

/// A refused credential. `Display` says what went wrong and what to do about it, for the server log;
/// it never contains a secret, a signature or a token. On the wire every variant is the same
/// `UnauthorizedException` / HTTP 401 ([`AuthError::error_type`], [`AuthError::http_status`]).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carries no credential for this mode.
    #[error("missing credential: {0}")]
    MissingCredential(&'static str),
    /// The credential is present but cannot be parsed.
    #[error("malformed credential: {0}")]
    Malformed(String),

    /// The credential selects a mode the operation does not accept, or one with no provider.
    #[error("the credential is for {mode}, which is {reason}")]
    ModeNotAllowed {
        /// The AppSync mode name.
        mode: &'static str,
        /// "not allowed for this operation" or "not configured".
        reason: &'static str,
    },
    /// A token matched no allowed mode (no configured JWT issuer, and AWS_LAMBDA not allowed).
    #[error(
        "the token matches no allowed mode: not a JWT from a configured issuer, and AWS_LAMBDA is not allowed here"
    )]
    NoMatchingMode,

    // ---- SigV4 ----
    /// The access key id is not in the configured table.
    #[error("unknown access key id {access_key_id:?}: add it to the AWS_IAM provider's keys")]
    UnknownAccessKey {
        /// The public key id (not a secret).
        access_key_id: String,
    },
    /// The recomputed signature differs from the one presented.
    #[error(
        "SigV4 signature mismatch for access key {access_key_id:?}: wrong secret, or the client signed a different request (host, path, headers or body)"
    )]
    BadSignature {
        /// The public key id (not a secret).
        access_key_id: String,
    },
    /// `x-amz-date` is further from the server clock than the allowed skew.
    #[error(
        "SigV4 request time {request_time} is {skew_secs}s away from the server clock (allowed ±{max_skew_secs}s): check client and server clocks"
    )]
    DateSkew {
        /// The `x-amz-date` value as sent.
        request_time: String,
        /// Absolute difference to the server clock, in seconds.
        skew_secs: u64,
        /// The configured window.
        max_skew_secs: u64,
    },
    /// The credential scope names another service, a region this server refuses, or a date
    /// that is not the date of `x-amz-date`.
    #[error("SigV4 credential scope {scope:?} refused: {reason}")]
    BadScope {
        /// The credential scope as sent (`date/region/service/aws4_request`).
        scope: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key has a session token and the request carries none, or another one.
    #[error("missing or wrong x-amz-security-token for access key {access_key_id:?}")]
    BadSessionToken {
        /// The public key id (not a secret).
        access_key_id: String,
    },
    /// The key may not perform this action (`EventConnect`, `EventPublish`, `EventSubscribe`).
    #[error("access key {access_key_id:?} is not allowed to perform {action}")]
    ActionNotAllowed {
        /// The public key id (not a secret).
        access_key_id: String,
        /// The IAM action name.
        action: &'static str,
    },
    /// The key may perform the action, but not on this namespace.
    #[error("access key {access_key_id:?} may not {action} on namespace {namespace:?}")]
    NamespaceNotAllowed {
        /// The public key id (not a secret).
        access_key_id: String,
        /// The IAM action name.
        action: &'static str,
        /// The channel namespace asked for.
        namespace: String,
    },

    // ---- JWT ----
    /// The token's `alg` is not among the accepted asymmetric algorithms (covers `none` and HS*).
    // The hint names what can be configured: `none` and HS* never can (algorithm confusion).
    #[error(
        "JWT algorithm {0} is not accepted: only the asymmetric algorithms listed in `algorithms` are (never none or HS*)"
    )]
    AlgorithmNotAllowed(String),
    /// `exp` (plus leeway) is in the past.
    #[error("JWT expired")]
    TokenExpired,
    /// `nbf` (minus leeway) is in the future.
    #[error("JWT not valid yet (nbf in the future): check the issuer's clock")]
    TokenNotYetValid,
    /// `iss` is not the configured issuer.
    #[error("JWT issuer {found:?} is not the configured issuer {expected:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The `iss` claim (or "" when absent).
        found: String,
    },
    /// Neither `aud` nor `client_id` matches `clientId` / `appIdClientRegex`.
    #[error("JWT audience/client id {found:?} does not match the configured client id")]
    WrongAudience {
        /// The `aud` / `client_id` claim(s) seen.
        found: String,
    },
    /// `iat` or `auth_time` is older than `iatTTL` / `authTTL`.
    #[error("JWT {claim} is older than the configured {ttl_name} of {ttl_ms} ms")]
    TokenTooOld {
        /// `iat` or `auth_time`.
        claim: &'static str,
        /// `iatTTL` or `authTTL`.
        ttl_name: &'static str,
        /// The configured limit in milliseconds.
        ttl_ms: u64,
    },
    /// The token's `kid` is not in the issuer's JWKS, even after a refresh.
    #[error(
        "JWT key id {kid:?} not found in the issuer's JWKS (refreshed at most once per {min_refresh_secs}s)"
    )]
    UnknownKeyId {
        /// The `kid` header.
        kid: String,
        /// The refresh rate limit.
        min_refresh_secs: u64,
    },
    /// The signature does not verify, or the claims are invalid in some other way.
    #[error("JWT rejected: {0}")]
    InvalidToken(String),
    /// The issuer's discovery document or JWKS could not be fetched or parsed.
    #[error("cannot load signing keys for issuer {issuer:?}: {reason}")]
    KeysUnavailable {
        /// The configured issuer.
        issuer: String,
        /// What failed.
        reason: String,
    },

    // ---- Lambda authorizer ----
    /// The token does not match `identityValidationExpression`; the authorizer was not called.
    #[error("token does not match identityValidationExpression; authorizer not called")]
    TokenFailedValidation,
    /// The authorizer answered `isAuthorized: false`.
    #[error("authorizer denied the request")]
    AuthorizerDenied,
    /// The authorizer could not be reached, timed out or answered non-2xx.
    #[error("authorizer unavailable: {0}")]
    AuthorizerUnavailable(String),
    /// The authorizer answered 2xx with a body that is not the documented response.
    #[error("authorizer returned an invalid response: {0}")]
    AuthorizerInvalidResponse(String),
}

impl AuthError {
    /// The AppSync `errorType` to put on the wire: always `UnauthorizedException`.
    pub fn error_type(&self) -> &'static str {
        UNAUTHORIZED_ERROR_TYPE
    }

    /// The HTTP status for `POST /event` and the `errorCode` of `connection_error`: always 401.
    pub fn http_status(&self) -> u16 {
        401
    }

    /// The client-facing message; deliberately the same for every reason.
    pub fn client_message(&self) -> &'static str {
        UNAUTHORIZED_MESSAGE
    }

    /// True when the refusal comes from our side or a dependency (JWKS or authorizer down), not
    /// from the credential: count it as a server error in metrics. The client still gets a 401.
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            AuthError::KeysUnavailable { .. } | AuthError::AuthorizerUnavailable(_)
        )
    }
}

/// A provider configuration that cannot be used. Returned when building verifiers, at startup.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value we cannot accept.
    #[error("auth config: {field}: {reason}")]
    Invalid {
        /// Which field (TOML key).
        field: String,
        /// Why, and what to write instead.
        reason: String,
    },
    /// A regular expression does not compile.
    #[error("auth config: {field}: invalid regular expression: {source}")]
    Regex {
        /// Which field (TOML key).
        field: &'static str,
        /// The regex error.
        #[source]
        source: regex::Error,
    },
    /// The HTTP client could not be built.
    #[error("auth config: cannot build HTTP client: {0}")]
    HttpClient(String),
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
