//! `[control_plane]`: the API's id and name as the control plane shows them, and who may call
//! it. Apart from the rest of the module so that the configuration file's type can hold it
//! without importing what reads the whole configuration.

use serde::{Deserialize, Serialize};

use herald_auth::sigv4::{AccessKeyConfig, SigV4Config, SigV4Verifier};

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
    /// At most this many channel namespaces created through the control plane.
    pub max_namespaces: usize,
    /// At most this many unexpired API keys created through the control plane (AppSync: 50).
    pub max_api_keys: usize,
    /// At most this many APIs created through the control plane (each has its own state and
    /// keep-alive timer).
    pub max_apis: usize,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            api_id: "herald".to_owned(),
            name: None,
            region: "us-east-1".to_owned(),
            account_id: "000000000000".to_owned(),
            access_keys: Vec::new(),
            max_namespaces: 100,
            max_api_keys: 50,
            max_apis: 20,
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

    /// The verifier of the administrators' signatures (`appsync`, any region).
    pub fn verifier(&self) -> Result<SigV4Verifier, herald_auth::ConfigError> {
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
