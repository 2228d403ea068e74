//! The four provider-backed authorization modes (Cognito user pools, OIDC, the Lambda-style
//! webhook, SigV4) end to end over real sockets: WebSocket connect through the `header-`
//! subprotocol, per-operation `authorization` on subscribe and publish, HTTP `POST /event`.
//!
//! The identity provider (discovery document + JWKS) and the authorizer webhook are real HTTP
//! servers on 127.0.0.1:0 inside each test; JWTs are signed with the throwaway keys of
//! `crates/testkit/data`, SigV4 signatures are made by the `aws-sigv4` crate. The server is
//! configured from TOML in the shapes `docs/authorization.md` documents.

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use common::{Client, KEY, TestServer, WAIT, b64url, http, start};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const RSA_PRIV: &[u8] = include_bytes!("../../testkit/data/rsa_private.pem");
const EC_PRIV: &[u8] = include_bytes!("../../testkit/data/ec_private.pem");
/// Signs tokens the IdP does not publish (a forged token with a known `kid`).
const RSA_OTHER_PRIV: &[u8] = include_bytes!("../../testkit/data/rsa_other_private.pem");

const OIDC_CLIENT: &str = "herald-web";
const COGNITO_CLIENT: &str = "app-client-1";
const REGION: &str = "us-east-1";
/// May do everything everywhere.
const AK_ALL: &str = "AKIAHERALDALL";
const SK_ALL: &str = "all/secret+key";
/// May do everything, but only in `default`.
const AK_DEFAULT: &str = "AKIAHERALDDEFAULT";
const SK_DEFAULT: &str = "default-only-secret";
/// Temporary credentials: requests must carry the session token.
const AK_SESSION: &str = "ASIAHERALDSESSION";
const SK_SESSION: &str = "session-secret";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEHERALD//session+token==";
/// May connect and subscribe, never publish.
const AK_READER: &str = "AKIAHERALDREADER";
const SK_READER: &str = "reader-secret";

const UNAUTHORIZED: &str = "UnauthorizedException";

/// An access key as a client holds it.
#[derive(Clone, Copy)]
struct Key<'a> {
    id: &'a str,
    secret: &'a str,
    session_token: Option<&'a str>,
}

impl<'a> From<(&'a str, &'a str)> for Key<'a> {
    fn from((id, secret): (&'a str, &'a str)) -> Self {
        Key {
            id,
            secret,
            session_token: None,
        }
    }
}

// ------------------------------------------------------------------------------- fixtures

/// Status and body, or `None` to never answer.
type Handler = dyn Fn(&str, &str) -> Option<(u16, String)> + Send + Sync;

/// A loopback HTTP server answering `handler(path, body)`, recording each request body by path.
struct Fixture {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

/// One request a fixture received.
struct Hit {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Fixture {
    async fn serve(handler: Arc<Handler>) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let recorded = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let hits = recorded.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        let hits = hits.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            hits.lock().unwrap().push(Hit {
                                path: path.clone(),
                                headers,
                                body: body.clone(),
                            });
                            let Some((status, text)) = handler(&path, &body) else {
                                // Hang until the client gives up.
                                return std::future::pending().await;
                            };
                            let resp = hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fixture { addr, hits }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bodies received on `path`, parsed as JSON.
    fn bodies(&self, path: &str) -> Vec<Value> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .map(|h| serde_json::from_str(&h.body).unwrap())
            .collect()
    }

    /// The values of header `name` on every request received on `path`.
    fn header_values(&self, path: &str, name: &str) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .flat_map(|h| h.headers.iter().filter(|(k, _)| k == name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// An OpenID provider: discovery at `/.well-known/openid-configuration`, keys at `/jwks`.
async fn idp() -> Fixture {
    let issuer: Arc<Mutex<String>> = Arc::default();
    let iss = issuer.clone();
    let jwks = JwkSet {
        keys: vec![
            jwk(&rsa(), Algorithm::RS256, "rsa-1"),
            jwk(
                &EncodingKey::from_ec_pem(EC_PRIV).unwrap(),
                Algorithm::ES256,
                "ec-1",
            ),
        ],
    };
    let jwks = serde_json::to_string(&jwks).unwrap();
    let f = Fixture::serve(Arc::new(move |path: &str, _: &str| {
        Some(match path {
            "/.well-known/openid-configuration" => {
                let iss = iss.lock().unwrap().clone();
                (
                    200,
                    json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")}).to_string(),
                )
            }
            "/jwks" => (200, jwks.clone()),
            _ => (404, "{}".into()),
        })
    }))
    .await;
    *issuer.lock().unwrap() = f.url();
    f
}

/// The Lambda-style authorizer. Tokens `allow-<name>` are authorized for everything,
/// `readonly-<name>` for everything but publishing, `hang-<name>` gets no answer, any other token
/// is refused. A `Bearer ` prefix is ignored.
async fn authorizer() -> Fixture {
    Fixture::serve(Arc::new(|_: &str, body: &str| {
        let req: Value = serde_json::from_str(body).unwrap_or_default();
        let token = req["authorizationToken"].as_str().unwrap_or_default();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        let op = req["requestContext"]["operation"]
            .as_str()
            .unwrap_or_default();
        if token.starts_with("hang-") {
            return None;
        }
        let ok = token.starts_with("allow-")
            || (token.starts_with("readonly-") && op != "EVENT_PUBLISH");
        Some((
            200,
            json!({"isAuthorized": ok, "handlerContext": {"user": token}}).to_string(),
        ))
    }))
    .await
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIV).unwrap()
}

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).unwrap();
    j.common.key_id = Some(kid.to_owned());
    j
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    encode(&h, claims, key).unwrap()
}

/// An OIDC ID token from `issuer` for `sub`.
fn oidc_token(issuer: &Fixture, sub: &str) -> String {
    let t = now();
    jwt(
        &rsa(),
        Algorithm::RS256,
        "rsa-1",
        &json!({"iss": issuer.url(), "sub": sub, "aud": OIDC_CLIENT, "iat": t, "exp": t + 600}),
    )
}

/// A Cognito-style access token (client id in `client_id`, ES256 to cover the EC key).
fn cognito_token(issuer: &Fixture, username: &str) -> String {
    let t = now();
    jwt(
        &EncodingKey::from_ec_pem(EC_PRIV).unwrap(),
        Algorithm::ES256,
        "ec-1",
        &json!({"iss": issuer.url(), "sub": format!("sub-{username}"), "client_id": COGNITO_CLIENT,
                "token_use": "access", "cognito:username": username, "iat": t, "exp": t + 600}),
    )
}

/// Everything a test needs: the IdPs, the webhook and a server using them.
struct World {
    oidc: Fixture,
    cognito: Fixture,
    hook: Fixture,
    server: TestServer,
}

const ALL_MODES: &str =
    r#"["API_KEY", "AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA", "AWS_IAM"]"#;

impl World {
    /// A server with all five modes for connecting and, by default, for every operation, plus:
    /// `split` (publish: IAM only; subscribe: OIDC or Lambda) and `pool` (Cognito only).
    async fn start() -> World {
        World::with_connection_modes(ALL_MODES).await
    }

