//! What Herald's test suites share (dev-only, never published): the loopback servers a test
//! stands up in place of the outside world, and independent signers for the credentials Herald
//! verifies.
//!
//! - [`fixture`]: an HTTP server on `127.0.0.1:0` answering from a closure and recording requests.
//! - [`idp`]: an OpenID provider on a fixture (discovery document and a JWKS the test can change).
//! - [`authorizer`]: a Lambda-style authorizer webhook on a fixture.
//! - [`jwt`]: the throwaway keys of `data/` and token minting with `jsonwebtoken`.
//! - [`sigv4`]: SigV4 signing with the `aws-sigv4` crate as the oracle, in the HTTP and the
//!   WebSocket (amplify-js) forms.
//!
//! Test code: it panics on anything unexpected instead of returning errors.

pub mod authorizer;
pub mod fixture;
pub mod idp;
pub mod jwt;
pub mod sigv4;

pub use authorizer::authorizer;
pub use fixture::{Fixture, Hit, Reply, serve};
pub use idp::Idp;
