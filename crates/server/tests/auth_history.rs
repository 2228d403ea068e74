//! `GET /event/history` authorized by the token modes and by SigV4 over the real GET.

mod common;

use common::auth::*;
use common::{KEY, http};
use herald_testkit::sigv4::Signer;
use serde_json::Value;

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
    let url = format!("http://{}{HISTORY_PATH}", w.host());
    let signed =
        Signer::new((AK_READER, SK_READER), REGION).sign("GET", &url, &[("host", w.host())], b"");
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, reply) = history_get(&w, &headers).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["events"][0]["event"], "\"kept\"", "{reply}");
    w.stop().await;
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