    async fn with_connection_modes(connection_modes: &str) -> World {
        World::from_toml(|oidc, cognito, hook| test_config(connection_modes, oidc, cognito, hook))
            .await
    }

    /// A server configured by `toml(oidc, cognito, webhook)`, which names the fixtures.
    async fn from_toml(toml: impl FnOnce(&Fixture, &Fixture, &Fixture) -> String) -> World {
        use figment::providers::Format;
        let (oidc, cognito, hook) = (idp().await, idp().await, authorizer().await);
        let toml = toml(&oidc, &cognito, &hook);
        let config: herald_server::Config =
            figment::Figment::from(figment::providers::Toml::string(&toml))
                .extract()
                .expect("the test configuration parses");
        let server = start(config).await;
        World {
            oidc,
            cognito,
            hook,
            server,
        }
    }

    fn host(&self) -> String {
        self.server.addr.to_string()
    }

    /// The WebSocket `authorization` object for a token (OIDC, Cognito, Lambda).
    fn token_auth(&self, token: &str) -> Value {
        json!({"host": self.host(), "Authorization": token})
    }

    /// The WebSocket `authorization` object amplify-js builds for IAM: the headers of the
    /// synthetic `POST /event` (spec §4.2) signed over `body`.
    fn iam_auth<'k>(&self, key: impl Into<Key<'k>>, body: &str) -> Value {
        self.iam_auth_at(key, body, SystemTime::now())
    }

    /// [`World::iam_auth`] signed at `time`.
    fn iam_auth_at<'k>(&self, key: impl Into<Key<'k>>, body: &str, time: SystemTime) -> Value {
        let base = vec![
            ("accept", "application/json, text/javascript".to_owned()),
            ("content-encoding", "amz-1.0".to_owned()),
            ("content-type", "application/json; charset=UTF-8".to_owned()),
            ("host", self.host()),
        ];
        let url = format!("https://{}/event", self.host());
        let signed = sigv4_at(key.into(), &url, &base, body.as_bytes(), false, time);
        let mut auth = serde_json::Map::new();
        for (k, v) in base {
            auth.insert(k.to_owned(), Value::String(v));
        }
        for (k, v) in signed {
            // AppSync's documentation capitalises it (amplify-js does not); names are
            // case-insensitive.
            let k = if k == "authorization" {
                "Authorization".to_owned()
            } else {
                k
            };
            auth.insert(k, Value::String(v));
        }
        auth.insert("x-amz-user-agent".into(), "aws-amplify/6 test".into());
        Value::Object(auth)
    }

    /// Opens a socket with `auth` in the `header-` subprotocol and sends `connection_init`;
    /// returns the client and the first reply (`connection_ack` or `connection_error`).
    async fn connect(&self, auth: &Value) -> (Conn, Value) {
        let url = format!("ws://{}/event/realtime", self.server.addr);
        let mut req = url.into_client_request().unwrap();
        let protocols = format!("aws-appsync-event-ws, header-{}", b64url(&auth.to_string()));
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&protocols).unwrap(),
        );
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

    async fn ready(&self, auth: &Value) -> Conn {
        let (c, ack) = self.connect(auth).await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        c
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// The configuration of [`World::start`]: every provider, `connection_modes` for connecting.
fn test_config(
    connection_modes: &str,
    oidc: &Fixture,
    cognito: &Fixture,
    hook: &Fixture,
) -> String {
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
authorizer_url = "{hook}/authorize"
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
        oidc = oidc.url(),
        cognito = cognito.url(),
        hook = hook.url(),
    )
}

/// Signs a request with `aws-sigv4` for `appsync` in [`REGION`]; returns the headers to add.
fn sigv4(
    key: Key<'_>,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
    content_sha256: bool,
) -> Vec<(String, String)> {
    sigv4_at(key, url, headers, body, content_sha256, SystemTime::now())
}

