//! The issuer's signing keys: discovery, fetch, cache, and rate-limited refresh.
//!
//! Keys live in an immutable snapshot behind a short `RwLock` (never held across `.await`).
//! Fetches are serialized by an async mutex, and a new fetch starts at most once per
//! `min_refresh` whatever the reason (unknown `kid`, stale cache), so a flood of tokens with
//! made-up `kid`s costs the IdP one request per interval.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use crate::error::AuthError;
use crate::http;

/// Largest discovery document or JWKS we accept.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// One usable verification key.
pub(crate) struct CachedKey {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it declares one; the token's must then be the same.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

#[derive(Default)]
struct Snapshot {
    keys: Vec<Arc<CachedKey>>,
    fetched_at: Option<Instant>,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    /// Discovered once, then reused.
    jwks_uri: Option<String>,
}

/// Settings for [`Jwks`].
pub(crate) struct JwksSettings {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub min_refresh: Duration,
    pub max_age: Duration,
    pub client: reqwest::Client,
}

pub(crate) struct Jwks {
    settings: JwksSettings,
    snapshot: RwLock<Arc<Snapshot>>,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl Jwks {
    pub(crate) fn new(settings: JwksSettings) -> Self {
        let refresh = RefreshState {
            last_attempt: None,
            jwks_uri: settings.jwks_uri.clone(),
        };
        Jwks {
            settings,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            refresh: tokio::sync::Mutex::new(refresh),
        }
    }

    fn current(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The key for a token with this `kid` and `alg`, fetching or refreshing the JWKS when the
    /// `kid` is unknown or the cache is older than `max_age` (both rate limited).
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<CachedKey>, AuthError> {
        let snap = self.current();
        let fresh = snap
            .fetched_at
            .is_some_and(|t| t.elapsed() < self.settings.max_age);
        let cached = find(&snap, kid, alg)?;
        let refreshed = match (cached, fresh) {
            (Some(k), true) => return Ok(k),
            // Stale but known: refresh if nobody else is, else keep serving the cached key
            // rather than queueing every token behind a slow IdP.
            (Some(k), false) => match self.refresh.try_lock() {
                Ok(mut state) => self.refresh_locked(&mut state).await,
                Err(_) => return Ok(k),
            },
            (None, _) => self.refresh().await,
        };
        let snap = self.current();
        match (find(&snap, kid, alg)?, refreshed) {
            (Some(k), Err(e)) => {
                // Serve the stale key rather than lock everyone out while the IdP is down.
                tracing::warn!(issuer = %self.settings.issuer, error = %e, "JWKS refresh failed; using cached keys");
                Ok(k)
            }
            (Some(k), Ok(_)) => Ok(k),
            (None, Err(e)) if snap.fetched_at.is_none() => Err(e),
            (None, _) => Err(AuthError::UnknownKeyId {
                kid: kid.unwrap_or("").to_owned(),
                min_refresh_secs: self.settings.min_refresh.as_secs(),
            }),
        }
    }

    /// Fetches the JWKS now unless a fetch started less than `min_refresh` ago.
    /// Returns whether a fetch happened.
    pub(crate) async fn refresh(&self) -> Result<bool, AuthError> {
        let mut state = self.refresh.lock().await;
        self.refresh_locked(&mut state).await
    }

    async fn refresh_locked(&self, state: &mut RefreshState) -> Result<bool, AuthError> {
        if state
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.settings.min_refresh)
        {
            return Ok(false);
        }
        state.last_attempt = Some(Instant::now());
        let unavailable = |reason: String| AuthError::KeysUnavailable {
            issuer: self.settings.issuer.clone(),
            reason,
        };
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await.map_err(unavailable)?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let doc = self.get_json(&jwks_uri).await.map_err(unavailable)?;
        let keys = parse_jwks(&doc).map_err(unavailable)?;
        tracing::debug!(issuer = %self.settings.issuer, keys = keys.len(), "JWKS loaded");
        let snap = Arc::new(Snapshot {
            keys,
            fetched_at: Some(Instant::now()),
        });
        match self.snapshot.write() {
            Ok(mut s) => *s = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
        Ok(true)
    }

    async fn discover(&self) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: Option<String>,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let doc = self.get_json(&url).await?;
        let d: Discovery = serde_json::from_value(doc)
            .map_err(|e| format!("discovery document at {}: {e}", http::loggable_url(&url)))?;
        // OIDC Discovery §4.3: the document must name the issuer we asked about.
        if let Some(iss) = &d.issuer
            && iss.trim_end_matches('/') != self.settings.issuer.trim_end_matches('/')
        {
            return Err(format!(
                "discovery document names issuer {iss:?}, expected {:?}",
                self.settings.issuer
            ));
        }
        Ok(d.jwks_uri)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let shown = http::loggable_url(url);
        let resp = self
            .settings
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {shown}: {}", http::describe(e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {shown}: HTTP {status}"));
        }
        let body = http::read_limited(resp, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| format!("GET {shown}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("GET {shown}: not JSON: {e}"))
    }
}

/// Picks the key for a token. A token without `kid` is accepted only when exactly one key fits.
fn find(
    snap: &Snapshot,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<Arc<CachedKey>>, AuthError> {
    let fits =
        |k: &&Arc<CachedKey>| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => {
            let Some(k) = snap.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) else {
                return Ok(None);
            };
            if !fits(&k) {
                return Err(AuthError::InvalidToken(format!(
                    "key {kid:?} is not a {alg:?} key"
                )));
            }
            Ok(Some(Arc::clone(k)))
        }
        None => {
            let mut candidates = snap.keys.iter().filter(fits);
            match (candidates.next(), candidates.next()) {
                (Some(k), None) => Ok(Some(Arc::clone(k))),
                (None, _) => Ok(None),
                (Some(_), Some(_)) => Err(AuthError::InvalidToken(
                    "token has no kid and the issuer publishes several keys".to_owned(),
                )),
            }
        }
    }
}

/// Parses a JWKS, keeping every signing key we can use and skipping the rest (encryption keys,
/// key types we do not support) so one odd key does not break the whole set.
fn parse_jwks(doc: &Value) -> Result<Vec<Arc<CachedKey>>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no \"keys\" array")?;
    let mut out = Vec::with_capacity(keys.len());
    for raw in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            tracing::debug!("skipping a JWK we cannot parse");
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            tracing::debug!(kid = ?jwk.common.key_id, "skipping an unusable JWK");
            continue;
        };
        if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            // A symmetric key in a public JWKS would let anyone who reads it sign tokens.
            continue;
        }
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok());
        out.push(Arc::new(CachedKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        }));
    }
    Ok(out)
}
