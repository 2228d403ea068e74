//! API keys (AppSync's `API_KEY` mode) and the constant-time key comparison that the admin keys
//! share.

use serde::{Deserialize, Serialize};

/// One `[[auth.api_keys]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Shortest API key accepted.
const MIN_KEY_LEN: usize = 8;

struct ApiKey {
    key: Vec<u8>,
    name: Option<String>,
    /// Unix seconds after which the key is refused.
    expires: Option<i64>,
}

/// The configured API keys.
pub struct ApiKeys(Vec<ApiKey>);

impl ApiKeys {
    /// Builds the key list; each unusable entry adds a problem naming its key.
    pub fn build(configs: &[ApiKeyConfig], problems: &mut Vec<String>) -> ApiKeys {
        let mut keys = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            if c.key.len() < MIN_KEY_LEN {
                problems.push(format!(
                    "auth.api_keys[{i}].key: an API key needs at least {MIN_KEY_LEN} characters"
                ));
            }
            let expires = match &c.expires {
                None => None,
                Some(text) => match crate::time::parse_rfc3339(text) {
                    Some(t) => Some(t),
                    None => {
                        problems.push(format!(
                            "auth.api_keys[{i}].expires: {text:?} is not an RFC 3339 time such as 2027-01-31T00:00:00Z"
                        ));
                        None
                    }
                },
            };
            keys.push(ApiKey {
                key: c.key.as_bytes().to_vec(),
                name: c.name.clone(),
                expires,
            });
        }
        ApiKeys(keys)
    }

    /// The identity of a presented key, or why it is refused.
    pub fn check(&self, presented: &[u8], now: i64) -> Result<herald_auth::Identity, &'static str> {
        let i = matching(self.0.iter().map(|k| k.key.as_slice()), presented)
            .ok_or("unknown API key")?;
        let key = self.0.get(i).ok_or("unknown API key")?;
        if key.expires.is_some_and(|t| now >= t) {
            return Err("API key expired");
        }
        Ok(herald_auth::Identity::ApiKey {
            name: key.name.clone(),
        })
    }
}

/// The index of the key equal to `presented`. Every key is compared, each in time independent of
/// where it differs, so timing reveals neither which key nor which prefix matched.
pub fn matching<'a>(keys: impl Iterator<Item = &'a [u8]>, presented: &[u8]) -> Option<usize> {
    let mut found = None;
    for (i, k) in keys.enumerate() {
        if herald_auth::identity::ct_eq(k, presented) {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_expire_and_report_problems() {
        let mut problems = Vec::new();
        let keys = ApiKeys::build(
            &[
                ApiKeyConfig {
                    key: "da2-live".into(),
                    name: Some("live".into()),
                    expires: None,
                },
                ApiKeyConfig {
                    key: "da2-old".into(),
                    name: None,
                    expires: Some("2020-01-01T00:00:00Z".into()),
                },
            ],
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "da2-old is too short: {problems:?}");
        let now = crate::time::now_unix();
        assert_eq!(
            keys.check(b"da2-live", now),
            Ok(herald_auth::Identity::ApiKey {
                name: Some("live".into())
            })
        );
        assert_eq!(keys.check(b"da2-old", now), Err("API key expired"));
        assert_eq!(keys.check(b"da2-nope", now), Err("unknown API key"));
        assert_eq!(matching([b"a".as_slice(), b"b"].into_iter(), b"b"), Some(1));
    }
}
