//! The world of the `auth_*` tests: the outside services of the provider-backed modes (two
//! OpenID providers, one standing in for a Cognito user pool, and the Lambda-style webhook) as
//! loopback fixtures from `herald-testkit`, a Herald configured from TOML in the shapes
//! `docs/authorization.md` documents, and the client side: authorization objects for each mode,
//! the operations, and assertions on their replies.

use std::collections::VecDeque;
use std::time::SystemTime;

use herald_testkit::jwt::{es256, now, rs256};
pub use herald_testkit::sigv4::Key;
use herald_testkit::sigv4::Signer;
use herald_testkit::{Fixture, Idp, authorizer};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use super::{Client, KEY, TestServer, WAIT, b64url, http, start};

pub const OIDC_CLIENT: &str = "herald-web";
pub const COGNITO_CLIENT: &str = "app-client-1";
pub const REGION: &str = "us-east-1";
/// May do everything everywhere.
pub const AK_ALL: &str = "AKIAHERALDALL";
pub const SK_ALL: &str = "all/secret+key";
/// May do everything, but only in `default`.
pub const AK_DEFAULT: &str = "AKIAHERALDDEFAULT";
pub const SK_DEFAULT: &str = "default-only-secret";
/// Temporary credentials: requests must carry the session token.
pub const AK_SESSION: &str = "ASIAHERALDSESSION";
pub const SK_SESSION: &str = "session-secret";
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzEHERALD//session+token==";
/// May connect and subscribe, never publish.
pub const AK_READER: &str = "AKIAHERALDREADER";
pub const SK_READER: &str = "reader-secret";

pub const UNAUTHORIZED: &str = "UnauthorizedException";

pub const ALL_MODES: &str =
    r#"["API_KEY", "AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA", "AWS_IAM"]"#;

/// An OIDC ID token from `issuer` for `sub`.
pub fn oidc_token(issuer: &Idp, sub: &str) -> String {
    let t = now();
    rs256(
        &json!({"iss": issuer.issuer(), "sub": sub, "aud": OIDC_CLIENT, "iat": t, "exp": t + 600}),
    )
}

/// A Cognito-style access token (client id in `client_id`, ES256 to cover the EC key).
pub fn cognito_token(issuer: &Idp, username: &str) -> String {
    let t = now();
    es256(
        &json!({"iss": issuer.issuer(), "sub": format!("sub-{username}"), "client_id": COGNITO_CLIENT,
                "token_use": "access", "cognito:username": username, "iat": t, "exp": t + 600}),
    )
}

pub fn subscribe_body(channel: &str) -> String {
    json!({"channel": channel}).to_string()
}

pub fn publish_body(channel: &str, events: &[String]) -> String {
    json!({"channel": channel, "events": events}).to_string()
}

// ------------------------------------------------------------------------------- the world

/// Everything a test needs: the IdPs, the webhook and a server using them.
pub struct World {
    pub oidc: Idp,
    pub cognito: Idp,
    pub hook: Fixture,
    pub server: TestServer,
}

impl World {
    /// A server with all five modes for connecting and, by default, for every operation, plus:
    /// `split` (publish: IAM only; subscribe: OIDC or Lambda) and `pool` (Cognito only).
    pub async fn start() -> World {
        World::with_connection_modes(ALL_MODES).await
    }

    pub async fn with_connection_modes(connection_modes: &str) -> World {
        World::from_toml(|oidc, cognito, hook| test_config(connection_modes, oidc, cognito, hook))
            .await
    }

    /// A server configured by `toml(oidc, cognito, webhook)`, which names the fixtures.
    pub async fn from_toml(toml: impl FnOnce(&Idp, &Idp, &Fixture) -> String) -> World {
        let (oidc, cognito, hook) = World::services().await;
        let config = parse_config(&toml(&oidc, &cognito, &hook));
        World {
            oidc,
            cognito,
            hook,
            server: start(config).await,
        }
    }

    /// The IdPs and the webhook, for a server that is not configured with them.
    pub async fn services() -> (Idp, Idp, Fixture) {
        (Idp::start().await, Idp::start().await, authorizer().await)
    }

    pub fn host(&self) -> String {
        self.server.addr.to_string()
    }

    /// The WebSocket `authorization` object for a token (OIDC, Cognito, Lambda).
    pub fn token_auth(&self, token: &str) -> Value {
        json!({"host": self.host(), "Authorization": token})
    }

    /// The WebSocket `authorization` object for an API key.
    pub fn key_auth(&self) -> Value {
        json!({"host": self.host(), "x-api-key": KEY})
    }

