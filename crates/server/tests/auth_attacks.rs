//! The security list end to end: alg `none`, HS256 keyed with the RSA public key, a token
//! not yet valid or from another issuer, a SigV4 signature outside the time window and a webhook
//! that never answers are refused on every operation with the spec's error, and nothing secret
//! reaches the log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use common::auth::*;
use common::{KEY, b64url};
use herald_testkit::jwt::{Algorithm, EncodingKey, RSA_KID, RSA_PUBLIC_PEM, now, rs256, token};
use herald_testkit::sigv4::Signer;
use serde_json::{Value, json};

/// The security list, end to end: each credential is refused on connect, subscribe,
/// publish and HTTP publish with `UnauthorizedException`/401, and nothing secret is logged.
#[tokio::test]
async fn attacks_are_refused_with_the_spec_error_and_not_logged() {
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let w = World::start().await;
    let t = now();
    let claims = json!({"iss": w.oidc.issuer(), "sub": "mallory", "aud": OIDC_CLIENT, "iat": t, "exp": t + 600});
    let b64 = |v: &Value| b64url(&v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        b64(&claims)
    );
    // Algorithm confusion: HS256 keyed with the RSA public key the JWKS publishes.
    let hs256 = token(
        &EncodingKey::from_secret(RSA_PUBLIC_PEM),
        Algorithm::HS256,
        Some(RSA_KID),
        &claims,
    );
    let mut not_yet = claims.clone();
    not_yet["nbf"] = json!(t + 3600);
    let not_yet = rs256(&not_yet);
    let mut evil = claims.clone();
    evil["iss"] = json!("https://evil.example");
    let wrong_issuer = rs256(&evil);
    let tokens = [&alg_none, &hs256, &not_yet, &wrong_issuer];

    let key_auth = w.key_auth();
    let mut c = w.ready(&key_auth).await;
    for token in tokens {
        assert_token_refused_everywhere(&w, &mut c, token).await;
    }
    let events = vec!["1".to_owned()];
    let body = publish_body("/default/a", &events);

    // SigV4 ten minutes old (the window is ±5 minutes), on every operation.
    let old = SystemTime::now() - std::time::Duration::from_secs(600);
    let key = (AK_ALL, SK_ALL);
    assert_connect_refused(&w, &w.iam_auth_at(key, "{}", old)).await;
    assert_refused(
        &subscribe(
            &mut c,
            "s",
            "/default/a",
            &w.iam_auth_at(key, &subscribe_body("/default/a"), old),
        )
        .await,
        "subscribe_error",
        "s",
    );
    let old_pub = w.iam_auth_at(key, &body, old);
    assert_refused(
        &publish(&mut c, "p", "/default/a", &events, &old_pub).await,
        "publish_error",
        "p",
    );
    let old_signer = Signer::new(key, REGION).at(old);
    assert_http_refused(&post_signed(&w, &old_signer, &body).await);

    // A webhook that never answers: refused once the timeout passes.
    let hang = w.token_auth("hang-mallory");
    assert_connect_refused(&w, &hang).await;
    assert_refused(
        &subscribe(&mut c, "h", "/default/a", &hang).await,
        "subscribe_error",
        "h",
    );
    assert_http_refused(&post(&w, &body, &[("Authorization", "hang-mallory")]).await);
    // The connection is still served.
    assert_success(
        &subscribe(&mut c, "ok", "/default/a", &key_auth).await,
        "subscribe_success",
        "ok",
    );
    w.stop().await;

    let logs = logs.0.lock().unwrap().clone();
    assert!(
        logs.contains("authorization refused"),
        "refusals are logged:\n{logs}"
    );
    let signature = |auth: &Value| {
        auth["Authorization"]
            .as_str()
            .and_then(|a| a.rsplit_once("Signature="))
            .map(|(_, s)| s.to_owned())
            .unwrap()
    };
    let mut secrets: Vec<String> = tokens.iter().map(|t| (*t).clone()).collect();
    // The signature part of each JWT on its own.
    secrets.extend(
        tokens
            .iter()
            .filter_map(|t| t.rsplit('.').next())
            .filter(|s| s.len() > 8)
            .map(str::to_owned),
    );
    secrets.extend([
        SK_ALL.to_owned(),
        signature(&old_pub),
        "hang-mallory".to_owned(),
        KEY.to_owned(),
    ]);
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the log contains a secret ({secret}):\n{logs}"
        );
    }
}

/// Collects every log line (event and span fields) emitted on this thread while installed;
/// the server runs on the test's current-thread runtime, so its refusals are caught here.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut log = self.0.lock().unwrap();
        span.record(&mut Fields(&mut log));
        log.push('\n');
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut log = self.0.lock().unwrap();
        values.record(&mut Fields(&mut log));
        log.push('\n');
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut log = self.0.lock().unwrap();
        log.push_str(event.metadata().target());
        log.push(' ');
        event.record(&mut Fields(&mut log));
        log.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
