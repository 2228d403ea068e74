//! Authorization: which credentials may connect, publish and subscribe (spec §4).
//!
//! Every decision goes through [`Authorizer::authorize`] with the list of modes the operation
//! accepts (`connection_auth_modes`, or the namespace's publish/subscribe modes) and the
//! credential the client presented. The credential picks the mode: `x-api-key` selects API_KEY
//! (checked here); an `Authorization` value goes to `herald_auth::Providers`, which tells SigV4,
//! JWTs of a configured issuer (Cognito, OIDC) and other tokens (the Lambda-style webhook) apart.

use herald_auth::{AuthRequest, Credential, Providers};
use herald_protocol::message::Event;
use herald_protocol::{AuthFields, WireError};

use crate::config::{ApiKeyConfig, AuthConfig};

pub use herald_auth::{AuthMode, Operation};

/// What is being authorized.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    pub operation: Operation,
    /// `None` for connect.
    pub namespace: Option<&'a str>,
    /// The channel exactly as the client sent it (SigV4 signs it verbatim); `None` for connect.
    pub channel: Option<&'a str>,
    pub credential: Presented<'a>,
}

impl<'a> Check<'a> {
    pub fn connect(fields: &'a AuthFields) -> Check<'a> {
        Check {
            operation: Operation::Connect,
            namespace: None,
            channel: None,
            credential: Presented::Fields {
                fields,
                events: &[],
            },
        }
    }
}

/// How the credential arrived.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// WebSocket: the connect fields or an operation's `authorization` object, and for a
    /// publish its events (SigV4 signs a body rebuilt from them).
    Fields {
        fields: &'a AuthFields,
        events: &'a [Event<'a>],
    },
    /// HTTP `POST /event`: the head and exact body (SigV4 signs the real request).
    Http {
        parts: &'a hyper::http::request::Parts,
        body: &'a [u8],
        fields: &'a AuthFields,
    },
}

impl Presented<'_> {
    fn fields(&self) -> &AuthFields {
        match self {
            Presented::Fields { fields, .. } | Presented::Http { fields, .. } => fields,
        }
    }
}

/// Who was admitted, and by which mode. Kept for handlers and access rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// What the verifier established (`ApiKey` carries nothing, as in AppSync).
    pub verified: herald_auth::Identity,
    /// The API key's configured name, when admitted by a named key.
    pub key_name: Option<String>,
}

impl Identity {
    pub fn mode(&self) -> AuthMode {
        self.verified.mode()
    }
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
    providers: Providers,
}

impl Authorizer {
    pub fn new(config: &AuthConfig) -> Result<Authorizer, herald_auth::ConfigError> {
        Ok(Authorizer {
            api_keys: config.api_keys.iter().map(ApiKey::from).collect(),
            providers: Providers::new(&config.providers)?,
        })
    }

    /// Admits or refuses one operation. A refusal is always the spec's `UnauthorizedException`,
    /// whatever the reason, so a probing client learns nothing; the reason is logged.
    pub async fn authorize(
        &self,
        modes: &[AuthMode],
        check: Check<'_>,
    ) -> Result<Identity, WireError> {
        let refused = |reason: &dyn std::fmt::Display| {
            tracing::debug!(operation = ?check.operation, namespace = ?check.namespace, %reason, "authorization refused");
            Err(WireError::unauthorized())
        };
        let fields = check.credential.fields();
        if let Some(key) = fields.get("x-api-key") {
            if !modes.contains(&AuthMode::ApiKey) {
                return refused(&"API_KEY is not an allowed mode for this operation");
            }
            return match self.check_api_key(key.as_bytes(), crate::time::now_unix()) {
                Ok(identity) => Ok(identity),
                Err(reason) => refused(&reason),
            };
        }
        let pairs: Vec<(&str, &str)> = fields.iter().collect();
        // SigV4 over WebSocket signs a body rebuilt from the decoded events; only SigV4 needs
        // them, so tokens skip the copy. Every event must decode: skipping one would leave it
        // out of the signed body yet still publish it.
        let sigv4 = fields
            .get("authorization")
            .is_some_and(herald_auth::sigv4::is_sigv4);
        let decoded: Vec<String> = match check.credential {
            Presented::Fields { events, .. } if sigv4 => match events
                .iter()
                .map(|e| serde_json::from_str::<String>(e.token()))
                .collect::<Result<_, _>>()
            {
                Ok(decoded) => decoded,
                Err(e) => return refused(&format!("an event is not a JSON string: {e}")),
            },
            Presented::Fields { .. } | Presented::Http { .. } => Vec::new(),
        };
        let events: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let credential = match check.credential {
            Presented::Fields { .. } => Credential::WebSocket {
                fields: &pairs,
                events: &events,
            },
            Presented::Http { parts, body, .. } => Credential::Http { parts, body },
        };
        let request_id = crate::id::uuid_v4();
        let request_headers = herald_auth::lambda::request_headers(pairs.iter().copied());
        let request = AuthRequest {
            operation: check.operation,
            namespace: check.namespace,
            channel: check.channel,
            credential,
            request_id: &request_id,
            request_headers: &request_headers,
        };
        match self.providers.authorize(modes, &request).await {
            Ok(verified) => Ok(Identity {
                verified,
                key_name: None,
            }),
            Err(e) => {
                if e.is_server_fault() {
                    tracing::warn!(error = %e, "an identity provider or authorizer failed; refusing");
                }
                refused(&e)
            }
        }
    }

