//! Bytes on the wire: WebSocket framing and TLS. Protocol logic lives elsewhere.

pub mod deadline;
pub mod tls;
pub mod ws;
