//! JWT verification (OIDC and Cognito) against a JWKS served by a loopback IdP, with every
//! attack the issue lists: alg none, HS256 keyed with the public key, expiry, nbf, issuer,
//! audience, tampering, unknown kid with a rate-limited refresh, and IdP failures.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_auth::jwt::{
    CognitoConfig, JwtOptions, JwtVerifier, OidcConfig, looks_like_jwt, unverified_issuer,
};
use herald_auth::{AuthError, AuthMode, Identity};
use herald_testkit::jwt::{
    Algorithm, EncodingKey, RSA_PUBLIC_PEM, ec, jwk, now, rsa, rsa_other, token,
};
use herald_testkit::{Idp, Reply, serve};
use serde_json::{Value, json};

/// The claims of a valid ID token from `idp` for the client `client-abc`.
fn idp_claims(idp: &Idp) -> Value {
    json!({
        "sub": "user-123",
        "iss": idp.issuer(),
        "aud": "client-abc",
        "exp": now() + 600,
        "iat": now(),
        "cognito:username": "alice",
        "cognito:groups": ["admins", "writers"],
        "custom": {"tier": "gold"},
    })
}

fn oidc(idp: &Idp, client_id: Option<&str>, options: JwtOptions) -> JwtVerifier {
    JwtVerifier::oidc(OidcConfig {
        issuer: idp.issuer(),
        client_id: client_id.map(str::to_owned),
        iat_ttl: 0,
        auth_ttl: 0,
        options,
    })
    .unwrap()
}

