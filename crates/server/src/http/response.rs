//! Building HTTP responses: plain text, JSON, and the AppSync error body with its
//! `x-amzn-errortype` header.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use herald_protocol::{ErrorType, WireError, reply};

/// Every response body: whole, in memory.
pub type Body = Full<Bytes>;

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

pub fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An error with an explicit status.
pub fn errors(status: StatusCode, error: WireError) -> Response<Body> {
    let mut r = json(status, reply::http_errors(std::slice::from_ref(&error)));
    // AWS services name the error in this header too; the Amplify client reads it.
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_str(error.error_type())
            .unwrap_or_else(|_| HeaderValue::from_static("UnknownError")),
    );
    r
}

/// An error with the status its type carries.
pub fn error(error: WireError) -> Response<Body> {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    errors(status, error)
}

/// A 400 `BadRequestException` with this message.
pub fn bad_request(message: impl Into<String>) -> WireError {
    WireError::new(ErrorType::BadRequest, message)
}

/// Asks hyper to close the connection after this response (the request was not read whole).
pub fn closing(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
