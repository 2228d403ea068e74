//! Authorization: may this credential connect, publish on this channel, or subscribe to this
//! pattern (spec §4)? [`Access::authorize`] is the one entry point; it returns who the caller is.
//!
//! A decision has two steps. The credential picks the mode among those the operation accepts
//! (`connection_auth_modes`, or the namespace's publish/subscribe modes): `x-api-key` selects
//! API_KEY ([`api_key`]); an `Authorization` value goes to `herald_auth::Providers`, which tells
//! SigV4, JWTs of a configured issuer (Cognito, OIDC) and other tokens (the Lambda-style webhook)
//! apart. Then the namespace's declarative access [`rules`] bind the channel to that identity.
//! Every refusal is the spec's `UnauthorizedException`, whatever the reason, so a probing client
//! learns nothing; the reason is logged at debug level. That includes a channel outside every
//! configured namespace: answering "not found" there, before the credential is even looked at,
//! would let anyone list the namespaces by trying names.

pub mod admin_key;
pub mod api_key;
pub mod rules;

use std::collections::HashMap;

use herald_auth::{AuthRequest, Credential, Providers};
use herald_protocol::message::Event;
use herald_protocol::{AuthFields, Channel, Pattern, WireError};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::namespace::NamespaceConfig;
use api_key::{ApiKeyConfig, ApiKeys};
use rules::Rules;

pub use herald_auth::{AuthMode, Identity, Operation};

/// `[auth]`: the modes each operation accepts, API keys, and the other modes' providers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Modes accepted when a WebSocket connects.
    pub connection_auth_modes: Vec<AuthMode>,
    /// Modes accepted for publishing, unless a namespace overrides them.
    pub default_publish_auth_modes: Vec<AuthMode>,
    /// Modes accepted for subscribing, unless a namespace overrides them.
    pub default_subscribe_auth_modes: Vec<AuthMode>,
    pub api_keys: Vec<ApiKeyConfig>,
    /// Cognito user pools, OIDC issuers, the Lambda-style authorizer and SigV4 keys
    /// (`docs/authorization.md`).
    pub providers: Vec<herald_auth::ProviderConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            connection_auth_modes: vec![AuthMode::ApiKey],
            default_publish_auth_modes: vec![AuthMode::ApiKey],
            default_subscribe_auth_modes: vec![AuthMode::ApiKey],
            api_keys: Vec::new(),
            providers: Vec::new(),
        }
    }
}

/// What is asked.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    Connect,
    /// `raw` is the channel exactly as the client sent it (SigV4 signs it verbatim).
    Publish {
        channel: &'a Channel,
        raw: &'a str,
    },
    Subscribe {
        pattern: &'a Pattern,
        raw: &'a str,
    },
}

impl Action<'_> {
    fn operation(&self) -> Operation {
        match self {
            Action::Connect => Operation::Connect,
            Action::Publish { .. } => Operation::Publish,
            Action::Subscribe { .. } => Operation::Subscribe,
        }
    }
}

/// The HTTP path of an API reached without a path prefix.
pub const DEFAULT_EVENT_PATH: &str = "/event";

/// How the credential arrived.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// WebSocket: the connect fields or an operation's `authorization` object, and for a
    /// publish its events (SigV4 signs a body rebuilt from them).
    Fields {
        fields: &'a AuthFields,
        events: &'a [Event<'a>],
        /// The API's HTTP path, which SigV4 signs at (`herald_auth::Credential::WebSocket`).
        path: &'a str,
    },
    /// HTTP: the head and exact body (SigV4 signs the real request).
    Http {
        parts: &'a hyper::http::request::Parts,
        body: &'a [u8],
        fields: &'a AuthFields,
    },
}

impl<'a> Presented<'a> {
    /// Credentials with no events to sign (connect, subscribe), at `/event`.
    pub fn fields(fields: &'a AuthFields) -> Presented<'a> {
        Presented::fields_at(fields, DEFAULT_EVENT_PATH)
    }

    /// Credentials with no events to sign, on a socket of the API at `path`.
    pub fn fields_at(fields: &'a AuthFields, path: &'a str) -> Presented<'a> {
        Presented::Fields {
            fields,
            events: &[],
            path,
        }
    }

