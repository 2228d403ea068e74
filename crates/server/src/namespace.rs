//! Channel namespaces (`[[namespaces]]`): the first segment of every channel, and what each
//! namespace configures — its authorization modes, access rules, handlers and history.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::auth::rules::RulesConfig;
use herald_auth::AuthMode;

/// One `[[namespaces]]` entry.
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
    pub rules: Option<RulesConfig>,
    /// Who is subscribed, joins and leaves (`docs/extensions.md#presence`); off when absent.
    #[serde(default)]
    pub presence: Option<crate::presence::PresenceConfig>,
}

impl NamespaceConfig {
    /// A namespace with nothing but its name: the defaults of `[auth]`, no history, handlers or
    /// rules.
    pub fn named(name: &str) -> NamespaceConfig {
        NamespaceConfig {
            name: name.to_owned(),
            publish_auth_modes: None,
            subscribe_auth_modes: None,
            history: None,
            handlers: None,
            rules: None,
            presence: None,
        }
    }
}

/// History retention of one namespace; both limits apply when both are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceHistory {
    /// Events older than this are removed.
    pub max_age_secs: Option<u64>,
    /// At most this many newest events are kept per channel.
    pub max_count: Option<u64>,
}

/// Checks the list itself: at least one namespace, valid and distinct names. (Modes and rules are
/// checked by `auth`, handlers by `herald_handler`, history by `history`.)
pub fn check(namespaces: &[NamespaceConfig], problems: &mut Vec<String>) {
    if namespaces.is_empty() {
        problems.push(
            "namespaces: at least one namespace is required, e.g. [[namespaces]] name = \"default\""
                .into(),
        );
    }
    let mut names = HashSet::new();
    for (i, ns) in namespaces.iter().enumerate() {
        if herald_protocol::Channel::parse(&ns.name).map(|c| c.depth()) != Ok(1) {
            problems.push(format!(
                "namespaces[{i}].name: {:?} is not a valid namespace name (1-50 characters of A-Z, a-z, 0-9 and '-', not starting or ending with '-')",
                ns.name
            ));
        }
        if let Some(p) = &ns.presence {
            p.check(&ns.name, problems);
        }
        if !names.insert(ns.name.as_str()) {
            problems.push(format!(
                "namespaces[{i}].name: namespace {:?} is defined twice",
                ns.name
            ));
        }
    }
}
