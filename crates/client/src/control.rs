//! The AppSync control plane (`/v2/apis…`, `/v1/apis…`) as the AWS SDKs call it: JSON requests
//! signed with SigV4 for the service `appsync`, errors read from `x-amzn-ErrorType`. Used by
//! `herald apply` and the `herald apis` commands; any AppSync-compatible endpoint answers it.

use std::time::{Duration, SystemTime};

use reqwest::Url;
use serde_json::Value;

use crate::auth::Credentials;

/// A control-plane call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The server answered with an AWS error.
    #[error("{error_type} (HTTP {status}): {message}")]
    Refused {
        status: u16,
        error_type: String,
        message: String,
    },
    /// No answer: the endpoint is wrong or the server is down.
    #[error("cannot reach the control plane at {url}: {error}")]
    Unreachable { url: String, error: String },
    /// The endpoint is not a URL.
    #[error("control plane endpoint {0:?} is not an http:// or https:// URL")]
    BadEndpoint(String),
}

impl ControlError {
    /// The AWS error type, for refusals.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            ControlError::Refused { error_type, .. } => Some(error_type),
            _ => None,
        }
    }
}

/// A client of one server's control plane, as one administrator.
pub struct ControlPlane {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    region: String,
}

impl ControlPlane {
    /// `endpoint` is the server's base URL (`http://localhost:8080`), as `--endpoint-url` is
    /// for the AWS CLI.
    pub fn new(
        endpoint: &str,
        credentials: Credentials,
        region: &str,
    ) -> Result<ControlPlane, ControlError> {
        let base = Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ControlError::BadEndpoint(endpoint.to_owned()))?;
        let tls = crate::tls::config(&[], base.scheme() == "https")
            .map_err(|e| ControlError::BadEndpoint(e.to_string()))?;
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ControlError::BadEndpoint(e.to_string()))?;
        Ok(ControlPlane {
            http,
            base,
            credentials,
            region: region.to_owned(),
        })
    }

    /// The server's base URL.
    pub fn endpoint(&self) -> &Url {
        &self.base
    }

    /// One operation: `method path` with `body` as JSON; the reply's JSON.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ControlError> {
        let mut url = self.base.clone();
        url.set_path(path);
        let body = body.map(Value::to_string).unwrap_or_default().into_bytes();
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut headers = vec![("host", host)];
        if !body.is_empty() {
            headers.push(("content-type", "application/json".to_owned()));
        }
        let signed = crate::sigv4::sign(
            &self.credentials,
            &self.region,
            method,
            &url,
            &headers,
            &body,
            SystemTime::now(),
        );
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ControlError::BadEndpoint(format!("method {method}")))?;
        let mut request = self.http.request(method, url.clone());
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            request = request.header(*k, v);
        }
        for (k, v) in &signed {
            request = request.header(k, v);
        }
        let unreachable = |e: reqwest::Error| ControlError::Unreachable {
            url: url.to_string(),
            error: e.to_string(),
        };
        let response = request.body(body).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let text = response.bytes().await.map_err(unreachable)?;
        let json: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(json);
        }
        Err(ControlError::Refused {
            status,
            error_type: error_type.unwrap_or_else(|| "UnknownError".into()),
            message: json
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned()),
        })
    }
}
