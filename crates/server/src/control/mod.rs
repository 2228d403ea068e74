//! The AppSync control plane (the management API the AWS CLI, boto3 and the AWS SDKs call),
//! read-only, for the one Event API the configuration describes (`docs/control-plane.md`).
//!
//! * [`operation`]: which operation a request is (method and path as the AWS model defines
//!   them), and paging; pure.
//! * [`model`]: the AWS shapes (`Api`, `ChannelNamespace`, `ApiKey`) built from the config.
//! * [`error`]: the AWS error types and statuses.
//! * [`config`]: the `[control_plane]` section.
//!
//! Requests are SigV4-signed for the service `appsync` by `[[control_plane.access_keys]]`,
//! verified by `herald-auth` like the data plane's IAM mode. `http::control_plane` is the HTTP
//! side: it reads the request, asks [`ControlPlane::answer`], writes the reply.

pub mod config;
pub mod error;
pub mod model;
pub mod operation;

use std::time::SystemTime;

use serde::Serialize;

use herald_auth::sigv4::SigV4Verifier;

use crate::config::Config;
pub use config::{AdminAccessKey, ControlPlaneConfig};
pub use error::ControlError;
use model::{ApiView, Naming};
use operation::Operation;

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
        let naming = Naming {
            api_id: &section.api_id,
            name: section.name.as_deref().unwrap_or(&section.api_id),
            region: &section.region,
            account_id: &section.account_id,
        };
        let view = ApiView::build(config, &naming, crate::time::now_unix());
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
