//! The admin API: `POST /admin/reload` with `x-admin-key` reloads the configuration without
//! dropping connections. Without any admin key the API is off; guessing is bounded by
//! `auth::admin_key`.

use std::time::Instant;

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use herald_protocol::{ErrorType, WireError};

use super::response::{Body, bad_request, errors, json};
use crate::auth::admin_key::MAX_FAILURES;
use crate::state::State;

/// `POST /admin/reload`: `200 {"reloaded":true}`, or the reason the new configuration was
/// refused (400, the running one is kept), 401, or 429 after too many failed attempts.
pub async fn reload(state: &std::sync::Arc<State>, headers: &HeaderMap) -> Response<Body> {
    let now = Instant::now();
    if let Some(left) = state.admin_failures.closed_for(now) {
        let mut r = errors(
            StatusCode::TOO_MANY_REQUESTS,
            WireError::new(
                ErrorType::LimitExceeded,
                format!(
                    "more than {MAX_FAILURES} failed admin key attempts within a minute; try again later"
                ),
            ),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(left.as_secs().max(1)),
        );
        return r;
    }
    let presented = headers
        .get("x-admin-key")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let live = state.live();
    let keys = &live.admin.keys;
    let known =
        crate::auth::api_key::matching(keys.iter().map(|k| k.as_bytes()), presented).is_some();
    if !known {
        state.admin_failures.failed(now);
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