fn opts(min_refresh: u64) -> JwtOptions {
    JwtOptions {
        jwks_min_refresh_secs: min_refresh,
        ..JwtOptions::default()
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_yield_the_identity() {
    let idp = Idp::start().await;
    let v = oidc(&idp, Some("client-abc"), opts(30));
    let claims = idp_claims(&idp);

    let id = v
        .verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &claims))
        .await
        .unwrap();
    let Identity::Jwt(j) = &id else {
        panic!("JWT identity")
    };
    assert_eq!(j.mode, AuthMode::OpenIdConnect);
    assert_eq!(j.sub, "user-123");
    assert_eq!(j.username, "alice");
    assert_eq!(j.groups, ["admins", "writers"]);
    assert_eq!(j.issuer, idp.issuer());
    assert_eq!(j.claims["custom"]["tier"], "gold");
    let ctx = id.to_context_value(&["10.0.0.1".to_owned()]);
    assert_eq!(ctx["username"], "alice");
    assert_eq!(ctx["sourceIp"][0], "10.0.0.1");
    assert_eq!(ctx["defaultAuthStrategy"], "ALLOW");

    let es = token(&ec(), Algorithm::ES256, Some("ec-1"), &claims);
    v.verify(&format!("Bearer {es}")).await.unwrap();
    // Discovery once, JWKS once: the second token was served from the cache.
    assert_eq!(idp.server.hits_on("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.server.hits_on("/jwks"), 1);
    assert!(looks_like_jwt(&es));
    assert_eq!(unverified_issuer(&es), Some(idp.issuer()));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let idp = Idp::start().await;
    let v = oidc(&idp, None, opts(30));
    for alg in ["none", "None", "NONE"] {
        let t = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "kid": "rsa-1"})),
            b64(&idp_claims(&idp))
        );
        let err = v.verify(&t).await.unwrap_err();
        assert!(
            matches!(err, AuthError::AlgorithmNotAllowed(_)),
            "{alg}: {err}"
        );
        assert_eq!(
            (err.error_type(), err.http_status()),
            ("UnauthorizedException", 401)
        );
    }
    // No key was fetched for a token refused on its header.
    assert_eq!(idp.server.hits_on("/jwks"), 0);
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let idp = Idp::start().await;
    let v = oidc(&idp, None, opts(30));
    let forged = token(
        &EncodingKey::from_secret(RSA_PUBLIC_PEM),
        Algorithm::HS256,
        Some("rsa-1"),
        &idp_claims(&idp),
    );
    assert!(matches!(
        v.verify(&forged).await,
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
    // The JWK's n/e as the secret, the other classic variant.
    let n = serde_json::to_value(jwk(&rsa(), Algorithm::RS256, "rsa-1")).unwrap()["n"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = token(
        &EncodingKey::from_secret(n.as_bytes()),
        Algorithm::HS512,
        Some("rsa-1"),
        &idp_claims(&idp),
    );
    assert!(matches!(
        v.verify(&forged).await,
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
}

#[tokio::test]
async fn algorithm_must_match_the_key() {
    let idp = Idp::start().await;
    let v = oidc(&idp, None, opts(30));
    // ES256 header pointing at the RSA key.
    let t = token(&ec(), Algorithm::ES256, Some("rsa-1"), &idp_claims(&idp));
    assert!(matches!(
        v.verify(&t).await,
        Err(AuthError::InvalidToken(_))
    ));
    // RS384 is a valid RSA algorithm but not configured.
    let t = token(&rsa(), Algorithm::RS384, Some("rsa-1"), &idp_claims(&idp));
    assert!(matches!(
        v.verify(&t).await,
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
}

#[tokio::test]
async fn time_claims_are_enforced_with_leeway() {
    let idp = Idp::start().await;
    let v = oidc(&idp, None, opts(30));
    let mut c = idp_claims(&idp);
    c["exp"] = json!(now() - 3600);
    assert_eq!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::TokenExpired)
    );
    c["exp"] = json!(now() - 10); // inside the default 60 s leeway
    v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
        .await
        .unwrap();
    let mut c = idp_claims(&idp);
    c["nbf"] = json!(now() + 3600);
    assert_eq!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::TokenNotYetValid)
    );
    let mut c = idp_claims(&idp);
    c.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn issuer_and_audience_are_checked() {
    let idp = Idp::start().await;
    let v = oidc(&idp, Some("client-abc"), opts(30));
    let mut c = idp_claims(&idp);
    c["iss"] = json!("https://evil.example");
    let err = v
        .verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::WrongIssuer { ref found, .. } if found == "https://evil.example"),
        "{err}"
    );

    let mut c = idp_claims(&idp);
    c["aud"] = json!("someone-else");
    assert!(matches!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::WrongAudience { .. })
    ));
    c["aud"] = json!(["someone-else", "client-abc"]);
    v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
        .await
        .unwrap();
    // No aud: fall back to client_id (Cognito access tokens).
    c.as_object_mut().unwrap().remove("aud");
    c["client_id"] = json!("client-abc");
    v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
        .await
        .unwrap();
    c.as_object_mut().unwrap().remove("client_id");
    assert!(matches!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::WrongAudience { .. })
    ));
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let idp = Idp::start().await;
    let v = oidc(&idp, None, opts(30));
    let t = token(&rsa(), Algorithm::RS256, Some("rsa-1"), &idp_claims(&idp));
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = idp_claims(&idp);
    c["sub"] = json!("admin");
    let swapped = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
    let err = v.verify(&swapped).await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidToken(_)), "{err}");
    assert!(
        !err.to_string().contains(parts[2]),
        "no token material in the message"
    );
    let mut sig = parts[2].to_owned();
    sig.replace_range(0..2, if sig.starts_with("AA") { "BB" } else { "AA" });
    let flipped = format!("{}.{}.{sig}", parts[0], parts[1]);
    assert!(matches!(
        v.verify(&flipped).await,
        Err(AuthError::InvalidToken(_))
    ));
    for garbage in ["", "a.b", "a.b.c.d", "!!!.e30.x", "e30.e30.e30"] {
        assert!(v.verify(garbage).await.is_err(), "{garbage}");
    }
}

#[tokio::test]
async fn unknown_kid_refreshes_at_most_once_per_interval() {
    let idp = Idp::start().await;
    let v = Arc::new(oidc(&idp, None, opts(3600)));
    let claims = idp_claims(&idp);
    v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &claims))
        .await
        .unwrap();
    assert_eq!(idp.server.hits_on("/jwks"), 1);

    // A flood of unknown kids inside the interval: no new fetch.
    let unknown = token(&rsa_other(), Algorithm::RS256, Some("rsa-2"), &claims);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (v, t) = (Arc::clone(&v), unknown.clone());
            tokio::spawn(async move { v.verify(&t).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            t.await.unwrap(),
            Err(AuthError::UnknownKeyId { .. })
        ));
    }
    assert_eq!(idp.server.hits_on("/jwks"), 1);
}

