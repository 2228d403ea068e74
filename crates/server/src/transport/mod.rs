//! Bytes on the wire: the PROXY protocol header, TLS, WebSocket framing and write deadlines;
//! the listener's filter of blocked addresses.
//! Protocol logic lives elsewhere.

pub mod blocklist;
pub mod deadline;
pub mod proxy;
pub mod shared;
pub mod tls;
pub mod uring;
pub mod ws;
