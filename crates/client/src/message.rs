//! What the server sends back: events, positions, publish replies, resume outcomes; and the
//! resume requests a subscription may carry (Herald's extension, `docs/extensions.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Where an event sits in a Herald channel's history (namespaces with `history` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The concrete channel (useful on wildcard subscriptions). In publish replies it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// One continuous life of the channel's history; a 64-bit number kept as text.
    #[serde(deserialize_with = "epoch_text")]
    pub epoch: String,
    /// Counts the channel's events from 1 (from a larger number in cluster mode), without gaps.
    pub offset: u64,
    /// When the event was stored (ms since the Unix epoch); absent in publish replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
}

/// An epoch as a string, accepting a number too.
fn epoch_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Epoch {
        Text(String),
        Number(u64),
    }
    Ok(match Epoch::deserialize(d)? {
        Epoch::Text(s) => s,
        Epoch::Number(n) => n.to_string(),
    })
}

/// One event received on a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The concrete channel when the server says it (Herald's `position.channel`), otherwise
    /// the channel or pattern subscribed to.
    pub channel: String,
    /// The event as published: JSON text, byte for byte.
    pub data: String,
    /// Its position, on Herald namespaces that keep history; `None` elsewhere and on AWS.
    pub position: Option<Position>,
}

impl Event {
    /// The event decoded as `T` (for instance `serde_json::Value`).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

/// The reply to a publish, over HTTP or the socket (the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReply {
    #[serde(default)]
    pub successful: Vec<Published>,
    #[serde(default)]
    pub failed: Vec<Failed>,
}

/// An event accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub identifier: String,
    /// Its index in the publish's list.
    pub index: usize,
    /// Herald: how many subscriptions it was delivered to on the server that took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// Herald, on history namespaces: where it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

/// An event refused (for instance `EventTooLargeException`); the others may have been accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    pub index: usize,
    /// A string on Herald and AWS; a number from some servers is kept as its text.
    #[serde(default, deserialize_with = "code_text")]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

fn code_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Where a new subscription starts replaying from (Herald's history extension). Without one it
/// starts live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeFrom {
    /// Exact channel: everything after this position.
    After { epoch: String, offset: u64 },
    /// Any channel or wildcard: everything stored at or after this time (ms since the Unix
    /// epoch, the server's clock).
    SinceMs(u64),
    /// Wildcard: after each listed channel's position; channels not listed from `since_ms`, or
    /// from their oldest event when `None`.
    Positions {
        positions: BTreeMap<String, (String, u64)>,
        since_ms: Option<u64>,
    },
}

impl ResumeFrom {
    pub(crate) fn to_json(&self) -> Value {
        let mut out = Map::new();
        match self {
            ResumeFrom::After { epoch, offset } => {
                out.insert("epoch".into(), Value::String(epoch.clone()));
                out.insert("offset".into(), Value::from(*offset));
            }
            ResumeFrom::SinceMs(ms) => {
                out.insert("since_ms".into(), Value::from(*ms));
            }
            ResumeFrom::Positions {
                positions,
                since_ms,
            } => {
                let mut each = Map::new();
                for (channel, (epoch, offset)) in positions {
                    let mut p = Map::new();
                    p.insert("epoch".into(), Value::String(epoch.clone()));
                    p.insert("offset".into(), Value::from(*offset));
                    each.insert(channel.clone(), Value::Object(p));
                }
                out.insert("positions".into(), Value::Object(each));
                if let Some(ms) = since_ms {
                    out.insert("since_ms".into(), Value::from(*ms));
                }
            }
        }
        Value::Object(out)
    }
}

/// What `subscribe_success` said about a resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeOutcome {
    /// Everything missed was replayed.
    pub recovered: bool,
    /// How many events were replayed before live delivery.
    pub replayed: u64,
    /// Why not, when not recovered: `expired`, `epoch_changed`, `too_many`, `no_history`,
    /// `unavailable`, or `unsupported` when the server has no resume extension (AWS).
    pub reason: Option<String>,
}

impl ResumeOutcome {
    /// From `subscribe_success`; a server that ignored the request says nothing.
    pub(crate) fn from_reply(msg: &Map<String, Value>) -> ResumeOutcome {
        let Some(resume) = msg.get("resume") else {
            return ResumeOutcome {
                recovered: false,
                replayed: 0,
                reason: Some("unsupported".into()),
            };
        };
        ResumeOutcome {
            recovered: resume.get("recovered").and_then(Value::as_bool) == Some(true),
            replayed: resume.get("replayed").and_then(Value::as_u64).unwrap_or(0),
            reason: resume
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}
