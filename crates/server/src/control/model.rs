//! The control plane's view of the API Herald serves: the AWS model's `Api`, `ChannelNamespace`
//! and `ApiKey` shapes (`appsync-control-plane.json`), built once from the configuration and
//! rebuilt on reload. Members the model marks optional are left out when Herald has nothing to
//! say (no `ownerContact`, `wafWebAclArn`, `logConfig`, `handlerConfigs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use herald_auth::{AuthMode, ProviderConfig};

use crate::config::Config;

/// `AuthMode`: `{"authType": "API_KEY"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthModeShape {
    pub auth_type: AuthMode,
}

fn modes(list: &[AuthMode]) -> Vec<AuthModeShape> {
    list.iter()
        .map(|&auth_type| AuthModeShape { auth_type })
        .collect()
}

/// `AuthProvider`, with the configuration of its kind.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthProvider {
    pub auth_type: AuthMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cognito_config: Option<CognitoConfig>,
    #[serde(
        rename = "openIDConnectConfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub open_id_connect_config: Option<OpenIdConnectConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda_authorizer_config: Option<LambdaAuthorizerConfig>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CognitoConfig {
    pub user_pool_id: String,
    pub aws_region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id_client_regex: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenIdConnectConfig {
    pub issuer: String,
    #[serde(rename = "clientId", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(rename = "iatTTL")]
    pub iat_ttl: u64,
    #[serde(rename = "authTTL")]
    pub auth_ttl: u64,
}

/// Herald's authorizer is a webhook, so `authorizerUri` is its URL rather than a Lambda ARN.
/// Its headers (which may hold secrets) are not shown.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaAuthorizerConfig {
    pub authorizer_uri: String,
    pub authorizer_result_ttl_in_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_validation_expression: Option<String>,
}

impl AuthProvider {
    fn of(config: &ProviderConfig) -> AuthProvider {
        let mut provider = AuthProvider {
            auth_type: config.mode(),
            cognito_config: None,
            open_id_connect_config: None,
            lambda_authorizer_config: None,
        };
        match config {
            ProviderConfig::ApiKey | ProviderConfig::Iam(_) => {}
            ProviderConfig::Cognito(c) => {
                provider.cognito_config = Some(CognitoConfig {
                    user_pool_id: c.user_pool_id.clone(),
                    aws_region: c.aws_region.clone(),
                    app_id_client_regex: c.app_id_client_regex.clone(),
                })
            }
            ProviderConfig::Oidc(c) => {
                provider.open_id_connect_config = Some(OpenIdConnectConfig {
                    issuer: c.issuer.clone(),
                    client_id: c.client_id.clone(),
                    iat_ttl: c.iat_ttl,
                    auth_ttl: c.auth_ttl,
                })
            }
            ProviderConfig::Lambda(c) => {
                provider.lambda_authorizer_config = Some(LambdaAuthorizerConfig {
                    authorizer_uri: c.authorizer_url.clone(),
                    authorizer_result_ttl_in_seconds: c.authorizer_result_ttl_in_seconds,
                    identity_validation_expression: c.identity_validation_expression.clone(),
                })
            }
        }
        provider
    }
}

/// `EventConfig`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventConfig {
    pub auth_providers: Vec<AuthProvider>,
    pub connection_auth_modes: Vec<AuthModeShape>,
    pub default_publish_auth_modes: Vec<AuthModeShape>,
    pub default_subscribe_auth_modes: Vec<AuthModeShape>,
}

/// `Api`. `dns` depends on the host the client reached, so it is filled per request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Api {
    pub api_id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub dns: BTreeMap<&'static str, String>,
    pub api_arn: String,
    /// Epoch seconds, as `restJson1` writes timestamps.
    pub created: i64,
    pub xray_enabled: bool,
    pub event_config: EventConfig,
}

/// `ChannelNamespace`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelNamespace {
    pub api_id: String,
    pub name: String,
    pub subscribe_auth_modes: Vec<AuthModeShape>,
    pub publish_auth_modes: Vec<AuthModeShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_handlers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler_configs: Option<HandlerConfigs>,
    pub tags: BTreeMap<String, String>,
    pub channel_namespace_arn: String,
    pub created: i64,
    pub last_modified: i64,
}

/// `HandlerConfigs`: which data source `onPublish` and `onSubscribe` use. Read from requests and
/// kept as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerConfigs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_publish: Option<HandlerShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_subscribe: Option<HandlerShape>,
}

/// `HandlerConfig`: `CODE` runs `codeHandlers`' `{request, response}` exports against the data
/// source; `DIRECT` invokes the (`AWS_LAMBDA`) data source with the context, without code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerShape {
    pub behavior: HandlerBehavior,
    pub integration: Integration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HandlerBehavior {
    Code,
    Direct,
}

/// `Integration`: the data source (a `[[data_sources]]` name in Herald) and, for `DIRECT`, how
/// the Lambda is invoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    pub data_source_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_config: Option<LambdaConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke_type: Option<String>,
}

/// `ApiKey`. As in AppSync, `id` is the key itself.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// When an expired key is removed from the list (AppSync: 60 days after `expires`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletes: Option<i64>,
}

/// The one API, as the configuration describes it.
#[derive(Debug, Clone)]
pub struct ApiView {
    pub api: Api,
    pub namespaces: Vec<ChannelNamespace>,
    pub api_keys: Vec<ApiKey>,
    /// Where a created API is reached: its own host name, or its path under the host.
    pub reached: Reached,
}

