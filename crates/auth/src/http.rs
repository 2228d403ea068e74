//! The outbound HTTP client shared by the JWKS fetcher and the authorizer webhook.

use std::sync::Mutex;
use std::time::Duration;

use crate::error::ConfigError;

/// Builds a reqwest client with rustls on the `ring` provider (never aws-lc), following up to 3
/// redirects (for discovery documents and key sets, which carry no secret). reqwest is compiled
/// without a bundled provider, so if the process has not installed one yet (the server does at
/// startup) we install ring here; losing that race to another installer is fine.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    build(timeout, true)
}

/// A client that never follows a redirect, for calls that carry secrets (the authorizer
/// webhook's headers, the client's token): following would hand them to wherever the redirect
/// points. The 3xx response comes back to the caller, which treats it as a failure.
pub(crate) fn client_without_redirects(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    build(timeout, false)
}

/// Clients already built, by timeout and whether they follow redirects. Building one reads and
/// parses the OS certificate store (milliseconds), and every configuration load or reload builds
/// one per provider: providers with the same settings share a client (and its connection pool)
/// instead. Bounded, since timeouts come from the configuration.
static BUILT: Mutex<Vec<((Duration, bool), reqwest::Client)>> = Mutex::new(Vec::new());
const KEEP_BUILT: usize = 8;

fn build(timeout: Duration, follow: bool) -> Result<reqwest::Client, ConfigError> {
    let key = (timeout, follow);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, client)) = built.iter().find(|(k, _)| *k == key) {
        return Ok(client.clone());
    }
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let redirects = if follow {
        reqwest::redirect::Policy::limited(3)
    } else {
        reqwest::redirect::Policy::none()
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(redirects)
        .build()
        .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
    if built.len() >= KEEP_BUILT {
        built.remove(0);
    }
    built.push((key, client.clone()));
    Ok(client)
}

/// Reads a response body, refusing more than `limit` bytes (a hostile or broken endpoint must
/// not make us buffer without bound).
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("response larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > limit {
            return Err(format!("response larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error as a short reason, without the URL's query string (which could hold a secret).
pub(crate) fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else if e.is_redirect() {
        "too many redirects"
    } else {
        "request failed"
    };
    let e = e.without_url();
    format!("{kind}: {e}")
}

/// A URL for logs and error messages: the query string and any user-info are dropped, since
/// either may carry a secret.
pub(crate) fn loggable_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or("");
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let strip = |authority: &str| authority.rsplit('@').next().unwrap_or("").to_owned();
            match rest.split_once('/') {
                Some((authority, path)) => format!("{scheme}://{}/{path}", strip(authority)),
                None => format!("{scheme}://{}", strip(rest)),
            }
        }
        None => no_query.to_owned(),
    }
}

/// A URL as `scheme://host:port` only (the port filled in when implicit), for logs about
/// endpoints whose path or query may itself be a secret (a webhook URL with a token in it).
pub(crate) fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => "<invalid URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{loggable_url, origin};

    #[test]
    fn origins_keep_scheme_host_and_port_only() {
        assert_eq!(
            origin("https://u:p@h.example/secret/path?key=s#f"),
            "https://h.example:443"
        );
        assert_eq!(origin("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
        assert_eq!(origin("http://h"), "http://h:80");
        assert_eq!(origin("not a url"), "<invalid URL>");
    }

    #[test]
    fn urls_lose_secrets() {
        assert_eq!(
            loggable_url("https://u:p@h.example/a/b?key=s#f"),
            "https://h.example/a/b"
        );
        assert_eq!(loggable_url("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
        assert_eq!(loggable_url("http://h"), "http://h");
    }
}
