//! Configuration: one TOML file, `HERALD_…` environment overrides, then command-line flags.
//! Every key is documented in `docs/configuration.md`; keep the two in step.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::AuthMode;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the single port serving HTTP publish, the WebSocket and `/healthz`.
    pub listen: SocketAddr,
    /// Where Herald keeps its files (the development certificate, and history when enabled).
    pub data_dir: PathBuf,
    /// TLS from a certificate and key, or a generated development certificate.
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    /// Channel namespaces. Channels exist only under a configured namespace.
    pub namespaces: Vec<NamespaceConfig>,
    pub limits: Limits,
    pub websocket: WebSocketConfig,
    pub http: HttpConfig,
    /// Where channel history is stored, for namespaces that keep it.
    pub history: HistoryConfig,
    /// The admin API (`POST /admin/reload`).
    pub admin: AdminConfig,
    /// Several nodes over NATS (`docs/cluster.md`); empty `nats_url`: a single node.
    pub cluster: crate::cluster::ClusterConfig,
    /// Limits of the handler engine (`docs/handlers.md`).
    #[serde(skip_serializing)]
    pub handlers: herald_handler::EngineConfig,
    /// How long a graceful shutdown waits for connections to close, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("herald-data"),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            namespaces: Vec::new(),
            limits: Limits::default(),
            websocket: WebSocketConfig::default(),
            http: HttpConfig::default(),
            history: HistoryConfig::default(),
            handlers: herald_handler::EngineConfig::default(),
            admin: AdminConfig::default(),
            cluster: crate::cluster::ClusterConfig::default(),
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Keys for the admin API; without any, the admin API is off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Sent as `x-admin-key`.
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Generate a self-signed certificate for localhost and 127.0.0.1 (written under `data_dir`).
    pub dev: bool,
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The key clients send in `x-api-key`.
    pub key: String,
    /// A name for logs and identity (never the key itself).
    #[serde(default)]
    pub name: Option<String>,
    /// When the key stops working: RFC 3339, e.g. `2027-01-31T00:00:00Z`.
    #[serde(default)]
    pub expires: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    pub name: String,
    /// Overrides `auth.default_publish_auth_modes` for this namespace.
    #[serde(default)]
    pub publish_auth_modes: Option<Vec<AuthMode>>,
    /// Overrides `auth.default_subscribe_auth_modes` for this namespace.
    #[serde(default)]
    pub subscribe_auth_modes: Option<Vec<AuthMode>>,
    /// Keep this namespace's events, for replay after reconnect and `GET /event/history`.
    #[serde(default)]
    pub history: Option<NamespaceHistory>,
    /// `onPublish` / `onSubscribe` in JavaScript or over HTTP (`docs/handlers.md`).
    #[serde(default, skip_serializing)]
    pub handlers: Option<herald_handler::HandlerConfig>,
    /// Channel access rules bound to the caller's identity (`docs/access-rules.md`).
    #[serde(default)]
    pub rules: Option<crate::rules::RulesConfig>,
}

/// History retention of one namespace; both limits apply when both are set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceHistory {
    /// Events older than this are removed.
    pub max_age_secs: Option<u64>,
    /// At most this many newest events are kept per channel.
    pub max_count: Option<u64>,
}

/// Which store keeps history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryBackend {
    /// Durable, embedded (fjall) under `data_dir/history`.
    Fjall,
    /// In process memory: lost on restart (clients are told: the epoch changes).
    Memory,
}

/// When an acknowledged event is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistorySync {
    /// fsync before `successful` is sent (group commit shares one fsync among concurrent
    /// publishes). Survives power loss.
    Always,
    /// fsync every `sync_interval_ms`; a process crash loses nothing, a power loss up to the interval.
    Interval,
    /// Leave it to the operating system.
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    pub backend: HistoryBackend,
    pub sync: HistorySync,
    pub sync_interval_ms: u64,
    /// Most events replayed to one resuming subscription; past it the client is told
    /// `too_many` and can page through `GET /event/history`.
    pub max_replay_events: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            backend: HistoryBackend::Fjall,
            sync: HistorySync::Always,
            sync_interval_ms: 100,
            max_replay_events: 1000,
        }
    }
}

