//! Configuration: one TOML file, `HERALD_…` environment overrides, then command-line flags.
//! Every key is documented in `docs/configuration.md`; keep the two in step.
//!
//! This is the file's shape and its loading. Each section's type lives beside the code that uses
//! it and checks itself there; `settings` builds and checks the whole, once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::admission::AdmissionConfig;
pub use crate::auth::AuthConfig;
pub use crate::auth::api_key::ApiKeyConfig;
pub use crate::auth::rules::RulesConfig;
pub use crate::broker::nats::ClusterConfig;
pub use crate::control::config::{AdminAccessKey, ControlPlaneConfig};
pub use crate::history::config::{HistoryBackend, HistoryConfig, HistorySync};
pub use crate::http::cors::HttpConfig;
pub use crate::namespace::{NamespaceConfig, NamespaceHistory};
pub use crate::stream_token::SseConfig;
pub use crate::transport::tls::TlsConfig;

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
    /// What one client address may hold and how fast it may connect and publish.
    pub admission: AdmissionConfig,
    pub websocket: WebSocketConfig,
    /// Server-Sent Events (`GET /event/stream`).
    pub sse: SseConfig,
    pub http: HttpConfig,
    /// Where channel history is stored, for namespaces that keep it.
    pub history: HistoryConfig,
    /// The admin API (`POST /admin/reload`).
    pub admin: AdminConfig,
    /// Several nodes over NATS (`docs/cluster.md`); empty `nats_url`: a single node.
    pub cluster: ClusterConfig,
    /// The AppSync control plane (`docs/control-plane.md`); off without access keys.
    pub control_plane: ControlPlaneConfig,
    /// Limits of the handler engine (`docs/handlers.md`).
    #[serde(skip_serializing)]
    pub handlers: herald_handler::EngineConfig,
    /// Services that namespace handlers call (`[[data_sources]]`, `docs/handlers.md`). Not
    /// serialized: they may hold credentials.
    #[serde(skip_serializing)]
    pub data_sources: Vec<herald_handler::DataSourceConfig>,
    /// How long a graceful shutdown waits for connections to close, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// An API created through the control plane starts with no namespace; a file needs one.
    #[serde(skip)]
    pub may_have_no_namespaces: bool,
}

/// `[admin]`: keys for the admin API (`POST /admin/reload`); without any, the API is off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Sent as `x-admin-key`; each at least 16 characters (`auth::admin_key::MIN_KEY_CHARS`).
    pub keys: Vec<String>,
}

/// Produces a fresh configuration for a reload (the file and flags the server started from).
pub type ReloadSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("herald-data"),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            namespaces: Vec::new(),
            limits: Limits::default(),
            admission: AdmissionConfig::default(),
            websocket: WebSocketConfig::default(),
            sse: SseConfig::default(),
            http: HttpConfig::default(),
            history: HistoryConfig::default(),
            handlers: herald_handler::EngineConfig::default(),
            data_sources: Vec::new(),
            admin: AdminConfig::default(),
            cluster: ClusterConfig::default(),
            control_plane: ControlPlaneConfig::default(),
            shutdown_grace_ms: 10_000,
            may_have_no_namespaces: false,
        }
    }
}

/// Limits, with AppSync's defaults (spec §7) where AppSync has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A request's line and headers must arrive within this long (and an idle keep-alive
    /// connection's next request must begin), or the socket is closed.
    pub header_timeout_ms: u64,
    /// An HTTP request body must arrive whole within this long after its headers, or the request
    /// gets 408 and the connection is closed.
    pub request_body_timeout_ms: u64,
    /// A socket write (HTTP response or WebSocket frames) that makes no progress for this long
    /// ends the connection and frees what it held: the peer stopped reading.
    pub write_timeout_ms: u64,
    /// Kernel send buffer of every accepted socket (`SO_SNDBUF`; Linux doubles it for its own
    /// bookkeeping). Without a cap the kernel grows it to `net.ipv4.tcp_wmem`'s maximum (4 MiB)
    /// for a peer that never reads, and every byte of that is copied before the write deadline
    /// can start. The cap bounds one connection's throughput to about twice this per round trip
    /// (1.3 MB/s at 100 ms). 0 leaves the kernel's autotuning on.
    pub socket_send_buffer_bytes: usize,
    /// How long a publish's idempotency key is remembered (a retry within it is not published
    /// again).
    pub idempotency_window_secs: u64,
    /// Most idempotency keys remembered; past it the oldest are forgotten first.
    pub max_idempotency_keys: usize,
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
            header_timeout_ms: 10_000,
            request_body_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            socket_send_buffer_bytes: 64 * 1024,
            idempotency_window_secs: 120,
            max_idempotency_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A publish whose channel has at most this many local subscriptions (per exact channel or
    /// wildcard) writes each event straight into each subscriber's socket from the publishing
    /// task, when that socket has nothing queued: no wake-up of the subscriber's task, no hand-off
    /// between threads. Larger fan-outs queue, so each connection coalesces many events into one
    /// write. Plain TCP only (TLS connections always queue). 0 = always queue.
    pub direct_write_max_fanout: usize,
    /// Send a fan-out's direct writes together, in one io_uring submission, instead of one
    /// `writev` each. Falls back to `writev` where io_uring is unavailable.
    pub direct_write_io_uring: bool,
    /// A WebSocket message begun must be complete within this long, or the connection is closed
    /// (1008): a half-sent message holds a growing buffer.
    pub message_timeout_ms: u64,
    /// A connection that holds no subscription and sends nothing for this long is closed (1000):
    /// idle sockets hold memory and a place under `max_connections`.
    pub idle_timeout_ms: u64,
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
            direct_write_max_fanout: 64,
            direct_write_io_uring: true,
            message_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
        }
    }
}

