//! The outbound HTTP client shared by the JWKS fetcher and the authorizer webhook.

use std::time::Duration;

use crate::error::ConfigError;

/// Builds a reqwest client with rustls on the `ring` provider (never aws-lc). reqwest is compiled
/// without a bundled provider, so if the process has not installed one yet (the server does at
/// startup) we install ring here; losing that race to another installer is fine.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| ConfigError::HttpClient(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::loggable_url;

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
