//! The control plane's errors, as the AWS model names them: each has the error type botocore and
//! the AWS SDKs read from the `x-amzn-ErrorType` header and the HTTP status the model gives it.
//! They are the management API's own table, apart from the data plane's
//! (`herald_protocol::ErrorType`): the two protocols shape errors differently.

/// Why a control-plane request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No administrator credentials are configured.
    #[error(
        "the AppSync control plane is off: configure [[control_plane.access_keys]] (docs/control-plane.md)"
    )]
    Off,
    /// The signature did not verify; the reason is logged, never sent.
    #[error("You are not authorized to make this call.")]
    Unauthorized,
    /// No API has this id.
    #[error("API {0:?} not found")]
    ApiNotFound(String),
    /// The API has no namespace of this name.
    #[error("channel namespace {name:?} not found in API {api_id:?}")]
    NamespaceNotFound { api_id: String, name: String },
    /// A write, or an operation outside the Event API subset: not served yet.
    #[error(
        "{operation} is not supported by Herald yet: its control plane is read-only (docs/control-plane.md)"
    )]
    Unsupported { operation: &'static str },
    /// No operation has this method and path.
    #[error("no AppSync operation is {method} {path}")]
    UnknownOperation { method: String, path: String },
    /// A malformed parameter (`maxResults`, `nextToken`).
    #[error("{0}")]
    BadRequest(String),
    /// A reply could not be encoded (logged where it happened).
    #[error("internal failure")]
    Internal,
}

impl ControlError {
    /// The AWS error type (`x-amzn-ErrorType`).
    pub fn error_type(&self) -> &'static str {
        match self {
            ControlError::Off | ControlError::ApiNotFound(_) => "NotFoundException",
            ControlError::NamespaceNotFound { .. } => "NotFoundException",
            ControlError::Unauthorized => "UnauthorizedException",
            ControlError::Unsupported { .. } | ControlError::BadRequest(_) => "BadRequestException",
            ControlError::UnknownOperation { .. } => "UnknownOperationException",
            ControlError::Internal => "InternalFailureException",
        }
    }

    /// The HTTP status the AWS model gives the error type.
    pub fn status(&self) -> u16 {
        match self {
            ControlError::Off
            | ControlError::ApiNotFound(_)
            | ControlError::NamespaceNotFound { .. }
            | ControlError::UnknownOperation { .. } => 404,
            ControlError::Unauthorized => 401,
            ControlError::Unsupported { .. } | ControlError::BadRequest(_) => 400,
            ControlError::Internal => 500,
        }
    }

    /// The JSON body: `{"message": …}`, where the AWS SDKs read the message.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({ "message": self.to_string() })
            .to_string()
            .into_bytes()
    }
}
