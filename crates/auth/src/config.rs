//! The `[[auth.providers]]` entries: one per non-API-key mode, tagged by `auth_type` as in
//! AppSync's `authProviders`.

use serde::{Deserialize, Serialize, Serializer};

use crate::identity::AuthMode;
use crate::jwt::{CognitoConfig, OidcConfig};
use crate::lambda::LambdaConfig;
use crate::sigv4::SigV4Config;

/// One authorization provider. TOML:
/// ```toml
/// [[auth.providers]]
/// auth_type = "OPENID_CONNECT"
/// issuer = "https://idp.example.com/realms/herald"
/// client_id = "herald-web"
/// ```
/// Serializing redacts secrets (access-key secrets, session tokens, webhook header values).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "auth_type")]
pub enum ProviderConfig {
    /// API keys are configured and verified by the server (`[[auth.api_keys]]`); this entry only
    /// declares the mode, like AppSync's `{"authType":"API_KEY"}`.
    #[serde(rename = "API_KEY")]
    ApiKey,
    /// A Cognito user pool (or any IdP standing in for one).
    #[serde(rename = "AMAZON_COGNITO_USER_POOLS")]
    Cognito(CognitoConfig),
    /// An OpenID Connect issuer.
    #[serde(rename = "OPENID_CONNECT")]
    Oidc(OidcConfig),
    /// A Lambda-style authorizer webhook.
    #[serde(rename = "AWS_LAMBDA")]
    Lambda(LambdaConfig),
    /// SigV4 with configured access keys.
    #[serde(rename = "AWS_IAM")]
    Iam(SigV4Config),
}

impl ProviderConfig {
    /// The mode this entry provides.
    pub fn mode(&self) -> AuthMode {
        match self {
            ProviderConfig::ApiKey => AuthMode::ApiKey,
            ProviderConfig::Cognito(_) => AuthMode::CognitoUserPools,
            ProviderConfig::Oidc(_) => AuthMode::OpenIdConnect,
            ProviderConfig::Lambda(_) => AuthMode::Lambda,
            ProviderConfig::Iam(_) => AuthMode::Iam,
        }
    }
}

const REDACTED: &str = "<redacted>";

pub(crate) fn redact<S: Serializer>(_: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(REDACTED)
}

pub(crate) fn redact_opt<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some(REDACTED),
        None => s.serialize_none(),
    }
}

pub(crate) fn redact_map<S: Serializer>(
    v: &std::collections::BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(v.keys().map(|k| (k, REDACTED)))
}
