//! The AppSync control plane (the management API the AWS CLI, boto3 and the AWS SDKs call) for
//! the one Event API the configuration describes (`docs/control-plane.md`): it reads the API,
//! and creates, updates and deletes channel namespaces and API keys beside the file's.
//!
//! * [`operation`]: which operation a request is (method and path as the AWS model defines
//!   them), and paging; pure.
//! * [`change`]: what a write does to the stored resources; pure.
//! * [`store`]: the stored resources, one durable document per API, merged under the file's.
//! * [`model`]: the AWS shapes (`Api`, `ChannelNamespace`, `ApiKey`) built from the config.
//! * [`error`]: the AWS error types and statuses.
//! * [`config`]: the `[control_plane]` section.
//!
//! A write is applied by `reload::apply_record`: the settings are rebuilt from the file and the
//! new record, stored, and swapped in like a reload.
//!
//! Requests are SigV4-signed for the service `appsync` by `[[control_plane.access_keys]]`,
//! verified by `herald-auth` like the data plane's IAM mode. `http::control_plane` is the HTTP
//! side: it reads the request, asks [`ControlPlane::answer`], writes the reply.

pub mod change;
pub mod config;
pub mod definition;
pub mod error;
pub mod model;
pub mod operation;
pub mod replicated;
pub mod store;

use std::collections::HashSet;
use std::time::SystemTime;

use serde::Serialize;

use herald_auth::sigv4::SigV4Verifier;

use crate::config::Config;
use change::{FileOwned, Quotas, Written};
pub use config::{AdminAccessKey, ControlPlaneConfig};
pub use error::ControlError;
use model::{ApiView, Naming};
use operation::Operation;
use store::ApiRecord;

/// The control plane of a checked configuration: who may call it, and what it answers.
#[derive(Debug)]
pub struct ControlPlane {
    verifier: SigV4Verifier,
    view: ApiView,
    /// What the configuration file declares, which writes leave alone.
    file_namespaces: HashSet<String>,
    file_keys: HashSet<String>,
    quotas: Quotas,
}

impl ControlPlane {
    /// The control plane of a configuration `Settings::build` checked: `file` as read,
    /// `merged` with the stored `record` added; `None` when no administrator key is configured
    /// (the control plane is off).
    pub fn build(file: &Config, merged: &Config, record: &ApiRecord) -> Option<ControlPlane> {
        let config = merged;
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
        let file_namespaces: HashSet<String> =
            file.namespaces.iter().map(|n| n.name.clone()).collect();
        let file_keys: HashSet<String> = file.auth.api_keys.iter().map(|k| k.key.clone()).collect();
        let view = with_stored(
            ApiView::build(config, &naming, crate::time::now_unix()),
            record,
            &file_namespaces,
            &file_keys,
        );
        Some(ControlPlane {
            verifier,
            view,
            file_namespaces,
            file_keys,
            quotas: Quotas {
                max_namespaces: section.max_namespaces,
                max_api_keys: section.max_api_keys,
                max_apis: section.max_apis,
            },
        })
    }

    /// The `Api` as a client at `host` sees it.
    pub fn api_at(&self, host: &str) -> model::Api {
        self.view.api_at(host)
    }

    /// The most APIs the control plane may create.
    pub fn max_apis(&self) -> usize {
        self.quotas.max_apis
    }

    /// The record a write leaves, and what it wrote; `Ok(None)` for a read.
    pub fn change(
        &self,
        operation: &Operation<'_>,
        body: &[u8],
        record: &ApiRecord,
    ) -> Result<Option<(ApiRecord, Written)>, ControlError> {
        if !operation.is_write() {
            return Ok(None);
        }
        if let Some(id) = operation.api_id() {
            self.api(id)?;
        }
        let owned = FileOwned {
            namespaces: &self.file_namespaces,
            api_keys: &self.file_keys,
        };
        change::apply(
            operation,
            body,
            record,
            &owned,
            self.quotas,
            crate::time::now_unix(),
            || {
                crate::id::api_key().map_err(|e| {
                    tracing::error!(error = %e, "no API key generated");
                    ControlError::Internal
                })
            },
        )
    }

    /// The reply to a write, from the control plane the write built.
    pub fn written(&self, written: &Written) -> Result<Vec<u8>, ControlError> {
        let bytes = match written {
            Written::Namespace(name) => {
                let channel_namespace = self
                    .view
                    .namespaces
                    .iter()
                    .find(|n| &n.name == name)
                    .ok_or(ControlError::Internal)?;
                to_json(&model::GetChannelNamespace { channel_namespace })
            }
            Written::ApiKey(id) => {
                let api_key = self
                    .view
                    .api_keys
                    .iter()
                    .find(|k| &k.id == id)
                    .ok_or(ControlError::Internal)?;
                to_json(&serde_json::json!({ "apiKey": api_key }))
            }
            Written::Deleted => Ok(b"{}".to_vec()),
        };
        bytes.map_err(|e| {
            tracing::error!(error = %e, "control plane reply not encoded");
            ControlError::Internal
        })
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
            // Writes are answered by `written`, after they took effect.
            _ => return Err(ControlError::Internal),
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

/// Shows the stored resources as the control plane made them: their tags, handler
/// configurations and times.
fn with_stored(
    mut view: ApiView,
    record: &ApiRecord,
    file_namespaces: &HashSet<String>,
    file_keys: &HashSet<String>,
) -> ApiView {
    if let Some(api) = &record.api {
        view.reached = match api.tags.get(definition::DOMAIN_TAG) {
            Some(domain) => model::Reached::Domain(domain.to_ascii_lowercase()),
            None => model::Reached::Prefix(format!("/apis/{}", api.api_id)),
        };
        view.api.tags = api.tags.clone();
        view.api.created = api.created;
        for ns in view.namespaces.iter_mut() {
            ns.created = api.created;
            ns.last_modified = api.created;
        }
    }
    for ns in view.namespaces.iter_mut() {
        if file_namespaces.contains(&ns.name) {
            continue;
        }
        if let Some(stored) = record.namespaces.iter().find(|s| s.name == ns.name) {
            ns.tags = stored.tags.clone();
            ns.handler_configs = stored.handler_configs.clone();
            ns.created = stored.created;
            ns.last_modified = stored.last_modified;
        }
    }
    for key in view.api_keys.iter_mut() {
        if file_keys.contains(&key.id) {
            continue;
        }
        if let Some(stored) = record.api_keys.iter().find(|s| s.id == key.id) {
            key.expires = Some(stored.expires);
            key.deletes = Some(stored.deletes);
        }
    }
    view
}

fn to_json(reply: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(reply)
}
