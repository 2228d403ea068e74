//! The web console at `/console`: static files embedded in the binary.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{self, HeaderValue};

use crate::http::Body;

/// The console's files: (path under /console, content type, contents).
const FILES: &[(&str, &str, &str)] = &[(
    "",
    "text/html; charset=utf-8",
    "<!doctype html><title>Herald console</title><p>The console is being built.</p>",
)];

/// Serves `/console` and `/console/<file>`; `None` for an unknown file.
pub fn serve(path: &str) -> Option<Response<Body>> {
    let name = path.trim_start_matches("/console").trim_start_matches('/');
    let (_, kind, body) = FILES.iter().find(|(n, _, _)| *n == name)?;
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Some(r)
}