#[tokio::test]
async fn unknown_kid_picks_up_a_rotated_key() {
    let idp = Idp::start().await;
    let v = Arc::new(oidc(&idp, None, opts(0)));
    let claims = idp_claims(&idp);
    let new = token(&rsa_other(), Algorithm::RS256, Some("rsa-2"), &claims);
    assert!(matches!(
        v.verify(&new).await,
        Err(AuthError::UnknownKeyId { .. })
    ));
    idp.jwks
        .lock()
        .unwrap()
        .keys
        .push(jwk(&rsa_other(), Algorithm::RS256, "rsa-2"));
    v.verify(&new).await.unwrap();
    assert_eq!(idp.server.hits_on("/jwks"), 2);
    assert_eq!(idp.server.hits_on("/.well-known/openid-configuration"), 1);
}

#[tokio::test]
async fn stale_keys_are_refetched_revoked_keys_drop_and_cached_keys_survive_an_outage() {
    let idp = Idp::start().await;
    // max age 0: every token finds the cache stale; no refresh rate limit.
    let v = oidc(
        &idp,
        None,
        JwtOptions {
            jwks_max_age_secs: 0,
            ..opts(0)
        },
    );
    let claims = idp_claims(&idp);
    let rsa_token = token(&rsa(), Algorithm::RS256, Some("rsa-1"), &claims);
    let ec_token = token(&ec(), Algorithm::ES256, Some("ec-1"), &claims);
    v.verify(&rsa_token).await.unwrap();
    v.verify(&rsa_token).await.unwrap();
    assert_eq!(idp.server.hits_on("/jwks"), 2);

    // The IdP goes down: the cached key still verifies (and the outage is retried each time).
    idp.down.store(true, Ordering::SeqCst);
    v.verify(&rsa_token).await.unwrap();
    assert_eq!(idp.server.hits_on("/jwks"), 3);

    // Back up, with ec-1 revoked: the refresh drops it.
    idp.down.store(false, Ordering::SeqCst);
    idp.jwks
        .lock()
        .unwrap()
        .keys
        .retain(|k| k.common.key_id.as_deref() != Some("ec-1"));
    assert!(matches!(
        v.verify(&ec_token).await,
        Err(AuthError::UnknownKeyId { .. })
    ));
    v.verify(&rsa_token).await.unwrap();
}

