//! HTTP on the one port. This file routes; each endpoint has its own file:
//! `POST /event` ([`publish`], spec §3), the WebSocket upgrade at `/event/realtime`
//! ([`upgrade`]), `GET /event/history` ([`history`]), `GET /event/presence` ([`presence`]), `POST /admin/reload` ([`admin`]), the web
//! console ([`console`]), plus `GET /healthz`, `GET /metrics` and CORS ([`cors`]) for pages on
//! other origins, Server-Sent Events at `/event/stream` ([`stream`]), and the AppSync control
//! plane under `/v1/apis` and `/v2/apis` ([`control_plane`]). CORS covers the client
//! API only, `/event`, `/event/history`, `/event/presence` and `/event/stream`: a page on another origin must not
//! read `/metrics` or drive the admin API with a visitor's browser.

pub mod admin;
pub mod console;
pub mod control_plane;
pub mod cors;
pub mod history;
pub mod presence;
pub mod publish;
pub mod request;
pub mod response;
pub mod stream;
pub mod upgrade;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::api::{Apis, Route};
use crate::state::State;
use response::{Body, bad_request, error, errors, text};

/// A response: whole, or an event stream.
pub type Reply = Either<Body, stream::StreamingBody>;

/// Routes one request to its API (`api::route`), then within it.
pub async fn handle(state: Arc<State>, apis: Arc<Apis>, req: Request<Incoming>) -> Response<Reply> {
    // The control plane is the server's, whichever API it is asked about.
    if control_plane::is_control_path(req.uri().path()) {
        // Boxed: creating an API is a large future (it connects a backplane), which would
        // otherwise size, and be copied with, every request's future.
        let response = Box::pin(control_plane::serve(&state, &apis, req)).await;
        state.metrics.http_status(response.status().as_u16());
        return response.map(Either::Left);
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    // Where the path within the API starts: after `/apis/{apiId}` when the path names it.
    let full = req.uri().path();
    let (state, skip) = match crate::api::route(host, full) {
        Route::Default => (host.and_then(|h| apis.by_host(h)).unwrap_or(state), 0),
        Route::Api {
            api_id,
            path,
            prefixed,
        } => {
            let skip = full.len() - path.len().min(full.len());
            if api_id == state.live().api_id() {
                (state, skip)
            } else if let Some(api) = apis.get(api_id) {
                (api, skip)
            } else if prefixed {
                let message = format!("no API {api_id:?} on this server");
                return errors(StatusCode::NOT_FOUND, bad_request(message)).map(Either::Left);
            } else {
                (state, 0)
            }
        }
    };
    let path = req.uri().path().get(skip..).unwrap_or_default();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|_| {
            matches!(
                path,
                "/event"
                    | "/event/history"
                    | "/event/presence"
                    | "/event/stream"
                    | "/event/stream/token"
            )
        })
        .cloned();
    let mut response = match (req.method(), path) {
        // Boxed: opening a stream is a large future, which would size every request's.
        (&Method::GET, "/event/stream") => match Box::pin(stream::stream(state.clone(), req)).await
        {
            Ok(r) => r.map(Either::Right),
            Err(e) => error(e).map(Either::Left),
        },
        _ => route(&state, req, skip).await.map(Either::Left),
    };
    if let Some(origin) = origin {
        state.live().cors.apply(&origin, response.headers_mut());
    }
    state.metrics.http_status(response.status().as_u16());
    response
}

/// Routes a request answered whole; its path within the API starts at byte `skip`.
async fn route(state: &Arc<State>, req: Request<Incoming>, skip: usize) -> Response<Body> {
    let path = req.uri().path().get(skip..).unwrap_or_default();
    match (req.method(), path) {
        (&Method::POST, "/event") => publish::publish(state, req).await,
        (&Method::POST, "/event/stream/token") => stream::token(state, req).await,
        (&Method::OPTIONS, "/event") => cors::preflight(req.headers(), "POST, OPTIONS"),
        (&Method::OPTIONS, "/event/history" | "/event/presence" | "/event/stream") => {
            cors::preflight(req.headers(), "GET, OPTIONS")
        }
        (&Method::OPTIONS, "/event/stream/token") => {
            cors::preflight(req.headers(), "POST, OPTIONS")
        }
        (&Method::GET, "/event/realtime") => upgrade::upgrade(state.clone(), req),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::POST, "/admin/reload") => admin::reload(state, req.headers()).await,
        (&Method::GET, p) if p == "/console" || p.starts_with("/console/") => console::serve(p)
            .unwrap_or_else(|| errors(StatusCode::NOT_FOUND, bad_request("no such console file"))),
        (&Method::GET, "/metrics") => {
            let body = state.metrics.render(state.connections.queued_bytes());
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/event/history") => {
            history::history(state, req).await.unwrap_or_else(error)
        }
        (&Method::GET, "/event/presence") => {
            presence::presence(state, req).await.unwrap_or_else(error)
        }
        (
            _,
            "/event"
            | "/event/realtime"
            | "/event/history"
            | "/event/presence"
            | "/event/stream"
            | "/event/stream/token"
            | "/healthz",
        ) => errors(
            StatusCode::METHOD_NOT_ALLOWED,
            bad_request("method not allowed on this path"),
        ),
        _ => errors(
            StatusCode::NOT_FOUND,
            bad_request("no such path: publish with POST /event, subscribe at /event/realtime"),
        ),
    }
}
