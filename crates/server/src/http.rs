//! HTTP on the one port: `POST /event` (spec §3), the WebSocket upgrade at `/event/realtime`,
//! `GET /healthz`, and CORS so pages on other origins can publish.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use herald_protocol::{AuthFields, Channel, ErrorType, HttpPublish, WireError, reply};

use crate::auth::Presented;
use crate::connection;
use crate::state::{Access, State, Target};
use crate::transport::ws;

pub type Body = Full<Bytes>;

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

/// The one subprotocol Herald speaks.
const SUBPROTOCOL: &str = "aws-appsync-event-ws";

/// Routes one request.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut response = match (req.method(), path) {
        (&Method::POST, "/event") => publish(&state, req).await,
        (&Method::OPTIONS, "/event") => preflight(req.headers()),
        (&Method::GET, "/event/realtime") => upgrade(state.clone(), req),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::POST, "/admin/reload") => admin_reload(&state, req.headers()),
        (&Method::GET, p) if p == "/console" || p.starts_with("/console/") => {
            crate::console::serve(p).unwrap_or_else(|| {
                errors(
                    StatusCode::NOT_FOUND,
                    WireError::new(ErrorType::BadRequest, "no such console file"),
                )
            })
        }
        (&Method::GET, "/metrics") => {
            let body = state.metrics.render(state.connections.queued_bytes());
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/event/history") => match history(&state, req).await {
            Ok(r) => r,
            Err(e) => error_response(e),
        },
        (_, "/event" | "/event/realtime" | "/event/history" | "/healthz") => errors(
            StatusCode::METHOD_NOT_ALLOWED,
            WireError::new(ErrorType::BadRequest, "method not allowed on this path"),
        ),
        _ => errors(
            StatusCode::NOT_FOUND,
            WireError::new(
                ErrorType::BadRequest,
                "no such path: publish with POST /event, subscribe at /event/realtime",
            ),
        ),
    };
    if let Some(origin) = origin {
        cors(&state, &origin, response.headers_mut());
    }
    state.metrics.http_status(response.status().as_u16());
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn errors(status: StatusCode, error: WireError) -> Response<Body> {
    let mut r = json(status, reply::http_errors(std::slice::from_ref(&error)));
    // AWS services name the error in this header too; the Amplify client reads it.
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_str(error.error_type())
            .unwrap_or_else(|_| HeaderValue::from_static("UnknownError")),
    );
    r
}

fn error_response(error: WireError) -> Response<Body> {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    errors(status, error)
}

/// Credentials from request headers, names lower-cased (so `X-Api-Key` and `x-api-key` agree).
fn header_fields(headers: &HeaderMap) -> AuthFields {
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

async fn publish(state: &State, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let fields = header_fields(&parts.headers);
    let limit = state.config.limits.max_request_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                return error_response(WireError::new(
                    ErrorType::PayloadTooLarge,
                    format!("the request body is larger than {limit} bytes"),
                ));
            }
            return error_response(WireError::new(
                ErrorType::BadRequest,
                "could not read the request body",
            ));
        }
    };
    let namespace = body_namespace(&body);
    let m = state.metrics.ns(&namespace);
    match publish_body(state, &parts, &fields, &body).await {
        Ok(result) => {
            m.publish_success.inc();
            json(StatusCode::OK, result.to_http_body())
        }
        Err(e) => {
            if e.http_status() >= 500 {
                m.publish_server_error.inc();
            } else {
                m.publish_client_error.inc();
            }
            error_response(e)
        }
    }
}

/// The namespace a publish body names, for metrics only (invalid bodies count under no namespace).
fn body_namespace(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct C<'a> {
        #[serde(borrow)]
        channel: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<C>(body)
        .ok()
        .and_then(|c| Channel::parse(&c.channel).ok())
        .map(|c| c.namespace().to_owned())
        .unwrap_or_default()
}

async fn publish_body(
    state: &State,
    parts: &hyper::http::request::Parts,
    fields: &AuthFields,
    body: &[u8],
) -> Result<reply::PublishResult, WireError> {
    let request = HttpPublish::parse(body, &state.event_limits)?;
    let channel = Channel::parse(&request.channel)
        .map_err(|e| WireError::new(ErrorType::BadRequest, e.to_string()))?;
    let namespace = channel.namespace();
    let credential = Presented::Http {
        parts,
        body,
        fields,
    };
    let identity = state
        .admit(namespace, Access::Publish, &request.channel, credential)
        .await?;
    state.check_rules(&identity, namespace, Target::Publish(&channel))?;
    let source = source_ip(&parts.extensions);
    let caller = crate::publish::Caller {
        identity: &identity,
        headers: fields,
        source_ip: &source,
    };
    crate::publish::publish(state, &channel, &request.events, &caller).await
}

/// Decodes `%XX` escapes and `+` in a query component.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match c {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(c),
            },
            b'+' => out.push(b' '),
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Most events one history request returns.
const HISTORY_PAGE_MAX: usize = 1000;

