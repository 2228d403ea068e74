//! What every route reads from a request: the client's address and its credentials.

use hyper::header::{self, HeaderMap};

use herald_protocol::AuthFields;

/// Who sent the request, attached by the listener: the client's address (the peer, or what a
/// trusted proxy forwarded; see `admission`). Handlers see it as `ctx.identity.sourceIp`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub client: std::net::IpAddr,
}

/// The client's address, when the listener attached it.
pub fn client(extensions: &hyper::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<Peer>().map(|p| p.client)
}

/// `sourceIp` for handlers: the client's address.
pub fn source_ip(extensions: &hyper::http::Extensions) -> Vec<String> {
    client(extensions)
        .map(|ip| vec![ip.to_string()])
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
