//! The AWS AppSync Events wire protocol, as Herald speaks it. Pure: no sockets; the one clock
//! read seeds the identifier generator (`id`).
//!
//! - [`channel`]: channel paths and subscription patterns (`/ns/a/b`, `/ns/*`).
//! - [`message`]: decoding what clients send (WebSocket frames, the HTTP publish body).
//! - [`reply`]: encoding what the server sends, including the shared-bytes `data` frame.
//! - [`auth`]: the authorization object, wherever it is carried.
//! - [`error`]: the one table of client-visible error types.

pub mod auth;
pub mod channel;
pub mod error;
pub mod id;
pub mod message;
pub mod reply;

pub use auth::AuthFields;
pub use channel::{Channel, ChannelError, Pattern};
pub use error::{ErrorType, WireError};
pub use message::{ClientMessage, EventLimits, FrameError, HttpPublish, PresenceAsk, Resume};
