//! The one error type of statusd, and the one place that maps it onto gRPC.
//!
//! Domain errors are values (as in etcd's `v3rpc`): the model and the service
//! return them, and each edge translates them exactly once — `From<Error> for
//! tonic::Status` here, and Graph's JSON error body in the REST edge. A client's
//! mistake is never `Internal`.

use tonic_types::{ErrorDetails, StatusExt};

/// Everything that can go wrong in an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed; `field` names the offending field (Graph's
    /// camelCase name on the REST side, snake_case on the gRPC side are both
    /// derived from the model's field name).
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The named parent or status does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A record with that id already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// Storage cannot accept the operation right now (disk full, I/O error,
    /// a delete of the same id still in progress); retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The disk holding the data is (nearly) full: writes are refused, reads
    /// work, and writes resume once space is freed.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A revision older than the history kept (Watch).
    #[error("{0}")]
    OutOfRange(String),
    /// A consumer that fell too far behind (Watch).
    #[error("{0}")]
    ResourceExhausted(String),
    /// What this backend does not offer.
    #[error("{0}")]
    Unimplemented(String),
    /// A bug or corrupted data: never caused by a client's input.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An `InvalidArgument` naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
                Error::InsufficientStorage(format!("the disk is full: {io}"))
            }
            sled::Error::Io(io) => Error::Unavailable(format!("storage I/O error: {io}")),
            sled::Error::Corruption { .. } => Error::Internal(format!("storage corruption: {e}")),
            other => Error::Internal(format!("storage error: {other}")),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Code;
        match e {
            Error::InvalidArgument { field, message } => {
                let field = grpc_field_name(&field);
                let text = format!("invalid {field}: {message}");
                let details = ErrorDetails::with_bad_request_violation(field, message);
                tonic::Status::with_error_details(Code::InvalidArgument, text, details)
            }
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::AlreadyExists(m) => tonic::Status::already_exists(m),
            Error::Unavailable(m) | Error::InsufficientStorage(m) => tonic::Status::unavailable(m),
            Error::OutOfRange(m) => tonic::Status::out_of_range(m),
            Error::ResourceExhausted(m) => tonic::Status::resource_exhausted(m),
            Error::Unimplemented(m) => tonic::Status::unimplemented(m),
            Error::Internal(m) => tonic::Status::internal(m),
        }
    }
}

/// The proto (snake_case) name of a field named in Graph's camelCase.
fn grpc_field_name(field: &str) -> String {
    match field {
        "@odata.type" => "odata_type".to_owned(),
        "rootCertificate" => "root_certificate_id".to_owned(),
        "identityCertificate" => "identity_certificate_id".to_owned(),
        other => crate::model::snake_case(other),
    }
}