/// How `dns` names an API's endpoints, so that `https://{dns.HTTP}/event` and
/// `wss://{dns.REALTIME}/event/realtime`, as clients build them, reach it.
#[derive(Debug, Clone, Default)]
pub enum Reached {
    /// The file's API: the host the request used.
    #[default]
    Host,
    /// A created API: `{host}/apis/{apiId}`.
    Prefix(String),
    /// A created API with a custom domain (`herald:domain`).
    Domain(String),
}

/// Where the ARNs point: the configured region and account, and the API's id and name.
pub struct Naming<'a> {
    pub api_id: &'a str,
    pub name: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
}

impl ApiView {
    /// Builds the view of a configuration already checked by `Settings::build`. `created` is
    /// when the configuration was loaded: Herald keeps no creation time for a file.
    pub fn build(config: &Config, id: &Naming<'_>, created: i64) -> ApiView {
        let auth = &config.auth;
        let api_arn = format!(
            "arn:aws:appsync:{}:{}:apis/{}",
            id.region, id.account_id, id.api_id
        );
        // API keys are checked by the server, not declared as a provider entry, so the API_KEY
        // provider is listed whenever the API uses or holds keys, as AppSync requires.
        let mut auth_providers: Vec<AuthProvider> =
            auth.providers.iter().map(AuthProvider::of).collect();
        let namespace_modes = config.namespaces.iter().flat_map(|n| {
            n.publish_auth_modes
                .iter()
                .chain(n.subscribe_auth_modes.iter())
                .flatten()
        });
        let uses_keys = !auth.api_keys.is_empty()
            || auth
                .connection_auth_modes
                .iter()
                .chain(&auth.default_publish_auth_modes)
                .chain(&auth.default_subscribe_auth_modes)
                .chain(namespace_modes)
                .any(|m| *m == AuthMode::ApiKey);
        if uses_keys
            && !auth_providers
                .iter()
                .any(|p| p.auth_type == AuthMode::ApiKey)
        {
            auth_providers.insert(0, AuthProvider::of(&ProviderConfig::ApiKey));
        }
        let api = Api {
            api_id: id.api_id.to_owned(),
            name: id.name.to_owned(),
            tags: BTreeMap::new(),
            dns: BTreeMap::new(),
            api_arn: api_arn.clone(),
            created,
            xray_enabled: false,
            event_config: EventConfig {
                auth_providers,
                connection_auth_modes: modes(&auth.connection_auth_modes),
                default_publish_auth_modes: modes(&auth.default_publish_auth_modes),
                default_subscribe_auth_modes: modes(&auth.default_subscribe_auth_modes),
            },
        };
        let namespaces = config
            .namespaces
            .iter()
            .map(|n| ChannelNamespace {
                api_id: id.api_id.to_owned(),
                name: n.name.clone(),
                // The modes in force: the namespace's own, or the API's defaults.
                subscribe_auth_modes: modes(
                    n.subscribe_auth_modes
                        .as_deref()
                        .unwrap_or(&auth.default_subscribe_auth_modes),
                ),
                publish_auth_modes: modes(
                    n.publish_auth_modes
                        .as_deref()
                        .unwrap_or(&auth.default_publish_auth_modes),
                ),
                // Inline code only: a `code_file` or an HTTP handler has no AppSync equivalent
                // to show here.
                code_handlers: n.handlers.as_ref().and_then(|h| h.code.clone()),
                handler_configs: None,
                tags: BTreeMap::new(),
                channel_namespace_arn: format!("{api_arn}/channelNamespace/{}", n.name),
                created,
                last_modified: created,
            })
            .collect();
        let api_keys = auth
            .api_keys
            .iter()
            .map(|k| ApiKey {
                id: k.key.clone(),
                description: k.name.clone(),
                expires: k.expires.as_deref().and_then(crate::time::parse_rfc3339),
                deletes: None,
            })
            .collect();
        ApiView {
            api,
            namespaces,
            api_keys,
            reached: Reached::Host,
        }
    }

    /// The `Api` as a client at `host` sees it: both endpoints on one name, as one Herald port
    /// serves `/event` and `/event/realtime`.
    pub fn api_at(&self, host: &str) -> Api {
        let mut api = self.api.clone();
        let dns = match &self.reached {
            Reached::Host => host.to_owned(),
            Reached::Prefix(prefix) => format!("{host}{prefix}"),
            Reached::Domain(domain) => domain.clone(),
        };
        api.dns.insert("HTTP", dns.clone());
        api.dns.insert("REALTIME", dns);
        api
    }
}

/// `ListApisResponse`. AWS leaves `nextToken` out on the last page.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListApis<'a> {
    pub apis: &'a [Api],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `GetApiResponse`.
#[derive(Serialize)]
pub struct GetApi {
    pub api: Api,
}

/// `ListChannelNamespacesResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListChannelNamespaces<'a> {
    pub channel_namespaces: &'a [ChannelNamespace],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `GetChannelNamespaceResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetChannelNamespace<'a> {
    pub channel_namespace: &'a ChannelNamespace,
}

/// `ListApiKeysResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListApiKeys<'a> {
    pub api_keys: &'a [ApiKey],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}
