//! The WebSocket upgrade at `/event/realtime` (RFC 6455 handshake, the `aws-appsync-event-ws`
//! subprotocol): connect credentials come from the `header-` subprotocol or the request's
//! headers; the connection then runs in its own task (`connection`).

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use herald_protocol::{AuthFields, ErrorType, WireError};

use super::request::{admit_connect, header_fields, source_ip};
use super::response::{Body, bad_request, error, errors, text};
use crate::admission::Ticket;
use crate::connection;
use crate::state::State;
use crate::transport::deadline::WriteDeadline;
use crate::transport::shared::SharedTcp;
use crate::transport::ws;

/// The one subprotocol Herald speaks.
const SUBPROTOCOL: &str = "aws-appsync-event-ws";

pub fn upgrade(state: Arc<State>, mut req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_upgrade && version_ok)
    else {
        return errors(
            StatusCode::BAD_REQUEST,
            bad_request(
                "this path takes a WebSocket upgrade (version 13) with subprotocol aws-appsync-event-ws",
            ),
        );
    };
    let accept = ws::accept_key(key.as_bytes());
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    // Credentials travel in a `header-…` subprotocol (browsers) or as real headers (SDKs).
    let fields = offered
        .iter()
        .find_map(|p| AuthFields::from_subprotocol(p))
        .unwrap_or_else(|| header_fields(headers));
    if !admit_connect(&state, req.extensions()) {
        state.metrics.rate_limited.inc();
        return error(WireError::new(
            ErrorType::LimitExceeded,
            "too many connections per second from this address; retry with backoff",
        ));
    }
    let source = source_ip(req.extensions());
    // SigV4 clients sign at the endpoint they were given: `/apis/{apiId}/event` when the path
    // named the API (this socket's path less `/realtime`).
    let event_path = req
        .uri()
        .path()
        .strip_suffix("/realtime")
        .filter(|p| *p != crate::auth::DEFAULT_EVENT_PATH)
        .map(Arc::<str>::from);
    // The socket's place under the connection caps, held until the WebSocket ends.
    let ticket = req.extensions().get::<Arc<Ticket>>().cloned();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _ticket = ticket;
        match on_upgrade.await {
            Ok(upgraded) => {
                let direct = state.fixed.websocket.direct_write_max_fanout > 0;
                // Plain TCP is taken back from hyper, so small fan-outs can write into it
                // directly; TLS streams (and every stream without direct writes) stay behind
                // hyper's upgrade.
                let upgraded = if direct {
                    match upgraded.downcast::<TokioIo<WriteDeadline<TcpStream>>>() {
                        Ok(parts) => {
                            let stall = Duration::from_millis(state.fixed.limits.write_timeout_ms);
                            let tcp = Arc::new(parts.io.into_inner().into_inner());
                            // A copy: what hyper read ahead is a view of its whole read buffer
                            // (kilobytes), which an idle connection must not keep alive.
                            let read_ahead = bytes::Bytes::copy_from_slice(&parts.read_buf);
                            drop(parts.read_buf);
                            let io =
                                WriteDeadline::new(SharedTcp::new(tcp.clone(), read_ahead), stall);
                            return connection::run(
                                state,
                                io,
                                Some(tcp),
                                fields,
                                source,
                                event_path,
                            )
                            .await;
                        }
                        Err(upgraded) => upgraded,
                    }
                } else {
                    upgraded
                };
                connection::run(
                    state,
                    TokioIo::new(upgraded),
                    None,
                    fields,
                    source,
                    event_path,
                )
                .await
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if offered.iter().any(|p| p == SUBPROTOCOL) {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    r
}