    /// Fetches every JWT issuer's keys now, so the first token does not wait for discovery and
    /// the JWKS. Failures are logged and retried on demand; call it once after startup.
    pub async fn prefetch_keys(&self) {
        self.providers.prefetch_keys().await;
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
            verified: herald_auth::Identity::ApiKey,
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
        .unwrap()
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
        let f = fields(&[("X-Api-Key", "da2-live")]);
        let ok = a.authorize(&modes, Check::connect(&f)).await.unwrap();
        assert_eq!(ok.key_name.as_deref(), Some("live"));
        assert_eq!(ok.mode(), AuthMode::ApiKey);
        for f in [
            fields(&[("x-api-key", "da2-nope")]),
            fields(&[("x-api-key", "da2-old")]),
            fields(&[("authorization", "token")]),
            fields(&[]),
        ] {
            assert!(a.authorize(&modes, Check::connect(&f)).await.is_err());
        }
        let other = [AuthMode::OpenIdConnect];
        let f = fields(&[("x-api-key", "da2-live")]);
        assert!(a.authorize(&other, Check::connect(&f)).await.is_err());
    }
}

#[cfg(test)]
mod http_sigv4_tests {
    //! SigV4 over a real HTTP request other than `POST /event` (e.g. `GET /event/history`):
    //! `Presented::Http` verifies the request as sent, so a server route only has to pass it.
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use herald_auth::ProviderConfig;
    use herald_auth::sigv4::{AccessKeyConfig, IamAction, SigV4Config};

    #[tokio::test]
    async fn a_signed_get_is_verified_as_sent() {
        let authorizer = Authorizer::new(&AuthConfig {
            providers: vec![ProviderConfig::Iam(SigV4Config {
                keys: vec![AccessKeyConfig {
                    access_key_id: "AKIDREADER".into(),
                    secret_access_key: "reader-secret".into(),
                    session_token: None,
                    actions: vec![IamAction::EventSubscribe],
                    namespaces: vec!["hist".into()],
                    principal: "reader".into(),
                    account_id: None,
                }],
                ..SigV4Config::default()
            })],
            ..AuthConfig::default()
        })
        .unwrap();
        let url = "http://127.0.0.1:8080/event/history?channel=/hist/a&limit=10";
        let identity = Credentials::new("AKIDREADER", "reader-secret", None, None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("appsync")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "GET",
            url,
            [("host", "127.0.0.1:8080")].into_iter(),
            SignableBody::Bytes(b""),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = hyper::Request::builder()
            .method("GET")
            .uri("/event/history?channel=/hist/a&limit=10")
            .header("host", "127.0.0.1:8080");
        let mut fields = AuthFields::new();
        for (k, v) in instructions.headers() {
            request = request.header(k, v);
            fields.insert(k, v);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let check = |namespace| Check {
            operation: Operation::Subscribe,
            namespace: Some(namespace),
            channel: Some("/hist/a"),
            credential: Presented::Http {
                parts: &parts,
                body: b"",
                fields: &fields,
            },
        };
        let id = authorizer
            .authorize(&[AuthMode::Iam], check("hist"))
            .await
            .unwrap();
        assert_eq!(id.mode(), AuthMode::Iam);
        // The key's namespace grant still applies.
        assert!(
            authorizer
                .authorize(&[AuthMode::Iam], check("other"))
                .await
                .is_err()
        );
    }
}