/// Limits, with AppSync's defaults (spec §7) where AppSync has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most open WebSocket connections; the next one gets `connection_error` LimitExceededError.
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    /// Publish messages per second per WebSocket connection (a token bucket with this burst).
    pub max_publishes_per_second: u32,
    pub max_events_per_publish: usize,
    /// Largest event, bytes of its JSON text (240 KB).
    pub max_event_bytes: usize,
    /// Largest HTTP publish body or WebSocket message (1.2 MB).
    pub max_request_bytes: usize,
    /// Outbound queue of one connection, in bytes; a subscriber that falls this far behind is
    /// disconnected (close code 4008, "slow consumer") so the others keep receiving.
    pub max_queued_bytes: usize,
    /// Outbound queue of one connection, in messages; the same rule applies.
    pub max_queued_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            max_subscriptions_per_connection: 200,
            max_publishes_per_second: 25,
            max_events_per_publish: 5,
            max_event_bytes: 240 * 1024,
            max_request_bytes: 1_258_291,
            max_queued_bytes: 4 * 1024 * 1024,
            max_queued_messages: 16_384,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Interval of `ka` messages.
    pub keepalive_interval_ms: u64,
    /// Sent in `connection_ack`: clients drop a socket silent for this long.
    pub connection_timeout_ms: u64,
    /// Connections are closed after this long (AppSync: 24 h).
    pub max_lifetime_secs: u64,
    /// Time allowed for the TLS handshake and the HTTP upgrade request.
    pub handshake_timeout_ms: u64,
    /// Initial read buffer per connection, bytes; it grows for large messages, then shrinks.
    pub read_buffer_bytes: usize,
    /// Wait this long after the first queued frame before writing, so more frames share one
    /// write (fewer syscalls under heavy fan-out, at the cost of that much latency). 0 = write
    /// at once.
    pub write_delay_us: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            keepalive_interval_ms: 60_000,
            connection_timeout_ms: 300_000,
            max_lifetime_secs: 24 * 3600,
            handshake_timeout_ms: 10_000,
            read_buffer_bytes: 1024,
            write_delay_us: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Origins allowed to publish from a browser; `*` allows any.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            cors_allowed_origins: vec!["*".into()],
        }
    }
}

/// The top-level keys of [`Config`], for environment overrides.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "tls",
    "auth",
    "namespaces",
    "limits",
    "websocket",
    "http",
    "history",
    "handlers",
    "admin",
    "cluster",
    "shutdown_grace_ms",
];

