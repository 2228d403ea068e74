//! What the control plane created, kept apart from the configuration file: the channel
//! namespaces and API keys made with `CreateChannelNamespace` and `CreateApiKey`, one JSON
//! document per API under `data_dir/control-plane/`, replaced whole and atomically on each write
//! (written beside, flushed, renamed over, the directory flushed), so a crash leaves the old
//! document or the new one, never half of either.
//!
//! The file stays the owner of what it declares: a stored namespace or key whose name the file
//! also declares is left out ([`ApiRecord::merge_into`]) and the file's one is served.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use herald_auth::AuthMode;
use herald_handler::{HandlerConfig, HttpHandlerConfig, InvokeType};

use super::model::{HandlerBehavior, HandlerConfigs, HandlerShape};
use crate::auth::api_key::ApiKeyConfig;
use crate::config::Config;
use crate::namespace::NamespaceConfig;

/// One API's control-plane resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiRecord {
    /// Set for an API `CreateApi` made; absent for the file's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<super::definition::StoredApi>,
    #[serde(default)]
    pub namespaces: Vec<StoredNamespace>,
    #[serde(default)]
    pub api_keys: Vec<StoredKey>,
}

/// A namespace as `CreateChannelNamespace` / `UpdateChannelNamespace` described it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredNamespace {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_auth_modes: Option<Vec<AuthMode>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_auth_modes: Option<Vec<AuthMode>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_handlers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_configs: Option<HandlerConfigs>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub created: i64,
    pub last_modified: i64,
}

/// A key `CreateApiKey` made: `id` is the key clients send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Epoch seconds, on the hour.
    pub expires: i64,
    /// Epoch seconds: when the expired key leaves the list.
    pub deletes: i64,
}

impl StoredNamespace {
    /// The namespace the server runs: the file's shape of the same settings.
    fn to_config(&self) -> NamespaceConfig {
        let mut ns = NamespaceConfig::named(&self.name);
        ns.publish_auth_modes = self.publish_auth_modes.clone();
        ns.subscribe_auth_modes = self.subscribe_auth_modes.clone();
        let configs = self.handler_configs.as_ref();
        let publish = configs.and_then(|c| c.on_publish.as_ref());
        let subscribe = configs.and_then(|c| c.on_subscribe.as_ref());
        if self.code_handlers.is_some() || publish.is_some() || subscribe.is_some() {
            ns.handlers = Some(HandlerConfig {
                code: self.code_handlers.clone(),
                on_publish: publish.and_then(direct),
                on_subscribe: subscribe.and_then(direct),
                publish_data_source: publish.and_then(code_source),
                subscribe_data_source: subscribe.and_then(code_source),
                ..HandlerConfig::default()
            });
        }
        ns
    }
}

/// A `CODE` handler's data source, which its `{request, response}` exports call.
fn code_source(h: &HandlerShape) -> Option<String> {
    (h.behavior == HandlerBehavior::Code).then(|| h.integration.data_source_name.clone())
}

/// A `DIRECT` handler: the Lambda data source invoked with the context.
fn direct(h: &HandlerShape) -> Option<HttpHandlerConfig> {
    if h.behavior != HandlerBehavior::Direct {
        return None;
    }
    let invoke_type = match h
        .integration
        .lambda_config
        .as_ref()
        .and_then(|l| l.invoke_type.as_deref())
    {
        Some("EVENT") => InvokeType::Event,
        _ => InvokeType::RequestResponse,
    };
    Some(HttpHandlerConfig::direct_lambda(
        &h.integration.data_source_name,
        invoke_type,
    ))
}

impl ApiRecord {
    /// Adds the stored namespaces and keys to `config`, leaving out those the file declares
    /// itself (logged: the file's one is served).
    pub fn merge_into(&self, config: &mut Config) {
        for ns in &self.namespaces {
            if config.namespaces.iter().any(|n| n.name == ns.name) {
                tracing::warn!(namespace = %ns.name, "a namespace created through the control plane is also in the configuration file; the file's is served");
                continue;
            }
            config.namespaces.push(ns.to_config());
        }
        for key in &self.api_keys {
            if config.auth.api_keys.iter().any(|k| k.key == key.id) {
                continue;
            }
            config.auth.api_keys.push(ApiKeyConfig {
                key: key.id.clone(),
                name: key.description.clone(),
                expires: Some(crate::time::format_rfc3339(key.expires)),
            });
        }
    }

