//! OpenID Connect end to end over real sockets (WebSocket connect through the `header-`
//! subprotocol, per-operation `authorization`, HTTP `POST /event`), and the JWTs refused in both
//! JWT modes: forged, expired, for another client. The world comes from `common::auth`.

mod common;

use common::auth::*;
use herald_testkit::jwt::{Algorithm, RSA_KID, es256, now, rs256, rsa_other, token};
use serde_json::json;

#[tokio::test]
async fn openid_connect_end_to_end() {
    let w = World::start().await;
    let token = oidc_token(&w.oidc, "alice");
    token_mode_end_to_end(&w, &token).await;
    // `Bearer <jwt>` is accepted too, on HTTP.
    let body = publish_body("/default/x", &["1".to_owned()]);
    let bearer = format!("Bearer {token}");
    assert_eq!(post(&w, &body, &[("Authorization", &bearer)]).await.0, 200);
    w.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_everywhere() {
    let w = World::start().await;
    let t = now();
    // Signed by a key the IdP does not publish, under the IdP's kid: a forged signature.
    let forged = token(
        &rsa_other(),
        Algorithm::RS256,
        Some(RSA_KID),
        &json!({"iss": w.oidc.issuer(), "sub": "mallory", "aud": OIDC_CLIENT, "iat": t, "exp": t + 600}),
    );
    let expired = rs256(
        &json!({"iss": w.oidc.issuer(), "sub": "mallory", "aud": OIDC_CLIENT, "iat": t - 7200, "exp": t - 3600}),
    );
    let wrong_client = rs256(
        &json!({"iss": w.oidc.issuer(), "sub": "mallory", "aud": "another-app", "iat": t, "exp": t + 600}),
    );
    let cognito_wrong_client = es256(
        &json!({"iss": w.cognito.issuer(), "sub": "m", "client_id": "not-the-app", "token_use": "access", "iat": t, "exp": t + 600}),
    );
    let good = oidc_token(&w.oidc, "ok");
    let good_auth = w.token_auth(&good);
    let mut c = w.ready(&good_auth).await;
    for bad in [&forged, &expired, &wrong_client, &cognito_wrong_client] {
        assert_token_refused_everywhere(&w, &mut c, bad).await;
    }
    // The connection that was refused per operation is still usable.
    assert_success(
        &subscribe(&mut c, "s", "/default/a", &good_auth).await,
        "subscribe_success",
        "s",
    );
    w.stop().await;
}