    fn auth_fields(&self) -> &AuthFields {
        match self {
            Presented::Fields { fields, .. } | Presented::Http { fields, .. } => fields,
        }
    }
}

/// What one namespace accepts.
struct NamespaceAccess {
    publish: Vec<AuthMode>,
    subscribe: Vec<AuthMode>,
    rules: Option<Rules>,
}

/// Everything authorization needs, built from `[auth]` and the namespaces; swapped whole on reload.
pub struct Access {
    api_keys: ApiKeys,
    providers: Providers,
    connect: Vec<AuthMode>,
    namespaces: HashMap<String, NamespaceAccess>,
}

impl Access {
    /// Builds and checks the authorization configuration; each problem names its key.
    pub fn build(
        auth: &AuthConfig,
        namespaces: &[NamespaceConfig],
        problems: &mut Vec<String>,
    ) -> Access {
        let api_keys = ApiKeys::build(&auth.api_keys, problems);
        let providers = Providers::new(&auth.providers).unwrap_or_else(|e| {
            problems.push(format!("auth.providers: {e}"));
            Providers::default()
        });
        let mut modes = |key: &str, list: &[AuthMode]| {
            if list.is_empty() {
                problems.push(format!("{key}: list at least one authorization mode"));
            }
            if let Err(e) = providers.check_modes(key, list) {
                problems.push(match e {
                    herald_auth::ConfigError::Invalid { field, reason } => {
                        format!("{field}: {reason}")
                    }
                    other => other.to_string(),
                });
            }
            list.to_vec()
        };
        let connect = modes("auth.connection_auth_modes", &auth.connection_auth_modes);
        let default_publish = modes(
            "auth.default_publish_auth_modes",
            &auth.default_publish_auth_modes,
        );
        let default_subscribe = modes(
            "auth.default_subscribe_auth_modes",
            &auth.default_subscribe_auth_modes,
        );
        let mut by_name = HashMap::new();
        let mut rule_problems = Vec::new();
        for (i, ns) in namespaces.iter().enumerate() {
            let key = |k: &str| format!("namespaces[{i}].{k}");
            let publish = match &ns.publish_auth_modes {
                Some(list) => modes(&key("publish_auth_modes"), list),
                None => default_publish.clone(),
            };
            let subscribe = match &ns.subscribe_auth_modes {
                Some(list) => modes(&key("subscribe_auth_modes"), list),
                None => default_subscribe.clone(),
            };
            let rules = match ns
                .rules
                .as_ref()
                .map(|r| Rules::parse(r, &ns.name, &key("rules")))
            {
                Some(Ok(rules)) => Some(rules),
                Some(Err(errors)) => {
                    rule_problems.extend(errors);
                    None
                }
                None => None,
            };
            by_name.insert(
                ns.name.clone(),
                NamespaceAccess {
                    publish,
                    subscribe,
                    rules,
                },
            );
        }
        problems.extend(rule_problems);
        Access {
            api_keys,
            providers,
            connect,
            namespaces: by_name,
        }
    }

    /// Admits or refuses one operation, counting refusals; returns the caller's identity.
    pub async fn authorize(
        &self,
        action: Action<'_>,
        credential: Presented<'_>,
        metrics: &Metrics,
    ) -> Result<Identity, WireError> {
        let (modes, namespace, raw) = match action {
            Action::Connect => (&self.connect, None, None),
            Action::Publish { channel, raw } => {
                let ns = self.namespace(channel.namespace(), metrics)?;
                (&ns.publish, Some(channel.namespace()), Some(raw))
            }
            Action::Subscribe { pattern, raw } => {
                let ns = self.namespace(pattern.namespace(), metrics)?;
                (&ns.subscribe, Some(pattern.namespace()), Some(raw))
            }
        };
        let operation = action.operation();
        let verified = self
            .verify(modes, operation, namespace, raw, credential)
            .await;
        let identity = match verified {
            Ok(identity) => identity,
            Err(reason) => {
                tracing::debug!(?operation, ?namespace, %reason, "authorization refused");
                metrics.unauthorized.inc();
                return Err(WireError::unauthorized());
            }
        };
        if let Some(namespace) = namespace
            && !self.rules_allow(&identity, action)
        {
            metrics.ns(namespace).rule_denials.inc();
            metrics.unauthorized.inc();
            tracing::debug!(namespace, ?action, "refused by access rules");
            return Err(WireError::unauthorized());
        }
        Ok(identity)
    }