    /// The WebSocket `authorization` object amplify-js builds for IAM: the headers of the
    /// synthetic `POST /event` (spec §4.2) signed over `body`.
    pub fn iam_auth<'k>(&self, key: impl Into<Key<'k>>, body: &str) -> Value {
        self.iam_auth_at(key, body, SystemTime::now())
    }

    /// [`World::iam_auth`] signed at `time`.
    pub fn iam_auth_at<'k>(&self, key: impl Into<Key<'k>>, body: &str, time: SystemTime) -> Value {
        let signer = Signer::new(key, REGION).at(time);
        Value::Object(signer.ws_auth(&self.host(), body))
    }

    /// Opens a socket with `auth` in the `header-` subprotocol and sends `connection_init`;
    /// returns the client and the first reply (`connection_ack` or `connection_error`).
    pub async fn connect(&self, auth: &Value) -> (Conn, Value) {
        let mut req = self.upgrade_request();
        let protocols = format!("aws-appsync-event-ws, header-{}", b64url(&auth.to_string()));
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&protocols).unwrap(),
        );
        Conn::open(req).await
    }

    /// [`World::connect`] with credentials as real upgrade headers (the Swift and Kotlin SDKs'
    /// form).
    pub async fn connect_with_headers(&self, headers: &[(String, String)]) -> (Conn, Value) {
        let mut req = self.upgrade_request();
        let h = req.headers_mut();
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("aws-appsync-event-ws"),
        );
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Conn::open(req).await
    }

    pub async fn ready(&self, auth: &Value) -> Conn {
        let (c, ack) = self.connect(auth).await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        c
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }

    fn upgrade_request(&self) -> Request {
        let url = format!("ws://{}/event/realtime", self.server.addr);
        url.into_client_request().unwrap()
    }
}

/// Parses TOML as the server does.
pub fn parse_config(toml: &str) -> herald_server::Config {
    use figment::providers::Format;
    figment::Figment::from(figment::providers::Toml::string(toml))
        .extract()
        .expect("the test configuration parses")
}

/// The configuration of [`World::start`]: every provider, `connection_modes` for connecting.
pub fn test_config(connection_modes: &str, oidc: &Idp, cognito: &Idp, hook: &Fixture) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
shutdown_grace_ms = 500

[auth]
connection_auth_modes = {connection_modes}
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
user_pool_id = "us-east-1_HeraldTest"
aws_region = "us-east-1"
app_id_client_regex = "{COGNITO_CLIENT}"
issuer = "{cognito}"

[[auth.providers]]
auth_type = "AWS_LAMBDA"
authorizer_url = "{hook}"
# Short, so the hanging-webhook test is quick; a loopback answer takes milliseconds.
timeout_ms = 1500

[[auth.providers]]
auth_type = "AWS_IAM"
region = "{REGION}"

[[auth.providers.keys]]
access_key_id = "{AK_ALL}"
secret_access_key = "{SK_ALL}"
principal = "arn:aws:iam::111122223333:user/all"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[auth.providers.keys]]
access_key_id = "{AK_DEFAULT}"
secret_access_key = "{SK_DEFAULT}"
principal = "default-only"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]
namespaces = ["default"]

[[auth.providers.keys]]
access_key_id = "{AK_SESSION}"
secret_access_key = "{SK_SESSION}"
session_token = "{SESSION_TOKEN}"
principal = "session"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[auth.providers.keys]]
access_key_id = "{AK_READER}"
secret_access_key = "{SK_READER}"
principal = "reader"
actions = ["EventConnect", "EventSubscribe"]

[[namespaces]]
name = "default"

[[namespaces]]
name = "split"
publish_auth_modes = ["AWS_IAM"]
subscribe_auth_modes = ["OPENID_CONNECT", "AWS_LAMBDA"]

[[namespaces]]
name = "pool"
publish_auth_modes = ["AMAZON_COGNITO_USER_POOLS"]
subscribe_auth_modes = ["AMAZON_COGNITO_USER_POOLS"]
"#,
        oidc = oidc.issuer(),
        cognito = cognito.issuer(),
        hook = hook.url("/authorize"),
    )
}

// ------------------------------------------------------------------------------- operations

/// A client that keeps `data` frames arriving ahead of a reply: a publisher subscribed to its
/// own channel may get its event before `publish_success` (the fan-out runs first).
pub struct Conn {
    pub c: Client,
    data: VecDeque<Value>,
}

impl Conn {
    /// Upgrades `req` and sends `connection_init`; returns the client and the first reply.
    async fn open(req: Request) -> (Conn, Value) {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("upgrade within the wait bound")
            .expect("upgrade");
        let mut c = Conn {
            c: Client { ws },
            data: VecDeque::new(),
        };
        c.send(json!({"type": "connection_init"})).await;
        let first = c.reply().await;
        (c, first)
    }

    /// The next frame that is not `data`; `data` frames met on the way are kept.
    pub async fn reply(&mut self) -> Value {
        loop {
            let f = self.c.recv().await;
            if f["type"] == "data" {
                self.data.push_back(f);
            } else {
                return f;
            }
        }
    }

