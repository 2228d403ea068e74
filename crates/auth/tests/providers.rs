//! The `Providers` facade: config as documented (parsed with figment from
//! docs/authorization.md), mode selection by credential, and refusal of every mode that is not
//! allowed or not configured.

use figment::Figment;
use figment::providers::{Format, Toml};
use herald_auth::jwt::{JwtOptions, OidcConfig};
use herald_auth::lambda::LambdaConfig;
use herald_auth::sigv4::{AccessKeyConfig, IamAction, SigV4Config, publish_body, subscribe_body};
use herald_auth::{
    AuthError, AuthMode, AuthRequest, Credential, Identity, Operation, ProviderConfig, Providers,
};
use herald_testkit::jwt::{now, rs256};
use herald_testkit::sigv4::Signer;
use herald_testkit::{Fixture, Idp, Reply, serve};
use serde::Deserialize;
use serde_json::{Map, json};

const DOCS: &str = include_str!("../../../docs/authorization.md");

#[derive(Deserialize)]
struct DocConfig {
    auth: DocAuth,
}

#[derive(Deserialize)]
struct DocAuth {
    #[serde(default)]
    providers: Vec<ProviderConfig>,
    connection_auth_modes: Vec<AuthMode>,
    default_publish_auth_modes: Vec<AuthMode>,
    default_subscribe_auth_modes: Vec<AuthMode>,
}

fn toml_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn documented_config_parses_and_configures_every_mode() {
    let blocks = toml_blocks(DOCS);
    assert!(blocks.len() >= 6, "docs have one example per mode");
    let all = blocks.concat();
    let cfg: DocConfig = Figment::from(Toml::string(&all))
        .extract()
        .expect("docs TOML parses");
    let modes: Vec<AuthMode> = cfg
        .auth
        .providers
        .iter()
        .map(ProviderConfig::mode)
        .collect();
    for m in [
        AuthMode::ApiKey,
        AuthMode::Iam,
        AuthMode::OpenIdConnect,
        AuthMode::CognitoUserPools,
        AuthMode::Lambda,
    ] {
        assert!(modes.contains(&m), "docs configure {m:?}");
    }
    let p = Providers::new(&cfg.auth.providers).expect("documented providers build");
    p.check_modes("connection_auth_modes", &cfg.auth.connection_auth_modes)
        .unwrap();
    p.check_modes(
        "default_publish_auth_modes",
        &cfg.auth.default_publish_auth_modes,
    )
    .unwrap();
    p.check_modes(
        "default_subscribe_auth_modes",
        &cfg.auth.default_subscribe_auth_modes,
    )
    .unwrap();

    // The IAM keys were read as documented, and serializing never shows the secrets.
    let iam = cfg.auth.providers.iter().find_map(|p| match p {
        ProviderConfig::Iam(c) => Some(c.clone()),
        _ => None,
    });
    let iam = iam.unwrap();
    assert_eq!(iam.keys.len(), 2);
    assert_eq!(
        iam.keys[0].actions,
        [IamAction::EventConnect, IamAction::EventPublish]
    );
    let dumped = serde_json::to_string(&cfg.auth.providers).unwrap();
    for secret in [
        "change-me-publisher-secret",
        "optional-session-token",
        "change-me\"",
    ] {
        assert!(!dumped.contains(secret), "{secret} leaked in {dumped}");
    }
    // Each block also parses on its own (as a reader would paste it).
    for b in &blocks {
        figment::Figment::from(Toml::string(b))
            .extract::<serde_json::Value>()
            .expect("block parses alone");
    }
}