/// A configuration that cannot be used, with every reason found.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// Reads the file (if any) and `HERALD_…` variables (`__` separates levels:
    /// `HERALD_LIMITS__MAX_CONNECTIONS=10`), then validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError {
                    problems: vec![format!("config file {} does not exist", file.display())],
                });
            }
            fig = fig.merge(Toml::file(file));
        }
        // Only variables naming a config section are read, so that other HERALD_* variables
        // (HERALD_LOG_FORMAT for the CLI, test harness settings) never break loading.
        fig = fig.merge(
            Env::prefixed("HERALD_")
                .filter(|key| {
                    let top = key.as_str().split("__").next().unwrap_or_default();
                    TOP_LEVEL_KEYS.iter().any(|k| top.eq_ignore_ascii_case(k))
                })
                .split("__"),
        );
        let mut config: Config = fig.extract().map_err(|e| ConfigError {
            problems: e.into_iter().map(|e| e.to_string()).collect(),
        })?;
        // Handler files are relative to the config file, not to the working directory.
        if let Some(dir) = file.and_then(Path::parent) {
            for ns in &mut config.namespaces {
                if let Some(h) = &mut ns.handlers {
                    h.resolve_paths(dir);
                }
            }
        }
        Ok(config)
    }

    /// Every problem, each naming the key that causes it. Empty when the config is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut names = HashSet::new();
        if self.namespaces.is_empty() {
            p.push("namespaces: at least one namespace is required, e.g. [[namespaces]] name = \"default\"".into());
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            if herald_protocol::Channel::parse(&ns.name).map(|c| c.depth()) != Ok(1) {
                p.push(format!(
                    "namespaces[{i}].name: {:?} is not a valid namespace name (1-50 characters of A-Z, a-z, 0-9 and '-', not starting or ending with '-')",
                    ns.name
                ));
            }
            if let Some(rules) = &ns.rules
                && let Err(errors) =
                    crate::rules::Rules::parse(rules, &ns.name, &format!("namespaces[{i}].rules"))
            {
                p.extend(errors);
            }
            if !names.insert(ns.name.as_str()) {
                p.push(format!(
                    "namespaces[{i}].name: namespace {:?} is defined twice",
                    ns.name
                ));
            }
            for (key, modes) in [
                ("publish_auth_modes", &ns.publish_auth_modes),
                ("subscribe_auth_modes", &ns.subscribe_auth_modes),
            ] {
                if let Some(modes) = modes {
                    check_modes(&mut p, &format!("namespaces[{i}].{key}"), modes);
                }
            }
        }
        if let Err(e) = herald_auth::Providers::new(&self.auth.providers) {
            p.push(format!("auth.providers: {e}"));
        }
        let provided = |mode: AuthMode| {
            mode == AuthMode::ApiKey || self.auth.providers.iter().any(|p| p.mode() == mode)
        };
        for (i, ns) in self.namespaces.iter().enumerate() {
            for (key, modes) in [
                ("publish_auth_modes", &ns.publish_auth_modes),
                ("subscribe_auth_modes", &ns.subscribe_auth_modes),
            ] {
                for mode in modes.iter().flatten() {
                    if !provided(*mode) {
                        p.push(format!(
                            "namespaces[{i}].{key}: {} has no [[auth.providers]] entry",
                            mode.as_str()
                        ));
                    }
                }
            }
        }
        for (key, modes) in [
            (
                "auth.connection_auth_modes",
                &self.auth.connection_auth_modes,
            ),
            (
                "auth.default_publish_auth_modes",
                &self.auth.default_publish_auth_modes,
            ),
            (
                "auth.default_subscribe_auth_modes",
                &self.auth.default_subscribe_auth_modes,
            ),
        ] {
            for mode in modes {
                if !provided(*mode) {
                    p.push(format!(
                        "{key}: {} has no [[auth.providers]] entry",
                        mode.as_str()
                    ));
                }
            }
        }
        check_modes(
            &mut p,
            "auth.connection_auth_modes",
            &self.auth.connection_auth_modes,
        );
        check_modes(
            &mut p,
            "auth.default_publish_auth_modes",
            &self.auth.default_publish_auth_modes,
        );
        check_modes(
            &mut p,
            "auth.default_subscribe_auth_modes",
            &self.auth.default_subscribe_auth_modes,
        );
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            if key.key.len() < 8 {
                p.push(format!(
                    "auth.api_keys[{i}].key: an API key needs at least 8 characters"
                ));
            }
            if let Some(expires) = &key.expires
                && crate::time::parse_rfc3339(expires).is_none()
            {
                p.push(format!(
                    "auth.api_keys[{i}].expires: {expires:?} is not an RFC 3339 time such as 2027-01-31T00:00:00Z"
                ));
            }
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) | (None, Some(_)) => {
                p.push("tls: give both tls.cert and tls.key, or neither".into())
            }
            (Some(c), Some(k)) => {
                for (key, path) in [("tls.cert", c), ("tls.key", k)] {
                    if !path.exists() {
                        p.push(format!("{key}: file {} does not exist", path.display()));
                    }
                }
                if self.tls.dev {
                    p.push("tls.dev: use either a generated development certificate or tls.cert/tls.key, not both".into());
                }
            }
            (None, None) => {}
        }
        if self.cluster.enabled() {
            let c = &self.cluster;
            if c.user.is_some() != c.password.is_some() {
                p.push("cluster.user / cluster.password: set both, or neither".into());
            }
            if c.tls_cert_file.is_some() != c.tls_key_file.is_some() {
                p.push("cluster.tls_cert_file / cluster.tls_key_file: set both, or neither".into());
            }
            for (key, file) in [
                ("cluster.credentials_file", &c.credentials_file),
                ("cluster.tls_ca_file", &c.tls_ca_file),
                ("cluster.tls_cert_file", &c.tls_cert_file),
                ("cluster.tls_key_file", &c.tls_key_file),
            ] {
                if let Some(f) = file.as_ref().filter(|f| !f.is_file()) {
                    p.push(format!("{key}: {} is not a readable file", f.display()));
                }
            }
            if c.history_replicas > 5 {
                p.push("cluster.history_replicas: JetStream allows 1 to 5 replicas".into());
            }
            if c.subject_prefix.contains(['*', '>', ' '])
                || c.subject_prefix.starts_with('.')
                || c.subject_prefix.ends_with('.')
            {
                p.push(format!("cluster.subject_prefix: {:?} is not a NATS subject prefix (tokens separated by '.', no wildcards or spaces)", c.subject_prefix));
            }
        }
        let l = &self.limits;
        for (key, value) in [
            ("limits.max_connections", l.max_connections),
            (
                "limits.max_subscriptions_per_connection",
                l.max_subscriptions_per_connection,
            ),
            (
                "limits.max_publishes_per_second",
                l.max_publishes_per_second as usize,
            ),
            ("limits.max_events_per_publish", l.max_events_per_publish),
            ("limits.max_event_bytes", l.max_event_bytes),
            ("limits.max_request_bytes", l.max_request_bytes),
            ("limits.max_queued_bytes", l.max_queued_bytes),
            ("limits.max_queued_messages", l.max_queued_messages),
            ("history.max_replay_events", self.history.max_replay_events),
            (
                "websocket.keepalive_interval_ms",
                self.websocket.keepalive_interval_ms as usize,
            ),
            (
                "websocket.max_lifetime_secs",
                self.websocket.max_lifetime_secs as usize,
            ),
        ] {
            if value == 0 {
                p.push(format!("{key}: must be greater than 0"));
            }
        }
        if l.max_event_bytes > l.max_request_bytes {
            p.push("limits.max_event_bytes: cannot exceed limits.max_request_bytes".into());
        }
        p
    }

    /// Fails with every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Loads every namespace's handlers; `None` when no namespace has any. A syntax error names
    /// the namespace and the line.
    pub fn load_handlers(
        &self,
    ) -> Result<Option<herald_handler::Handlers>, herald_handler::LoadError> {
        let with: Vec<(String, herald_handler::HandlerConfig)> = self
            .namespaces
            .iter()
            .filter_map(|n| n.handlers.clone().map(|h| (n.name.clone(), h)))
            .collect();
        if with.is_empty() {
            return Ok(None);
        }
        herald_handler::Handlers::new(&self.handlers, with)
            .map(|h| Some(h.with_max_event_bytes(self.limits.max_event_bytes)))
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceConfig> {
        self.namespaces.iter().find(|n| n.name == name)
    }
}