#[tokio::test]
async fn concurrent_first_tokens_share_one_fetch() {
    let idp = Idp::start().await;
    let v = Arc::new(oidc(&idp, None, opts(3600)));
    let t = token(&rsa(), Algorithm::RS256, Some("rsa-1"), &idp_claims(&idp));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (v, t) = (Arc::clone(&v), t.clone());
            tokio::spawn(async move { v.verify(&t).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(idp.server.hits_on("/jwks"), 1);
}

#[tokio::test]
async fn iat_and_auth_ttl() {
    let idp = Idp::start().await;
    let v = JwtVerifier::oidc(OidcConfig {
        issuer: idp.issuer(),
        client_id: None,
        iat_ttl: 5_000,
        auth_ttl: 60_000,
        options: opts(30),
    })
    .unwrap();
    let mut c = idp_claims(&idp);
    c["auth_time"] = json!(now() - 30);
    v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
        .await
        .unwrap();
    c["iat"] = json!(now() - 20);
    assert!(matches!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::TokenTooOld { claim: "iat", .. })
    ));
    c["iat"] = json!(now());
    c["auth_time"] = json!(now() - 120);
    assert!(matches!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::TokenTooOld {
            claim: "auth_time",
            ..
        })
    ));
    c.as_object_mut().unwrap().remove("auth_time");
    assert!(matches!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn cognito_with_issuer_override_and_client_regex() {
    let idp = Idp::start().await;
    let v = JwtVerifier::cognito(CognitoConfig {
        user_pool_id: "us-east-1_Test".into(),
        aws_region: "us-east-1".into(),
        app_id_client_regex: Some("client-[a-z]+".into()),
        issuer: Some(idp.issuer()),
        options: opts(30),
    })
    .unwrap();
    assert_eq!(v.mode(), AuthMode::CognitoUserPools);
    // An access token: client_id, no aud.
    let mut c = idp_claims(&idp);
    c.as_object_mut().unwrap().remove("aud");
    c["client_id"] = json!("client-abc");
    c["token_use"] = json!("access");
    let id = v
        .verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
        .await
        .unwrap();
    assert_eq!(id.mode(), AuthMode::CognitoUserPools);
    // The regex is anchored: a prefix match is not enough.
    c["client_id"] = json!("client-abc-123");
    assert!(matches!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::WrongAudience { .. })
    ));
    c["client_id"] = json!("client-abc");
    c["token_use"] = json!("refresh");
    assert!(matches!(
        v.verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &c))
            .await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn idp_failures_deny_and_count_as_server_faults() {
    // JWKS endpoint returns garbage.
    let server = serve(|path, _| match path {
        "/jwks" => Reply::Raw(200, "text/html", "<html>oops</html>".into()),
        _ => Reply::Json(500, "{}".into()),
    })
    .await;
    let v = JwtVerifier::oidc(OidcConfig {
        issuer: server.url(""),
        client_id: None,
        iat_ttl: 0,
        auth_ttl: 0,
        options: JwtOptions {
            jwks_uri: Some(server.url("/jwks")),
            ..opts(30)
        },
    })
    .unwrap();
    let mut claims = json!({"iss": server.url(""), "exp": now() + 60});
    let err = v
        .verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &claims))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable { .. }), "{err}");
    assert!(err.is_server_fault());
    assert_eq!(err.http_status(), 401);

    // Discovery fails (HTTP 500).
    let v = JwtVerifier::oidc(OidcConfig {
        issuer: server.url(""),
        client_id: None,
        iat_ttl: 0,
        auth_ttl: 0,
        options: opts(30),
    })
    .unwrap();
    assert!(matches!(
        v.prefetch().await,
        Err(AuthError::KeysUnavailable { .. })
    ));

    // Discovery names another issuer.
    let idp = Idp::start().await;
    let other = serve({
        let jwks_uri = idp.server.url("/jwks");
        move |_, _| {
            Reply::Json(
                200,
                json!({"issuer": "https://someone.else", "jwks_uri": jwks_uri}).to_string(),
            )
        }
    })
    .await;
    let v = JwtVerifier::oidc(OidcConfig {
        issuer: other.url(""),
        client_id: None,
        iat_ttl: 0,
        auth_ttl: 0,
        options: opts(30),
    })
    .unwrap();
    claims["iss"] = json!(other.url(""));
    let err = v
        .verify(&token(&rsa(), Algorithm::RS256, Some("rsa-1"), &claims))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::KeysUnavailable { ref reason, .. } if reason.contains("someone.else")),
        "{err}"
    );

    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let v = JwtVerifier::oidc(OidcConfig {
        issuer: format!("http://{closed}"),
        client_id: None,
        iat_ttl: 0,
        auth_ttl: 0,
        options: opts(30),
    })
    .unwrap();
    assert!(matches!(
        v.prefetch().await,
        Err(AuthError::KeysUnavailable { .. })
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Arbitrary input (random text, or three base64url parts of random JSON-ish bytes) is
    /// refused without panicking and without fetching keys for a header we would refuse anyway.
    #[test]
    fn garbage_tokens_never_panic(
        raw in ".{0,200}",
        header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        alg in "(none|HS256|HS512|RS256x|[A-Za-z0-9]{0,6})",
        payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            // Port 9 on loopback: nothing listens, so any fetch would fail fast.
            let v = JwtVerifier::oidc(OidcConfig {
                issuer: "http://127.0.0.1:9".into(),
                client_id: None,
                iat_ttl: 0,
                auth_ttl: 0,
                options: opts(3600),
            })
            .unwrap();
            assert!(v.verify(&raw).await.is_err());
            let t = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&header));
            assert!(v.verify(&t).await.is_err());
            let t = format!("{}.{}.sig", b64(&json!({"alg": alg, "kid": "k"})), URL_SAFE_NO_PAD.encode(&payload));
            let err = v.verify(&t).await.unwrap_err();
            if alg != "RS256" && alg != "ES256" {
                assert!(matches!(err, AuthError::AlgorithmNotAllowed(_)), "{err}");
            }
        });
    }
}
