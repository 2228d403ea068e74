//! Server-Sent Events settings (`[sse]`) and the short-lived tokens of `GET /event/stream`.
//!
//! A browser's `EventSource` cannot set headers, and a long-lived credential in a URL ends up in
//! proxy logs and browser history. So a client first asks `POST /event/stream/token` with its
//! usual headers and the channels it wants; Herald checks every channel exactly as a subscribe
//! (authorization, access rules, `onSubscribe`) and answers an opaque random token that opens a
//! stream of those channels only, once, within `sse.token_ttl_secs`. The token is the
//! authorization: nothing long-lived ever sits in a URL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::auth::Identity;

/// `[sse]`: Server-Sent Events (`GET /event/stream`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// A `: ka` comment is sent on an idle stream this often, so proxies keep it open.
    pub keepalive_interval_ms: u64,
    /// How long a stream token (`POST /event/stream/token`) may wait for its stream.
    pub token_ttl_secs: u64,
    /// Most tokens waiting for their stream at once; past it, new ones are refused (429).
    pub max_tokens: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            keepalive_interval_ms: 15_000,
            token_ttl_secs: 60,
            max_tokens: 10_000,
        }
    }
}

impl SseConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        for (key, value) in [
            ("sse.keepalive_interval_ms", self.keepalive_interval_ms),
            ("sse.token_ttl_secs", self.token_ttl_secs),
            ("sse.max_tokens", self.max_tokens as u64),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be greater than 0"));
            }
        }
    }
}

/// What a token opens: these channels (patterns, as checked), for this identity.
#[derive(Debug, Clone)]
pub struct Grant {
    pub identity: Identity,
    pub channels: Vec<String>,
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("too many stream tokens are waiting for their stream; retry shortly")]
    Full,
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// Tokens waiting for their stream.
pub struct Tokens {
    waiting: Mutex<HashMap<String, (Grant, Instant)>>,
    ttl: Duration,
    max: usize,
}

/// Random bytes in a token: 256 bits, as hex.
const TOKEN_BYTES: usize = 32;

impl Tokens {
    pub fn new(config: &SseConfig) -> Tokens {
        Tokens {
            waiting: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(config.token_ttl_secs),
            max: config.max_tokens,
        }
    }

    /// How long a token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new token for `grant`.
    pub fn issue(&self, grant: Grant) -> Result<String, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::getrandom(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.len() >= self.max {
            waiting.retain(|_, (_, expires)| *expires > now);
            if waiting.len() >= self.max {
                return Err(TokenError::Full);
            }
        }
        waiting.insert(token.clone(), (grant, now + self.ttl));
        Ok(token)
    }

    /// Takes the token: its grant if it exists and has not expired. Either way it is gone, so
    /// a token opens one stream at most.
    pub fn take(&self, token: &str) -> Option<Grant> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let (grant, expires) = waiting.remove(token)?;
        (expires > Instant::now()).then_some(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            identity: Identity::ApiKey { name: None },
            channels: vec!["/a/b".into()],
        }
    }

    #[test]
    fn a_token_opens_once() {
        let tokens = Tokens::new(&SseConfig::default());
        let t = tokens.issue(grant()).unwrap();
        assert_eq!(t.len(), 2 * TOKEN_BYTES);
        assert!(tokens.take(&t).is_some());
        assert!(tokens.take(&t).is_none());
        assert!(tokens.take("nope").is_none());
    }

    #[test]
    fn tokens_are_bounded() {
        let tokens = Tokens::new(&SseConfig {
            max_tokens: 2,
            ..SseConfig::default()
        });
        tokens.issue(grant()).unwrap();
        tokens.issue(grant()).unwrap();
        assert!(matches!(tokens.issue(grant()), Err(TokenError::Full)));
    }
}