impl Limits {
    /// Every limit must be positive, and an event must fit in a request.
    pub fn check(&self, problems: &mut Vec<String>) {
        for (key, value) in [
            ("limits.max_connections", self.max_connections),
            (
                "limits.max_subscriptions_per_connection",
                self.max_subscriptions_per_connection,
            ),
            (
                "limits.max_publishes_per_second",
                self.max_publishes_per_second as usize,
            ),
            ("limits.max_events_per_publish", self.max_events_per_publish),
            ("limits.max_event_bytes", self.max_event_bytes),
            ("limits.max_request_bytes", self.max_request_bytes),
            ("limits.max_queued_bytes", self.max_queued_bytes),
            ("limits.max_queued_messages", self.max_queued_messages),
        ] {
            positive(problems, key, value as u64);
        }
        positive(problems, "limits.header_timeout_ms", self.header_timeout_ms);
        positive(
            problems,
            "limits.request_body_timeout_ms",
            self.request_body_timeout_ms,
        );
        positive(problems, "limits.write_timeout_ms", self.write_timeout_ms);
        positive(
            problems,
            "limits.max_idempotency_keys",
            self.max_idempotency_keys as u64,
        );
        if self.max_event_bytes > self.max_request_bytes {
            problems.push("limits.max_event_bytes: cannot exceed limits.max_request_bytes".into());
        }
    }

    /// The per-event limits the protocol decoder applies.
    pub fn events(&self) -> herald_protocol::EventLimits {
        herald_protocol::EventLimits {
            max_event_bytes: self.max_event_bytes,
            max_events: self.max_events_per_publish,
        }
    }
}

impl WebSocketConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        positive(
            problems,
            "websocket.keepalive_interval_ms",
            self.keepalive_interval_ms,
        );
        positive(
            problems,
            "websocket.max_lifetime_secs",
            self.max_lifetime_secs,
        );
    }
}

