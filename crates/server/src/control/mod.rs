//! The AppSync control plane (the management API the AWS CLI, boto3 and the AWS SDKs call),
//! read-only, for the one Event API the configuration describes (`docs/control-plane.md`).
//!
//! * [`operation`]: which operation a request is (method and path as the AWS model defines
//!   them), and paging; pure.
//! * [`model`]: the AWS shapes (`Api`, `ChannelNamespace`, `ApiKey`) built from the config.
//! * [`error`]: the AWS error types and statuses.
//!
//! Requests are SigV4-signed for the service `appsync` by `[[control_plane.access_keys]]`,
//! verified by `herald-auth` like the data plane's IAM mode. `http::control_plane` is the HTTP
//! side: it reads the request, asks [`ControlPlane::answer`], writes the reply.

pub mod error;
pub mod model;
pub mod operation;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use herald_auth::sigv4::{AccessKeyConfig, SigV4Config, SigV4Verifier};

use crate::config::Config;
pub use error::ControlError;
use model::{ApiView, Identity};
use operation::Operation;

/// `[control_plane]`: the API's id and name as the control plane shows them, where its ARNs
/// point, and the administrators' access keys. Without keys the control plane is off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// The API's `apiId`; stable across restarts, so scripts can name it.
    pub api_id: String,
    /// The API's `name`; `api_id` when absent.
    pub name: Option<String>,
    /// The region and account in `apiArn` and `channelNamespaceArn`.
    pub region: String,
    pub account_id: String,
    /// Who may call the control plane: SigV4 keys for the service `appsync`, any region.
    /// Not serialized: they hold secrets.
    #[serde(skip_serializing)]
    pub access_keys: Vec<AdminAccessKey>,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            api_id: "herald".to_owned(),
            name: None,
            region: "us-east-1".to_owned(),
            account_id: "000000000000".to_owned(),
            access_keys: Vec::new(),
        }
    }
}

/// One administrator's access key (`[[control_plane.access_keys]]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AdminAccessKey {
    // Hand-written so the secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// The longest `api_id` or `name` accepted (the model's `ApiName` maximum).
const MAX_NAME_CHARS: usize = 50;

impl ControlPlaneConfig {
    /// Checks the section; each problem names its key.
    pub fn check(&self, problems: &mut Vec<String>) {
        // The id is a path segment of every request, so only characters paths need not escape.
        let id_ok = !self.api_id.is_empty()
            && self.api_id.len() <= MAX_NAME_CHARS
            && self
                .api_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !id_ok {
            problems.push(format!(
                "control_plane.api_id: {:?} must be 1-{MAX_NAME_CHARS} characters of A-Z, a-z, 0-9 and '-'",
                self.api_id
            ));
        }
        if let Some(name) = &self.name {
            let ok = !name.is_empty()
                && name.len() <= MAX_NAME_CHARS
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' '));
            if !ok {
                problems.push(format!(
                    "control_plane.name: {name:?} must be 1-{MAX_NAME_CHARS} characters of A-Z, a-z, 0-9, '_', '-' and ' '"
                ));
            }
        }
        if let Err(e) = self.verifier() {
            problems.push(format!("control_plane.access_keys: {e}"));
        }
    }

    fn verifier(&self) -> Result<SigV4Verifier, herald_auth::ConfigError> {
        let keys = self
            .access_keys
            .iter()
            .map(|k| AccessKeyConfig {
                access_key_id: k.access_key_id.clone(),
                secret_access_key: k.secret_access_key.clone(),
                session_token: None,
                // Grants are the data plane's; an administrator may do every control-plane
                // operation, which `verify_signature` does not look at.
                actions: Vec::new(),
                namespaces: Vec::new(),
                principal: k.access_key_id.clone(),
                account_id: Some(self.account_id.clone()),
            })
            .collect();
        SigV4Verifier::new(SigV4Config {
            keys,
            ..SigV4Config::default()
        })
    }
}

/// The control plane of a checked configuration: who may call it, and what it answers.
#[derive(Debug)]
pub struct ControlPlane {
    verifier: SigV4Verifier,
    view: ApiView,
}

impl ControlPlane {
    /// The control plane of a configuration `Settings::build` checked; `None` when no
    /// administrator key is configured (the control plane is off).
    pub fn build(config: &Config) -> Option<ControlPlane> {
        let section = &config.control_plane;
        if section.access_keys.is_empty() {
            return None;
        }
        let verifier = section
            .verifier()
            .inspect_err(|e| tracing::error!(error = %e, "control plane keys refused"))
            .ok()?;
        let identity = Identity {
            api_id: &section.api_id,
            name: section.name.as_deref().unwrap_or(&section.api_id),
            region: &section.region,
            account_id: &section.account_id,
        };
        let view = ApiView::build(config, &identity, crate::time::now_unix());
        Some(ControlPlane { verifier, view })
    }

    /// Checks the request's signature: the caller must be an administrator.
    pub fn authenticate(
        &self,
        parts: &hyper::http::request::Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), ControlError> {
        match self.verifier.verify_http_signature(parts, body, now) {
            Ok(key) => {
                tracing::debug!(access_key_id = %key.access_key_id, path = %parts.uri.path(), "control plane request");
                Ok(())
            }
            Err(reason) => {
                tracing::debug!(%reason, "control plane request refused");
                Err(ControlError::Unauthorized)
            }
        }
    }

    /// The JSON reply of an authenticated request from a client that reached `host`.
    pub fn answer(&self, operation: Operation<'_>, host: &str) -> Result<Vec<u8>, ControlError> {
        let bytes = match operation {
            Operation::ListApis(page) => {
                let apis = [self.view.api_at(host)];
                let (items, next_token) = page.slice(&apis);
                to_json(&model::ListApis {
                    apis: items,
                    next_token,
                })
            }
            Operation::GetApi { api_id } => {
                self.api(api_id)?;
                to_json(&model::GetApi {
                    api: self.view.api_at(host),
                })
            }
            Operation::ListChannelNamespaces { api_id, page } => {
                self.api(api_id)?;
                let (items, next_token) = page.slice(&self.view.namespaces);
                to_json(&model::ListChannelNamespaces {
                    channel_namespaces: items,
                    next_token,
                })
            }
            Operation::GetChannelNamespace { api_id, name } => {
                self.api(api_id)?;
                let channel_namespace = self
                    .view
                    .namespaces
                    .iter()
                    .find(|n| n.name == name)
                    .ok_or_else(|| ControlError::NamespaceNotFound {
                        api_id: api_id.to_owned(),
                        name: name.to_owned(),
                    })?;
                to_json(&model::GetChannelNamespace { channel_namespace })
            }
            Operation::ListApiKeys { api_id, page } => {
                self.api(api_id)?;
                let (items, next_token) = page.slice(&self.view.api_keys);
                to_json(&model::ListApiKeys {
                    api_keys: items,
                    next_token,
                })
            }
        };
        bytes.map_err(|e| {
            tracing::error!(error = %e, "control plane reply not encoded");
            ControlError::Internal
        })
    }

    fn api(&self, api_id: &str) -> Result<(), ControlError> {
        if api_id == self.view.api.api_id {
            Ok(())
        } else {
            Err(ControlError::ApiNotFound(api_id.to_owned()))
        }
    }
}

fn to_json(reply: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(reply)
}