    /// The next `data` frame.
    pub async fn data(&mut self) -> Value {
        match self.data.pop_front() {
            Some(f) => f,
            None => self.c.recv().await,
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.c.send(v).await;
    }
}

pub async fn subscribe(c: &mut Conn, id: &str, channel: &str, auth: &Value) -> Value {
    c.send(json!({"type": "subscribe", "id": id, "channel": channel, "authorization": auth}))
        .await;
    c.reply().await
}

pub async fn publish(
    c: &mut Conn,
    id: &str,
    channel: &str,
    events: &[String],
    auth: &Value,
) -> Value {
    c.send(json!({"type": "publish", "id": id, "channel": channel, "events": events, "authorization": auth}))
        .await;
    c.reply().await
}

/// `POST /event` with the given extra headers; returns status, body and the error-type header.
pub async fn post(w: &World, body: &str, headers: &[(&str, &str)]) -> (u16, Value, Option<String>) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, head, body) = http(&w.server, "POST", "/event", &all, body.as_bytes()).await;
    let error_type = head
        .iter()
        .find(|(k, _)| k == "x-amzn-errortype")
        .map(|(_, v)| v.clone());
    (
        status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        error_type,
    )
}

/// `POST /event` signed by `signer` over the real request.
pub async fn post_signed(
    w: &World,
    signer: &Signer<'_>,
    body: &str,
) -> (u16, Value, Option<String>) {
    let base = vec![
        ("content-type", "application/json".to_owned()),
        ("host", w.host()),
    ];
    let url = format!("http://{}/event", w.host());
    let signed = signer.sign("POST", &url, &base, body.as_bytes());
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    post(w, body, &headers).await
}

/// `POST /event` signed with SigV4 as `key`, now, with or without `x-amz-content-sha256`.
pub async fn post_iam<'k>(
    w: &World,
    key: impl Into<Key<'k>>,
    body: &str,
    content_sha256: bool,
) -> (u16, Value) {
    let signer = Signer {
        content_sha256,
        ..Signer::new(key, REGION)
    };
    let (status, body, _) = post_signed(w, &signer, body).await;
    (status, body)
}

/// The next `data` frame's event, parsed.
pub async fn next_event(c: &mut Conn, id: &str) -> Value {
    let frame = c.data().await;
    assert_eq!(frame["type"], "data", "expected a data frame: {frame}");
    assert_eq!(frame["id"], id, "{frame}");
    serde_json::from_str(frame["event"].as_str().unwrap()).unwrap()
}

// ------------------------------------------------------------------------------- assertions

pub fn assert_success(reply: &Value, kind: &str, id: &str) {
    assert_eq!(reply["type"], kind, "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
}

pub fn assert_refused(reply: &Value, kind: &str, id: &str) {
    assert_eq!(reply["type"], kind, "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(reply["errors"][0]["errorType"], UNAUTHORIZED, "{reply}");
}

/// A 401 carrying the spec's envelope and AWS's error-type header.
pub fn assert_http_refused((status, body, error_type): &(u16, Value, Option<String>)) {
    assert_eq!(*status, 401, "{body}");
    assert_eq!(
        *body,
        json!({"errors": [{"errorType": UNAUTHORIZED, "errorCode": 401, "message": "You are not authorized to make this call."}]})
    );
    assert_eq!(error_type.as_deref(), Some(UNAUTHORIZED));
}

pub async fn assert_connect_refused(w: &World, auth: &Value) {
    let (mut c, reply) = w.connect(auth).await;
    assert_eq!(
        reply,
        json!({"type": "connection_error", "errors": [{"errorType": UNAUTHORIZED, "errorCode": 401, "message": "You are not authorized to make this call."}]}),
        "connect with {auth}"
    );
    assert!(c.c.closed().await.is_some(), "the socket closes");
}

/// `token` is refused on connect, and on subscribe, publish (over `c`) and HTTP publish in
/// `/default/a`.
pub async fn assert_token_refused_everywhere(w: &World, c: &mut Conn, token: &str) {
    let auth = w.token_auth(token);
    assert_connect_refused(w, &auth).await;
    assert_refused(
        &subscribe(c, "s", "/default/a", &auth).await,
        "subscribe_error",
        "s",
    );
    let events = vec!["1".to_owned()];
    assert_refused(
        &publish(c, "p", "/default/a", &events, &auth).await,
        "publish_error",
        "p",
    );
    let body = publish_body("/default/a", &events);
    assert_http_refused(&post(w, &body, &[("Authorization", token)]).await);
}

/// Connect, subscribe, socket publish and HTTP publish with one token-based mode.
pub async fn token_mode_end_to_end(w: &World, token: &str) {
    let auth = w.token_auth(token);
    let mut c = w.ready(&auth).await;
    assert_success(
        &subscribe(&mut c, "s1", "/default/*", &auth).await,
        "subscribe_success",
        "s1",
    );
    let events = vec![json!({"via": "socket", "t": token.len()}).to_string()];
    assert_success(
        &publish(&mut c, "p1", "/default/room", &events, &auth).await,
        "publish_success",
        "p1",
    );
    assert_eq!(
        next_event(&mut c, "s1").await,
        json!({"via": "socket", "t": token.len()})
    );
    let body = publish_body("/default/room", &[json!({"via": "http"}).to_string()]);
    let (status, reply, _) = post(w, &body, &[("Authorization", token)]).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["successful"].as_array().map(Vec::len),
        Some(1),
        "{reply}"
    );
    assert_eq!(next_event(&mut c, "s1").await, json!({"via": "http"}));
}