    /// After a reload: whether a subscription admitted earlier with `identity` is still allowed
    /// (its namespace exists, its mode is still accepted, the access rules still allow it).
    pub fn still_allows(&self, identity: &Identity, pattern: &Pattern) -> bool {
        self.namespaces
            .get(pattern.namespace())
            .is_some_and(|ns| ns.subscribe.contains(&identity.mode()))
            && self.rules_allow(identity, Action::Subscribe { pattern, raw: "" })
    }

    /// Whether a namespace is configured.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// Fetches every JWT issuer's keys now, so the first token does not wait for discovery and
    /// the JWKS. Failures are logged and retried on demand.
    pub async fn prefetch_keys(&self) {
        self.providers.prefetch_keys().await;
    }

    /// A configured namespace, or the same refusal a bad credential gets (see the module doc).
    fn namespace(&self, name: &str, metrics: &Metrics) -> Result<&NamespaceAccess, WireError> {
        self.namespaces.get(name).ok_or_else(|| {
            tracing::debug!(namespace = name, "refused: no such namespace");
            metrics.unauthorized.inc();
            WireError::unauthorized()
        })
    }

    fn rules_allow(&self, identity: &Identity, action: Action<'_>) -> bool {
        let rules = |ns: &str| self.namespaces.get(ns).and_then(|n| n.rules.as_ref());
        match action {
            Action::Connect => true,
            Action::Publish { channel, .. } => {
                rules(channel.namespace()).is_none_or(|r| r.allows_publish(identity, channel))
            }
            Action::Subscribe { pattern, .. } => {
                rules(pattern.namespace()).is_none_or(|r| r.allows_subscribe(identity, pattern))
            }
        }
    }

