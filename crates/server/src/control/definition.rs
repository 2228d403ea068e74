//! An API created through the control plane (`CreateApi`): its name, tags and `eventConfig` as
//! sent, and the server configuration they make — the file's server-wide settings (limits,
//! WebSocket, handlers' engine, data sources) with the API's own authorization, no namespaces
//! until some are created, and its own data directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use herald_auth::{AuthMode, ProviderConfig};

use super::model::AuthModeShape;
use crate::config::Config;

/// The tag that gives a created API its own host name (a Herald extension: AppSync's domain-name
/// operations are not served).
pub const DOMAIN_TAG: &str = "herald:domain";

/// A created API, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredApi {
    pub api_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_contact: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub event_config: EventConfigIn,
    pub created: i64,
}

/// `EventConfig` as a request sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventConfigIn {
    pub auth_providers: Vec<Value>,
    pub connection_auth_modes: Vec<AuthModeShape>,
    pub default_publish_auth_modes: Vec<AuthModeShape>,
    pub default_subscribe_auth_modes: Vec<AuthModeShape>,
}

impl PartialEq for AuthModeShape {
    fn eq(&self, other: &Self) -> bool {
        self.auth_type == other.auth_type
    }
}

/// The model's `ApiName`: 1-50 of A-Z, a-z, 0-9, '_', '-' and ' '.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' '));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1-50 characters of A-Z, a-z, 0-9, '_', '-' and ' '"
        ))
    }
}

impl StoredApi {
    /// The configuration this API runs on, from the server's file configuration `server`.
    pub fn config(&self, server: &Config) -> Result<Config, String> {
        let mut c = server.clone();
        c.data_dir = server.data_dir.join("apis").join(&self.api_id);
        c.namespaces = Vec::new();
        c.may_have_no_namespaces = true;
        c.control_plane.api_id = self.api_id.clone();
        // Its own subjects, streams and buckets in NATS, beside the file API's.
        if c.cluster.enabled() {
            c.cluster.subject_prefix = format!("{}.api.{}", server.cluster.prefix(), self.api_id);
        }
        c.control_plane.name = Some(self.name.clone());
        let auth = &mut c.auth;
        auth.api_keys = Vec::new();
        auth.providers = Vec::new();
        for p in &self.event_config.auth_providers {
            if let Some(provider) = provider(p, server)? {
                auth.providers.push(provider);
            }
        }
        let modes = |l: &[AuthModeShape]| l.iter().map(|m| m.auth_type).collect::<Vec<_>>();
        let event = &self.event_config;
        auth.connection_auth_modes = modes(&event.connection_auth_modes);
        auth.default_publish_auth_modes = modes(&event.default_publish_auth_modes);
        auth.default_subscribe_auth_modes = modes(&event.default_subscribe_auth_modes);
        // Namespace-level settings AppSync does not have stay off for created APIs.
        Ok(c)
    }
}

/// One `AuthProvider` in Herald's terms; `None` for `API_KEY`, which only declares the mode.
fn provider(p: &Value, server: &Config) -> Result<Option<ProviderConfig>, String> {
    let kind = p
        .get("authType")
        .and_then(Value::as_str)
        .ok_or("each authProviders entry needs an authType")?;
    let shape = match kind {
        "API_KEY" => return Ok(None),
        // SigV4 credentials are the server's: the file's AWS_IAM keys sign for every API.
        "AWS_IAM" => {
            return server
                .auth
                .providers
                .iter()
                .find(|p| p.mode() == AuthMode::Iam)
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    "AWS_IAM needs the server's access keys: add an [[auth.providers]] entry with auth_type = \"AWS_IAM\" to the configuration file".to_owned()
                });
        }
        "AMAZON_COGNITO_USER_POOLS" => {
            let c = p.get("cognitoConfig").ok_or("cognitoConfig is required")?;
            json!({
                "auth_type": kind,
                "user_pool_id": c.get("userPoolId"),
                "aws_region": c.get("awsRegion"),
                "app_id_client_regex": c.get("appIdClientRegex"),
            })
        }
        "OPENID_CONNECT" => {
            let c = p
                .get("openIDConnectConfig")
                .ok_or("openIDConnectConfig is required")?;
            json!({
                "auth_type": kind,
                "issuer": c.get("issuer"),
                "client_id": c.get("clientId"),
                "iat_ttl": c.get("iatTTL").and_then(Value::as_u64).unwrap_or(0),
                "auth_ttl": c.get("authTTL").and_then(Value::as_u64).unwrap_or(0),
            })
        }
        "AWS_LAMBDA" => {
            let c = p
                .get("lambdaAuthorizerConfig")
                .ok_or("lambdaAuthorizerConfig is required")?;
            let uri = c
                .get("authorizerUri")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // Herald calls a webhook where AWS calls a Lambda function.
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                return Err(format!(
                    "lambdaAuthorizerConfig.authorizerUri {uri:?}: Herald calls an authorizer webhook, so this must be its http:// or https:// URL"
                ));
            }
            json!({
                "auth_type": kind,
                "authorizer_url": uri,
                "authorizer_result_ttl_in_seconds": c.get("authorizerResultTtlInSeconds").and_then(Value::as_u64).unwrap_or(0),
                "identity_validation_expression": c.get("identityValidationExpression"),
            })
        }
        other => return Err(format!("authType {other:?} is not an Event API mode")),
    };
    let shape = strip_nulls(shape);
    serde_json::from_value(shape)
        .map(Some)
        .map_err(|e| format!("{kind} provider: {e}"))
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        v => v,
    }
}
