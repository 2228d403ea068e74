//! Every authorization mode against a real Herald: connect, subscribe to a wildcard, publish
//! over the socket and over HTTP, receive both. The outside services (two OpenID providers, one
//! standing in for a Cognito user pool, and the Lambda-style authorizer webhook) are the
//! loopback fixtures of `herald-testkit`.

mod support;

use futures_util::StreamExt;
use herald_client::{Auth, Client, Credentials, Error};
use herald_testkit::jwt::{es256, now, rs256};
use herald_testkit::{Idp, authorizer};
use serde_json::{Value, json};

use support::{KEY, TestServer, WAIT, start};

const OIDC_CLIENT: &str = "herald-web";
const COGNITO_CLIENT: &str = "app-client-1";
const REGION: &str = "eu-central-1";
const ACCESS_KEY: &str = "AKIACLIENTTEST";
const SECRET_KEY: &str = "client/test+secret";
const SESSION_ACCESS_KEY: &str = "ASIACLIENTSESSION";
const SESSION_SECRET: &str = "session-secret";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzECLIENT//token+==";
const ALL_MODES: &str =
    r#"["API_KEY", "AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA", "AWS_IAM"]"#;

struct World {
    oidc: Idp,
    cognito: Idp,
    server: TestServer,
    // Kept alive for the server's calls.
    _hook: herald_testkit::Fixture,
}

async fn world() -> World {
    let (oidc, cognito, hook) = (Idp::start().await, Idp::start().await, authorizer().await);
    let toml = format!(
        r#"
[auth]
connection_auth_modes = {ALL_MODES}
default_publish_auth_modes = {ALL_MODES}
default_subscribe_auth_modes = {ALL_MODES}

[[auth.api_keys]]
key = "{KEY}"

[[auth.providers]]
auth_type = "OPENID_CONNECT"
issuer = "{oidc}"
client_id = "{OIDC_CLIENT}"

[[auth.providers]]
auth_type = "AMAZON_COGNITO_USER_POOLS"
user_pool_id = "eu-central-1_HeraldClient"
aws_region = "eu-central-1"
app_id_client_regex = "{COGNITO_CLIENT}"
issuer = "{cognito}"

[[auth.providers]]
auth_type = "AWS_LAMBDA"
authorizer_url = "{hook}"

[[auth.providers]]
auth_type = "AWS_IAM"
region = "{REGION}"

[[auth.providers.keys]]
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
principal = "client-test"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[auth.providers.keys]]
access_key_id = "{SESSION_ACCESS_KEY}"
secret_access_key = "{SESSION_SECRET}"
session_token = "{SESSION_TOKEN}"
principal = "client-session"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[namespaces]]
name = "default"
"#,
        oidc = oidc.issuer(),
        cognito = cognito.issuer(),
        hook = hook.url("/authorize"),
    );
    let server = start(&toml).await;
    World {
        oidc,
        cognito,
        server,
        _hook: hook,
    }
}

fn oidc_token(issuer: &Idp) -> String {
    let t = now();
    rs256(
        &json!({"iss": issuer.issuer(), "sub": "alice", "aud": OIDC_CLIENT, "iat": t, "exp": t + 600}),
    )
}

fn cognito_token(issuer: &Idp) -> String {
    let t = now();
    es256(
        &json!({"iss": issuer.issuer(), "sub": "sub-bob", "client_id": COGNITO_CLIENT,
                  "token_use": "access", "cognito:username": "bob", "iat": t, "exp": t + 600}),
    )
}

