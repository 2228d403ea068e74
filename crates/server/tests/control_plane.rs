//! The AppSync control plane over real loopback HTTP with requests signed as the AWS SDKs sign
//! them: the configured API, its namespaces and keys as the AWS model shapes them; namespaces and
//! keys created, updated and deleted, served at once and after a restart; and the AWS errors for
//! unknown APIs, bad signatures, conflicts and what the file owns.

mod common;
#[path = "../../history/tests/support/nats.rs"]
mod nats;

use common::{Client, TestServer, config, http, start};
use herald_server::Config;
use herald_server::config::{AdminAccessKey, NamespaceConfig};
use herald_testkit::sigv4::Signer;
use serde_json::{Value, json};

const ADMIN_ID: &str = "AKIDHERALDADMIN";
const ADMIN_SECRET: &str = "admin-secret-0123456789";
const CODE: &str = "export function onPublish(ctx) { return ctx.events; }";

fn control_config() -> Config {
    let mut c = config();
    c.control_plane.api_id = "local-api".into();
    c.control_plane.name = Some("Local API".into());
    c.control_plane.access_keys.push(AdminAccessKey {
        access_key_id: ADMIN_ID.into(),
        secret_access_key: ADMIN_SECRET.into(),
    });
    c.auth.api_keys[0].expires = Some("2030-01-01T00:00:00Z".into());
    let mut chat = NamespaceConfig::named("chat");
    chat.handlers = Some(herald_handler::HandlerConfig {
        code: Some(CODE.into()),
        ..Default::default()
    });
    chat.publish_auth_modes = Some(vec![herald_server::auth::AuthMode::ApiKey]);
    c.namespaces.push(chat);
    c
}

struct Reply {
    status: u16,
    error_type: Option<String>,
    body: Value,
}

/// `method path` signed as `(id, secret)` for the service `appsync`, as botocore signs it.
async fn call(s: &TestServer, method: &str, path: &str, key: (&str, &str)) -> Reply {
    signed(s, method, path, key, b"").await
}

async fn signed(s: &TestServer, method: &str, path: &str, key: (&str, &str), body: &[u8]) -> Reply {
    let host = s.addr.to_string();
    let url = format!("http://{host}{path}");
    let base = vec![("host", host.clone())];
    let signed = Signer::new(key, "us-east-1").sign(method, &url, &base, body);
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sent(s, method, path, &headers, body).await
}

async fn raw(s: &TestServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    sent(s, method, path, headers, b"").await
}

