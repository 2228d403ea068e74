//! A client for AWS AppSync Events and Herald, its self-hosted
//! counterpart: publish over HTTP or the WebSocket, subscribe to channels and wildcards as
//! async [`Stream`](futures_util::Stream)s, with any of AppSync's five authorization modes.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use herald_client::{Auth, Client};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), herald_client::Error> {
//! let client = Client::new("http://127.0.0.1:8080/event", Auth::api_key("da2-mylocalkey0000000000"))?;
//! let connection = client.connect().await?;
//! let mut everything = connection.subscribe("/default/*").await?;
//!
//! client.publish("/default/greetings", &[json!({"hello": "world"})]).await?;
//!
//! while let Some(event) = everything.next().await {
//!     let event = event?;
//!     println!("{} {}", event.channel, event.data);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What it does for you
//!
//! - **Endpoints**: give the HTTP endpoint, AWS's
//!   `https://<id>.appsync-api.<region>.amazonaws.com/event`, a custom domain or Herald's
//!   `http://host:port/event`; the WebSocket URL is derived as amplify-js derives it
//!   ([`Endpoint`]).
//! - **Authorization** ([`Auth`]): API key, Cognito user pool and OpenID Connect JWTs, Lambda
//!   authorizer tokens, and IAM (SigV4, from static credentials or the environment), on HTTP and
//!   on every socket operation.
//! - **Keep-alive**: the server's `connectionTimeoutMs` (from `connection_ack`) bounds silence;
//!   past it the link is taken for dead.
//! - **Reconnecting** ([`Reconnect`], on by default): with backoff and jitter; every subscription
//!   is made again with a resume from the last position it read (Herald's history extension), so
//!   on namespaces with history nothing is missed and nothing shows twice. Where the server
//!   cannot replay, the stream says so ([`Error::Gap`]).
//! - **Errors** are one typed enum, [`Error`], carrying the server's `errorType`s.
//!
//! # Layout
//!
//! `endpoint` (URLs), `auth` and `sigv4` (credentials), `tls` (rustls on ring, OS roots plus
//! yours), `socket` (one WebSocket), `connection` (the task that owns it: routing, keep-alive,
//! reconnect, resume), `subscription` (the stream), `publish` (HTTP), `message` (what the
//! server sends back), `error`; and [`control`], a client of the AppSync control plane.

mod auth;
mod connection;
pub mod control;
mod endpoint;
mod error;
mod message;
mod publish;
mod sigv4;
mod socket;
mod subscription;
mod tls;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use auth::{Auth, Credentials};
pub use connection::Connection;
pub use endpoint::Endpoint;
pub use error::{BoxError, Error, ServerError, ServerErrors};
pub use message::{Event, Failed, Position, PublishReply, Published, ResumeFrom, ResumeOutcome};
pub use publish::MAX_EVENTS;
pub use subscription::Subscription;

/// A Herald started with no `listen` setting (`herald serve`).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080/event";

/// A client for one endpoint with one credential. Cheap to clone. Publishes over HTTP itself;
/// [`Client::connect`] opens a WebSocket [`Connection`] for subscriptions and socket publishes.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// What the client and its connections share.
pub(crate) struct Inner {
    pub(crate) endpoint: Endpoint,
    pub(crate) signer: auth::Signer,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) http: reqwest::Client,
    /// How long to wait for the socket to open, and for each reply.
    pub(crate) timeout: Duration,
    pub(crate) reconnect: Option<Reconnect>,
    pub(crate) subscription_buffer: usize,
    pub(crate) clock_skew: Duration,
    /// Ask for each event's concrete channel (`withChannel`, a Herald extension).
    pub(crate) with_channel: bool,
}