#[test]
fn config_mistakes_are_reported() {
    let typo = "[[auth.providers]]\nauth_type = \"OPENID_CONNECT\"\nissuer = \"https://x\"\nclientid = \"a\"\n";
    let r: Result<DocAuthOnly, _> = Figment::from(Toml::string(typo)).extract();
    assert!(r.is_err(), "unknown key is an error");
    let unknown = "[[auth.providers]]\nauth_type = \"AWS_MAGIC\"\n";
    assert!(
        Figment::from(Toml::string(unknown))
            .extract::<DocAuthOnly>()
            .is_err()
    );
    let p = Providers::new(&[]).unwrap();
    let err = p
        .check_modes(
            "connection_auth_modes",
            &[AuthMode::ApiKey, AuthMode::Lambda],
        )
        .unwrap_err();
    assert!(err.to_string().contains("AWS_LAMBDA"), "{err}");
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct DocAuthOnly {
    auth: DocProviders,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct DocProviders {
    providers: Vec<ProviderConfig>,
}

// ------------------------------------------------------------------ live selection

const AK: &str = "AKIDPROVIDERS";
const SK: &str = "providers-secret";
const HOST: &str = "herald.example.com";

fn jwt(iss: &str) -> String {
    rs256(&json!({"sub": "s", "iss": iss, "exp": now() + 60}))
}

/// Signs the amplify-style WebSocket auth object over `body`.
fn iam_fields(body: &str) -> Vec<(String, String)> {
    Signer::new((AK, SK), "us-east-1")
        .ws_auth(HOST, body)
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
        .collect()
}

struct Setup {
    providers: Providers,
    idp_issuer: String,
    lambda_hits: Fixture,
}

async fn setup() -> Setup {
    let idp = Idp::start().await;
    let lambda = serve(|_, body| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let ok = v["authorizationToken"]
            .as_str()
            .is_some_and(|t| t.starts_with("allow"));
        Reply::Json(
            200,
            json!({"isAuthorized": ok, "handlerContext": {"via": "lambda"}}).to_string(),
        )
    })
    .await;
    let issuer = idp.issuer();
    let configs = vec![
        ProviderConfig::ApiKey,
        ProviderConfig::Iam(SigV4Config {
            keys: vec![AccessKeyConfig {
                access_key_id: AK.into(),
                secret_access_key: SK.into(),
                session_token: None,
                actions: vec![
                    IamAction::EventConnect,
                    IamAction::EventPublish,
                    IamAction::EventSubscribe,
                ],
                namespaces: vec!["chat".into()],
                principal: "p".into(),
                account_id: None,
            }],
            ..SigV4Config::default()
        }),
        ProviderConfig::Oidc(OidcConfig {
            issuer: issuer.clone(),
            client_id: None,
            iat_ttl: 0,
            auth_ttl: 0,
            options: JwtOptions {
                jwks_uri: Some(idp.server.url("/jwks")),
                ..JwtOptions::default()
            },
        }),
        ProviderConfig::Lambda(LambdaConfig {
            authorizer_url: lambda.url("/authorize"),
            authorizer_result_ttl_in_seconds: 0,
            identity_validation_expression: None,
            timeout_ms: 2000,
            api_id: "herald".into(),
            account_id: String::new(),
            webhook_headers: Default::default(),
            max_cache_entries: 10,
        }),
    ];
    Setup {
        providers: Providers::new(&configs).unwrap(),
        idp_issuer: issuer,
        lambda_hits: lambda,
    }
}

fn ws<'a>(
    op: Operation,
    channel: Option<&'a str>,
    fields: &'a [(&'a str, &'a str)],
    events: &'a [&'a str],
    headers: &'a Map<String, serde_json::Value>,
) -> AuthRequest<'a> {
    AuthRequest {
        operation: op,
        namespace: channel.and_then(|c| c.trim_start_matches('/').split('/').next()),
        channel,
        credential: Credential::WebSocket {
            fields,
            events,
            path: "/event",
        },
        request_id: "r1",
        request_headers: headers,
    }
}

const ALL: [AuthMode; 5] = [
    AuthMode::ApiKey,
    AuthMode::CognitoUserPools,
    AuthMode::OpenIdConnect,
    AuthMode::Lambda,
    AuthMode::Iam,
];

#[tokio::test]
async fn the_credential_selects_the_mode() {
    let s = setup().await;
    let h = Map::new();

    // IAM over the synthetic subscribe and publish bodies, channel as sent (no leading slash).
    let owned = iam_fields(&subscribe_body("chat/room"));
    let fields: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let id = s
        .providers
        .authorize(
            &ALL,
            &ws(Operation::Subscribe, Some("chat/room"), &fields, &[], &h),
        )
        .await
        .unwrap();
    assert_eq!(id.mode(), AuthMode::Iam);
    let events = [r#"{"a":1}"#, "\"b\""];
    let owned = iam_fields(&publish_body("/chat/room", &events));
    let fields: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    s.providers
        .authorize(
            &ALL,
            &ws(Operation::Publish, Some("/chat/room"), &fields, &events, &h),
        )
        .await
        .unwrap();
    // Same signature, other events: refused.
    let err = s
        .providers
        .authorize(
            &ALL,
            &ws(Operation::Publish, Some("/chat/room"), &fields, &["1"], &h),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::BadSignature { .. }));

    // A JWT from the configured issuer goes to OIDC.
    let token = jwt(&s.idp_issuer);
    let fields = [("host", HOST), ("Authorization", token.as_str())];
    let id = s
        .providers
        .authorize(&ALL, &ws(Operation::Connect, None, &fields, &[], &h))
        .await
        .unwrap();
    assert_eq!(id.mode(), AuthMode::OpenIdConnect);

    // A JWT from another issuer, and an opaque token, go to the Lambda webhook.
    let foreign = jwt("https://other.example");
    for token in [foreign.as_str(), "opaque-token"] {
        let fields = [("authorization", token)];
        let err = s
            .providers
            .authorize(&ALL, &ws(Operation::Connect, None, &fields, &[], &h))
            .await
            .unwrap_err();
        assert_eq!(err, AuthError::AuthorizerDenied);
    }
    let fields = [("authorization", "allow-me")];
    let id = s
        .providers
        .authorize(&ALL, &ws(Operation::Connect, None, &fields, &[], &h))
        .await
        .unwrap();
    assert!(matches!(id, Identity::Lambda(ref l) if l.handler_context["via"] == "lambda"));
    assert_eq!(s.lambda_hits.count(), 3);

    // HTTP publish with an OIDC token.
    let (parts, ()) = http::Request::builder()
        .method("POST")
        .uri("/event")
        .header("authorization", format!("Bearer {}", jwt(&s.idp_issuer)))
        .body(())
        .unwrap()
        .into_parts();
    let req = AuthRequest {
        operation: Operation::Publish,
        namespace: Some("chat"),
        channel: Some("/chat/a"),
        credential: Credential::Http {
            parts: &parts,
            body: b"{}",
        },
        request_id: "r2",
        request_headers: &h,
    };
    assert_eq!(
        s.providers.authorize(&ALL, &req).await.unwrap().mode(),
        AuthMode::OpenIdConnect
    );
}

