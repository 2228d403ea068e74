//! Errors: [`LoadError`] stops startup; [`HandlerError`] fails one publish or subscribe.

use std::path::PathBuf;

/// Which handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `onPublish`.
    Publish,
    /// `onSubscribe`.
    Subscribe,
}

impl Operation {
    /// The handler's exported name.
    pub fn handler_name(self) -> &'static str {
        match self {
            Operation::Publish => "onPublish",
            Operation::Subscribe => "onSubscribe",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.handler_name())
    }
}

/// Why the handler configuration could not be loaded. Every variant names the namespace.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `code_file` could not be read.
    // The I/O error is part of the message and deliberately not a `#[source]`: printed as a
    // chain it would appear twice.
    #[error("namespace {namespace}: cannot read handler code file {}: {error}", path.display())]
    Read {
        /// Namespace whose config names the file.
        namespace: String,
        /// The file, as looked for (relative paths already joined to the config file's directory).
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The configuration is contradictory or incomplete.
    #[error("namespace {namespace}: {reason}")]
    Config {
        /// Namespace at fault.
        namespace: String,
        /// What to change.
        reason: String,
    },
    /// The JavaScript does not parse.
    #[error("namespace {namespace}: syntax error in handler code{}: {message}",
        line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Syntax {
        /// Namespace whose code is wrong.
        namespace: String,
        /// 1-based line, when QuickJS reported one.
        line: Option<u32>,
        /// QuickJS's message.
        message: String,
    },
    /// The module parsed but failed while linking or running its top-level code
    /// (unknown import, thrown error, time or memory limit).
    #[error("namespace {namespace}: handler code failed to load: {message}")]
    Script {
        /// Namespace whose code failed.
        namespace: String,
        /// What happened.
        message: String,
    },
    /// A `[[data_sources]]` entry is incomplete or contradictory.
    #[error("data source {name}: {reason}")]
    DataSource {
        /// The data source's name.
        name: String,
        /// What to change.
        reason: String,
    },
    /// The JavaScript engine or its threads could not start.
    #[error("cannot start the JavaScript handler engine: {0}")]
    Engine(String),
}

/// Why a handler failed one operation. The server maps it to the wire with
/// [`http_status`](Self::http_status), [`error_type`](Self::error_type) and
/// [`client_message`](Self::client_message); the `Display` text is for logs.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HandlerError {
    /// `util.unauthorized()` (JavaScript) — the request is denied.
    #[error("the handler denied the request (util.unauthorized)")]
    Unauthorized,
    /// `util.error(message, errorType)` in JavaScript, or `{"error": message}` from an HTTP handler.
    #[error("the handler rejected the request: {message}")]
    Error {
        /// Message for the client.
        message: String,
        /// `errorType` passed to `util.error`, if any.
        error_type: Option<String>,
    },
    /// The handler threw something other than `util.error`/`util.unauthorized`.
    #[error("namespace {namespace}: {operation} threw: {message}")]
    Thrown {
        /// Namespace of the handler.
        namespace: String,
        /// Which handler.
        operation: Operation,
        /// The exception, with its stack when there is one.
        message: String,
    },
    /// The handler ran past its time limit (JavaScript) or timeout (HTTP).
    #[error("namespace {namespace}: {operation} did not finish within {limit_ms} ms")]
    Timeout {
        /// Namespace of the handler.
        namespace: String,
        /// Which handler.
        operation: Operation,
        /// The limit that was hit.
        limit_ms: u64,
    },
    /// The JavaScript handler exceeded the heap limit; its worker's runtime was rebuilt.
    #[error(
        "namespace {namespace}: {operation} exceeded the {limit_mib} MiB JavaScript heap limit"
    )]
    OutOfMemory {
        /// Namespace of the handler.
        namespace: String,
        /// Which handler.
        operation: Operation,
        /// The limit that was hit.
        limit_mib: usize,
    },
    /// Handler capacity is exhausted for this call, which was refused at once rather than
    /// queued: its namespace's JavaScript queue is full (`js_namespace_queue`), or the shared one
    /// is (`js_queue`) and its namespace has the most waiting; it waited `js_queue_timeout_ms`
    /// for a JavaScript thread; or its namespace has `http_namespace_max_in_flight` HTTP calls in
    /// flight, or all namespaces `http_max_in_flight` fire-and-forget ones. Retry later; the text
    /// names the key to raise.
    #[error("handler capacity exhausted: {0}")]
    Overloaded(String),
    /// The HTTP handler could not be reached or answered with a non-2xx status.
    #[error("namespace {namespace}: HTTP {operation} handler {url}: {reason}")]
    Http {
        /// Namespace of the handler.
        namespace: String,
        /// Which handler.
        operation: Operation,
        /// The endpoint's origin (`scheme://host:port`): its path or query may hold a secret.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A `DIRECT` Lambda handler's call failed (network, timeout, function error). Data-source
    /// failures of `{request, response}` handlers reach `response` as `ctx.error` instead.
    #[error("namespace {namespace}: {operation} data source {source_name}: {reason}")]
    DataSource {
        /// Namespace of the handler.
        namespace: String,
        /// Which handler.
        operation: Operation,
        /// The data source's name.
        source_name: String,
        /// What went wrong (never credentials).
        reason: String,
    },
    /// The handler's result breaks the contract (unknown or duplicate id, wrong shape).
    #[error("namespace {namespace}: {operation} returned an invalid result: {reason}")]
    Invalid {
        /// Namespace of the handler.
        namespace: String,
        /// Which handler.
        operation: Operation,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine itself failed (a worker thread stopped). Not the handler's fault.
    #[error("handler engine failure: {0}")]
    Internal(String),
}

impl HandlerError {
    /// HTTP status for `POST /event`: 401 for `Unauthorized`, 403 for `util.error`,
    /// 503 for `Overloaded`, 500 for handler failures.
    pub fn http_status(&self) -> u16 {
        match self {
            HandlerError::Unauthorized => 401,
            HandlerError::Error { .. } => 403,
            HandlerError::Overloaded(_) => 503,
            _ => 500,
        }
    }

    /// `errorType` for the wire. `Unauthorized` becomes `UnauthorizedException` on publish and
    /// `Unauthorized` on subscribe (what AppSync sends); failures of the handler itself become
    /// `HandlerExecutionError`, as AppSync reports them.
    pub fn error_type(&self, operation: Operation) -> &str {
        match self {
            HandlerError::Unauthorized => match operation {
                Operation::Publish => "UnauthorizedException",
                Operation::Subscribe => "Unauthorized",
            },
            HandlerError::Error { error_type, .. } => {
                error_type.as_deref().unwrap_or("HandlerError")
            }
            HandlerError::Overloaded(_) => "LimitExceededError",
            _ => "HandlerExecutionError",
        }
    }

    /// Message safe to show the client: the `util.error` message, or a fixed text. Details of
    /// handler failures (stack traces, URLs) stay in the logs.
    pub fn client_message(&self) -> &str {
        match self {
            HandlerError::Unauthorized => "You are not authorized to make this call.",
            HandlerError::Error { message, .. } => message,
            HandlerError::Overloaded(_) => "Too many handler calls in progress; retry later.",
            _ => "Unable to process request",
        }
    }
}
