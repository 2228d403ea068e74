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
    /// An operation outside what Herald serves (docs/control-plane.md).
    #[error("{operation} is not supported by Herald yet: {why} (docs/control-plane.md)")]
    Unsupported {
        operation: &'static str,
        why: &'static str,
    },
    /// A namespace or key that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A namespace of that name exists.
    #[error("{0}")]
    Conflict(String),
    /// `control_plane.max_namespaces` reached.
    #[error("{0}")]
    QuotaExceeded(String),
    /// `control_plane.max_api_keys` reached.
    #[error("{0}")]
    ApiKeyLimitExceeded(String),
    /// `expires` outside 1 to 365 days from now.
    #[error("expires must be from 1 to 365 days from now (epoch seconds)")]
    KeyValidityOutOfBounds,
    /// The configuration file declares the resource: the control plane leaves it alone.
    #[error("{0}")]
    FileOwned(String),
    /// The change does not build: handler code that does not compile, a mode without its
    /// provider, a data source that does not exist.
    #[error("{0}")]
    Invalid(String),
    /// The change could not be stored; nothing changed.
    #[error("the change could not be stored; nothing changed: {0}")]
    NotStored(String),
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
            ControlError::NamespaceNotFound { .. } | ControlError::NotFound(_) => {
                "NotFoundException"
            }
            ControlError::Unauthorized => "UnauthorizedException",
            ControlError::Unsupported { .. }
            | ControlError::BadRequest(_)
            | ControlError::FileOwned(_)
            | ControlError::Invalid(_) => "BadRequestException",
            ControlError::Conflict(_) => "ConflictException",
            ControlError::QuotaExceeded(_) => "ServiceQuotaExceededException",
            ControlError::ApiKeyLimitExceeded(_) => "ApiKeyLimitExceededException",
            ControlError::KeyValidityOutOfBounds => "ApiKeyValidityOutOfBoundsException",
            ControlError::UnknownOperation { .. } => "UnknownOperationException",
            ControlError::Internal | ControlError::NotStored(_) => "InternalFailureException",
        }
    }

    /// The HTTP status the AWS model gives the error type.
    pub fn status(&self) -> u16 {
        match self {
            ControlError::Off
            | ControlError::ApiNotFound(_)
            | ControlError::NamespaceNotFound { .. }
            | ControlError::NotFound(_)
            | ControlError::UnknownOperation { .. } => 404,
            ControlError::Unauthorized => 401,
            ControlError::Unsupported { .. }
            | ControlError::BadRequest(_)
            | ControlError::FileOwned(_)
            | ControlError::Invalid(_)
            | ControlError::ApiKeyLimitExceeded(_)
            | ControlError::KeyValidityOutOfBounds => 400,
            ControlError::Conflict(_) => 409,
            ControlError::QuotaExceeded(_) => 402,
            ControlError::Internal | ControlError::NotStored(_) => 500,
        }
    }

    /// The JSON body: `{"message": …}`, where the AWS SDKs read the message.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({ "message": self.to_string() })
            .to_string()
            .into_bytes()
    }
}
