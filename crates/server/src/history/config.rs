//! `[history]`: which store keeps channel history, and when an acknowledged event is on stable
//! storage.

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl HistoryConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.max_replay_events == 0 {
            problems.push("history.max_replay_events: must be greater than 0".into());
        }
    }
}
