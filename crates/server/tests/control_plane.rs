//! The AppSync control plane, read-only, over real loopback HTTP with requests signed by the
//! `aws-sigv4` crate (the AWS SDKs' signer): the configured API, its namespaces and keys as the
//! AWS model shapes them, and the AWS errors for unknown APIs, bad signatures and writes.

mod common;

use common::{TestServer, config, http, start};
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
    let host = s.addr.to_string();
    let url = format!("http://{host}{path}");
    let base = vec![("host", host.clone())];
    let signed = Signer::new(key, "us-east-1").sign(method, &url, &base, b"");
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    raw(s, method, path, &headers).await
}

async fn raw(s: &TestServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let (status, head, body) = http(s, method, path, headers, b"").await;
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
async fn writes_are_refused_as_not_supported_yet() {
    let s = start(control_config()).await;
    for (method, path, operation) in [
        ("POST", "/v2/apis", "CreateApi"),
        ("DELETE", "/v2/apis/local-api", "DeleteApi"),
        (
            "POST",
            "/v2/apis/local-api/channelNamespaces",
            "CreateChannelNamespace",
        ),
        ("POST", "/v1/apis/local-api/apikeys", "CreateApiKey"),
    ] {
        let r = admin(&s, method, path).await;
        assert_eq!(r.status, 400, "{method} {path}");
        assert_eq!(r.error_type.as_deref(), Some("BadRequestException"));
        let message = r.body["message"].as_str().unwrap();
        assert!(message.starts_with(operation), "{message}");
        assert!(message.contains("not supported"), "{message}");
    }
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
