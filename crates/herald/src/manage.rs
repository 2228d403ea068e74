//! `herald apis|namespaces|keys …`: the control plane's operations for people without the AWS
//! CLI. Each command is one signed request (`herald_client::control`), and prints the server's
//! JSON reply; errors are the server's AWS error type and message.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};

use herald_client::Credentials;
use herald_client::control::ControlPlane;

/// Where the control plane is and who calls it (shared by `apply` and these commands).
#[derive(clap::Args)]
pub struct Admin {
    /// The Herald to manage: its base URL, as `--endpoint-url` is for the AWS CLI.
    #[arg(
        long,
        global = true,
        env = "HERALD_ENDPOINT",
        default_value = "http://localhost:8080"
    )]
    pub endpoint: String,
    /// An administrator's access key id (`[[control_plane.access_keys]]`).
    #[arg(long, global = true, env = "AWS_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,
    /// Its secret.
    #[arg(
        long,
        global = true,
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub secret_access_key: Option<String>,
    /// The region requests are signed for (any is accepted).
    #[arg(long, global = true, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
}

impl Admin {
    pub fn client(self) -> anyhow::Result<ControlPlane> {
        let (Some(id), Some(secret)) = (self.access_key_id, self.secret_access_key) else {
            anyhow::bail!(
                "no administrator credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --access-key-id and --secret-access-key) to one of the server's [[control_plane.access_keys]]"
            );
        };
        Ok(ControlPlane::new(
            &self.endpoint,
            Credentials::new(id, secret),
            &self.region,
        )?)
    }
}

#[derive(clap::Subcommand)]
pub enum Apis {
    /// List the server's APIs.
    List,
    /// Create an API; its authorization modes default to API keys only.
    Create {
        name: String,
        /// The modes for connecting, publishing and subscribing (repeatable): API_KEY, AWS_IAM.
        #[arg(long = "auth-mode", default_value = "API_KEY")]
        auth_modes: Vec<String>,
    },
    /// Show one API.
    Get { api_id: String },
    /// Delete an API: its connections are closed.
    Delete { api_id: String },
}

#[derive(clap::Subcommand)]
pub enum Namespaces {
    /// List an API's channel namespaces.
    List { api_id: String },
    /// Create a channel namespace, with handler code from a file.
    Create {
        api_id: String,
        name: String,
        /// A JavaScript module with `onPublish` / `onSubscribe`.
        #[arg(long)]
        code_file: Option<PathBuf>,
    },
    /// Delete a channel namespace.
    Delete { api_id: String, name: String },
}

#[derive(clap::Subcommand)]
pub enum Keys {
    /// List an API's keys.
    List { api_id: String },
    /// Create a key.
    Create {
        api_id: String,
        #[arg(long)]
        description: Option<String>,
        /// Days until it expires (1 to 365; default 7).
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// Delete a key.
    Delete { api_id: String, key: String },
}

/// What to ask, as method, path and body.
type Request = (&'static str, String, Option<Value>);

pub fn apis(admin: Admin, command: Apis) -> anyhow::Result<()> {
    let request: Request = match command {
        Apis::List => ("GET", "/v2/apis".into(), None),
        Apis::Get { api_id } => ("GET", format!("/v2/apis/{api_id}"), None),
        Apis::Create { name, auth_modes } => {
            let modes: Vec<Value> = auth_modes
                .iter()
                .map(|m| json!({ "authType": m }))
                .collect();
            let body = json!({
                "name": name,
                "eventConfig": {
                    "authProviders": modes,
                    "connectionAuthModes": modes,
                    "defaultPublishAuthModes": modes,
                    "defaultSubscribeAuthModes": modes,
                },
            });
            ("POST", "/v2/apis".into(), Some(body))
        }
        Apis::Delete { api_id } => ("DELETE", format!("/v2/apis/{api_id}"), None),
    };
    run(admin, request)
}

pub fn namespaces(admin: Admin, command: Namespaces) -> anyhow::Result<()> {
    let request: Request = match command {
        Namespaces::List { api_id } => {
            ("GET", format!("/v2/apis/{api_id}/channelNamespaces"), None)
        }
        Namespaces::Create {
            api_id,
            name,
            code_file,
        } => {
            let mut body = json!({ "name": name });
            if let Some(file) = code_file {
                let code = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                body["codeHandlers"] = json!(code);
            }
            let path = format!("/v2/apis/{api_id}/channelNamespaces");
            ("POST", path, Some(body))
        }
        Namespaces::Delete { api_id, name } => (
            "DELETE",
            format!("/v2/apis/{api_id}/channelNamespaces/{name}"),
            None,
        ),
    };
    run(admin, request)
}

pub fn keys(admin: Admin, command: Keys) -> anyhow::Result<()> {
    let request: Request = match command {
        Keys::List { api_id } => ("GET", format!("/v1/apis/{api_id}/apikeys"), None),
        Keys::Create {
            api_id,
            description,
            expires_in_days,
        } => {
            let mut body = json!({});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(days) = expires_in_days {
                body["expires"] = json!(herald_server::time::now_unix() + days * 86_400);
            }
            ("POST", format!("/v1/apis/{api_id}/apikeys"), Some(body))
        }
        Keys::Delete { api_id, key } => {
            ("DELETE", format!("/v1/apis/{api_id}/apikeys/{key}"), None)
        }
    };
    run(admin, request)
}

fn run(admin: Admin, (method, path, body): Request) -> anyhow::Result<()> {
    let control = admin.client()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = runtime.block_on(control.call(method, &path, body.as_ref()))?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}
