//! Credential verification for Herald, the self-hosted AppSync Events server.
//!
//! Layout, one module per AppSync authorization mode plus the shared vocabulary:
//! * [`identity`]: [`Operation`], [`AuthMode`] and the [`Identity`] handlers read.
//! * [`error`]: [`AuthError`] (why a credential was refused; always `UnauthorizedException`/401
//!   on the wire) and [`ConfigError`].
//! * [`sigv4`]: `AWS_IAM`, SigV4 against a configured access-key table, over real HTTP requests
//!   and the synthetic WebSocket requests.
//! * [`jwt`]: `AMAZON_COGNITO_USER_POOLS` and `OPENID_CONNECT`, JWTs verified against the issuer's
//!   JWKS (discovered, cached, refreshed on unknown `kid` with a rate limit).
//! * [`lambda`]: `AWS_LAMBDA`, an HTTP webhook speaking the Lambda authorizer's JSON, with a
//!   decision cache.
//!
//! [`Providers`] bundles them: built from the `[[auth.providers]]` entries ([`ProviderConfig`]),
//! it picks the mode from the credential and verifies it.
//!
//! API keys are verified by the server itself. Mode selection (which modes a connection,
//! namespace or operation accepts) is the server's; this crate answers "is this credential valid
//! for this operation, and who is it?".

mod config;
pub mod error;
mod http;
pub mod identity;
pub mod jwt;
pub mod lambda;
mod providers;
pub mod sigv4;
pub mod time;

pub use config::ProviderConfig;
pub use error::{AuthError, ConfigError};
pub use identity::{
    AuthMode, IamIdentity, Identity, JwtIdentity, LambdaIdentity, Operation, auth_field,
};
pub use providers::{AuthRequest, Credential, Providers};
