//! The one table of client-visible error types (spec §2.3, §3).
//!
//! Every error a client can see is a [`WireError`]: an AppSync `errorType`, a message, and the HTTP
//! status used when the error ends an HTTP request. Choices for the spec's open question 6 are
//! recorded in `docs/protocol.md`.

use serde::Serialize;

/// An AppSync error type, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Bad or missing credentials, a mode not allowed for the operation, or a channel outside
    /// every configured namespace (no "not found", so namespace names cannot be probed). HTTP 401.
    Unauthorized,
    /// What `util.unauthorized()` in `onSubscribe` produces in `subscribe_error`.
    HandlerUnauthorized,
    /// Malformed input: bad JSON, invalid channel or id, wrong number of events. HTTP 400.
    BadRequest,
    /// A handler refused the request with `util.error`. HTTP 403.
    Forbidden,
    /// More subscriptions than a connection may hold.
    MaxSubscriptions,
    /// A rate or count limit was exceeded. HTTP 429.
    LimitExceeded,
    /// The message type is not one the protocol knows.
    UnsupportedOperation,
    /// `unsubscribe` named no active subscription.
    UnknownOperation,
    /// The request body is larger than allowed. HTTP 413.
    PayloadTooLarge,
    /// Something failed inside the server. HTTP 500.
    Internal,
}

impl ErrorType {
    /// The `errorType` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Unauthorized => "UnauthorizedException",
            ErrorType::HandlerUnauthorized => "Unauthorized",
            ErrorType::BadRequest => "BadRequestException",
            ErrorType::Forbidden => "ForbiddenException",
            ErrorType::MaxSubscriptions => "MaxSubscriptionsReachedError",
            ErrorType::LimitExceeded => "LimitExceededError",
            ErrorType::UnsupportedOperation => "UnsupportedOperation",
            ErrorType::UnknownOperation => "UnknownOperationError",
            ErrorType::PayloadTooLarge => "PayloadTooLargeException",
            ErrorType::Internal => "InternalFailureException",
        }
    }

    /// The HTTP status for this error when it ends an HTTP request.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorType::Unauthorized | ErrorType::HandlerUnauthorized => 401,
            ErrorType::Forbidden => 403,
            ErrorType::PayloadTooLarge => 413,
            ErrorType::LimitExceeded | ErrorType::MaxSubscriptions => 429,
            ErrorType::Internal => 500,
            ErrorType::BadRequest
            | ErrorType::UnsupportedOperation
            | ErrorType::UnknownOperation => 400,
        }
    }

    /// The numeric `errorCode` some clients read; sent only for authorization failures, as AWS does.
    fn code(self) -> Option<u16> {
        matches!(self, ErrorType::Unauthorized).then_some(401)
    }
}

/// One entry of an `errors` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub kind: ErrorType,
    pub message: String,
    /// An `errorType` and HTTP status chosen by someone else (a handler's `util.error`), sent
    /// instead of `kind`'s.
    pub custom: Option<(String, u16)>,
}

impl WireError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        WireError {
            kind,
            message: message.into(),
            custom: None,
        }
    }

    /// An error whose type and status come from elsewhere (a handler), with `kind` as the
    /// closest built-in category.
    pub fn custom(
        kind: ErrorType,
        error_type: &str,
        status: u16,
        message: impl Into<String>,
    ) -> Self {
        WireError {
            kind,
            message: message.into(),
            custom: Some((error_type.to_owned(), status)),
        }
    }

    /// The `errorType` on the wire.
    pub fn error_type(&self) -> &str {
        match &self.custom {
            Some((t, _)) => t,
            None => self.kind.as_str(),
        }
    }

    /// The HTTP status when this error ends an HTTP request.
    pub fn http_status(&self) -> u16 {
        match &self.custom {
            Some((_, s)) => *s,
            None => self.kind.http_status(),
        }
    }

    /// The standard authorization failure.
    pub fn unauthorized() -> Self {
        WireError::new(
            ErrorType::Unauthorized,
            "You are not authorized to make this call.",
        )
    }
}

impl Serialize for WireError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let code = self.kind.code();
        let mut m = s.serialize_map(Some(2 + usize::from(code.is_some())))?;
        m.serialize_entry("errorType", self.error_type())?;
        if let Some(code) = code {
            m.serialize_entry("errorCode", &code)?;
        }
        m.serialize_entry("message", &self.message)?;
        m.end()
    }
}
