//! The throwaway keys of `data/` and JWT minting. [`Idp`](crate::Idp) publishes [`rsa`] and
//! [`ec`]; [`rsa_other`] is never published, so it forges signatures.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
pub use jsonwebtoken::{Algorithm, EncodingKey};
use jsonwebtoken::{Header, encode};
use serde_json::Value;

/// The public half of [`rsa`], PEM (for algorithm-confusion attacks).
pub const RSA_PUBLIC_PEM: &[u8] = include_bytes!("../data/rsa_public.pem");
/// The key id [`Idp`](crate::Idp) publishes [`rsa`] under.
pub const RSA_KID: &str = "rsa-1";
/// The key id [`Idp`](crate::Idp) publishes [`ec`] under.
pub const EC_KID: &str = "ec-1";

/// RSA 2048 (RS256).
pub fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("../data/rsa_private.pem")).unwrap()
}

/// Another RSA 2048 key, published by no IdP unless a test adds it.
pub fn rsa_other() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("../data/rsa_other_private.pem")).unwrap()
}

/// P-256 (ES256).
pub fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(include_bytes!("../data/ec_private.pem")).unwrap()
}

/// The public JWK of `key` for `alg`, under `kid`.
pub fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).unwrap();
    j.common.key_id = Some(kid.to_owned());
    j
}

/// A JWT over `claims`, signed with `key` as `alg`, its header naming `kid`.
pub fn token(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, key).unwrap()
}

/// `claims` signed RS256 with [`rsa`], as [`RSA_KID`].
pub fn rs256(claims: &Value) -> String {
    token(&rsa(), Algorithm::RS256, Some(RSA_KID), claims)
}

/// `claims` signed ES256 with [`ec`], as [`EC_KID`].
pub fn es256(claims: &Value) -> String {
    token(&ec(), Algorithm::ES256, Some(EC_KID), claims)
}

/// Seconds since the epoch, for `iat`, `exp` and `nbf`.
pub fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}
