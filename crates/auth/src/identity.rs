//! What a verified credential says about the caller, and the operation being authorized.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The five AppSync Events authorization modes, spelled as in AppSync and in Herald's config
/// (`connection_auth_modes = ["API_KEY", "AWS_IAM"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthMode {
    /// `x-api-key` (verified by the server, not by this crate).
    #[serde(rename = "API_KEY")]
    ApiKey,
    /// Cognito user pool JWT in `Authorization`.
    #[serde(rename = "AMAZON_COGNITO_USER_POOLS")]
    CognitoUserPools,
    /// Any OpenID Connect issuer's JWT in `Authorization`.
    #[serde(rename = "OPENID_CONNECT")]
    OpenIdConnect,
    /// An opaque token in `Authorization`, judged by a webhook.
    #[serde(rename = "AWS_LAMBDA")]
    Lambda,
    /// SigV4-signed request.
    #[serde(rename = "AWS_IAM")]
    Iam,
}

impl AuthMode {
    /// The AppSync spelling (`"AWS_IAM"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::ApiKey => "API_KEY",
            AuthMode::CognitoUserPools => "AMAZON_COGNITO_USER_POOLS",
            AuthMode::OpenIdConnect => "OPENID_CONNECT",
            AuthMode::Lambda => "AWS_LAMBDA",
            AuthMode::Iam => "AWS_IAM",
        }
    }
}

/// The operation being authorized. Connect is API-wide; subscribe and publish target a channel
/// (and so a namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// WebSocket connection (`connection_init` / upgrade).
    Connect,
    /// WebSocket `subscribe`.
    Subscribe,
    /// HTTP `POST /event` or WebSocket `publish`.
    Publish,
}

impl Operation {
    /// The IAM action name a SigV4 key must be granted (`appsync:EventConnect` without the prefix).
    pub fn iam_action(self) -> &'static str {
        match self {
            Operation::Connect => "EventConnect",
            Operation::Subscribe => "EventSubscribe",
            Operation::Publish => "EventPublish",
        }
    }

    /// The `requestContext.operation` value of the Lambda authorizer request.
    pub fn lambda_operation(self) -> &'static str {
        match self {
            Operation::Connect => "EVENT_CONNECT",
            Operation::Subscribe => "EVENT_SUBSCRIBE",
            Operation::Publish => "EVENT_PUBLISH",
        }
    }
}

/// Who the caller is, once a credential has been verified. Handlers and access rules read it;
/// [`Identity::to_context_value`] renders it as AppSync's `ctx.identity`.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// API key: AppSync gives handlers no identity (`ctx.identity` is null). The key's configured
    /// name is kept for access rules and logs, never shown to handlers.
    ApiKey {
        /// The key's `name` in the configuration, when it has one.
        name: Option<String>,
    },
    /// Cognito user pool or OIDC JWT.
    Jwt(JwtIdentity),
    /// Lambda authorizer webhook.
    Lambda(LambdaIdentity),
    /// SigV4 with a configured access key.
    Iam(IamIdentity),
}

/// Identity from a verified JWT (Cognito user pools or OIDC).
#[derive(Debug, Clone, PartialEq)]
pub struct JwtIdentity {
    /// Which JWT mode verified it.
    pub mode: AuthMode,
    /// `sub` claim ("" if absent).
    pub sub: String,
    /// `cognito:username`, else `username`, else `sub`.
    pub username: String,
    /// `cognito:groups` (empty when absent).
    pub groups: Vec<String>,
    /// `iss` claim.
    pub issuer: String,
    /// Every claim of the token, as sent.
    pub claims: Value,
    /// AppSync's `defaultAuthStrategy`; Herald always allows once verified: `"ALLOW"`.
    pub default_auth_strategy: &'static str,
}

/// Identity from a Lambda authorizer webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaIdentity {
    /// The authorizer's `handlerContext` object (empty when it sent none).
    pub handler_context: Map<String, Value>,
}

/// Identity from a SigV4 signature.
#[derive(Debug, Clone, PartialEq)]
pub struct IamIdentity {
    /// The access key id that signed.
    pub access_key_id: String,
    /// The configured principal name for that key (an ARN or any label).
    pub principal: String,
    /// Configured account id, if any.
    pub account_id: Option<String>,
}

impl Identity {
    /// The mode that produced this identity.
    pub fn mode(&self) -> AuthMode {
        match self {
            Identity::ApiKey { .. } => AuthMode::ApiKey,
            Identity::Jwt(j) => j.mode,
            Identity::Lambda(_) => AuthMode::Lambda,
            Identity::Iam(_) => AuthMode::Iam,
        }
    }

    /// AppSync's `ctx.identity` for handlers. `source_ip` is the client address chain as the
    /// server saw it (AppSync fills `sourceIp` for IAM and Cognito/OIDC identities).
    pub fn to_context_value(&self, source_ip: &[String]) -> Value {
        match self {
            Identity::ApiKey { .. } => Value::Null,
            Identity::Jwt(j) => json!({
                "sub": j.sub,
                "issuer": j.issuer,
                "username": j.username,
                "claims": j.claims,
                "sourceIp": source_ip,
                "defaultAuthStrategy": j.default_auth_strategy,
                "groups": if j.groups.is_empty() { Value::Null } else { json!(j.groups) },
            }),
            Identity::Lambda(l) => json!({ "handlerContext": l.handler_context }),
            Identity::Iam(i) => json!({
                "accountId": i.account_id,
                "cognitoIdentityPoolId": null,
                "cognitoIdentityId": null,
                "sourceIp": source_ip,
                "username": i.principal,
                "userArn": i.principal,
                "cognitoIdentityAuthType": null,
                "cognitoIdentityAuthProvider": null,
            }),
        }
    }
}

/// Case-insensitive lookup of a string field in a WebSocket `authorization` object (clients send
/// `Authorization` and `authorization`, `X-Amz-Security-Token` and `x-amz-security-token`).
/// Returns `None` for absent or non-string values.
pub fn auth_field<'a>(auth: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    auth.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Constant-time equality for secrets of possibly different lengths (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_field_ignores_case() {
        let obj: Map<String, Value> =
            serde_json::from_str(r#"{"Authorization":"t","HOST":"h","n":1}"#).unwrap();
        assert_eq!(auth_field(&obj, "authorization"), Some("t"));
        assert_eq!(auth_field(&obj, "host"), Some("h"));
        assert_eq!(auth_field(&obj, "n"), None);
        assert_eq!(auth_field(&obj, "x-api-key"), None);
    }

    #[test]
    fn modes_round_trip_in_appsync_spelling() {
        for m in [
            AuthMode::ApiKey,
            AuthMode::CognitoUserPools,
            AuthMode::OpenIdConnect,
            AuthMode::Lambda,
            AuthMode::Iam,
        ] {
            let s = serde_json::to_string(&m).unwrap();
            assert_eq!(s, format!("\"{}\"", m.as_str()));
            assert_eq!(serde_json::from_str::<AuthMode>(&s).unwrap(), m);
        }
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn api_key_identity_is_null_for_handlers() {
        assert_eq!(
            Identity::ApiKey {
                name: Some("k".into())
            }
            .to_context_value(&[]),
            Value::Null
        );
    }
}