    /// Drops keys past their `deletes` time, as AppSync does.
    pub fn without_deleted_keys(mut self, now: i64) -> ApiRecord {
        self.api_keys.retain(|k| k.deletes > now);
        self
    }
}

/// The stored document could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {path}: {error}; fix or remove it to start")]
    Read { path: PathBuf, error: String },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Where an API's document lives: `data_dir/control-plane/{api_id}.json`.
pub fn path_of(data_dir: &Path, api_id: &str) -> PathBuf {
    data_dir
        .join("control-plane")
        .join(format!("{api_id}.json"))
}

/// The stored resources of an API; none when it has no document yet.
pub fn load(data_dir: &Path, api_id: &str) -> Result<ApiRecord, StoreError> {
    let path = path_of(data_dir, api_id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ApiRecord::default()),
        Err(e) => {
            return Err(StoreError::Read {
                path,
                error: e.to_string(),
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Read {
        path,
        error: e.to_string(),
    })
}

/// The records of every API `CreateApi` made (those whose document has `api`), by file name.
pub fn load_created(data_dir: &Path) -> Result<Vec<ApiRecord>, StoreError> {
    let dir = data_dir.join("control-plane");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(StoreError::Read {
                path: dir,
                error: e.to_string(),
            });
        }
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    ids.sort();
    let mut records = Vec::new();
    for id in ids {
        let record = load(data_dir, &id)?;
        if record.api.as_ref().is_some_and(|a| a.api_id == id) {
            records.push(record);
        }
    }
    Ok(records)
}

/// Removes a deleted API's document.
pub fn remove(data_dir: &Path, api_id: &str) -> Result<(), StoreError> {
    let path = path_of(data_dir, api_id);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StoreError::Write { path, error }),
    }
}

/// Replaces an API's document atomically and durably.
pub fn save(data_dir: &Path, api_id: &str, record: &ApiRecord) -> Result<(), StoreError> {
    let path = path_of(data_dir, api_id);
    let fail = |error| StoreError::Write {
        path: path.clone(),
        error,
    };
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).map_err(fail)?;
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| fail(e.into()))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(&bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)?;
    // The rename is durable only once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::Integration;

    fn namespace(name: &str) -> StoredNamespace {
        StoredNamespace {
            name: name.into(),
            subscribe_auth_modes: None,
            publish_auth_modes: Some(vec![AuthMode::ApiKey]),
            code_handlers: Some("export function onPublish(ctx) { return ctx.events }".into()),
            handler_configs: Some(HandlerConfigs {
                on_publish: None,
                on_subscribe: Some(HandlerShape {
                    behavior: HandlerBehavior::Direct,
                    integration: Integration {
                        data_source_name: "fn".into(),
                        lambda_config: None,
                    },
                }),
            }),
            tags: BTreeMap::new(),
            created: 1,
            last_modified: 1,
        }
    }

    #[test]
    fn saved_documents_load_back_and_merge_under_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "a").unwrap(), ApiRecord::default());
        let record = ApiRecord {
            api: None,
            namespaces: vec![namespace("chat"), namespace("default")],
            api_keys: vec![StoredKey {
                id: "da2-x".into(),
                description: Some("ci".into()),
                expires: 3600,
                deletes: 3600 + 60 * 86_400,
            }],
        };
        save(dir.path(), "a", &record).unwrap();
        assert_eq!(load(dir.path(), "a").unwrap(), record);

        let mut config = Config::default();
        config.namespaces.push(NamespaceConfig::named("default"));
        record.merge_into(&mut config);
        let names: Vec<_> = config.namespaces.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["default", "chat"]);
        let chat = config.namespaces[1].handlers.as_ref().unwrap();
        assert_eq!(
            chat.on_subscribe.as_ref().unwrap().lambda.as_deref(),
            Some("fn")
        );
        assert!(chat.code.is_some() && chat.on_publish.is_none());
        assert_eq!(
            config.auth.api_keys[0].expires.as_deref(),
            Some("1970-01-01T01:00:00Z")
        );
    }

    #[test]
    fn a_damaged_document_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(dir.path(), "a");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        let e = load(dir.path(), "a").unwrap_err().to_string();
        assert!(e.contains("a.json"), "{e}");
    }
}