/// A problem unless `value` is greater than 0.
pub fn positive(problems: &mut Vec<String>, key: &str, value: u64) {
    if value == 0 {
        problems.push(format!("{key}: must be greater than 0"));
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
    "admission",
    "websocket",
    "sse",
    "http",
    "history",
    "handlers",
    "admin",
    "cluster",
    "control_plane",
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
    /// `HERALD_LIMITS__MAX_CONNECTIONS=10`). [`crate::Settings::build`] checks the result.
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
        // Deserializing stops at the first syntax, type or unknown-key error (serde reads the
        // file in one pass), so those come one at a time; `Settings::build` then reports every
        // remaining problem at once.
        let mut config: Config = fig.extract().map_err(|e| ConfigError {
            problems: e.into_iter().map(|e| describe(&e)).collect(),
        })?;
        // Handler files are relative to the config file, not to the working directory; made
        // absolute so that every message names the file that was really looked for.
        if let Some(dir) = file.and_then(Path::parent) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
            let dir = dir.as_path();
            for ns in &mut config.namespaces {
                if let Some(h) = &mut ns.handlers {
                    h.resolve_paths(dir);
                }
            }
        }
        Ok(config)
    }

    /// Whether any operation accepts `API_KEY`: the connection's modes, or a namespace's
    /// publish or subscribe modes (its own, else the defaults). Without it an API key is useless,
    /// so `serve` generates none.
    pub fn accepts_api_keys(&self) -> bool {
        let api_key =
            |modes: &[herald_auth::AuthMode]| modes.contains(&herald_auth::AuthMode::ApiKey);
        api_key(&self.auth.connection_auth_modes)
            || self.namespaces.iter().any(|ns| {
                api_key(
                    ns.publish_auth_modes
                        .as_deref()
                        .unwrap_or(&self.auth.default_publish_auth_modes),
                ) || api_key(
                    ns.subscribe_auth_modes
                        .as_deref()
                        .unwrap_or(&self.auth.default_subscribe_auth_modes),
                )
            })
    }

    /// What is valid but probably not meant, each naming its key: API keys that have already
    /// expired (every request with them is refused). `now` is Unix seconds.
    pub fn warnings(&self, now: i64) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            let Some(expires) = &key.expires else {
                continue;
            };
            if crate::time::parse_rfc3339(expires).is_some_and(|t| now >= t) {
                let name = key
                    .name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                warnings.push(format!(
                    "auth.api_keys[{i}].expires: the key{name} expired at {expires}; every request with it is refused"
                ));
            }
        }
        warnings
    }

    /// A namespace's configuration, by name.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceConfig> {
        self.namespaces.iter().find(|n| n.name == name)
    }
}

/// One loading error as `key: what is wrong (where)`, without figment's profile prefix
/// (`default.`, which reads like the namespace `default`) and without its nested backticks.
fn describe(e: &figment::Error) -> String {
    use figment::error::{Actual, Kind};
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let key = if e.path.is_empty() {
        None
    } else if from_env {
        // The variable to look at, as it was spelled: HERALD_LIMITS__MAX_CONNECTIONS.
        Some(format!(
            "HERALD_{}",
            e.path
                .iter()
                .map(|p| p.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join("__")
        ))
    } else {
        // As the other problems name keys: `namespaces[0].name`, not figment's `namespaces.0.name`.
        let mut key = String::new();
        for part in &e.path {
            if part.bytes().all(|b| b.is_ascii_digit()) {
                key.push_str(&format!("[{part}]"));
            } else {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(part);
            }
        }
        Some(key)
    };
    // serde names Rust types; a configuration file has numbers.
    let expected_kind = |expected: &str| match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        other => other.replace('`', ""),
    };
    let actual = |a: &Actual| match a {
        Actual::Str(s) => format!("the string {s:?}"),
        Actual::Unsigned(n) => format!("the number {n}"),
        Actual::Signed(n) => format!("the number {n}"),
        Actual::Float(n) => format!("the number {n}"),
        Actual::Bool(b) => format!("{b}"),
        Actual::Seq => "an array".to_owned(),
        Actual::Map => "a table".to_owned(),
        other => other.to_string().replace('`', ""),
    };
    let what = match &e.kind {
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key {field:?}; the keys here are: {}",
                expected.join(", ")
            )
        }
        Kind::UnknownVariant(value, expected) => {
            format!(
                "unknown value {value:?}; expected one of: {}",
                expected.join(", ")
            )
        }
        Kind::InvalidType(found, expected) => {
            format!(
                "expected {}, found {}",
                expected_kind(expected),
                actual(found)
            )
        }
        Kind::InvalidValue(found, expected) => {
            format!(
                "expected {}, found {}",
                expected_kind(expected),
                actual(found)
            )
        }
        Kind::MissingField(field) => format!("missing key {field:?}"),
        Kind::DuplicateField(field) => format!("key {field:?} is given twice"),
        // TOML syntax errors arrive as messages: keep their line and caret, indented under
        // the problem's bullet.
        Kind::Message(message) => message.trim_end().replace('\n', "\n    "),
        other => other.to_string().replace('`', ""),
    };
    let file = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(path)) => Some(path.display().to_string()),
        _ => None,
    };
    match (key, file) {
        // The key path already ends with the unknown key's name.
        (Some(key), file) => {
            let what = match &e.kind {
                Kind::UnknownField(_, expected) => {
                    format!("unknown key; the keys here are: {}", expected.join(", "))
                }
                _ => what,
            };
            match file {
                Some(file) => format!("{key}: {what} (in {file})"),
                None if from_env => format!("{key}: {what} (from the environment)"),
                None => format!("{key}: {what}"),
            }
        }
        // A syntax error: the file first, then the parser's lines.
        (None, Some(file)) => format!("{file}: {what}"),
        (None, None) => what,
    }
}
