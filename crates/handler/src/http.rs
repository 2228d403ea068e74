//! HTTP handlers (AppSync's "direct Lambda" contract over plain HTTP): POST the context JSON,
//! read `{"events":[...]}` / `{"error":...}` for publish, `null` / `{"error":...}` for subscribe.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::config::{HttpHandlerConfig, InvokeType};
use crate::error::{HandlerError, Operation};

/// Largest answer read from an HTTP handler: five 240 KB events plus envelope, with room.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Shared HTTP client plus the cap on fire-and-forget calls in flight.
///
/// The client opens a new connection whenever no idle one is free (no per-host limit), so a
/// namespace whose endpoint hangs holds only its own connections; [`NamespaceSlots`] bounds how
/// many.
pub(crate) struct HttpInvoker {
    client: reqwest::Client,
    in_flight: Arc<Semaphore>,
}

/// One namespace's HTTP handler calls in flight, both invoke types, `onPublish` and
/// `onSubscribe` together (`http_namespace_max_in_flight`). A call that finds none free fails
/// at once: a namespace whose endpoint hangs cannot take every request slot (or socket) from
/// the others, and its callers do not pile up behind it.
#[derive(Clone)]
pub(crate) struct NamespaceSlots {
    permits: Arc<Semaphore>,
    size: usize,
}

impl NamespaceSlots {
    pub(crate) fn new(size: usize) -> Self {
        let size = size.max(1);
        Self {
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }
}

/// What a `REQUEST_RESPONSE` call answered.
pub(crate) enum Answer {
    /// The response body (empty for an empty body).
    Body(Vec<u8>),
    /// `EVENT` invocation: nothing to wait for.
    Sent,
}

impl HttpInvoker {
    pub(crate) fn new(max_in_flight: usize) -> Result<Self, String> {
        // reqwest is built without a bundled provider; make ring the process default (no-op if the
        // server already installed one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            // A redirect would re-send (or turn into a GET) the context elsewhere: treat 3xx as failure.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        })
    }

    /// POSTs `body` to the handler, holding one of the namespace's `slots` until done. For
    /// `EVENT` returns at once; the request runs in a task.
    pub(crate) async fn invoke(
        &self,
        namespace: &str,
        operation: Operation,
        config: &HttpHandlerConfig,
        slots: &NamespaceSlots,
        body: String,
    ) -> Result<Answer, HandlerError> {
        let Ok(slot) = Arc::clone(&slots.permits).try_acquire_owned() else {
            return Err(HandlerError::Overloaded(format!(
                "namespace {namespace}: {} HTTP handler calls already in flight; \
                 raise http_namespace_max_in_flight if this persists",
                slots.size
            )));
        };
        // Logs and errors name the endpoint's origin only: its path or query may hold a secret.
        let shown = origin(&config.url);
        let http_err = |reason: String| HandlerError::Http {
            namespace: namespace.to_owned(),
            operation,
            url: shown.clone(),
            reason,
        };
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let mut request = self
            .client
            .post(&config.url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in &config.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if config.invoke_type == InvokeType::Event {
            let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
                return Err(HandlerError::Overloaded(format!(
                    "too many EVENT calls in flight to {shown}; raise http_max_in_flight if this persists"
                )));
            };
            let namespace = namespace.to_owned();
            let url = shown.clone();
            tokio::spawn(async move {
                let _permits = (permit, slot);
                match request
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                {
                    Ok(_) => {}
                    Err(e) => {
                        let e = e.without_url();
                        tracing::warn!(namespace, url, error = %e, "EVENT handler call failed")
                    }
                }
            });
            return Ok(Answer::Sent);
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                timeout_error(namespace, operation, config.timeout_ms)
            } else {
                http_err(format!("request failed: {}", e.without_url()))
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(http_err(format!("answered HTTP {status}")));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(http_err(format!(
                            "answer is larger than {MAX_RESPONSE_BYTES} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(timeout_error(namespace, operation, config.timeout_ms));
                }
                Err(e) => {
                    let e = e.without_url();
                    return Err(http_err(format!("reading the answer failed: {e}")));
                }
            }
        }
        drop(slot);
        Ok(Answer::Body(body))
    }
}

/// `scheme://host:port` of an endpoint, for logs and errors.
fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

fn timeout_error(namespace: &str, operation: Operation, limit_ms: u64) -> HandlerError {
    HandlerError::Timeout {
        namespace: namespace.to_owned(),
        operation,
        limit_ms,
    }
}

#[derive(Deserialize)]
struct PublishAnswer<'a> {
    #[serde(borrow, default)]
    events: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Publish answer: the `events` array JSON text, or the `{"error": msg}` rejection.
/// An empty body or `null` answers "drop everything", like a JavaScript `null`.
pub(crate) fn publish_events(body: &[u8]) -> Result<Result<String, String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "answer is not UTF-8".to_owned())?;
    if text.trim().is_empty() {
        return Ok(Ok("null".to_owned()));
    }
    let trimmed = text.trim();
    if trimmed == "null" {
        return Ok(Ok("null".to_owned()));
    }
    if !trimmed.starts_with('{') {
        return Err("expected {\"events\":[...]} or {\"error\":\"...\"}".to_owned());
    }
    let answer: Option<PublishAnswer<'_>> = serde_json::from_str(text)
        .map_err(|e| format!("expected {{\"events\":[...]}} or {{\"error\":\"...\"}}: {e}"))?;
    let Some(answer) = answer else {
        return Ok(Ok("null".to_owned()));
    };
    if let Some(error) = answer.error.filter(|e| !e.is_null()) {
        return Ok(Err(error_text(error)));
    }
    Ok(Ok(answer
        .events
        .map_or_else(|| "null".to_owned(), |e| e.get().to_owned())))
}

