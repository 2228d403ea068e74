//! Authorization: which credentials may connect, publish and subscribe (spec §4).
//!
//! Every decision goes through [`Authorizer::authorize`] with the list of modes the operation
//! accepts (`connection_auth_modes`, or the namespace's publish/subscribe modes) and the fields the
//! client presented. The credential picks the mode: an `x-api-key` field selects API_KEY, an
//! `Authorization` field the token modes. This build verifies API keys; the other four modes plug
//! in here (issue 4).

use serde::{Deserialize, Serialize};

use herald_protocol::{AuthFields, WireError};

use crate::config::{ApiKeyConfig, AuthConfig};

/// The five AppSync authorization modes, spelled as AppSync spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthMode {
    #[serde(rename = "API_KEY")]
    ApiKey,
    #[serde(rename = "AMAZON_COGNITO_USER_POOLS")]
    CognitoUserPools,
    #[serde(rename = "OPENID_CONNECT")]
    OpenIdConnect,
    #[serde(rename = "AWS_LAMBDA")]
    Lambda,
    #[serde(rename = "AWS_IAM")]
    Iam,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::ApiKey => "API_KEY",
            AuthMode::CognitoUserPools => "AMAZON_COGNITO_USER_POOLS",
            AuthMode::OpenIdConnect => "OPENID_CONNECT",
            AuthMode::Lambda => "AWS_LAMBDA",
            AuthMode::Iam => "AWS_IAM",
        }
    }

    /// Whether this build can verify the mode.
    pub fn is_supported(self) -> bool {
        matches!(self, AuthMode::ApiKey)
    }
}

/// What is being authorized.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    Connect,
    Subscribe {
        namespace: &'a str,
        channel: &'a str,
    },
    Publish {
        namespace: &'a str,
        channel: &'a str,
    },
}

/// Who was admitted, and by which mode. Kept for handlers and access rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub mode: AuthMode,
    /// The API key's configured name, when it has one.
    pub key_name: Option<String>,
}

struct ApiKey {
    key: Vec<u8>,
    name: Option<String>,
    /// Unix seconds after which the key is refused.
    expires: Option<i64>,
}

/// Verifies credentials against the configured keys and providers.
pub struct Authorizer {
    api_keys: Vec<ApiKey>,
}

impl Authorizer {
    pub fn new(config: &AuthConfig) -> Authorizer {
        Authorizer {
            api_keys: config.api_keys.iter().map(ApiKey::from).collect(),
        }
    }

    /// Admits or refuses one operation. A refusal is always the spec's `UnauthorizedException`,
    /// whatever the reason, so a probing client learns nothing; the reason is logged.
    pub async fn authorize(
        &self,
        modes: &[AuthMode],
        fields: &AuthFields,
        op: Operation<'_>,
    ) -> Result<Identity, WireError> {
        let refused = |reason: &str| {
            tracing::debug!(?op, reason, "authorization refused");
            Err(WireError::unauthorized())
        };
        if let Some(key) = fields.get("x-api-key") {
            if !modes.contains(&AuthMode::ApiKey) {
                return refused("API_KEY is not an allowed mode for this operation");
            }
            return match self.check_api_key(key.as_bytes(), crate::time::now_unix()) {
                Ok(identity) => Ok(identity),
                Err(reason) => refused(reason),
            };
        }
        if fields.get("authorization").is_some() {
            return refused("token and IAM modes are not available in this build");
        }
        refused("no credentials")
    }

    fn check_api_key(&self, presented: &[u8], now: i64) -> Result<Identity, &'static str> {
        // Compare against every key so timing does not reveal which prefix matched.
        let mut found: Option<&ApiKey> = None;
        for k in &self.api_keys {
            if constant_time_eq(&k.key, presented) {
                found = Some(k);
            }
        }
        let key = found.ok_or("unknown API key")?;
        if key.expires.is_some_and(|t| now >= t) {
            return Err("API key expired");
        }
        Ok(Identity {
            mode: AuthMode::ApiKey,
            key_name: key.name.clone(),
        })
    }
}

impl From<&ApiKeyConfig> for ApiKey {
    fn from(c: &ApiKeyConfig) -> Self {
        ApiKey {
            key: c.key.as_bytes().to_vec(),
            name: c.name.clone(),
            expires: c.expires.as_deref().and_then(crate::time::parse_rfc3339),
        }
    }
}

/// Equal-length inputs are compared in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorizer() -> Authorizer {
        Authorizer::new(&AuthConfig {
            api_keys: vec![
                ApiKeyConfig {
                    key: "da2-live".into(),
                    name: Some("live".into()),
                    expires: None,
                },
                ApiKeyConfig {
                    key: "da2-old".into(),
                    name: None,
                    expires: Some("2020-01-01T00:00:00Z".into()),
                },
            ],
            ..AuthConfig::default()
        })
    }

    fn fields(pairs: &[(&str, &str)]) -> AuthFields {
        let mut f = AuthFields::new();
        for (k, v) in pairs {
            f.insert(k, *v);
        }
        f
    }

    #[tokio::test]
    async fn api_keys() {
        let a = authorizer();
        let modes = [AuthMode::ApiKey];
        let ok = a
            .authorize(
                &modes,
                &fields(&[("X-Api-Key", "da2-live")]),
                Operation::Connect,
            )
            .await
            .unwrap();
        assert_eq!(ok.key_name.as_deref(), Some("live"));
        for f in [
            fields(&[("x-api-key", "da2-nope")]),
            fields(&[("x-api-key", "da2-old")]),
            fields(&[("authorization", "token")]),
            fields(&[]),
        ] {
            assert!(a.authorize(&modes, &f, Operation::Connect).await.is_err());
        }
        let other = [AuthMode::OpenIdConnect];
        let f = fields(&[("x-api-key", "da2-live")]);
        assert!(a.authorize(&other, &f, Operation::Connect).await.is_err());
    }
}