fn check_modes(problems: &mut Vec<String>, key: &str, modes: &[AuthMode]) {
    if modes.is_empty() {
        problems.push(format!("{key}: list at least one authorization mode"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_problem_with_its_key() {
        let mut c = Config {
            namespaces: vec![
                NamespaceConfig {
                    name: "ok".into(),
                    publish_auth_modes: Some(vec![]),
                    subscribe_auth_modes: None,
                    history: None,
                    handlers: None,
                    rules: None,
                },
                NamespaceConfig {
                    name: "ok".into(),
                    publish_auth_modes: None,
                    subscribe_auth_modes: None,
                    history: None,
                    handlers: None,
                    rules: None,
                },
                NamespaceConfig {
                    name: "bad/name".into(),
                    publish_auth_modes: None,
                    subscribe_auth_modes: None,
                    history: None,
                    handlers: None,
                    rules: None,
                },
            ],
            ..Config::default()
        };
        c.limits.max_connections = 0;
        c.auth.api_keys.push(ApiKeyConfig {
            key: "da2-0123456789".into(),
            name: None,
            expires: Some("tomorrow".into()),
        });
        let p = c.problems().join("\n");
        for needle in [
            "namespaces[0].publish_auth_modes",
            "namespaces[1].name",
            "namespaces[2].name",
            "limits.max_connections",
            "auth.api_keys[0].expires",
        ] {
            assert!(p.contains(needle), "{needle} missing from:\n{p}");
        }
    }
}