/// Connect, subscribe to `/default/*`, publish once over the socket and once over HTTP to
/// `/default/<name>`, and receive both, in order.
async fn round_trip(endpoint: &str, auth: Auth, name: &str) {
    let client = Client::new(endpoint, auth).unwrap();
    let connection = client
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut sub = connection
        .subscribe("/default/*")
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let channel = format!("/default/{name}");
    let reply = connection
        .publish(&channel, &[json!({"via": "socket", "mode": name})])
        .await
        .unwrap_or_else(|e| panic!("{name} socket publish: {e}"));
    assert_eq!(reply.successful.len(), 1, "{name}: {reply:?}");
    let reply = client
        .publish(&channel, &[json!({"via": "http", "mode": name})])
        .await
        .unwrap_or_else(|e| panic!("{name} HTTP publish: {e}"));
    assert_eq!(reply.successful.len(), 1, "{name}: {reply:?}");
    assert_eq!(reply.successful[0].delivered, Some(1), "{name}: {reply:?}");
    for via in ["socket", "http"] {
        let event = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: no {via} event"))
            .unwrap_or_else(|| panic!("{name}: the stream ended"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            event.json::<Value>().unwrap(),
            json!({"via": via, "mode": name})
        );
        // No history on `default`: the subscribed pattern stands for the channel.
        assert_eq!(event.position, None);
        assert_eq!(event.channel, "/default/*");
    }
    connection.close();
}

#[tokio::test]
async fn every_auth_mode_connects_subscribes_and_publishes() {
    let w = world().await;
    let endpoint = w.server.endpoint();
    round_trip(&endpoint, Auth::api_key(KEY), "api-key").await;
    round_trip(&endpoint, Auth::oidc(oidc_token(&w.oidc)), "oidc").await;
    round_trip(
        &endpoint,
        Auth::cognito(cognito_token(&w.cognito)),
        "cognito",
    )
    .await;
    round_trip(&endpoint, Auth::lambda("Bearer allow-carol"), "lambda").await;
    let iam = Auth::iam(Credentials::new(ACCESS_KEY, SECRET_KEY)).in_region(REGION);
    round_trip(&endpoint, iam, "iam").await;
    let session =
        Credentials::new(SESSION_ACCESS_KEY, SESSION_SECRET).with_session_token(SESSION_TOKEN);
    round_trip(
        &endpoint,
        Auth::iam(session).in_region(REGION),
        "iam-session",
    )
    .await;
    w.server.stop().await;
}

#[tokio::test]
async fn refusals_are_typed() {
    let w = world().await;
    let endpoint = w.server.endpoint();

    let bad = Client::new(&endpoint, Auth::api_key("da2-notakey")).unwrap();
    match bad.connect().await {
        Err(Error::ConnectionRejected(errors)) => {
            assert!(errors.has("UnauthorizedException"), "{errors}");
        }
        other => panic!("connect with a bad key: {:?}", other.err()),
    }
    match bad.publish("/default/a", &[1]).await {
        Err(Error::PublishRejected {
            status: Some(401),
            errors,
        }) => assert!(errors.has("UnauthorizedException"), "{errors}"),
        other => panic!("HTTP publish with a bad key: {other:?}"),
    }

    // A refused Lambda token on an operation of an accepted connection.
    let readonly = Client::new(&endpoint, Auth::lambda("readonly-dave")).unwrap();
    let connection = readonly.connect().await.unwrap();
    let _sub = connection.subscribe("/default/a").await.unwrap();
    match connection.publish("/default/a", &[1]).await {
        Err(Error::PublishRejected {
            status: None,
            errors,
        }) => {
            assert!(errors.has("UnauthorizedException"), "{errors}");
        }
        other => panic!("socket publish with a read-only token: {other:?}"),
    }

    let good = Client::new(&endpoint, Auth::api_key(KEY)).unwrap();
    let connection = good.connect().await.unwrap();
    match connection.subscribe("/nowhere/a").await {
        Err(Error::SubscribeRejected { channel, errors }) => {
            assert_eq!(channel, "/nowhere/a");
            assert!(errors.has("UnauthorizedException"), "{errors}");
        }
        other => panic!("subscribe to an unknown namespace: {other:?}"),
    }
    match connection
        .publish_raw("/default/a", &["not json".to_owned()])
        .await
    {
        Err(Error::InvalidEvent { number: 1, .. }) => {}
        other => panic!("an event that is not JSON: {other:?}"),
    }
    w.server.stop().await;
}
