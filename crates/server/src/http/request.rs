//! What every route reads from a request: the client's address and its credentials.

use hyper::header::{self, HeaderMap};

use herald_protocol::AuthFields;

/// The client's address, attached to each request by the listener (handlers see it as
/// `ctx.identity.sourceIp`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// `sourceIp` for handlers: the peer address.
pub fn source_ip(extensions: &hyper::http::Extensions) -> Vec<String> {
    extensions
        .get::<Peer>()
        .map(|p| vec![p.0.ip().to_string()])
        .unwrap_or_default()
}

/// Credentials from request headers, names lower-cased (so `X-Api-Key` and `x-api-key` agree).
pub fn header_fields(headers: &HeaderMap) -> AuthFields {
    let mut fields = AuthFields::new();
    for (name, value) in headers {
        if name == header::COOKIE {
            continue;
        }
        if let Ok(v) = value.to_str() {
            fields.insert(name.as_str(), v);
        }
    }
    fields
}
