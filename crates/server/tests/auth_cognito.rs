//! Cognito user pools end to end, and a namespace that takes only Cognito refusing every other
//! mode. The user pool is an OpenID provider fixture named as the pool's `issuer`.

mod common;

use common::auth::*;
use serde_json::json;

#[tokio::test]
async fn cognito_user_pools_end_to_end() {
    let w = World::start().await;
    let token = cognito_token(&w.cognito, "bob");
    token_mode_end_to_end(&w, &token).await;
    // The Cognito-only namespace takes it for both operations.
    let auth = w.token_auth(&token);
    let mut c = w.ready(&auth).await;
    assert_success(
        &subscribe(&mut c, "p", "/pool/a", &auth).await,
        "subscribe_success",
        "p",
    );
    let body = publish_body("/pool/a", &["\"pooled\"".to_owned()]);
    assert_eq!(post(&w, &body, &[("Authorization", &token)]).await.0, 200);
    assert_eq!(next_event(&mut c, "p").await, json!("pooled"));
    w.stop().await;
}

#[tokio::test]
async fn oidc_token_refused_where_only_cognito_is_allowed() {
    let w = World::start().await;
    let oidc = oidc_token(&w.oidc, "leo");
    let auth = w.token_auth(&oidc);
    let mut c = w.ready(&auth).await;
    assert_refused(
        &subscribe(&mut c, "s", "/pool/a", &auth).await,
        "subscribe_error",
        "s",
    );
    let events = vec!["1".to_owned()];
    assert_refused(
        &publish(&mut c, "p", "/pool/a", &events, &auth).await,
        "publish_error",
        "p",
    );
    let body = publish_body("/pool/a", &events);
    assert_http_refused(&post(&w, &body, &[("Authorization", &oidc)]).await);
    // IAM and Lambda are refused there too, without reaching the webhook.
    assert_eq!(post_iam(&w, (AK_ALL, SK_ALL), &body, false).await.0, 401);
    let before = w.hook.bodies("/authorize").len();
    assert_http_refused(&post(&w, &body, &[("Authorization", "allow-x")]).await);
    assert_eq!(w.hook.bodies("/authorize").len(), before);
    w.stop().await;
}
