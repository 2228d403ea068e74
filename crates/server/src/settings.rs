//! A configuration checked and built, once: [`Settings::build`] turns a [`Config`] into what the
//! server runs on, or reports every problem at once, each naming its key.
//!
//! The result has two parts. [`Fixed`] is what only a restart can change (the listener, TLS,
//! limits, history stores, the cluster); [`Live`] is what a reload swaps whole (namespaces and
//! their modes, keys and providers, rules, handlers, CORS, admin keys). Every reloadable setting
//! is read through the live part only.

use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::Access;
use crate::config::{
    AdmissionConfig, ClusterConfig, Config, ConfigError, HistoryConfig, Limits, NamespaceHistory,
    WebSocketConfig,
};
use crate::control::store::ApiRecord;
use crate::http::cors::Cors;
use crate::transport::tls::TlsConfig;

/// What the server runs on.
pub struct Settings {
    pub fixed: Fixed,
    pub live: Live,
}

/// What a reload cannot change.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    pub listen: std::net::SocketAddr,
    pub data_dir: PathBuf,
    pub tls: TlsConfig,
    pub limits: Limits,
    pub admission: AdmissionConfig,
    pub websocket: WebSocketConfig,
    pub sse: crate::config::SseConfig,
    pub history: HistoryConfig,
    /// The namespaces that keep history, with their retention.
    pub history_namespaces: Vec<(String, NamespaceHistory)>,
    /// The namespaces with presence on, with their settings.
    pub presence_namespaces: Vec<(String, crate::presence::PresenceConfig)>,
    pub cluster: ClusterConfig,
    pub shutdown_grace_ms: u64,
}

/// What a reload replaces, as one unit; an operation reads one snapshot.
pub struct Live {
    /// Who may connect, publish and subscribe where.
    pub access: Access,
    /// Namespace handlers, when any namespace has them.
    pub handlers: Option<herald_handler::Handlers>,
    pub cors: Cors,
    pub admin: crate::config::AdminConfig,
    /// Every configured namespace (for metrics).
    pub namespaces: Vec<String>,
    /// The AppSync control plane; `None` when off (no administrator keys).
    pub control: Option<crate::control::ControlPlane>,
    /// The configuration file as read, before the control plane's resources were added: what a
    /// control-plane write rebuilds from.
    pub file: Arc<Config>,
    /// The resources created through the control plane, served beside the file's.
    pub record: Arc<ApiRecord>,
}

impl Live {
    /// The API's id: the file's `control_plane.api_id`, or the id `CreateApi` gave it.
    pub fn api_id(&self) -> &str {
        match &self.record.api {
            Some(api) => &api.api_id,
            None => &self.file.control_plane.api_id,
        }
    }
}

impl Settings {
    /// Checks every section and builds the server's settings, compiling handler code (a syntax
    /// error names the namespace and the line).
    pub fn build(config: Config) -> Result<Settings, ConfigError> {
        Settings::build_with(config, ApiRecord::default())
    }

    /// [`Settings::build`] of the file's configuration with the control plane's stored
    /// resources added (the file's win where both name the same one).
    pub fn build_with(file: Config, record: ApiRecord) -> Result<Settings, ConfigError> {
        // What the API is before the control plane's namespaces and keys: the file, or what
        // `CreateApi` made of it.
        let base = match &record.api {
            Some(api) => api
                .config(&file)
                .map_err(|e| ConfigError { problems: vec![e] })?,
            None => file.clone(),
        };
        let mut config = base.clone();
        record.merge_into(&mut config);
        let mut problems = Vec::new();
        let fixed = Fixed::build(&config, &mut problems);
        if !(config.may_have_no_namespaces && config.namespaces.is_empty()) {
            crate::namespace::check(&config.namespaces, &mut problems);
        }
        let access = Access::build(&config.auth, &config.namespaces, &mut problems);
        crate::auth::admin_key::check_keys(&config.admin.keys, &mut problems);
        config.control_plane.check(&mut problems);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        // Handlers last: compiling code is the costly part, and it needs valid namespaces.
        let handlers = load_handlers(&config).map_err(|e| ConfigError {
            problems: vec![format!("handlers: {e}")],
        })?;
        let live = Live {
            access,
            handlers,
            cors: Cors::new(&config.http),
            admin: config.admin.clone(),
            namespaces: config.namespaces.iter().map(|n| n.name.clone()).collect(),
            control: crate::control::ControlPlane::build(&base, &config, &record),
            file: Arc::new(file),
            record: Arc::new(record),
        };
        Ok(Settings { fixed, live })
    }
}

impl Fixed {
    fn build(config: &Config, problems: &mut Vec<String>) -> Fixed {
        config.tls.check(problems);
        config.limits.check(problems);
        config.admission.check(problems);
        config.websocket.check(problems);
        config.sse.check(problems);
        config.history.check(problems);
        if config.namespaces.iter().any(|n| n.history.is_some()) {
            replay_fits_queue(config, problems);
        }
        config.cluster.check(problems);
        Fixed {
            listen: config.listen,
            data_dir: config.data_dir.clone(),
            tls: config.tls.clone(),
            limits: config.limits.clone(),
            admission: config.admission.clone(),
            websocket: config.websocket.clone(),
            sse: config.sse.clone(),
            history: config.history.clone(),
            history_namespaces: config
                .namespaces
                .iter()
                .filter_map(|n| Some((n.name.clone(), n.history?)))
                .collect(),
            presence_namespaces: config
                .namespaces
                .iter()
                .filter_map(|n| Some((n.name.clone(), n.presence.clone()?)))
                .collect(),
            cluster: config.cluster.clone(),
            shutdown_grace_ms: config.shutdown_grace_ms,
        }
    }

