//! Lifecycle webhooks of a namespace with presence (`presence.webhook`): connect, disconnect,
//! join and leave notices, batched, signed with a shared secret, retried with backoff, from a
//! bounded queue whose overflow is counted. Never blocks delivery: [`Hooks::notify`] only queues.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `presence.webhook = { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where batches are POSTed.
    pub url: String,
    /// Signs each batch (HMAC-SHA256 of the body).
    pub secret: String,
    /// Most notices in one batch.
    pub batch_max: usize,
    /// How long the first notice of a batch waits for others.
    pub batch_ms: u64,
    /// Notices waiting at most; past it new ones are dropped and counted.
    pub queue: usize,
    /// One POST's deadline.
    pub timeout_ms: u64,
    /// Tries per batch before it is dropped and counted.
    pub max_attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            secret: String::new(),
            batch_max: 100,
            batch_ms: 100,
            queue: 10_000,
            timeout_ms: 5_000,
            max_attempts: 6,
        }
    }
}

impl WebhookConfig {
    pub fn check(&self, namespace: &str, problems: &mut Vec<String>) {
        let key = format!("namespaces.{namespace}.presence.webhook");
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!("{key}.url: must be an http:// or https:// URL"));
        }
        if self.secret.len() < 16 {
            problems.push(format!(
                "{key}.secret: must be at least 16 characters (it signs every batch)"
            ));
        }
        for (name, value) in [
            ("batch_max", self.batch_max as u64),
            ("queue", self.queue as u64),
            ("timeout_ms", self.timeout_ms),
            ("max_attempts", u64::from(self.max_attempts)),
        ] {
            if value == 0 {
                problems.push(format!("{key}.{name}: must be greater than 0"));
            }
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A connection's first membership in the namespace.
    Connect,
    /// Its last membership in the namespace ended.
    Disconnect,
    /// A member joined a channel.
    Join,
    /// A member left a channel.
    Leave,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Connect => "connect",
            NoticeKind::Disconnect => "disconnect",
            NoticeKind::Join => "join",
            NoticeKind::Leave => "leave",
        }
    }
}

/// The webhook sender of one namespace.
pub struct Hooks {
    queue: tokio::sync::mpsc::Sender<String>,
    metrics: Arc<crate::metrics::Namespace>,
}

impl Hooks {
    /// Starts the sender task (on the current Tokio runtime; the caller checked there is one).
    pub fn start(
        namespace: &str,
        config: &WebhookConfig,
        metrics: Arc<crate::metrics::Namespace>,
    ) -> Hooks {
        let (queue, rx) = tokio::sync::mpsc::channel(config.queue.max(1));
        let sender = Sender {
            namespace: namespace.to_owned(),
            config: config.clone(),
            metrics: metrics.clone(),
            client: client(Duration::from_millis(config.timeout_ms)),
        };
        tokio::spawn(sender.run(rx));
        Hooks { queue, metrics }
    }

    /// Queues one notice (`notice` is its JSON object); never waits. A full queue drops it,
    /// counted in `herald_presence_webhook_dropped_total`.
    pub fn notify(&self, notice: &str) {
        if self.queue.try_send(notice.to_owned()).is_err() {
            self.metrics.presence_webhook_dropped.inc();
        }
    }
}

/// A client that never follows a redirect: a batch carries its signature, and a redirect must
/// not hand it elsewhere. `None` when TLS could not be set up (every batch is then dropped and
/// counted, and the reason logged).
fn client(timeout: Duration) -> Option<reqwest::Client> {
    if tokio_rustls::rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| tracing::error!(error = %e, "presence webhook: no HTTP client"))
        .ok()
}

struct Sender {
    namespace: String,
    config: WebhookConfig,
    metrics: Arc<crate::metrics::Namespace>,
    client: Option<reqwest::Client>,
}

/// First wait before a retry, doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Sender {
    async fn run(self, mut rx: tokio::sync::mpsc::Receiver<String>) {
        let window = Duration::from_millis(self.config.batch_ms);
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let closes = tokio::time::Instant::now() + window;
            while batch.len() < self.config.batch_max {
                match tokio::time::timeout_at(closes, rx.recv()).await {
                    Ok(Some(n)) => batch.push(n),
                    Ok(None) | Err(_) => break,
                }
            }
            self.send(&batch).await;
        }
    }

    /// POSTs one batch until it is taken or `max_attempts` are spent (then drops it, counted).
    async fn send(&self, batch: &[String]) {
        let body = format!(
            r#"{{"namespace":"{}","notices":[{}]}}"#,
            self.namespace,
            batch.join(",")
        );
        let count = batch.len() as u64;
        let mut wait = BACKOFF_FIRST;
        for attempt in 1..=self.config.max_attempts {
            match self.post(&body).await {
                Ok(()) => {
                    self.metrics.presence_webhook_deliveries.inc_by(count);
                    return;
                }
                Err(reason) => {
                    tracing::warn!(
                        namespace = %self.namespace,
                        attempt,
                        reason,
                        "presence webhook: batch not taken"
                    );
                }
            }
            if attempt < self.config.max_attempts {
                self.metrics.presence_webhook_retries.inc();
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF_MAX);
            }
        }
        self.metrics.presence_webhook_dropped.inc_by(count);
    }

    async fn post(&self, body: &str) -> Result<(), String> {
        let client = self.client.as_ref().ok_or("no HTTP client")?;
        let timestamp = crate::time::now_unix().to_string();
        let signature = sign(&self.config.secret, &timestamp, body);
        let response = client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("x-herald-timestamp", &timestamp)
            .header("x-herald-signature", format!("sha256={signature}"))
            .body(body.to_owned())
            .send()
            .await
            // Without the URL: its query string may hold a secret.
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "request failed".to_owned()
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", status.as_u16()))
        }
    }
}

/// `hex(HMAC-SHA256(secret, "<timestamp>.<body>"))`: the receiver recomputes it, and refuses a
/// timestamp too old (a replayed batch).
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(secret, b"1700000000." + body, sha256).
        assert_eq!(
            super::sign("0123456789abcdef", "1700000000", r#"{"a":1}"#),
            "9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
    }
}