/// [`sigv4`] with the signing time given.
fn sigv4_at(
    key: Key<'_>,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
    content_sha256: bool,
    time: SystemTime,
) -> Vec<(String, String)> {
    let identity = Credentials::new(
        key.id,
        key.secret,
        key.session_token.map(str::to_owned),
        None,
        "test",
    )
    .into();
    let mut settings = SigningSettings::default();
    if content_sha256 {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("appsync")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn subscribe_body(channel: &str) -> String {
    json!({"channel": channel}).to_string()
}

fn publish_body(channel: &str, events: &[String]) -> String {
    json!({"channel": channel, "events": events}).to_string()
}

// ------------------------------------------------------------------------------- operations

/// A client that keeps `data` frames arriving ahead of a reply: a publisher subscribed to its
/// own channel may get its event before `publish_success` (the fan-out runs first).
struct Conn {
    c: Client,
    data: VecDeque<Value>,
}

impl Conn {
    /// The next frame that is not `data`; `data` frames met on the way are kept.
    async fn reply(&mut self) -> Value {
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
    async fn data(&mut self) -> Value {
        match self.data.pop_front() {
            Some(f) => f,
            None => self.c.recv().await,
        }
    }

    async fn send(&mut self, v: Value) {
        self.c.send(v).await;
    }
}

async fn subscribe(c: &mut Conn, id: &str, channel: &str, auth: &Value) -> Value {
    c.send(json!({"type": "subscribe", "id": id, "channel": channel, "authorization": auth}))
        .await;
    c.reply().await
}

async fn publish(c: &mut Conn, id: &str, channel: &str, events: &[String], auth: &Value) -> Value {
    c.send(json!({"type": "publish", "id": id, "channel": channel, "events": events, "authorization": auth}))
        .await;
    c.reply().await
}

/// `POST /event` with the given extra headers; returns status, body and the error-type header.
async fn post(w: &World, body: &str, headers: &[(&str, &str)]) -> (u16, Value, Option<String>) {
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

/// `POST /event` signed with SigV4 over the real request.
async fn post_iam<'k>(
    w: &World,
    key: impl Into<Key<'k>>,
    body: &str,
    content_sha256: bool,
) -> (u16, Value) {
    let base = vec![
        ("content-type", "application/json".to_owned()),
        ("host", w.host()),
    ];
    let url = format!("http://{}/event", w.host());
    let signed = sigv4(key.into(), &url, &base, body.as_bytes(), content_sha256);
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, body, _) = post(w, body, &headers).await;
    (status, body)
}

/// The next `data` frame's event, parsed.
async fn next_event(c: &mut Conn, id: &str) -> Value {
    let frame = c.data().await;
    assert_eq!(frame["type"], "data", "expected a data frame: {frame}");
    assert_eq!(frame["id"], id, "{frame}");
    serde_json::from_str(frame["event"].as_str().unwrap()).unwrap()
}

fn assert_success(reply: &Value, kind: &str, id: &str) {
    assert_eq!(reply["type"], kind, "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
}

fn assert_refused(reply: &Value, kind: &str, id: &str) {
    assert_eq!(reply["type"], kind, "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(reply["errors"][0]["errorType"], UNAUTHORIZED, "{reply}");
}

/// A 401 carrying the spec's envelope and AWS's error-type header.
fn assert_http_refused((status, body, error_type): &(u16, Value, Option<String>)) {
    assert_eq!(*status, 401, "{body}");
    assert_eq!(
        *body,
        json!({"errors": [{"errorType": UNAUTHORIZED, "errorCode": 401, "message": "You are not authorized to make this call."}]})
    );
    assert_eq!(error_type.as_deref(), Some(UNAUTHORIZED));
}

async fn assert_connect_refused(w: &World, auth: &Value) {
    let (mut c, reply) = w.connect(auth).await;
    assert_eq!(
        reply,
        json!({"type": "connection_error", "errors": [{"errorType": UNAUTHORIZED, "errorCode": 401, "message": "You are not authorized to make this call."}]}),
        "connect with {auth}"
    );
    assert!(c.c.closed().await.is_some(), "the socket closes");
}

/// Connect, subscribe, socket publish and HTTP publish with one token-based mode.
async fn token_mode_end_to_end(w: &World, token: &str) {
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

// ------------------------------------------------------------------------------- per mode

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
async fn lambda_authorizer_end_to_end() {
    let w = World::start().await;
    token_mode_end_to_end(&w, "allow-carol").await;
    // The webhook was asked once per operation, with AppSync's request shape.
    let calls = w.hook.bodies("/authorize");
    let ops: Vec<&str> = calls
        .iter()
        .map(|c| c["requestContext"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "EVENT_CONNECT",
            "EVENT_SUBSCRIBE",
            "EVENT_PUBLISH",
            "EVENT_PUBLISH"
        ]
    );
    assert!(
        calls
            .iter()
            .all(|c| c["authorizationToken"] == "allow-carol")
    );
    assert_eq!(calls[0]["requestContext"]["channel"], Value::Null);
    assert_eq!(
        calls[1]["requestContext"]["channelNamespaceName"],
        "default"
    );
    assert_eq!(calls[1]["requestContext"]["channel"], "/default/*");
    assert_eq!(calls[2]["requestContext"]["channel"], "/default/room");
    assert_eq!(calls[0]["requestHeaders"]["host"], w.host());
    // The token is not repeated among the headers.
    assert!(
        calls
            .iter()
            .all(|c| c["requestHeaders"].get("authorization").is_none())
    );
    w.stop().await;
}

#[tokio::test]
async fn iam_sigv4_end_to_end() {
    let w = World::start().await;
    let key = (AK_ALL, SK_ALL);
    let mut c = w.ready(&w.iam_auth(key, "{}")).await;
    let sub = w.iam_auth(key, &subscribe_body("/default/*"));
    assert_success(
        &subscribe(&mut c, "s1", "/default/*", &sub).await,
        "subscribe_success",
        "s1",
    );
    // Events with characters JSON escapes: the rebuilt body must match byte for byte.
    let events = vec![
        json!({"text": "héllo \"wörld\" / ✓\n", "n": 1}).to_string(),
        "\"plain\"".to_owned(),
    ];
    let auth = w.iam_auth(key, &publish_body("/default/room", &events));
    assert_success(
        &publish(&mut c, "p1", "/default/room", &events, &auth).await,
        "publish_success",
        "p1",
    );
    assert_eq!(
        next_event(&mut c, "s1").await,
        json!({"text": "héllo \"wörld\" / ✓\n", "n": 1})
    );
    assert_eq!(next_event(&mut c, "s1").await, json!("plain"));
    // The same signature with other events is refused: the events are covered.
    let tampered = vec!["\"tampered\"".to_owned(), "\"plain\"".to_owned()];
    assert_refused(
        &publish(&mut c, "p2", "/default/room", &tampered, &auth).await,
        "publish_error",
        "p2",
    );
    // HTTP publish signed over the real request, with and without x-amz-content-sha256.
    for sha in [false, true] {
        let body = publish_body("/default/room", &[json!({"http": sha}).to_string()]);
        let (status, reply) = post_iam(&w, key, &body, sha).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(next_event(&mut c, "s1").await, json!({"http": sha}));
    }
    w.stop().await;
}

// ------------------------------------------------------------------------------- mode selection

#[tokio::test]
async fn namespace_with_different_publish_and_subscribe_modes() {
    let w = World::start().await;
    let oidc = oidc_token(&w.oidc, "dave");
    let oidc_auth = w.token_auth(&oidc);
    let mut c = w.ready(&oidc_auth).await;
    // Subscribe: OIDC and Lambda yes, IAM and API key no.
    assert_success(
        &subscribe(&mut c, "o", "/split/a", &oidc_auth).await,
        "subscribe_success",
        "o",
    );
    assert_success(
        &subscribe(&mut c, "l", "/split/*", &w.token_auth("allow-erin")).await,
        "subscribe_success",
        "l",
    );
    let iam_sub = w.iam_auth((AK_ALL, SK_ALL), &subscribe_body("/split/a"));
    assert_refused(
        &subscribe(&mut c, "i", "/split/a", &iam_sub).await,
        "subscribe_error",
        "i",
    );
    let key_auth = json!({"host": w.host(), "x-api-key": KEY});
    assert_refused(
        &subscribe(&mut c, "k", "/split/a", &key_auth).await,
        "subscribe_error",
        "k",
    );
    // Publish: IAM yes; OIDC, Lambda and API key no (socket and HTTP).
    let events = vec!["\"from-iam\"".to_owned()];
    let body = publish_body("/split/a", &events);
    let iam_pub = w.iam_auth((AK_ALL, SK_ALL), &body);
    assert_success(
        &publish(&mut c, "p", "/split/a", &events, &iam_pub).await,
        "publish_success",
        "p",
    );
    // Both subscriptions match; take the two data frames in either order.
    let mut got = [c.data().await, c.data().await];
    got.sort_by_key(|f| f["id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(got[0]["id"], "l");
    assert_eq!(got[1]["id"], "o");
    for auth in [&oidc_auth, &w.token_auth("allow-erin"), &key_auth] {
        assert_refused(
            &publish(&mut c, "x", "/split/a", &events, auth).await,
            "publish_error",
            "x",
        );
    }
    assert_http_refused(&post(&w, &body, &[("Authorization", &oidc)]).await);
    assert_http_refused(&post(&w, &body, &[("Authorization", "allow-erin")]).await);
    assert_http_refused(&post(&w, &body, &[("x-api-key", KEY)]).await);
    assert_eq!(post_iam(&w, (AK_ALL, SK_ALL), &body, false).await.0, 200);
    let mut got = [c.data().await, c.data().await];
    got.sort_by_key(|f| f["id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(got[0]["event"], "\"from-iam\"");
    assert_eq!(got[1]["event"], "\"from-iam\"");
    // The webhook was never asked about a publish here: the mode was refused before it.
    assert!(
        w.hook
            .bodies("/authorize")
            .iter()
            .all(|c| c["requestContext"]["operation"] != "EVENT_PUBLISH")
    );
    w.stop().await;
}

#[tokio::test]
async fn one_connection_different_modes_per_subscription() {
    let w = World::start().await;
    // Connected with an API key; each subscription brings its own credential.
    let mut c = w.ready(&json!({"host": w.host(), "x-api-key": KEY})).await;
    let subs = [
        ("oidc", w.token_auth(&oidc_token(&w.oidc, "frank"))),
        ("pool", w.token_auth(&cognito_token(&w.cognito, "gina"))),
        ("lambda", w.token_auth("allow-hank")),
        (
            "iam",
            w.iam_auth((AK_DEFAULT, SK_DEFAULT), &subscribe_body("/default/multi")),
        ),
    ];
    for (id, auth) in &subs {
        assert_success(
            &subscribe(&mut c, id, "/default/multi", auth).await,
            "subscribe_success",
            id,
        );
    }
    let body = publish_body("/default/multi", &["{\"all\":true}".to_owned()]);
    let (status, reply, _) = post(&w, &body, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 200, "{reply}");
    let mut ids = Vec::new();
    for _ in 0..subs.len() {
        let f = c.data().await;
        assert_eq!(f["type"], "data", "{f}");
        assert_eq!(f["event"], "{\"all\":true}");
        ids.push(f["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["iam", "lambda", "oidc", "pool"]);
    // A subscription without its own authorization uses the connection's (the API key).
    c.send(json!({"type": "subscribe", "id": "inherit", "channel": "/default/multi"}))
        .await;
    assert_success(&c.reply().await, "subscribe_success", "inherit");
    w.stop().await;
}

// ------------------------------------------------------------------------------- refusals

#[tokio::test]
async fn bad_tokens_are_refused_everywhere() {
    let w = World::start().await;
    let t = now();
    // Signed by a key the IdP does not publish, under the IdP's kid: a forged signature.
    let forged = jwt(
        &EncodingKey::from_rsa_pem(RSA_OTHER_PRIV).unwrap(),
        Algorithm::RS256,
        "rsa-1",
        &json!({"iss": w.oidc.url(), "sub": "mallory", "aud": OIDC_CLIENT, "iat": t, "exp": t + 600}),
    );
    let expired = jwt(
        &rsa(),
        Algorithm::RS256,
        "rsa-1",
        &json!({"iss": w.oidc.url(), "sub": "mallory", "aud": OIDC_CLIENT, "iat": t - 7200, "exp": t - 3600}),
    );
    let wrong_client = jwt(
        &rsa(),
        Algorithm::RS256,
        "rsa-1",
        &json!({"iss": w.oidc.url(), "sub": "mallory", "aud": "another-app", "iat": t, "exp": t + 600}),
    );
    let cognito_wrong_client = jwt(
        &EncodingKey::from_ec_pem(EC_PRIV).unwrap(),
        Algorithm::ES256,
        "ec-1",
        &json!({"iss": w.cognito.url(), "sub": "m", "client_id": "not-the-app", "token_use": "access", "iat": t, "exp": t + 600}),
    );
    let good = oidc_token(&w.oidc, "ok");
    let good_auth = w.token_auth(&good);
    let mut c = w.ready(&good_auth).await;
    let events = vec!["1".to_owned()];
    let body = publish_body("/default/a", &events);
    for bad in [&forged, &expired, &wrong_client, &cognito_wrong_client] {
        let auth = w.token_auth(bad);
        assert_connect_refused(&w, &auth).await;
        assert_refused(
            &subscribe(&mut c, "s", "/default/a", &auth).await,
            "subscribe_error",
            "s",
        );
        assert_refused(
            &publish(&mut c, "p", "/default/a", &events, &auth).await,
            "publish_error",
            "p",
        );
        assert_http_refused(&post(&w, &body, &[("Authorization", bad)]).await);
    }
    // The connection that was refused per operation is still usable.
    assert_success(
        &subscribe(&mut c, "s", "/default/a", &good_auth).await,
        "subscribe_success",
        "s",
    );
    w.stop().await;
}

#[tokio::test]
async fn webhook_refusals() {
    let w = World::start().await;
    assert_connect_refused(&w, &w.token_auth("deny-ivan")).await;
    let mut c = w.ready(&w.token_auth("readonly-judy")).await;
    let ro = w.token_auth("readonly-judy");
    // Allowed to subscribe, not to publish.
    assert_success(
        &subscribe(&mut c, "s", "/default/a", &ro).await,
        "subscribe_success",
        "s",
    );
    let events = vec!["1".to_owned()];
    assert_refused(
        &publish(&mut c, "p", "/default/a", &events, &ro).await,
        "publish_error",
        "p",
    );
    let body = publish_body("/default/a", &events);
    assert_http_refused(&post(&w, &body, &[("Authorization", "readonly-judy")]).await);
    // An outright denial.
    let deny = w.token_auth("deny-ivan");
    assert_refused(
        &subscribe(&mut c, "d", "/default/a", &deny).await,
        "subscribe_error",
        "d",
    );
    assert_http_refused(&post(&w, &body, &[("Authorization", "deny-ivan")]).await);
    w.stop().await;
}

#[tokio::test]
async fn sigv4_refusals() {
    let w = World::start().await;
    // Connect with a key that may do everything, but only in `default`.
    let dflt = (AK_DEFAULT, SK_DEFAULT);
    let mut c = w.ready(&w.iam_auth(dflt, "{}")).await;
    // `split` takes IAM for publishing, but this key is not granted there; AK_ALL is.
    let events = vec!["1".to_owned()];
    let split = publish_body("/split/a", &events);
    assert_refused(
        &publish(&mut c, "p", "/split/a", &events, &w.iam_auth(dflt, &split)).await,
        "publish_error",
        "p",
    );
    assert_eq!(post_iam(&w, dflt, &split, false).await.0, 401);
    assert_eq!(post_iam(&w, (AK_ALL, SK_ALL), &split, false).await.0, 200);
    // The reader key may subscribe but not publish.
    let reader = (AK_READER, SK_READER);
    assert_success(
        &subscribe(
            &mut c,
            "r",
            "/default/a",
            &w.iam_auth(reader, &subscribe_body("/default/a")),
        )
        .await,
        "subscribe_success",
        "r",
    );
    let body = publish_body("/default/a", &events);
    assert_refused(
        &publish(
            &mut c,
            "rp",
            "/default/a",
            &events,
            &w.iam_auth(reader, &body),
        )
        .await,
        "publish_error",
        "rp",
    );
    assert_eq!(post_iam(&w, reader, &body, false).await.0, 401);
    // A wrong secret, an unknown key, and a signature over another channel.
    let wrong = (AK_ALL, "not-the-secret");
    assert_connect_refused(&w, &w.iam_auth(wrong, "{}")).await;
    assert_connect_refused(&w, &w.iam_auth(("AKIAUNKNOWN", "x"), "{}")).await;
    assert_refused(
        &subscribe(
            &mut c,
            "o",
            "/default/b",
            &w.iam_auth(dflt, &subscribe_body("/default/a")),
        )
        .await,
        "subscribe_error",
        "o",
    );
    assert_eq!(post_iam(&w, wrong, &body, false).await.0, 401);
    // The synthetic connect body signed for a subscribe is not a subscribe signature.
    assert_refused(
        &subscribe(&mut c, "c", "/default/a", &w.iam_auth(dflt, "{}")).await,
        "subscribe_error",
        "c",
    );
    w.stop().await;
}

#[tokio::test]
async fn modes_left_out_of_connection_auth_modes_cannot_connect() {
    // Only API keys may connect; every provider mode is still configured for operations.
    let w = World::with_connection_modes(r#"["API_KEY"]"#).await;
    assert_connect_refused(&w, &w.token_auth(&oidc_token(&w.oidc, "k"))).await;
    assert_connect_refused(&w, &w.token_auth(&cognito_token(&w.cognito, "k"))).await;
    assert_connect_refused(&w, &w.token_auth("allow-kate")).await;
    assert_connect_refused(&w, &w.iam_auth((AK_ALL, SK_ALL), "{}")).await;
    // The webhook was not even asked.
    assert!(w.hook.bodies("/authorize").is_empty());
    // ...but once connected with a key, they work per operation.
    let mut c = w.ready(&json!({"host": w.host(), "x-api-key": KEY})).await;
    assert_success(
        &subscribe(&mut c, "s", "/default/a", &w.token_auth("allow-kate")).await,
        "subscribe_success",
        "s",
    );
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

#[tokio::test]
async fn iam_session_token_is_required_when_configured() {
    let w = World::start().await;
    let key = Key {
        id: AK_SESSION,
        secret: SK_SESSION,
        session_token: Some(SESSION_TOKEN),
    };
    let without = Key {
        session_token: None,
        ..key
    };
    let wrong = Key {
        session_token: Some("another-token"),
        ..key
    };
    let mut c = w.ready(&w.iam_auth(key, "{}")).await;
    assert_eq!(
        w.iam_auth(key, "{}")["x-amz-security-token"],
        SESSION_TOKEN,
        "the token travels in the auth object"
    );
    assert_success(
        &subscribe(
            &mut c,
            "s",
            "/default/t",
            &w.iam_auth(key, &subscribe_body("/default/t")),
        )
        .await,
        "subscribe_success",
        "s",
    );
    let body = publish_body("/default/t", &["\"with-token\"".to_owned()]);
    assert_eq!(post_iam(&w, key, &body, false).await.0, 200);
    assert_eq!(next_event(&mut c, "s").await, json!("with-token"));
    for bad in [without, wrong] {
        assert_connect_refused(&w, &w.iam_auth(bad, "{}")).await;
        assert_refused(
            &subscribe(
                &mut c,
                "b",
                "/default/t",
                &w.iam_auth(bad, &subscribe_body("/default/t")),
            )
            .await,
            "subscribe_error",
            "b",
        );
        assert_eq!(post_iam(&w, bad, &body, false).await.0, 401);
    }
    w.stop().await;
}

/// Opens a socket with credentials as real upgrade headers (the Swift and Kotlin SDKs' form).
async fn connect_with_headers(w: &World, headers: &[(String, String)]) -> (Conn, Value) {
    let url = format!("ws://{}/event/realtime", w.server.addr);
    let mut req = url.into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("aws-appsync-event-ws"),
    );
    for (k, v) in headers {
        h.insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
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

#[tokio::test]
async fn connect_credentials_as_upgrade_headers() {
    let w = World::start().await;
    // SigV4 over the connect form: the upgrade's own Host header is the signed host.
    let base = vec![
        ("accept", "application/json, text/javascript".to_owned()),
        ("content-encoding", "amz-1.0".to_owned()),
        ("content-type", "application/json; charset=UTF-8".to_owned()),
        ("host", w.host()),
    ];
    let url = format!("https://{}/event", w.host());
    let mut headers: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| *k != "host")
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    headers.extend(sigv4((AK_ALL, SK_ALL).into(), &url, &base, b"{}", false));
    let (_, ack) = connect_with_headers(&w, &headers).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    // The same headers signed with the wrong secret are refused.
    let mut bad: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k != "authorization" && k != "x-amz-date")
        .cloned()
        .collect();
    bad.extend(sigv4(
        (AK_ALL, "not-the-secret").into(),
        &url,
        &base,
        b"{}",
        false,
    ));
    let (_, e) = connect_with_headers(&w, &bad).await;
    assert_eq!(e["errors"][0]["errorType"], UNAUTHORIZED, "{e}");
    // A JWT and a Lambda token in `Authorization`.
    for token in [oidc_token(&w.oidc, "upgrade"), "allow-upgrade".to_owned()] {
        let (_, ack) = connect_with_headers(&w, &[("authorization".into(), token)]).await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }
    w.stop().await;
}

// ------------------------------------------------------------------------------- the docs

const DOCS: &str = include_str!("../../../docs/authorization.md");

/// Every TOML example of docs/authorization.md, concatenated, with the IdP and webhook URLs
/// pointed at the fixtures.
fn documented_config(oidc: &Fixture, cognito: &Fixture, hook: &Fixture) -> String {
    let mut blocks = String::new();
    let mut inside = false;
    for line in DOCS.lines() {
        match (inside, line.trim()) {
            (false, "```toml") => inside = true,
            (true, "```") => inside = false,
            (true, _) => {
                blocks.push_str(line);
                blocks.push('\n');
            }
            _ => {}
        }
    }
    let replacements = [
        (
            r#"issuer = "https://idp.example.com/realms/herald""#,
            format!(r#"issuer = "{}""#, oidc.url()),
        ),
        (
            r#"# issuer = "http://127.0.0.1:9000/realms/herald""#,
            format!(r#"issuer = "{}""#, cognito.url()),
        ),
        (
            r#"authorizer_url = "http://127.0.0.1:9100/authorize""#,
            format!(r#"authorizer_url = "{}/authorize""#, hook.url()),
        ),
    ];
    for (from, to) in replacements {
        assert!(blocks.contains(from), "docs still contain {from}");
        blocks = blocks.replace(from, &to);
    }
    format!("listen = \"127.0.0.1:0\"\nshutdown_grace_ms = 500\n{blocks}")
}

#[tokio::test]
async fn documented_configuration_works_for_every_mode() {
    let w = World::from_toml(documented_config).await;
    let t = now();
    let api_key = json!({"host": w.host(), "x-api-key": "da2-local-development-key"});
    let oidc = w.token_auth(&jwt(
        &rsa(),
        Algorithm::RS256,
        "rsa-1",
        &json!({"iss": w.oidc.url(), "sub": "doc-user", "aud": "herald-web", "iat": t, "exp": t + 600}),
    ));
    let cognito_token = jwt(
        &EncodingKey::from_ec_pem(EC_PRIV).unwrap(),
        Algorithm::ES256,
        "ec-1",
        &json!({"iss": w.cognito.url(), "sub": "doc-pool", "client_id": "1example23456789",
                "token_use": "access", "iat": t, "exp": t + 600}),
    );
    let cognito = w.token_auth(&cognito_token);
    let lambda = w.token_auth("Bearer allow-doc");
    let publisher = ("AKIAHERALDPUBLISHER", "change-me-publisher-secret");
    let reader = Key {
        id: "AKIAHERALDREADER",
        secret: "change-me-reader-secret",
        session_token: Some("optional-session-token"),
    };
    let events = vec!["\"doc\"".to_owned()];
    let chat = publish_body("/chat/room-1", &events);
    let dflt = publish_body("/default/a", &events);

    // Every mode connects.
    for auth in [
        &api_key,
        &oidc,
        &cognito,
        &lambda,
        &w.iam_auth(publisher, "{}"),
        &w.iam_auth(reader, "{}"),
    ] {
        let (_, ack) = w.connect(auth).await;
        assert_eq!(ack["type"], "connection_ack", "connect with {auth}: {ack}");
    }
    let mut c = w.ready(&api_key).await;

    // chat: OIDC and Lambda subscribe; OIDC and Cognito publish.
    for (id, auth) in [("o", &oidc), ("l", &lambda)] {
        assert_success(
            &subscribe(&mut c, id, "/chat/*", auth).await,
            "subscribe_success",
            id,
        );
    }
    for (id, auth) in [
        ("k", &api_key),
        ("c", &cognito),
        ("i", &w.iam_auth(reader, &subscribe_body("/chat/*"))),
    ] {
        assert_refused(
            &subscribe(&mut c, id, "/chat/*", auth).await,
            "subscribe_error",
            id,
        );
    }
    assert_success(
        &publish(&mut c, "p", "/chat/room-1", &events, &oidc).await,
        "publish_success",
        "p",
    );
    assert_eq!(
        post(&w, &chat, &[("Authorization", &cognito_token)])
            .await
            .0,
        200
    );
    for _ in 0..4 {
        assert_eq!(c.data().await["event"], "\"doc\"");
    }
    assert_refused(
        &publish(&mut c, "x", "/chat/room-1", &events, &lambda).await,
        "publish_error",
        "x",
    );
    assert_eq!(post_iam(&w, publisher, &chat, false).await.0, 401);
    assert_http_refused(&post(&w, &chat, &[("x-api-key", "da2-local-development-key")]).await);

    // default: every mode subscribes (the reader key with its session token); API keys and the
    // publisher key publish.
    for (id, auth) in [
        ("dk", api_key.clone()),
        ("do", oidc.clone()),
        ("dc", cognito.clone()),
        ("dl", lambda.clone()),
        ("di", w.iam_auth(reader, &subscribe_body("/default/a"))),
    ] {
        assert_success(
            &subscribe(&mut c, id, "/default/a", &auth).await,
            "subscribe_success",
            id,
        );
    }
    // The publisher key has no EventSubscribe.
    assert_refused(
        &subscribe(
            &mut c,
            "dp",
            "/default/a",
            &w.iam_auth(publisher, &subscribe_body("/default/a")),
        )
        .await,
        "subscribe_error",
        "dp",
    );
    assert_success(
        &publish(
            &mut c,
            "pi",
            "/default/a",
            &events,
            &w.iam_auth(publisher, &dflt),
        )
        .await,
        "publish_success",
        "pi",
    );
    assert_eq!(post_iam(&w, publisher, &dflt, false).await.0, 200);
    for _ in 0..10 {
        assert_eq!(c.data().await["event"], "\"doc\"");
    }
    assert_http_refused(&post(&w, &dflt, &[("Authorization", &cognito_token)]).await);

    // The Lambda provider: tokens must match identity_validation_expression before any call,
    // and every call carries the configured webhook header.
    let calls = w.hook.bodies("/authorize").len();
    assert_refused(
        &subscribe(&mut c, "nb", "/chat/*", &w.token_auth("allow-doc")).await,
        "subscribe_error",
        "nb",
    );
    assert_eq!(w.hook.bodies("/authorize").len(), calls);
    let secrets = w
        .hook
        .header_values("/authorize", "x-herald-webhook-secret");
    assert_eq!(secrets.len(), calls);
    assert!(secrets.iter().all(|v| v == "change-me"));
    w.stop().await;
}

// ------------------------------------------------------------------------------- security

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

/// The issue's security list, end to end: each credential is refused on connect, subscribe,
/// publish and HTTP publish with `UnauthorizedException`/401, and nothing secret is logged.
#[tokio::test]
async fn attacks_are_refused_with_the_spec_error_and_not_logged() {
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let w = World::start().await;
    let t = now();
    let claims = json!({"iss": w.oidc.url(), "sub": "mallory", "aud": OIDC_CLIENT, "iat": t, "exp": t + 600});
    let b64 = |v: &Value| b64url(&v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        b64(&claims)
    );
    // Algorithm confusion: HS256 keyed with the RSA public key the JWKS publishes.
    let rsa_public = include_bytes!("../../testkit/data/rsa_public.pem");
    let hs256 = jwt(
        &EncodingKey::from_secret(rsa_public),
        Algorithm::HS256,
        "rsa-1",
        &claims,
    );
    let mut not_yet = claims.clone();
    not_yet["nbf"] = json!(t + 3600);
    let not_yet = jwt(&rsa(), Algorithm::RS256, "rsa-1", &not_yet);
    let mut evil = claims.clone();
    evil["iss"] = json!("https://evil.example");
    let wrong_issuer = jwt(&rsa(), Algorithm::RS256, "rsa-1", &evil);
    let tokens = [&alg_none, &hs256, &not_yet, &wrong_issuer];

    let key_auth = json!({"host": w.host(), "x-api-key": KEY});
    let mut c = w.ready(&key_auth).await;
    let events = vec!["1".to_owned()];
    let body = publish_body("/default/a", &events);
    for token in tokens {
        let auth = w.token_auth(token);
        assert_connect_refused(&w, &auth).await;
        assert_refused(
            &subscribe(&mut c, "s", "/default/a", &auth).await,
            "subscribe_error",
            "s",
        );
        assert_refused(
            &publish(&mut c, "p", "/default/a", &events, &auth).await,
            "publish_error",
            "p",
        );
        assert_http_refused(&post(&w, &body, &[("Authorization", token)]).await);
    }

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
    let base = vec![
        ("content-type", "application/json".to_owned()),
        ("host", w.host()),
    ];
    let url = format!("http://{}/event", w.host());
    let signed = sigv4_at(key.into(), &url, &base, body.as_bytes(), false, old);
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_http_refused(&post(&w, &body, &headers).await);

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

#[tokio::test]
async fn every_provider_mode_is_refused_when_not_configured() {
    // API keys only: no [[auth.providers]] at all.
    let server = start(common::config()).await;
    let host = server.addr.to_string();
    let (oidc, cognito, hook) = (idp().await, idp().await, authorizer().await);
    let tokens = [
        oidc_token(&oidc, "x"),
        cognito_token(&cognito, "x"),
        "allow-x".to_owned(),
    ];
    let body = publish_body("/default/a", &["1".to_owned()]);
    let w = World {
        oidc,
        cognito,
        hook,
        server,
    };
    let mut iam_auths = vec![w.iam_auth((AK_ALL, SK_ALL), "{}")];
    iam_auths.extend(
        tokens
            .iter()
            .map(|t| json!({"host": host, "Authorization": t})),
    );
    for auth in &iam_auths {
        assert_connect_refused(&w, auth).await;
    }
    let mut c = w.ready(&json!({"host": host, "x-api-key": KEY})).await;
    for auth in &iam_auths {
        assert_refused(
            &subscribe(&mut c, "s", "/default/a", auth).await,
            "subscribe_error",
            "s",
        );
    }
    for token in &tokens {
        assert_http_refused(&post(&w, &body, &[("Authorization", token)]).await);
    }
    assert_eq!(post_iam(&w, (AK_ALL, SK_ALL), &body, false).await.0, 401);
    assert!(w.hook.bodies("/authorize").is_empty());
    assert!(w.oidc.hits.lock().unwrap().is_empty(), "no IdP is asked");
    w.stop().await;
}

/// Delivery to a connection's existing subscriptions must not wait for another operation's
/// authorization (a webhook or JWKS fetch can take up to its timeout). Ignored until
/// `connection/` flushes the outbox while an operation is being authorized.
#[tokio::test]
async fn slow_authorization_does_not_delay_delivery() {
    // The webhook never answers `hang-*`, and Herald waits longer than this test does.
    let w = World::from_toml(|o, c, h| {
        let config = test_config(ALL_MODES, o, c, h);
        assert!(config.contains("timeout_ms = 1500"));
        config.replace("timeout_ms = 1500", "timeout_ms = 60000")
    })
    .await;
    let key_auth = json!({"host": w.host(), "x-api-key": KEY});
    let mut c = w.ready(&key_auth).await;
    assert_success(
        &subscribe(&mut c, "s1", "/default/a", &key_auth).await,
        "subscribe_success",
        "s1",
    );
    // A subscribe whose authorization never completes.
    c.send(json!({"type": "subscribe", "id": "h", "channel": "/default/b", "authorization": w.token_auth("hang-x")})).await;
    let body = publish_body("/default/a", &["1".to_owned()]);
    let (status, _, _) = post(&w, &body, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 200);
    // Within the harness's wait bound, not after the 60 s authorizer timeout.
    assert_eq!(next_event(&mut c, "s1").await, json!(1));
    w.stop().await;
}

#[tokio::test]
async fn a_mode_list_naming_an_unconfigured_provider_stops_startup() {
    use figment::providers::Format;
    let toml = r#"
listen = "127.0.0.1:0"
[auth]
connection_auth_modes = ["API_KEY", "OPENID_CONNECT"]
default_subscribe_auth_modes = ["AWS_LAMBDA"]
[[namespaces]]
name = "default"
publish_auth_modes = ["AWS_IAM"]
"#;
    let config: herald_server::Config =
        figment::Figment::from(figment::providers::Toml::string(toml))
            .extract()
            .unwrap();
    let Err(e) = herald_server::Server::bind(config).await else {
        panic!("the server started without the providers its mode lists name");
    };
    let e = e.to_string();
    for named in [
        "auth.connection_auth_modes",
        "OPENID_CONNECT",
        "auth.default_subscribe_auth_modes",
        "AWS_LAMBDA",
        "publish_auth_modes",
        "AWS_IAM",
    ] {
        assert!(e.contains(named), "{named} is named in: {e}");
    }
}

/// A server whose `hist` namespace keeps history in memory.
async fn history_world() -> World {
    World::from_toml(|o, c, h| {
        format!(
            "{}\n[history]\nbackend = \"memory\"\n\n[[namespaces]]\nname = \"hist\"\nhistory = {{}}\n",
            test_config(ALL_MODES, o, c, h)
        )
    })
    .await
}

const HISTORY_PATH: &str = "/event/history?channel=/hist/a";

async fn history_get(w: &World, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, _, body) = http(&w.server, "GET", HISTORY_PATH, headers, b"").await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn history_read_with_token_modes() {
    let w = history_world().await;
    let body = publish_body("/hist/a", &["\"kept\"".to_owned()]);
    assert_eq!(post(&w, &body, &[("x-api-key", KEY)]).await.0, 200);
    let oidc = oidc_token(&w.oidc, "reader");
    let cognito = cognito_token(&w.cognito, "reader");
    for token in [oidc.as_str(), cognito.as_str(), "allow-reader"] {
        let (status, reply) = history_get(&w, &[("Authorization", token)]).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["events"][0]["event"], "\"kept\"", "{reply}");
    }
    let (status, _) = history_get(&w, &[("Authorization", "deny-reader")]).await;
    assert_eq!(status, 401);
    w.stop().await;
}

/// HTTP clients sign the request they send; for `GET /event/history` that is the GET itself.
#[tokio::test]
async fn history_read_with_sigv4_over_the_real_request() {
    let w = history_world().await;
    let body = publish_body("/hist/a", &["\"kept\"".to_owned()]);
    assert_eq!(post(&w, &body, &[("x-api-key", KEY)]).await.0, 200);
    let identity = Credentials::new(AK_READER, SK_READER, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("appsync")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{}{HISTORY_PATH}", w.host());
    let host = w.host();
    let signable = SignableRequest::new(
        "GET",
        &url,
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let signed: Vec<(String, String)> = instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, reply) = history_get(&w, &headers).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["events"][0]["event"], "\"kept\"", "{reply}");
    w.stop().await;
}

/// A handler that copies `ctx.identity` into each event, so the test can see what handlers get.
const IDENTITY_ECHO: &str = r#"
export function onPublish(ctx) {
  return ctx.events.map(e => ({ id: e.id, payload: { ...e.payload, identity: ctx.identity ?? null } }));
}
"#;

#[tokio::test]
async fn handlers_see_the_identity_each_mode_established() {
    let w = World::from_toml(|o, c, h| {
        format!(
            "{}\n[[namespaces]]\nname = \"who\"\nhandlers = {{ code = '''{IDENTITY_ECHO}''' }}\n",
            test_config(ALL_MODES, o, c, h)
        )
    })
    .await;
    let key_auth = json!({"host": w.host(), "x-api-key": KEY});
    let mut c = w.ready(&key_auth).await;
    assert_success(
        &subscribe(&mut c, "s", "/who/*", &key_auth).await,
        "subscribe_success",
        "s",
    );
    let oidc = oidc_token(&w.oidc, "olivia");
    let cognito = cognito_token(&w.cognito, "paul");
    let events = vec!["{\"n\":1}".to_owned()];
    let body = publish_body("/who/a", &events);
    let iam_socket = w.iam_auth((AK_ALL, SK_ALL), &body);
    let cases: [(&str, Value); 4] = [
        ("oidc", w.token_auth(&oidc)),
        ("cognito", w.token_auth(&cognito)),
        ("lambda", w.token_auth("allow-quinn")),
        ("iam", iam_socket),
    ];
    let mut seen = std::collections::HashMap::new();
    for (name, auth) in &cases {
        // Over the socket, then over HTTP with the same mode: both get the same identity.
        assert_success(
            &publish(&mut c, name, "/who/a", &events, auth).await,
            "publish_success",
            name,
        );
        let socket = next_event(&mut c, "s").await["identity"].clone();
        let (status, reply) = if *name == "iam" {
            post_iam(&w, (AK_ALL, SK_ALL), &body, false).await
        } else {
            let token = auth["Authorization"].as_str().unwrap();
            let (status, reply, _) = post(&w, &body, &[("Authorization", token)]).await;
            (status, reply)
        };
        assert_eq!(status, 200, "{reply}");
        let http = next_event(&mut c, "s").await["identity"].clone();
        assert_eq!(socket, http, "{name}: socket and HTTP identities agree");
        seen.insert(*name, socket);
    }
    let oidc_id = &seen["oidc"];
    assert_eq!(oidc_id["sub"], "olivia", "{oidc_id}");
    assert_eq!(oidc_id["issuer"], w.oidc.url());
    assert_eq!(oidc_id["username"], "olivia");
    assert_eq!(oidc_id["claims"]["aud"], OIDC_CLIENT);
    let pool = &seen["cognito"];
    assert_eq!(pool["sub"], "sub-paul", "{pool}");
    assert_eq!(pool["username"], "paul");
    assert_eq!(pool["claims"]["client_id"], COGNITO_CLIENT);
    assert_eq!(
        seen["lambda"],
        json!({"handlerContext": {"user": "allow-quinn"}})
    );
    let iam = &seen["iam"];
    assert_eq!(
        iam["username"], "arn:aws:iam::111122223333:user/all",
        "{iam}"
    );
    assert_eq!(iam["userArn"], "arn:aws:iam::111122223333:user/all");
    // API keys carry no identity, as in AppSync.
    let (status, _, _) = post(&w, &body, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 200);
    assert_eq!(next_event(&mut c, "s").await["identity"], Value::Null);
    w.stop().await;
}

// ------------------------------------------------------------------------------- access rules

/// Access rules bind to the identity each mode produces: a JWT's `sub` (OIDC, Cognito), the
/// authorizer's `handlerContext`, the SigV4 key's principal. Own channels are allowed, another
/// user's and a wildcard over all users are refused.
#[tokio::test]
async fn access_rules_bind_to_every_modes_identity() {
    let w = World::from_toml(|oidc, cognito, hook| {
        format!(
            "{}\n[[namespaces]]\nname = \"iso\"\n[namespaces.rules]\nsubscribe = [\"/iso/u/{{identity.sub}}/*\", \"/iso/h/{{handlerContext.user}}/*\"]\n",
            test_config(ALL_MODES, oidc, cognito, hook)
        )
    })
    .await;
    let oidc = oidc_token(&w.oidc, "alice");
    let cognito = cognito_token(&w.cognito, "bob");
    type AuthFor<'a> = Box<dyn Fn(&str) -> Value + 'a>;
    let cases: Vec<(&str, Value, AuthFor)> = vec![
        (
            "oidc",
            w.token_auth(&oidc),
            Box::new(|_: &str| w.token_auth(&oidc)),
        ),
        (
            "cognito",
            w.token_auth(&cognito),
            Box::new(|_: &str| w.token_auth(&cognito)),
        ),
        (
            "lambda",
            w.token_auth("allow-carol"),
            Box::new(|_: &str| w.token_auth("allow-carol")),
        ),
        (
            "iam",
            w.iam_auth((AK_READER, SK_READER), "{}"),
            Box::new(|ch: &str| w.iam_auth((AK_READER, SK_READER), &subscribe_body(ch))),
        ),
    ];
    let own = |mode: &str| match mode {
        "oidc" => "/iso/u/alice/inbox",
        "cognito" => "/iso/u/sub-bob/inbox",
        "lambda" => "/iso/h/allow-carol/inbox",
        _ => "/iso/u/reader/inbox",
    };
    for (mode, connect, auth) in &cases {
        let mut c = w.ready(connect).await;
        let mine = own(mode);
        assert_success(
            &subscribe(&mut c, "own", mine, &auth(mine)).await,
            "subscribe_success",
            "own",
        );
        for (i, foreign) in ["/iso/u/mallory/inbox", "/iso/u/*", "/iso/h/*", "/iso/*"]
            .iter()
            .enumerate()
        {
            let id = format!("f{i}");
            let r = subscribe(&mut c, &id, foreign, &auth(foreign)).await;
            assert_refused(&r, "subscribe_error", &id);
        }
        // Events on another user's channel never reach this connection; its own still do.
        let body = publish_body("/iso/u/mallory/inbox", &["\"not yours\"".to_owned()]);
        assert_eq!(post(&w, &body, &[("x-api-key", KEY)]).await.0, 200);
        let body = publish_body(mine, &[format!("\"for {mode}\"")]);
        assert_eq!(post(&w, &body, &[("x-api-key", KEY)]).await.0, 200);
        assert_eq!(
            next_event(&mut c, "own").await,
            json!(format!("for {mode}")),
            "{mode}"
        );
    }
    drop(cases);
    w.stop().await;
}