async fn sent(
    s: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let (status, head, body) = http(s, method, path, headers, body).await;
    Reply {
        status,
        error_type: head
            .iter()
            .find(|(k, _)| k == "x-amzn-errortype")
            .map(|(_, v)| v.clone()),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

async fn admin(s: &TestServer, method: &str, path: &str) -> Reply {
    call(s, method, path, (ADMIN_ID, ADMIN_SECRET)).await
}

/// A write with a JSON body, as the administrator.
async fn write(s: &TestServer, method: &str, path: &str, body: Value) -> Reply {
    let body = body.to_string();
    signed(s, method, path, (ADMIN_ID, ADMIN_SECRET), body.as_bytes()).await
}

#[tokio::test]
async fn lists_and_gets_the_configured_api() {
    let s = start(control_config()).await;
    let host = s.addr.to_string();

    let r = admin(&s, "GET", "/v2/apis").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let apis = r.body["apis"].as_array().unwrap();
    assert_eq!(apis.len(), 1);
    let api = &apis[0];
    assert_eq!(api["apiId"], "local-api");
    assert_eq!(api["name"], "Local API");
    assert_eq!(
        api["apiArn"],
        "arn:aws:appsync:us-east-1:000000000000:apis/local-api"
    );
    assert_eq!(api["dns"], json!({"HTTP": host, "REALTIME": host}));
    assert!(api["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(
        api["eventConfig"],
        json!({
            "authProviders": [{"authType": "API_KEY"}],
            "connectionAuthModes": [{"authType": "API_KEY"}],
            "defaultPublishAuthModes": [{"authType": "API_KEY"}],
            "defaultSubscribeAuthModes": [{"authType": "API_KEY"}],
        })
    );
    assert!(r.body.get("nextToken").is_none(), "{}", r.body);

    let r = admin(&s, "GET", "/v2/apis/local-api").await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body["api"], api);

    let r = admin(&s, "GET", "/v2/apis/local-api/channelNamespaces").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<&str> = r.body["channelNamespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "other", "chat"]);

    let r = admin(&s, "GET", "/v2/apis/local-api/channelNamespaces/chat").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ns = &r.body["channelNamespace"];
    assert_eq!(ns["apiId"], "local-api");
    assert_eq!(ns["publishAuthModes"], json!([{"authType": "API_KEY"}]));
    assert_eq!(ns["subscribeAuthModes"], json!([{"authType": "API_KEY"}]));
    assert_eq!(ns["codeHandlers"], CODE);
    assert_eq!(
        ns["channelNamespaceArn"],
        "arn:aws:appsync:us-east-1:000000000000:apis/local-api/channelNamespace/chat"
    );

    let r = admin(&s, "GET", "/v1/apis/local-api/apikeys").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["apiKeys"],
        json!([{"id": common::KEY, "description": "test", "expires": 1_893_456_000}])
    );
    s.stop().await;
}

#[tokio::test]
async fn lists_page_with_next_token() {
    let s = start(control_config()).await;
    let path = "/v2/apis/local-api/channelNamespaces";
    let r = admin(&s, "GET", &format!("{path}?maxResults=2")).await;
    assert_eq!(r.body["channelNamespaces"].as_array().unwrap().len(), 2);
    let token = r.body["nextToken"].as_str().unwrap().to_owned();
    let r = admin(&s, "GET", &format!("{path}?maxResults=2&nextToken={token}")).await;
    assert_eq!(r.body["channelNamespaces"][0]["name"], "chat");
    assert!(r.body.get("nextToken").is_none(), "{}", r.body);
    let r = admin(&s, "GET", &format!("{path}?maxResults=99")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
    s.stop().await;
}

#[tokio::test]
async fn unknown_api_and_namespace_are_not_found() {
    let s = start(control_config()).await;
    for path in [
        "/v2/apis/nope",
        "/v2/apis/nope/channelNamespaces",
        "/v1/apis/nope/apikeys",
        "/v2/apis/local-api/channelNamespaces/nope",
    ] {
        let r = admin(&s, "GET", path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error_type.as_deref(), Some("NotFoundException"), "{path}");
        assert!(
            r.body["message"].as_str().unwrap().contains("nope"),
            "{}",
            r.body
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_signatures_are_unauthorized() {
    let s = start(control_config()).await;
    let refused = [
        call(&s, "GET", "/v2/apis", (ADMIN_ID, "wrong-secret")).await,
        call(&s, "GET", "/v2/apis", ("AKIDUNKNOWN", ADMIN_SECRET)).await,
        raw(&s, "GET", "/v2/apis", &[]).await,
        // A data-plane API key is no control-plane credential.
        raw(&s, "GET", "/v2/apis", &[("x-api-key", common::KEY)]).await,
        // Nor does a refusal tell an outsider which APIs exist.
        call(&s, "GET", "/v2/apis/nope", (ADMIN_ID, "wrong-secret")).await,
    ];
    for r in refused {
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.error_type.as_deref(), Some("UnauthorizedException"));
        assert!(r.body["message"].is_string(), "{}", r.body);
    }
    s.stop().await;
}

#[tokio::test]
async fn the_api_itself_is_the_files() {
    let s = start(control_config()).await;
    for (method, path, says) in [
        ("POST", "/v2/apis/local-api", "configuration file"),
        ("DELETE", "/v2/apis/local-api", "configuration file"),
        ("POST", "/v1/apis/local-api/datasources", "not supported"),
    ] {
        let r = admin(&s, method, path).await;
        assert_eq!(r.status, 400, "{method} {path}");
        assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
        let message = r.body["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    s.stop().await;
}

/// `control_config` with its files in `dir`.
fn stored_config(dir: &std::path::Path) -> Config {
    let mut c = control_config();
    c.data_dir = dir.to_owned();
    c
}

const NAMESPACES: &str = "/v2/apis/local-api/channelNamespaces";
const KEYS: &str = "/v1/apis/local-api/apikeys";

#[tokio::test]
async fn a_created_namespace_and_key_serve_at_once_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(stored_config(dir.path())).await;
    // A subscriber elsewhere stays connected through every change.
    let mut bystander = Client::ready(&s).await;
    bystander.subscribe("s1", "/default/*").await;

    let code = "export function onPublish(ctx) { return ctx.events.map(e => ({...e, payload: {made: e.payload}})); }";
    let r = write(
        &s,
        "POST",
        NAMESPACES,
        json!({"name": "made", "codeHandlers": code, "tags": {"team": "web"},
               "publishAuthModes": [{"authType": "API_KEY"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ns = &r.body["channelNamespace"];
    assert_eq!(ns["name"], "made");
    assert_eq!(ns["codeHandlers"], code);
    assert_eq!(ns["tags"], json!({"team": "web"}));
    assert_eq!(ns["created"], ns["lastModified"]);

    let r = write(&s, "POST", KEYS, json!({"description": "made by a test"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let key = r.body["apiKey"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("da2-") && key.len() == 30, "{key}");
    let expires = r.body["apiKey"]["expires"].as_i64().unwrap();
    assert_eq!(expires % 3600, 0);
    assert_eq!(r.body["apiKey"]["deletes"], expires + 60 * 86_400);

    // The new key publishes to the new namespace, through its handler, at once.
    let mut sub = Client::ready(&s).await;
    sub.subscribe("m", "/made/room").await;
    let (status, body) =
        common::post(&s, &key, &json!({"channel": "/made/room", "events": ["1"]})).await;
    assert_eq!(status, 200, "{body}");
    let data = sub.recv().await;
    assert_eq!(data["event"], json!({"made": 1}).to_string(), "{data}");

    let (status, body) = common::post(
        &s,
        common::KEY,
        &json!({"channel": "/default/a", "events": ["2"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bystander.recv().await["event"], "2");
    s.stop().await;

    // What the control plane created outlives the process.
    let s = start(stored_config(dir.path())).await;
    let r = admin(&s, "GET", &format!("{NAMESPACES}/made")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["channelNamespace"]["tags"], json!({"team": "web"}));
    let (status, body) =
        common::post(&s, &key, &json!({"channel": "/made/room", "events": ["3"]})).await;
    assert_eq!(status, 200, "{body}");

    // Deleted, the key is refused and the namespace gone; the file's key still works.
    assert_eq!(
        admin(&s, "DELETE", &format!("{KEYS}/{key}")).await.status,
        200
    );
    let (status, _) =
        common::post(&s, &key, &json!({"channel": "/default/a", "events": ["4"]})).await;
    assert_eq!(status, 401);
    let r = admin(&s, "DELETE", &format!("{NAMESPACES}/made")).await;
    assert_eq!((r.status, &r.body), (200, &json!({})));
    let (status, body) = common::post(
        &s,
        common::KEY,
        &json!({"channel": "/made/room", "events": ["5"]}),
    )
    .await;
    // As for any namespace the API does not have.
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        admin(&s, "GET", &format!("{NAMESPACES}/made")).await.status,
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn an_update_replaces_the_namespace_and_drops_subscriptions_it_no_longer_allows() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = stored_config(dir.path());
    c.auth
        .providers
        .push(herald_auth::ProviderConfig::Iam(Default::default()));
    let s = start(c).await;
    let r = write(&s, "POST", NAMESPACES, json!({"name": "live"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut sub = Client::ready(&s).await;
    sub.subscribe("l", "/live/x").await;

    // Subscribing now needs IAM: the API-key subscription is ended.
    let r = write(
        &s,
        "POST",
        &format!("{NAMESPACES}/live"),
        json!({"subscribeAuthModes": [{"authType": "AWS_IAM"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ns = &r.body["channelNamespace"];
    assert_eq!(ns["subscribeAuthModes"], json!([{"authType": "AWS_IAM"}]));
    assert!(ns["lastModified"].as_i64() >= ns["created"].as_i64());
    let ended = sub.recv().await;
    assert_eq!(ended["id"], "l", "{ended}");
    s.stop().await;
}

#[tokio::test]
async fn writes_that_cannot_apply_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(stored_config(dir.path())).await;
    let cases = [
        // The file's namespace and key are the file's.
        (
            "POST",
            format!("{NAMESPACES}/chat"),
            json!({}),
            400,
            "BadRequestException",
        ),
        (
            "DELETE",
            format!("{NAMESPACES}/default"),
            json!({}),
            400,
            "BadRequestException",
        ),
        (
            "DELETE",
            format!("{KEYS}/{}", common::KEY),
            json!({}),
            400,
            "BadRequestException",
        ),
        (
            "POST",
            NAMESPACES.into(),
            json!({"name": "chat"}),
            409,
            "ConflictException",
        ),
        (
            "POST",
            NAMESPACES.into(),
            json!({"name": "bad/name"}),
            400,
            "BadRequestException",
        ),
        // Code that does not compile, and a mode no provider serves.
        (
            "POST",
            NAMESPACES.into(),
            json!({"name": "x", "codeHandlers": "export function ("}),
            400,
            "BadRequestException",
        ),
        (
            "POST",
            NAMESPACES.into(),
            json!({"name": "y", "publishAuthModes": [{"authType": "OPENID_CONNECT"}]}),
            400,
            "BadRequestException",
        ),
        (
            "POST",
            NAMESPACES.into(),
            json!({"name": "z", "handlerConfigs": {"onPublish": {"behavior": "DIRECT", "integration": {"dataSourceName": "nope"}}}}),
            400,
            "BadRequestException",
        ),
        (
            "POST",
            KEYS.into(),
            json!({"expires": 1}),
            400,
            "ApiKeyValidityOutOfBoundsException",
        ),
        (
            "DELETE",
            format!("{KEYS}/da2-nope"),
            json!({}),
            404,
            "NotFoundException",
        ),
        (
            "POST",
            "/v2/apis/nope/channelNamespaces".into(),
            json!({"name": "n"}),
            404,
            "NotFoundException",
        ),
    ];
    for (method, path, body, status, error) in cases {
        let r = write(&s, method, &path, body.clone()).await;
        assert_eq!(r.status, status, "{method} {path} {body}: {}", r.body);
        assert_eq!(
            r.error_type.as_deref(),
            Some(error),
            "{method} {path} {body}"
        );
        assert!(r.body["message"].is_string(), "{}", r.body);
    }
    let r = admin(&s, "GET", NAMESPACES).await;
    assert_eq!(r.body["channelNamespaces"].as_array().unwrap().len(), 3);
    assert!(!herald_server::control::store::path_of(dir.path(), "local-api").exists());
    s.stop().await;
}

#[tokio::test]
async fn off_without_administrator_keys_and_data_plane_untouched() {
    let s = start(config()).await;
    let r = admin(&s, "GET", "/v2/apis").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_type.as_deref(), Some("NotFoundException"));
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("control_plane")
    );
    s.stop().await;

    // With the control plane on, publishing still works as before.
    let s = start(control_config()).await;
    let (status, body) = common::post(
        &s,
        common::KEY,
        &json!({"channel": "/default/a", "events": ["1"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}

#[test]
fn bad_sections_are_reported_with_their_keys() {
    let mut c = control_config();
    c.control_plane.api_id = "has/slash".into();
    c.control_plane.name = Some(String::new());
    c.control_plane.access_keys.push(AdminAccessKey {
        access_key_id: ADMIN_ID.into(),
        secret_access_key: "again".into(),
    });
    let Err(e) = herald_server::Settings::build(c) else {
        panic!("a bad [control_plane] was accepted")
    };
    let p = e.problems.join("\n");
    for key in [
        "control_plane.api_id",
        "control_plane.name",
        "control_plane.access_keys",
    ] {
        assert!(p.contains(key), "{key} missing from:\n{p}");
    }
}

#[tokio::test]
async fn a_reload_updates_what_it_shows_and_who_may_ask() {
    const RELOAD_KEY: &str = "reload-secret-00000";
    let mut first = control_config();
    first.admin.keys = vec![RELOAD_KEY.into()];
    let next = std::sync::Arc::new(std::sync::Mutex::new(first.clone()));
    let source = next.clone();
    let s = common::start_reloadable(
        first.clone(),
        Box::new(move || Ok(source.lock().unwrap().clone())),
    )
    .await;
    {
        let mut second = first.clone();
        second.namespaces.push(NamespaceConfig::named("added"));
        second.control_plane.access_keys = vec![AdminAccessKey {
            access_key_id: "AKIDROTATED".into(),
            secret_access_key: "rotated-secret".into(),
        }];
        *next.lock().unwrap() = second;
    }
    let (status, _, body) = http(
        &s,
        "POST",
        "/admin/reload",
        &[("x-admin-key", RELOAD_KEY)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(admin(&s, "GET", "/v2/apis").await.status, 401);
    let path = "/v2/apis/local-api/channelNamespaces/added";
    let r = call(&s, "GET", path, ("AKIDROTATED", "rotated-secret")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["channelNamespace"]["name"], "added");
    s.stop().await;
}

const API_KEY_ONLY: &str = r#"{"authProviders":[{"authType":"API_KEY"}],"connectionAuthModes":[{"authType":"API_KEY"}],"defaultPublishAuthModes":[{"authType":"API_KEY"}],"defaultSubscribeAuthModes":[{"authType":"API_KEY"}]}"#;

/// A WebSocket client of the API at `/apis/{api_id}`, connected with `key`.
async fn client_of(s: &TestServer, api_id: &str, key: &str) -> Client {
    let path = format!("/apis/{api_id}/event/realtime");
    let mut c = Client::connect_at(s, &path, common::Auth::Subprotocol(key)).await;
    c.send(json!({"type": "connection_init"})).await;
    assert_eq!(c.recv().await["type"], "connection_ack");
    c
}

async fn subscribe_with(c: &mut Client, id: &str, channel: &str, key: &str) -> Value {
    c.send(json!({"type": "subscribe", "id": id, "channel": channel,
                  "authorization": {"x-api-key": key, "host": "localhost"}}))
        .await;
    c.recv().await
}

async fn post_to(s: &TestServer, path: &str, key: &str, channel: &str, event: &str) -> u16 {
    let body = json!({"channel": channel, "events": [event]}).to_string();
    let headers = [("content-type", "application/json"), ("x-api-key", key)];
    http(s, "POST", path, &headers, body.as_bytes()).await.0
}

/// Creates an API taking API keys only from `api` (its name and tags), with `namespaces` and a
/// key: the `Api` the reply shows, its id and the key.
async fn made_api(s: &TestServer, mut api: Value, namespaces: &[&str]) -> (Value, String, String) {
    api["eventConfig"] = serde_json::from_str(API_KEY_ONLY).unwrap();
    let r = write(s, "POST", "/v2/apis", api).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["api"]["apiId"].as_str().unwrap().to_owned();
    for name in namespaces {
        let path = format!("/v2/apis/{id}/channelNamespaces");
        let made = write(s, "POST", &path, json!({ "name": name })).await;
        assert_eq!(made.status, 200, "{}", made.body);
    }
    let key = write(s, "POST", &format!("/v1/apis/{id}/apikeys"), json!({})).await;
    let key = key.body["apiKey"]["id"].as_str().unwrap().to_owned();
    (r.body["api"].clone(), id, key)
}

#[tokio::test]
async fn a_created_api_serves_beside_the_files_and_apart_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(stored_config(dir.path())).await;
    let event_config: Value = serde_json::from_str(API_KEY_ONLY).unwrap();
    let r = write(
        &s,
        "POST",
        "/v2/apis",
        json!({"name": "second api", "tags": {"env": "test"}, "eventConfig": event_config}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let api = &r.body["api"];
    let id = api["apiId"].as_str().unwrap().to_owned();
    assert!(
        id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{id}"
    );
    assert_eq!(api["name"], "second api");
    // `https://{dns.HTTP}/event`, as clients build it, reaches this API.
    let reached = format!("{}/apis/{id}", s.addr);
    assert_eq!(api["dns"], json!({"HTTP": reached, "REALTIME": reached}));
    assert_eq!(api["tags"], json!({"env": "test"}));
    assert_eq!(
        api["eventConfig"]["connectionAuthModes"],
        json!([{"authType": "API_KEY"}])
    );
    let listed = admin(&s, "GET", "/v2/apis").await;
    let ids: Vec<&str> = listed.body["apis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["apiId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["local-api", id.as_str()]);

    // A namespace named as the file API's, and a key, in the new API only.
    let ns = format!("/v2/apis/{id}/channelNamespaces");
    let r = write(&s, "POST", &ns, json!({"name": "default"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = write(&s, "POST", &format!("/v1/apis/{id}/apikeys"), json!({})).await;
    let key = r.body["apiKey"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        admin(&s, "GET", &ns).await.body["channelNamespaces"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let mut theirs = client_of(&s, &id, &key).await;
    let ok = subscribe_with(&mut theirs, "t", "/default/room", &key).await;
    assert_eq!(ok["type"], "subscribe_success", "{ok}");
    let mut ours = Client::ready(&s).await;
    ours.subscribe("o", "/default/room").await;

    let event_path = format!("/apis/{id}/event");
    assert_eq!(
        post_to(&s, &event_path, &key, "/default/room", "\"theirs\"").await,
        200
    );
    assert_eq!(
        post_to(&s, "/event", common::KEY, "/default/room", "\"ours\"").await,
        200
    );
    assert_eq!(theirs.recv().await["event"], "\"theirs\"");
    assert_eq!(ours.recv().await["event"], "\"ours\"");
    // Keys are the API's own.
    assert_eq!(
        post_to(&s, &event_path, common::KEY, "/default/room", "1").await,
        401
    );
    assert_eq!(post_to(&s, "/event", &key, "/default/room", "1").await, 401);
    assert_eq!(
        post_to(&s, "/apis/nope/event", &key, "/default/room", "1").await,
        404
    );
    // Each API has its metrics, the created one's labelled with its id.
    let label = format!("api=\"{id}\"");
    let metrics_of = |path: String| {
        let s = &s;
        async move { String::from_utf8_lossy(&http(s, "GET", &path, &[], b"").await.2).into_owned() }
    };
    let theirs_metrics = metrics_of(format!("/apis/{id}/metrics")).await;
    assert!(theirs_metrics.contains(&label), "{theirs_metrics}");
    assert!(!metrics_of("/metrics".into()).await.contains(&label));
    s.stop().await;

    // After a restart it serves again, with its namespace and key.
    let s = start(stored_config(dir.path())).await;
    assert_eq!(
        post_to(&s, &event_path, &key, "/default/room", "2").await,
        200
    );
    let mut theirs = client_of(&s, &id, &key).await;
    subscribe_with(&mut theirs, "t", "/default/room", &key).await;

    // The file's API cannot be deleted; the created one can, ending its connections.
    let r = admin(&s, "DELETE", "/v2/apis/local-api").await;
    assert_eq!(
        r.error_type.as_deref(),
        Some("BadRequestException"),
        "{}",
        r.body
    );
    let r = admin(&s, "DELETE", &format!("/v2/apis/{id}")).await;
    assert_eq!((r.status, &r.body), (200, &json!({})));
    assert!(theirs.closed().await.is_some());
    assert_eq!(
        post_to(&s, &event_path, &key, "/default/room", "3").await,
        404
    );
    assert_eq!(
        admin(&s, "GET", &format!("/v2/apis/{id}")).await.status,
        404
    );
    s.stop().await;
    let s = start(stored_config(dir.path())).await;
    assert_eq!(
        admin(&s, "GET", "/v2/apis").await.body["apis"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.stop().await;
}

#[tokio::test]
async fn create_api_checks_what_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(stored_config(dir.path())).await;
    let event_config: Value = serde_json::from_str(API_KEY_ONLY).unwrap();
    let lambda = json!({"authProviders": [{"authType": "AWS_LAMBDA", "lambdaAuthorizerConfig": {"authorizerUri": "arn:aws:lambda:us-east-1:1:function:f"}}],
        "connectionAuthModes": [{"authType": "AWS_LAMBDA"}], "defaultPublishAuthModes": [{"authType": "AWS_LAMBDA"}], "defaultSubscribeAuthModes": [{"authType": "AWS_LAMBDA"}]});
    for body in [
        json!({"eventConfig": event_config}),
        json!({"name": "bad/name", "eventConfig": event_config}),
        json!({"name": "x"}),
        json!({"name": "x", "eventConfig": {"authProviders": [], "connectionAuthModes": [], "defaultPublishAuthModes": [], "defaultSubscribeAuthModes": []}}),
        // A mode without its provider, and a Lambda ARN where Herald needs a webhook URL.
        json!({"name": "x", "eventConfig": {"authProviders": [{"authType": "API_KEY"}], "connectionAuthModes": [{"authType": "OPENID_CONNECT"}], "defaultPublishAuthModes": [{"authType": "API_KEY"}], "defaultSubscribeAuthModes": [{"authType": "API_KEY"}]}}),
        json!({"name": "x", "eventConfig": lambda}),
    ] {
        let r = write(&s, "POST", "/v2/apis", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
    }
    assert_eq!(
        admin(&s, "GET", "/v2/apis").await.body["apis"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // UpdateApi renames a created API and changes its modes; the file's API is the file's.
    let r = write(
        &s,
        "POST",
        "/v2/apis",
        json!({"name": "one", "eventConfig": event_config}),
    )
    .await;
    let id = r.body["api"]["apiId"].as_str().unwrap().to_owned();
    let r = write(
        &s,
        "POST",
        &format!("/v2/apis/{id}"),
        json!({"name": "renamed", "eventConfig": event_config}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["api"]["name"], "renamed");
    let r = write(
        &s,
        "POST",
        "/v2/apis/local-api",
        json!({"name": "n", "eventConfig": event_config}),
    )
    .await;
    assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
    s.stop().await;
}

/// Two nodes of one cluster (their own NATS server), each with its own data directory.
#[tokio::test]
async fn in_a_cluster_an_api_created_on_one_node_serves_on_the_other() {
    let nats = nats::Nats::start(nats::free_port());
    let node = |dir: &std::path::Path| {
        let mut c = stored_config(dir);
        c.cluster.nats_url = nats.url();
        c.cluster.subject_prefix = format!("herald-cp-{}", nats.port);
        c
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(node(dir_a.path())).await;
    let b = start(node(dir_b.path())).await;

    let (_, id, key) = made_api(&a, json!({"name": "shared"}), &["room"]).await;
    let made = std::time::Instant::now();

    // Node B serves it, with the namespace and key made on A, within moments.
    let event_path = format!("/apis/{id}/event");
    let deadline = made + std::time::Duration::from_secs(10);
    while post_to(&b, &event_path, &key, "/room/x", "0").await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "B never served the API made on A"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!("served on the other node after {:?}", made.elapsed());

    // An event published on B reaches a subscriber of the same API on A, and only it.
    let mut on_a = client_of(&a, &id, &key).await;
    let ok = subscribe_with(&mut on_a, "s", "/room/x", &key).await;
    assert_eq!(ok["type"], "subscribe_success", "{ok}");
    assert_eq!(
        post_to(&b, &event_path, &key, "/room/x", "\"across\"").await,
        200
    );
    assert_eq!(on_a.recv().await["event"], "\"across\"");

    // A namespace made on the file's API on B serves on A; deleting the API on B ends it on A.
    let r = write(&b, "POST", NAMESPACES, json!({"name": "late"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while post_to(&a, "/event", common::KEY, "/late/x", "1").await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "A never served the namespace made on B"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        admin(&b, "DELETE", &format!("/v2/apis/{id}")).await.status,
        200
    );
    assert!(on_a.closed().await.is_some());
    assert_eq!(post_to(&a, &event_path, &key, "/room/x", "2").await, 404);

    // A node started later serves what the cluster holds.
    let dir_c = tempfile::tempdir().unwrap();
    let c = start(node(dir_c.path())).await;
    assert_eq!(
        post_to(&c, "/event", common::KEY, "/late/x", "3").await,
        200
    );
    for s in [a, b, c] {
        s.stop().await;
    }
}

#[tokio::test]
async fn two_apis_keep_their_handlers_and_history_apart() {
    let dir = tempfile::tempdir().unwrap();
    // The file's API: `chat` keeps history; `shout` upper-cases through its handler.
    let mut c = common::history_config(dir.path(), None);
    c.control_plane = control_config().control_plane;
    let mut shout = NamespaceConfig::named("shout");
    shout.handlers = Some(herald_handler::HandlerConfig {
        code: Some("export function onPublish(ctx) { return ctx.events.map(e => ({...e, payload: String(e.payload).toUpperCase()})); }".into()),
        ..Default::default()
    });
    c.namespaces.push(shout);
    let s = start(c).await;
    let (_, id, key) = made_api(&s, json!({"name": "other"}), &["chat", "shout"]).await;

    // Same channels in both APIs: each API's own handler (or none) runs.
    let mut ours = Client::ready(&s).await;
    ours.subscribe("o", "/shout/x").await;
    let mut theirs = client_of(&s, &id, &key).await;
    subscribe_with(&mut theirs, "t", "/shout/x", &key).await;
    assert_eq!(
        post_to(&s, "/event", common::KEY, "/shout/x", "\"a\"").await,
        200
    );
    assert_eq!(
        post_to(&s, &format!("/apis/{id}/event"), &key, "/shout/x", "\"b\"").await,
        200
    );
    assert_eq!(ours.recv().await["event"], "\"A\"");
    assert_eq!(theirs.recv().await["event"], "\"b\"");

    // History: the file's `chat` keeps what was published to it; the other API's `chat` neither
    // keeps its own events nor shows the file API's.
    assert_eq!(
        post_to(&s, "/event", common::KEY, "/chat/room", "\"kept\"").await,
        200
    );
    assert_eq!(
        post_to(
            &s,
            &format!("/apis/{id}/event"),
            &key,
            "/chat/room",
            "\"other\""
        )
        .await,
        200
    );
    let read = |path: String, key: String| {
        let s = &s;
        async move {
            let (status, _, body) = http(s, "GET", &path, &[("x-api-key", &key)], b"").await;
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = read(
        "/event/history?channel=/chat/room".into(),
        common::KEY.into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kept") && !body.contains("other"), "{body}");
    let (status, body) = read(format!("/apis/{id}/event/history?channel=/chat/room"), key).await;
    assert_ne!(status, 200, "{body}");
    assert!(!body.contains("kept"), "{body}");
    s.stop().await;
}

/// `POST /event` with `host` as the Host header (the test helper sends the server's address).
async fn post_as_host(s: &TestServer, host: &str, key: &str, channel: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"channel": channel, "events": ["1"]}).to_string();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let request = format!(
        "POST /event HTTP/1.1\r\nhost: {host}\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await.unwrap();
    String::from_utf8_lossy(&reply)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_created_api_is_reached_by_its_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(stored_config(dir.path())).await;
    let domain = json!({"name": "hosted", "tags": {"herald:domain": "Events.Example.test"}});
    let (api, id, key) = made_api(&s, domain, &["default"]).await;
    assert_eq!(api["dns"]["HTTP"], "events.example.test");
    for host in [
        "events.example.test:443".to_owned(),
        format!("{id}.appsync-api.us-east-1.amazonaws.com"),
        format!("{id}.appsync-realtime-api.us-east-1.amazonaws.com"),
    ] {
        assert_eq!(
            post_as_host(&s, &host, &key, "/default/x").await,
            200,
            "{host}"
        );
        assert_eq!(
            post_as_host(&s, &host, common::KEY, "/default/x").await,
            401,
            "{host}"
        );
    }
    // Any other host name is the file's API.
    assert_eq!(
        post_as_host(&s, "other.example.test", common::KEY, "/default/x").await,
        200
    );
    assert_eq!(
        post_as_host(&s, "other.example.test", &key, "/default/x").await,
        401
    );
    s.stop().await;
}
