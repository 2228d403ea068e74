//! A Lambda-style authorizer webhook on a loopback fixture, deciding by the token's prefix.

use serde_json::{Value, json};

use crate::fixture::{Fixture, Reply, serve};

/// Starts the authorizer. Tokens `allow-<name>` are authorized for everything, `readonly-<name>`
/// for everything but publishing, `hang-<name>` get no answer, any other token is refused. A
/// `Bearer ` prefix is ignored. The handler context is `{"user": <token>}`.
pub async fn authorizer() -> Fixture {
    serve(|_, body| {
        let req: Value = serde_json::from_str(body).unwrap_or_default();
        let token = req["authorizationToken"].as_str().unwrap_or_default();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        let op = req["requestContext"]["operation"]
            .as_str()
            .unwrap_or_default();
        if token.starts_with("hang-") {
            return Reply::Hang;
        }
        let ok = token.starts_with("allow-")
            || (token.starts_with("readonly-") && op != "EVENT_PUBLISH");
        Reply::Json(
            200,
            json!({"isAuthorized": ok, "handlerContext": {"user": token}}).to_string(),
        )
    })
    .await
}
