//! The admin API: `POST /admin/reload` with `x-admin-key` reloads the configuration without
//! dropping connections. Without any admin key the API is off.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};

use herald_protocol::WireError;

use super::response::{Body, bad_request, errors, json};
use crate::state::State;

/// `POST /admin/reload`: `200 {"reloaded":true}`, or the reason the new configuration was
/// refused (400, the running one is kept), or 401.
pub async fn reload(state: &Arc<State>, headers: &HeaderMap) -> Response<Body> {
    let presented = headers
        .get("x-admin-key")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let live = state.live();
    let keys = &live.admin.keys;
    let known =
        crate::auth::api_key::matching(keys.iter().map(|k| k.as_bytes()), presented).is_some();
    if !known {
        return errors(StatusCode::UNAUTHORIZED, WireError::unauthorized());
    }
    match crate::reload::reload(state.clone()).await {
        Ok(()) => json(StatusCode::OK, Bytes::from_static(b"{\"reloaded\":true}")),
        Err(e) => {
            tracing::warn!(error = %e, "reload refused");
            errors(StatusCode::BAD_REQUEST, bad_request(e.to_string()))
        }
    }
}
