//! `[history]`: which store keeps channel history, when an acknowledged event is on stable
//! storage, and the bounds on reading it back (resumes and `GET /event/history`).

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
    /// Most bytes of events replayed to one resuming subscription (and held for it while it
    /// reads); past it, `too_many` as for `max_replay_events`. By default
    /// `max_resumes_per_connection` full replays fit `limits.max_queued_bytes`.
    pub max_replay_bytes: usize,
    /// Most bytes of events in one page of `GET /event/history`; the page ends early and the
    /// client pages on with `since`. A page holds at least one event.
    pub max_page_bytes: usize,
    /// Most resumes one connection may have in progress; the next gets `subscribe_error`
    /// `LimitExceededError`.
    pub max_resumes_per_connection: usize,
    /// Most history reads (resumes and `GET /event/history` requests) in progress at once in one
    /// namespace; the next gets `LimitExceededError` (HTTP 429).
    pub max_concurrent_reads: usize,
    /// Most events replayed per second in one namespace, by resumes and `GET /event/history`
    /// together; a read past it waits its turn (paced, not refused), one second's worth being
    /// available at once. A storm of resumes, each on a new connection, is bounded by nothing
    /// else. Measured (release build, 2 shared vCPUs, 8 clients resuming 2 KiB events in a
    /// loop): unpaced, the server replayed about 660,000 events/s at 107 % of a core (1.6 µs an
    /// event, connections included); paced at 20,000/s it used 9–10 % of a core. A reconnect
    /// wave of 1,000 clients each missing 20 events is still replayed within about a second.
    /// Counted in events; `max_replay_bytes_per_second` bounds the same reads in bytes.
    pub max_replay_events_per_second: u64,
    /// Most bytes of events replayed per second in one namespace, by resumes and
    /// `GET /event/history` together. Large events make the event budget alone loose (20,000
    /// events of 16 KiB are 320 MB/s): past this a read waits its turn, as for the event budget.
    /// A read is charged for what it returned, so one read may overdraw and the next waits.
    pub max_replay_bytes_per_second: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            backend: HistoryBackend::Fjall,
            sync: HistorySync::Always,
            sync_interval_ms: 100,
            max_replay_events: 1000,
            max_replay_bytes: 1 << 20,
            max_page_bytes: 1 << 20,
            max_resumes_per_connection: 4,
            max_concurrent_reads: 16,
            max_replay_events_per_second: 20_000,
            max_replay_bytes_per_second: 16 << 20,
        }
    }
}

impl HistoryConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        for (key, value) in [
            ("history.max_replay_events", self.max_replay_events),
            ("history.max_replay_bytes", self.max_replay_bytes),
            ("history.max_page_bytes", self.max_page_bytes),
            (
                "history.max_resumes_per_connection",
                self.max_resumes_per_connection,
            ),
            ("history.max_concurrent_reads", self.max_concurrent_reads),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be greater than 0"));
            }
        }
        if self.max_replay_events_per_second == 0 {
            problems.push("history.max_replay_events_per_second: must be greater than 0".into());
        }
        if self.max_replay_bytes_per_second == 0 {
            problems.push("history.max_replay_bytes_per_second: must be greater than 0".into());
        }
    }
}
