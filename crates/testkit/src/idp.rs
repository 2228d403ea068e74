//! A loopback OpenID provider: the discovery document at `/.well-known/openid-configuration`
//! naming the server itself as issuer, and a JWKS at `/jwks` the test can rotate or take down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde_json::json;

use crate::fixture::{Fixture, Reply, serve};
use crate::jwt::{EC_KID, RSA_KID, ec, jwk, rsa};

/// A running IdP. Its JWKS starts with [`jwt::rsa`](crate::jwt::rsa) as [`RSA_KID`] (RS256) and
/// [`jwt::ec`](crate::jwt::ec) as [`EC_KID`] (ES256), and is served with one more key of an
/// unsupported type, which verifiers must skip.
pub struct Idp {
    pub server: Fixture,
    /// The keys served; changes show on the next fetch.
    pub jwks: Arc<Mutex<JwkSet>>,
    /// While set, `/jwks` answers 503.
    pub down: Arc<AtomicBool>,
}

impl Idp {
    pub async fn start() -> Idp {
        let jwks = Arc::new(Mutex::new(JwkSet {
            keys: vec![
                jwk(&rsa(), Algorithm::RS256, RSA_KID),
                jwk(&ec(), Algorithm::ES256, EC_KID),
            ],
        }));
        // The issuer is the server's own URL, known once it is bound.
        let issuer: Arc<Mutex<String>> = Arc::default();
        let down = Arc::new(AtomicBool::new(false));
        let (keys, iss, off) = (Arc::clone(&jwks), Arc::clone(&issuer), Arc::clone(&down));
        let server = serve(move |path, _| match path {
            "/.well-known/openid-configuration" => {
                let iss = iss.lock().unwrap().clone();
                Reply::Json(
                    200,
                    json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")}).to_string(),
                )
            }
            "/jwks" if off.load(Ordering::SeqCst) => Reply::Json(503, "{}".into()),
            "/jwks" => {
                let mut doc = serde_json::to_value(&*keys.lock().unwrap()).unwrap();
                doc["keys"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"kty": "weird", "kid": "x"}));
                Reply::Json(200, doc.to_string())
            }
            _ => Reply::Json(404, "{}".into()),
        })
        .await;
        *issuer.lock().unwrap() = server.url("");
        Idp { server, jwks, down }
    }

    /// The issuer URL (`iss` of its tokens): the server's origin.
    pub fn issuer(&self) -> String {
        self.server.url("")
    }
}