/// Subscribe answer: `Ok(())` for `null` or an empty body, `Err(msg)` for `{"error": msg}`.
/// Anything else breaks the contract (AppSync fails such subscriptions too).
pub(crate) fn subscribe_verdict(body: &[u8]) -> Result<Result<(), String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "answer is not UTF-8".to_owned())?;
    if text.trim().is_empty() {
        return Ok(Ok(()));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("expected null or {{\"error\":\"...\"}}: {e}"))?;
    match value {
        serde_json::Value::Null => Ok(Ok(())),
        serde_json::Value::Object(mut map) => match map.remove("error") {
            Some(error) if !error.is_null() => Ok(Err(error_text(error))),
            _ => {
                Err("expected null or {\"error\":\"...\"}, got an object without error".to_owned())
            }
        },
        other => Err(format!(
            "expected null or {{\"error\":\"...\"}}, got {other}"
        )),
    }
}

fn error_text(error: serde_json::Value) -> String {
    match error {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_shown_as_their_origin() {
        assert_eq!(
            origin("https://hooks.example.com/x/secret-token?k=v"),
            "https://hooks.example.com:443"
        );
        assert_eq!(origin("http://127.0.0.1:9000/a"), "http://127.0.0.1:9000");
    }

    #[test]
    fn publish_answers() {
        assert_eq!(
            publish_events(br#"{"events":[{"id":"1"}]}"#).unwrap(),
            Ok(r#"[{"id":"1"}]"#.to_owned())
        );
        assert_eq!(
            publish_events(br#"{"error":"no"}"#).unwrap(),
            Err("no".to_owned())
        );
        assert_eq!(publish_events(b"").unwrap(), Ok("null".to_owned()));
        assert_eq!(publish_events(b"null").unwrap(), Ok("null".to_owned()));
        assert!(publish_events(b"[1]").is_err());
    }

    #[test]
    fn subscribe_answers() {
        assert_eq!(subscribe_verdict(b"null").unwrap(), Ok(()));
        assert_eq!(subscribe_verdict(b" ").unwrap(), Ok(()));
        assert_eq!(
            subscribe_verdict(br#"{"error":"denied"}"#).unwrap(),
            Err("denied".to_owned())
        );
        assert!(subscribe_verdict(b"true").is_err());
        assert!(subscribe_verdict(b"{}").is_err());
    }
}