    /// The keys whose values differ from `other`'s (what a reload would need a restart for).
    pub fn changed(&self, other: &Fixed) -> Vec<&'static str> {
        [
            ("listen", self.listen == other.listen),
            ("data_dir", self.data_dir == other.data_dir),
            ("tls", self.tls == other.tls),
            ("limits", self.limits == other.limits),
            ("admission", self.admission == other.admission),
            ("websocket", self.websocket == other.websocket),
            ("sse", self.sse == other.sse),
            ("history", self.history == other.history),
            (
                "namespace history",
                self.history_namespaces == other.history_namespaces,
            ),
            (
                "namespace presence",
                self.presence_namespaces == other.presence_namespaces,
            ),
            ("cluster", self.cluster == other.cluster),
            (
                "shutdown_grace_ms",
                self.shutdown_grace_ms == other.shutdown_grace_ms,
            ),
        ]
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(key, _)| key)
        .collect()
    }

    /// Whether a namespace keeps history.
    pub fn keeps_history(&self, namespace: &str) -> bool {
        self.history_namespaces.iter().any(|(n, _)| n == namespace)
    }
}

/// Compiles every namespace's handlers; `None` when no namespace has any.
fn load_handlers(
    config: &Config,
) -> Result<Option<herald_handler::Handlers>, herald_handler::LoadError> {
    let with: Vec<(String, herald_handler::HandlerConfig)> = config
        .namespaces
        .iter()
        .filter_map(|n| n.handlers.clone().map(|h| (n.name.clone(), h)))
        .collect();
    if with.is_empty() {
        return Ok(None);
    }
    herald_handler::Handlers::with_data_sources(&config.handlers, &config.data_sources, with)
        .map(|h| Some(h.with_max_event_bytes(config.limits.max_event_bytes)))
}

/// Frame bytes a replayed event adds to its JSON text in the connection's queue (header, prefix,
/// id, position), rounded up.
const REPLAY_FRAME_OVERHEAD: usize = 256;

/// A resume is queued to its connection whole: one that can never fit would be closed as a slow
/// consumer (4008) on every attempt, and a reconnecting client would retry forever.
fn replay_fits_queue(config: &Config, problems: &mut Vec<String>) {
    let (h, l) = (&config.history, &config.limits);
    let replay_bytes = h
        .max_replay_bytes
        .saturating_add(h.max_replay_events.saturating_mul(REPLAY_FRAME_OVERHEAD));
    if replay_bytes > l.max_queued_bytes {
        problems.push(format!(
            "history.max_replay_bytes: a full replay ({} bytes of events, plus about {REPLAY_FRAME_OVERHEAD} bytes of framing for each of history.max_replay_events = {}) does not fit in limits.max_queued_bytes ({}): such a resume would be cut as a slow consumer every time; lower the replay bounds or raise limits.max_queued_bytes",
            h.max_replay_bytes, h.max_replay_events, l.max_queued_bytes
        ));
    }
    if h.max_replay_events > l.max_queued_messages {
        problems.push(format!(
            "history.max_replay_events: {} is more than limits.max_queued_messages ({}): such a resume would be cut as a slow consumer every time; lower it or raise limits.max_queued_messages",
            h.max_replay_events, l.max_queued_messages
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyConfig, NamespaceConfig};

    #[test]
    fn reports_each_problem_with_its_key() {
        let mut first = NamespaceConfig::named("ok");
        first.publish_auth_modes = Some(vec![]);
        let mut c = Config {
            namespaces: vec![
                first,
                NamespaceConfig::named("ok"),
                NamespaceConfig::named("bad/name"),
            ],
            ..Config::default()
        };
        c.limits.max_connections = 0;
        c.auth.api_keys.push(ApiKeyConfig {
            key: "da2-0123456789".into(),
            name: None,
            expires: Some("tomorrow".into()),
        });
        let Err(e) = Settings::build(c) else {
            panic!("an invalid configuration was accepted")
        };
        let p = e.problems.join("\n");
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

    #[test]
    fn restart_only_keys_are_named() {
        let a = Config {
            namespaces: vec![NamespaceConfig::named("a")],
            ..Config::default()
        };
        let mut b = a.clone();
        b.limits.max_connections = 5;
        b.namespaces[0].history = Some(NamespaceHistory::default());
        let mut problems = Vec::new();
        let (fa, fb) = (
            Fixed::build(&a, &mut problems),
            Fixed::build(&b, &mut problems),
        );
        assert_eq!(fa.changed(&fb), ["limits", "namespace history"]);
        assert!(fa.changed(&fa.clone()).is_empty());
    }

    #[test]
    fn a_replay_that_cannot_fit_its_queue_is_refused() {
        let mut history = NamespaceConfig::named("chat");
        history.history = Some(NamespaceHistory::default());
        let mut c = Config {
            namespaces: vec![history],
            ..Config::default()
        };
        assert!(Settings::build(c.clone()).is_ok(), "the defaults fit");
        c.limits.max_queued_messages = 64;
        c.limits.max_queued_bytes = 512 * 1024;
        let Err(e) = Settings::build(c.clone()) else {
            panic!("a replay larger than the queue was accepted")
        };
        let p = e.problems.join("\n");
        assert!(p.contains("history.max_replay_events"), "{p}");
        assert!(p.contains("history.max_replay_bytes"), "{p}");
        // Without a namespace keeping history nothing is replayed.
        c.namespaces[0].history = None;
        assert!(Settings::build(c).is_ok());
    }
}
