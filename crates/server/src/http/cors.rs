//! CORS, so pages on other origins can publish over HTTP and read history: the preflight
//! answer, and the `Access-Control-Allow-Origin` of those responses (the router applies it to
//! `/event` and `/event/history` only). Reloadable (`[http]`).

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::response::{Body, text};

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Origins allowed to publish and read history from a browser; `*` allows any.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            cors_allowed_origins: vec!["*".into()],
        }
    }
}

/// The origins allowed, from the live configuration.
#[derive(Debug, Clone)]
pub struct Cors {
    allowed: Vec<String>,
}

impl Cors {
    pub fn new(config: &HttpConfig) -> Cors {
        Cors {
            allowed: config.cors_allowed_origins.clone(),
        }
    }

    /// Allows `origin` on a response, when configured to.
    pub fn apply(&self, origin: &HeaderValue, h: &mut HeaderMap) {
        let ok = self
            .allowed
            .iter()
            .any(|a| a == "*" || origin.to_str().is_ok_and(|o| o == a));
        if ok {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// The answer to a preflight (`OPTIONS /event`, `OPTIONS /event/history`), allowing `methods`.
pub fn preflight(headers: &HeaderMap, methods: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::NO_CONTENT, "");
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_static(
                "content-type, x-api-key, authorization, x-amz-date, x-amz-security-token, x-amz-user-agent, x-amz-content-sha256",
            )
        });
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}
