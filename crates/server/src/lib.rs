//! The Herald server: AWS AppSync Events over HTTP and WebSocket, with a fan-out path built for
//! speed.
//!
//! The path of one event: [`http`] (or a WebSocket [`connection`]) decodes the request with
//! `herald_protocol`, [`auth`] admits it, [`publish`] gives it an identifier and encodes its
//! `data` body once, the [`hub`] finds matching subscriptions by at most five index lookups and
//! pushes `(prefix, body)` into each connection's bounded outbox, and each connection task writes
//! its queued frames in one go through [`transport::ws`].

pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod console;
pub mod history;
pub mod http;
pub mod hub;
pub mod id;
pub mod metrics;
pub mod publish;
pub mod rules;
pub mod server;
pub mod state;
pub mod time;
pub mod transport;

pub use config::Config;
pub use server::{Server, StartError};