#[tokio::test]
async fn a_mode_not_allowed_is_refused_not_rerouted() {
    let s = setup().await;
    let h = Map::new();
    let owned = iam_fields("{}");
    let iam: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let token = jwt(&s.idp_issuer);
    let oidc = [("authorization", token.as_str())];
    let opaque = [("authorization", "allow-me")];
    let only = |m: AuthMode| vec![m];

    let err = s
        .providers
        .authorize(
            &only(AuthMode::ApiKey),
            &ws(Operation::Connect, None, &iam, &[], &h),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::ModeNotAllowed {
            mode: "AWS_IAM",
            reason: "not allowed for this operation"
        }
    );
    // OIDC not allowed: the JWT is not handed to the Lambda authorizer either.
    let err = s
        .providers
        .authorize(
            &only(AuthMode::Lambda),
            &ws(Operation::Connect, None, &oidc, &[], &h),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AuthError::ModeNotAllowed {
            mode: "OPENID_CONNECT",
            ..
        }
    ));
    let err = s
        .providers
        .authorize(
            &only(AuthMode::OpenIdConnect),
            &ws(Operation::Connect, None, &opaque, &[], &h),
        )
        .await
        .unwrap_err();
    assert_eq!(err, AuthError::NoMatchingMode);
    assert_eq!(s.lambda_hits.count(), 0);
    // No Authorization at all (an API-key request reaching the facade).
    let key = [("x-api-key", "da2-x")];
    let err = s
        .providers
        .authorize(&ALL, &ws(Operation::Connect, None, &key, &[], &h))
        .await
        .unwrap_err();
    assert_eq!(err, AuthError::MissingCredential("Authorization"));
    // IAM key valid only for "chat".
    let owned = iam_fields(&subscribe_body("/news/a"));
    let f: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let err = s
        .providers
        .authorize(
            &ALL,
            &ws(Operation::Subscribe, Some("/news/a"), &f, &[], &h),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::NamespaceNotAllowed { .. }));
}

#[tokio::test]
async fn every_mode_is_refused_when_not_configured() {
    let p = Providers::new(&[ProviderConfig::ApiKey]).unwrap();
    let h = Map::new();
    let owned = iam_fields("{}");
    let iam: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let token = jwt("https://idp.example");
    let oidc = [("authorization", token.as_str())];
    let opaque = [("authorization", "allow-me")];
    let err = p
        .authorize(&ALL, &ws(Operation::Connect, None, &iam, &[], &h))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::ModeNotAllowed {
            mode: "AWS_IAM",
            reason: "not configured"
        }
    );
    for f in [&oidc, &opaque] {
        let err = p
            .authorize(&ALL, &ws(Operation::Connect, None, f, &[], &h))
            .await
            .unwrap_err();
        assert_eq!(err, AuthError::NoMatchingMode);
        assert_eq!(
            (err.error_type(), err.http_status()),
            ("UnauthorizedException", 401)
        );
    }
    for m in [
        AuthMode::Iam,
        AuthMode::Lambda,
        AuthMode::OpenIdConnect,
        AuthMode::CognitoUserPools,
    ] {
        assert!(!p.is_configured(m));
        assert!(p.check_modes("x", &[m]).is_err());
    }
    assert!(p.is_configured(AuthMode::ApiKey));
}

/// The server awaits these inside spawned tasks: the futures must be `Send`.
#[allow(dead_code)]
fn futures_are_send(p: &Providers, req: &AuthRequest<'_>, jwt: &herald_auth::jwt::JwtVerifier) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&p.authorize(&[], req));
    is_send(&jwt.verify(""));
    is_send(&p.prefetch_keys());
}