/// `GET /event/history?channel=/ns/a&since=<epoch>:<offset>|<ms>&limit=N` (Herald extension),
/// authorized like a subscription to the channel.
async fn history(state: &State, req: Request<Incoming>) -> Result<Response<Body>, WireError> {
    // SigV4 clients sign this GET itself, so it is verified as the real request.
    let (parts, _) = req.into_parts();
    use herald_history::{HistoryStore, Position, ReadOutcome, Since};
    let bad = |m: &str| WireError::new(ErrorType::BadRequest, m);
    let mut channel = None;
    let mut since = Since::Start;
    let mut limit = 100usize;
    for pair in parts.uri.query().unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "channel" => channel = Some(v),
            "since" if !v.is_empty() => {
                since = match v.split_once(':') {
                    Some((e, o)) => Since::After(Position {
                        epoch: e
                            .parse()
                            .map_err(|_| bad("since: expected <epoch>:<offset> or a time in ms"))?,
                        offset: o
                            .parse()
                            .map_err(|_| bad("since: expected <epoch>:<offset> or a time in ms"))?,
                    }),
                    None => Since::TimeMs(
                        v.parse()
                            .map_err(|_| bad("since: expected <epoch>:<offset> or a time in ms"))?,
                    ),
                }
            }
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .map_err(|_| bad("limit: expected a number"))?
                    .clamp(1, HISTORY_PAGE_MAX)
            }
            _ => {}
        }
    }
    let channel = channel
        .ok_or_else(|| bad("channel is required: /event/history?channel=/namespace/channel"))?;
    let channel = Channel::parse(&channel)
        .map_err(|e| WireError::new(ErrorType::BadRequest, e.to_string()))?;
    let namespace = channel.namespace();
    let fields = header_fields(&parts.headers);
    let credential = Presented::Http {
        parts: &parts,
        body: &[],
        fields: &fields,
    };
    let identity = state
        .admit(namespace, Access::Subscribe, channel.as_str(), credential)
        .await?;
    let exact = herald_protocol::Pattern::Exact(channel.clone());
    state.check_rules(&identity, namespace, Target::Subscribe(&exact))?;
    let history = state.history_of(namespace).ok_or_else(|| {
        bad("this namespace keeps no history: set history in its [[namespaces]] entry")
    })?;
    let outcome = history
        .store()
        .read(channel.as_str(), since, limit)
        .await
        .map_err(|e| WireError::new(ErrorType::Internal, format!("history read failed: {e}")))?;
    let body = match outcome {
        ReadOutcome::Events { events, top } => {
            let events: Vec<serde_json::Value> = events
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "event": serde_json::from_slice::<serde_json::Value>(&e.payload).unwrap_or_default(),
                        "position": crate::history::wire(e.position),
                        "time_ms": e.time_ms,
                    })
                })
                .collect();
            serde_json::json!({"channel": channel.as_str(), "recovered": true, "events": events, "top": crate::history::wire(top)})
        }
        ReadOutcome::Unrecoverable { reason, top } => serde_json::json!({
            "channel": channel.as_str(),
            "recovered": false,
            "reason": crate::history::reason(reason),
            "events": [],
            "top": crate::history::wire(top),
        }),
    };
    Ok(json(StatusCode::OK, Bytes::from(body.to_string())))
}

/// `POST /admin/reload` with `x-admin-key`: reloads the configuration without dropping
/// connections.
fn admin_reload(state: &State, headers: &HeaderMap) -> Response<Body> {
    let live = state.live();
    let keys = &live.config.admin.keys;
    let presented = headers
        .get("x-admin-key")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // Compare with every key, in time independent of where they differ.
    let ok = keys.iter().fold(false, |found, k| {
        let k = k.as_bytes();
        let same = k.len() == presented.len()
            && k.iter()
                .zip(presented)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        found | same
    });
    if keys.is_empty() || !ok {
        return errors(StatusCode::UNAUTHORIZED, WireError::unauthorized());
    }
    match state.reload_from_source() {
        Ok(()) => json(StatusCode::OK, Bytes::from_static(b"{\"reloaded\":true}")),
        Err(e) => {
            tracing::warn!(error = %e, "reload refused");
            errors(
                StatusCode::BAD_REQUEST,
                WireError::new(ErrorType::BadRequest, e.to_string()),
            )
        }
    }
}

fn preflight(headers: &HeaderMap) -> Response<Body> {
    let mut r = text(StatusCode::NO_CONTENT, "");
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_static(
                "content-type, x-api-key, authorization, x-amz-date, x-amz-security-token, x-amz-user-agent, x-amz-content-sha256",
            )
        });
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

fn cors(state: &State, origin: &HeaderValue, h: &mut HeaderMap) {
    let allowed = &state.config.http.cors_allowed_origins;
    let ok = allowed
        .iter()
        .any(|a| a == "*" || origin.to_str().is_ok_and(|o| o == a));
    if ok {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn upgrade(state: Arc<State>, mut req: Request<Incoming>) -> Response<Body> {
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
            WireError::new(
                ErrorType::BadRequest,
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
    let source = source_ip(req.extensions());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => connection::run(state, TokioIo::new(upgraded), fields, source).await,
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
