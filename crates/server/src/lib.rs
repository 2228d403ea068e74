//! The Herald server: AWS AppSync Events over HTTP and WebSocket, with a fan-out path built for
//! speed.
//!
//! The path of one event, module by module:
//! 1. [`server`] accepts a socket (TLS or plain on one port); [`http`] routes the request —
//!    `POST /event` to [`http::publish`], the upgrade to a WebSocket [`connection`], whose
//!    [`transport::ws`] framing and `session` decode each client message with `herald_protocol`.
//! 2. [`auth`] decides, in one call ([`auth::Access::authorize`]), whether the credential may do
//!    this on this channel, and returns the identity.
//! 3. [`publish`] runs the namespace's `onPublish` handler, gives each event an identifier and
//!    encodes its `data` body once; with history, [`history`] stores it first.
//! 4. The [`broker`] finds matching subscriptions (at most five index lookups) and pushes
//!    `(prefix, body)` into each connection's bounded [`connection::outbox`]; each connection task
//!    writes its queued frames in one go.
//!
//! Around it: [`config`] (the file), [`settings`] (checked and built once: [`settings::Fixed`]
//! and the reloadable [`settings::Live`]), [`reload`], [`deployment`] (embedded or cluster — the
//! one place that chooses), [`subscription`] (a subscription going live), [`registry`] (open
//! connections), [`namespace`], [`metrics`], [`state`] (what everything shares), [`api`] (the
//! Event APIs one server serves, each on its own state, and which one a request is for), and
//! [`control`], the AppSync control plane (`/v2/apis…`).

pub mod admission;
pub mod api;
pub mod auth;
pub mod broker;
pub mod bucket;
pub mod config;
pub mod connection;
pub mod control;
pub mod deployment;
pub mod history;
pub mod http;
pub mod id;
pub mod idempotency;
pub mod metrics;
pub mod namespace;
pub mod presence;
pub mod publish;
pub mod registry;
pub mod reload;
pub mod server;
pub mod settings;
pub mod state;
pub mod stream_token;
pub mod subscription;
pub mod time;
pub mod transport;

pub use config::{Config, ConfigError, ReloadSource};
pub use server::{Server, StartError};
pub use settings::Settings;