/// How a [`Connection`] comes back after its socket drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// Before the first attempt (default 100 ms); doubled for each next one.
    pub initial_delay: Duration,
    /// The most between two attempts (default 30 s).
    pub max_delay: Duration,
    /// Give up after this many failed attempts in a row (default: never). A connection the
    /// server refuses (`connection_error`, e.g. an expired credential) is never retried.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Client {
    /// A client with the default settings; see [`Client::builder`] for the others.
    pub fn new(endpoint: &str, auth: Auth) -> Result<Client, Error> {
        Client::builder(endpoint, auth).build()
    }

    /// Starts configuring a client.
    pub fn builder(endpoint: &str, auth: Auth) -> ClientBuilder {
        ClientBuilder {
            endpoint: endpoint.to_owned(),
            auth,
            cas: Vec::new(),
            error: None,
            timeout: Duration::from_secs(15),
            reconnect: Some(Reconnect::default()),
            subscription_buffer: 1024,
            clock_skew: Duration::from_secs(5),
            with_channel: false,
        }
    }

    /// The endpoint's URLs.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Publishes 1 to 5 events (each serialized to JSON) with `POST /event`.
    ///
    /// Per-event refusals (for instance `EventTooLargeException`) are in the reply's `failed`;
    /// a refused request is [`Error::PublishRejected`].
    pub async fn publish<E: serde::Serialize>(
        &self,
        channel: &str,
        events: &[E],
    ) -> Result<PublishReply, Error> {
        self.publish_raw(channel, &publish::serialize(events)?)
            .await
    }

    /// Publishes 1 to 5 events given as JSON text, sent byte for byte (Herald keeps key order
    /// and spacing), with `POST /event`.
    pub async fn publish_raw(
        &self,
        channel: &str,
        events: &[String],
    ) -> Result<PublishReply, Error> {
        publish::http(&self.inner, channel, events).await
    }

    /// Opens a WebSocket connection and waits for `connection_ack`.
    pub async fn connect(&self) -> Result<Connection, Error> {
        Connection::open(self.inner.clone()).await
    }
}

/// Settings of a [`Client`]; [`ClientBuilder::build`] checks them.
pub struct ClientBuilder {
    endpoint: String,
    auth: Auth,
    cas: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The first problem met while configuring, reported by `build`.
    error: Option<Error>,
    timeout: Duration,
    reconnect: Option<Reconnect>,
    subscription_buffer: usize,
    clock_skew: Duration,
    with_channel: bool,
}

impl ClientBuilder {
    /// Also trusts the certificate authorities of this PEM text (the OS store is always used).
    pub fn ca_pem(mut self, pem: &[u8]) -> Self {
        match tls::pem_certificates(pem, "CA") {
            Ok(certs) => self.cas.extend(certs),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Also trusts the certificate authorities of this PEM file, e.g. Herald's
    /// `<data-dir>/dev-tls/ca.pem`.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let what = format!("CA file {}", path.display());
        match std::fs::read(path)
            .map_err(|e| Error::Config(format!("cannot read {what}: {e}")))
            .and_then(|pem| tls::pem_certificates(&pem, &what))
        {
            Ok(certs) => self.cas.extend(certs),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// How long to wait for the socket to open (`connection_ack`), for `subscribe_success`,
    /// and for a publish's reply, over HTTP or the socket. Default 15 s (amplify-js's value).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How connections come back after their socket drops.
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Connections do not reconnect: a dropped socket ends every subscription with
    /// [`Error::ConnectionLost`].
    pub fn no_reconnect(mut self) -> Self {
        self.reconnect = None;
        self
    }

    /// How many events wait for each subscription's reader (default 1024); see
    /// [`Subscription`].
    pub fn subscription_buffer(mut self, events: usize) -> Self {
        self.subscription_buffer = events;
        self
    }

    /// After a reconnect, channels on which a subscription had read nothing are replayed from
    /// the time it subscribed, by this client's clock, less this allowance for the server's
    /// clock being behind (default 5 s). A larger value may replay events from before the
    /// subscription; a smaller one may miss events if the clocks differ by more.
    pub fn clock_skew(mut self, allowance: Duration) -> Self {
        self.clock_skew = allowance;
        self
    }

    /// Subscriptions ask Herald for each event's concrete channel (`"withChannel": true`, a
    /// Herald extension), so [`Event::channel`] names it on wildcard subscriptions of any
    /// namespace, not only those with history. Off by default: AppSync does not know the field.
    pub fn with_channel(mut self, on: bool) -> Self {
        self.with_channel = on;
        self
    }

    /// Checks the endpoint, the credentials and the CAs, and builds the client.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let endpoint = Endpoint::parse(&self.endpoint)?;
        let signer = auth::Signer::new(&self.auth, &endpoint)?;
        let tls = tls::config(&self.cas, endpoint.http().scheme() == "https")?;
        // reqwest is built without a bundled crypto provider; TLS uses our config, but the
        // builder still wants a process default. Losing the race to another installer is fine.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            // Straight to the endpoint, like the socket (which knows nothing of proxies).
            .no_proxy()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                signer,
                tls,
                http,
                timeout: self.timeout,
                reconnect: self.reconnect,
                subscription_buffer: self.subscription_buffer,
                clock_skew: self.clock_skew,
                with_channel: self.with_channel,
            }),
        })
    }
}