    /// Verifies the credential with the mode it selects among `modes`.
    async fn verify(
        &self,
        modes: &[AuthMode],
        operation: Operation,
        namespace: Option<&str>,
        channel: Option<&str>,
        credential: Presented<'_>,
    ) -> Result<Identity, String> {
        let fields = credential.auth_fields();
        if let Some(key) = fields.get("x-api-key") {
            if !modes.contains(&AuthMode::ApiKey) {
                return Err("API_KEY is not an allowed mode for this operation".into());
            }
            return self
                .api_keys
                .check(key.as_bytes(), crate::time::now_unix())
                .map_err(str::to_owned);
        }
        let pairs: Vec<(&str, &str)> = fields.iter().collect();
        // SigV4 over WebSocket signs a body rebuilt from the decoded events; only SigV4 needs
        // them, so tokens skip the copy. Every event must decode: skipping one would leave it
        // out of the signed body yet still publish it.
        let sigv4 = fields
            .get("authorization")
            .is_some_and(herald_auth::sigv4::is_sigv4);
        let decoded: Vec<String> = match credential {
            Presented::Fields { events, .. } if sigv4 => events
                .iter()
                .map(|e| serde_json::from_str::<String>(e.token()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("an event is not a JSON string: {e}"))?,
            Presented::Fields { .. } | Presented::Http { .. } => Vec::new(),
        };
        let events: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let credential = match credential {
            Presented::Fields { path, .. } => Credential::WebSocket {
                fields: &pairs,
                events: &events,
                path,
            },
            Presented::Http { parts, body, .. } => Credential::Http { parts, body },
        };
        let request_id = crate::id::uuid_v4();
        let request_headers = herald_auth::lambda::request_headers(pairs.iter().copied());
        let request = AuthRequest {
            operation,
            namespace,
            channel,
            credential,
            request_id: &request_id,
            request_headers: &request_headers,
        };
        self.providers
            .authorize(modes, &request)
            .await
            .map_err(|e| {
                if e.is_server_fault() {
                    tracing::warn!(error = %e, "an identity provider or authorizer failed; refusing");
                }
                e.to_string()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(auth: AuthConfig) -> Access {
        let ns = NamespaceConfig::named("hist");
        let mut problems = Vec::new();
        let access = Access::build(&auth, &[ns], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        access
    }

    fn fields(pairs: &[(&str, &str)]) -> AuthFields {
        let mut f = AuthFields::new();
        for (k, v) in pairs {
            f.insert(k, *v);
        }
        f
    }

    #[tokio::test]
    async fn api_keys_and_modes() {
        let a = access(AuthConfig {
            api_keys: vec![ApiKeyConfig {
                key: "da2-live-key".into(),
                name: Some("live".into()),
                expires: None,
            }],
            ..AuthConfig::default()
        });
        let m = Metrics::new([]);
        let f = fields(&[("X-Api-Key", "da2-live-key")]);
        let ok = a
            .authorize(Action::Connect, Presented::fields(&f), &m)
            .await
            .unwrap();
        assert_eq!(
            ok,
            Identity::ApiKey {
                name: Some("live".into())
            }
        );
        for f in [
            fields(&[("x-api-key", "da2-nope-key")]),
            fields(&[("authorization", "token")]),
            fields(&[]),
        ] {
            assert!(
                a.authorize(Action::Connect, Presented::fields(&f), &m)
                    .await
                    .is_err()
            );
        }
        assert_eq!(m.unauthorized.get(), 3);
        let channel = Channel::parse("/nope/a").unwrap();
        let e = a
            .authorize(
                Action::Publish {
                    channel: &channel,
                    raw: "/nope/a",
                },
                Presented::fields(&f),
                &m,
            )
            .await
            .unwrap_err();
        // An unknown namespace is refused like a bad key, so names cannot be probed.
        assert_eq!(e, WireError::unauthorized());
        assert_eq!(m.unauthorized.get(), 4);
    }

    #[test]
    fn a_mode_without_a_provider_is_a_problem_with_its_key() {
        let mut problems = Vec::new();
        let mut ns = NamespaceConfig::named("x");
        ns.publish_auth_modes = Some(vec![AuthMode::Iam]);
        ns.subscribe_auth_modes = Some(vec![]);
        Access::build(&AuthConfig::default(), &[ns], &mut problems);
        let all = problems.join("\n");
        assert!(all.contains("namespaces[0].publish_auth_modes"), "{all}");
        assert!(all.contains("namespaces[0].subscribe_auth_modes"), "{all}");
    }
}

#[cfg(test)]
mod http_sigv4_tests {
    //! SigV4 over a real HTTP request other than `POST /event` (e.g. `GET /event/history`):
    //! `Presented::Http` verifies the request as sent, so a server route only has to pass it.
    use super::*;
    use herald_auth::ProviderConfig;
    use herald_auth::sigv4::{AccessKeyConfig, IamAction, SigV4Config};
    use herald_testkit::sigv4::Signer;

    #[tokio::test]
    async fn a_signed_get_is_verified_as_sent() {
        let auth = AuthConfig {
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
            default_subscribe_auth_modes: vec![AuthMode::Iam],
            ..AuthConfig::default()
        };
        let mut problems = Vec::new();
        let access = Access::build(
            &auth,
            &[
                NamespaceConfig::named("hist"),
                NamespaceConfig::named("other"),
            ],
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let url = "http://127.0.0.1:8080/event/history?channel=/hist/a&limit=10";
        let signed = Signer::new(("AKIDREADER", "reader-secret"), "us-east-1").sign(
            "GET",
            url,
            &[("host", "127.0.0.1:8080".to_owned())],
            b"",
        );
        let mut request = hyper::Request::builder()
            .method("GET")
            .uri("/event/history?channel=/hist/a&limit=10")
            .header("host", "127.0.0.1:8080");
        let mut fields = AuthFields::new();
        for (k, v) in &signed {
            request = request.header(k, v);
            fields.insert(k, v);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let metrics = Metrics::new([]);
        let check = |channel: &'static str| {
            let pattern = Pattern::parse(channel).unwrap();
            let access = &access;
            let (parts, fields, metrics) = (&parts, &fields, &metrics);
            async move {
                access
                    .authorize(
                        Action::Subscribe {
                            pattern: &pattern,
                            raw: "/hist/a",
                        },
                        Presented::Http {
                            parts,
                            body: b"",
                            fields,
                        },
                        metrics,
                    )
                    .await
            }
        };
        let id = check("/hist/a").await.unwrap();
        assert_eq!(id.mode(), AuthMode::Iam);
        // The key's namespace grant still applies.
        assert!(check("/other/a").await.is_err());
    }
}
