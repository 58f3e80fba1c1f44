//! The one table from engine errors to OCI error codes and HTTP statuses.
//!
//! Every error answer is the spec's JSON body `{"errors":[{"code","message","detail"}]}`:
//! `message` is the code's fixed description, `detail` says what happened in this request.

use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::response::Response;
use crate::registry::mirror::MirrorError;
use crate::registry::store::StoreError;
use crate::storage::StorageError;
use crate::upstream::UpstreamError;

/// An error answer of the API, carrying what its headers need.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("invalid reference: {0}")]
    ReferenceInvalid(String),
    #[error("upload id {0:?} is not one this registry hands out")]
    UploadIdInvalid(String),
    #[error("requested range is outside the blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("Content-Range {0:?} is not of the form <start>-<end>")]
    ContentRangeInvalid(String),
    #[error("Content-Length {length} does not match Content-Range {start}-{end}")]
    ChunkSizeMismatch { length: u64, start: u64, end: u64 },
    #[error("the stored manifest is {stored}, which the request's Accept header does not allow")]
    ManifestNotAcceptable { stored: &'static str },
    #[error("query parameter n must be a non-negative integer, got {0:?}")]
    PaginationInvalid(String),
    #[error("no such endpoint")]
    NotFound,
    #[error("requests must come through regapp's TLS edge")]
    NotThroughFront,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("{action} on {repo} needs credentials")]
    AuthenticationRequired {
        repo: String,
        action: crate::auth::access::Action,
    },
    #[error("{user} may not {action} {repo}")]
    AccessDenied {
        user: String,
        repo: String,
        action: crate::auth::access::Action,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// The OCI error codes regapp answers with, and their fixed descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    TooManyRequests,
    Unsupported,
    Unavailable,
    RangeInvalid,
    PaginationNumberInvalid,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unsupported => "UNSUPPORTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::Unknown => "UNKNOWN",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Code::BlobUnknown => "blob unknown to registry",
            Code::BlobUploadInvalid => "blob upload invalid",
            Code::BlobUploadUnknown => "blob upload unknown to registry",
            Code::DigestInvalid => "provided digest did not match uploaded content",
            Code::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            Code::ManifestInvalid => "manifest invalid",
            Code::ManifestUnknown => "manifest unknown to registry",
            Code::NameInvalid => "invalid repository name",
            Code::NameUnknown => "repository name not known to registry",
            Code::SizeInvalid => "provided length did not match content length",
            Code::Unauthorized => "authentication required",
            Code::Denied => "requested access to the resource is denied",
            Code::TooManyRequests => "too many requests",
            Code::Unsupported => "the operation is unsupported",
            Code::Unavailable => "service unavailable",
            Code::RangeInvalid => "invalid content range",
            Code::PaginationNumberInvalid => "invalid number of results requested",
            Code::Unknown => "unknown error",
        }
    }
}

impl ApiError {
    /// The code and status of this error. No catch-all arm: a new error must be placed here.
    pub fn code_and_status(&self) -> (Code, StatusCode) {
        use StatusCode as S;
        match self {
            ApiError::NameInvalid(_) => (Code::NameInvalid, S::BAD_REQUEST),
            ApiError::DigestInvalid(_) => (Code::DigestInvalid, S::BAD_REQUEST),
            ApiError::ReferenceInvalid(_) => (Code::ManifestInvalid, S::BAD_REQUEST),
            ApiError::UploadIdInvalid(_) => (Code::BlobUploadUnknown, S::NOT_FOUND),
            ApiError::RangeNotSatisfiable { .. } => (Code::RangeInvalid, S::RANGE_NOT_SATISFIABLE),
            ApiError::ContentRangeInvalid(_) => (Code::RangeInvalid, S::RANGE_NOT_SATISFIABLE),
            ApiError::ChunkSizeMismatch { .. } => (Code::SizeInvalid, S::BAD_REQUEST),
            ApiError::ManifestNotAcceptable { .. } => (Code::ManifestUnknown, S::NOT_FOUND),
            ApiError::PaginationInvalid(_) => (Code::PaginationNumberInvalid, S::BAD_REQUEST),
            ApiError::NotFound => (Code::Unsupported, S::NOT_FOUND),
            ApiError::NotThroughFront => (Code::Denied, S::FORBIDDEN),
            ApiError::MethodNotAllowed => (Code::Unsupported, S::METHOD_NOT_ALLOWED),
            ApiError::AuthenticationRequired { .. } => (Code::Unauthorized, S::UNAUTHORIZED),
            ApiError::AccessDenied { .. } => (Code::Denied, S::FORBIDDEN),
            ApiError::Store(e) => store_code_and_status(e),
            ApiError::Mirror(e) => match e {
                MirrorError::ReadOnly { .. } => (Code::Denied, S::FORBIDDEN),
                MirrorError::Upstream { source, .. } => match source {
                    UpstreamError::RateLimited { .. } => {
                        (Code::TooManyRequests, S::TOO_MANY_REQUESTS)
                    }
                    // Docker Hub refuses a repository that does not exist as one that needs
                    // credentials: both read "not here" to a client.
                    UpstreamError::NotFound | UpstreamError::Denied(_) => {
                        (Code::NameUnknown, S::NOT_FOUND)
                    }
                    UpstreamError::Setup(_)
                    | UpstreamError::Status(_)
                    | UpstreamError::TimedOut
                    | UpstreamError::Unreachable(_)
                    | UpstreamError::Invalid(_) => (Code::Unavailable, S::SERVICE_UNAVAILABLE),
                },
                MirrorError::Spool(_) | MirrorError::Setup { .. } => {
                    (Code::Unknown, S::INTERNAL_SERVER_ERROR)
                }
                MirrorError::Store(e) => store_code_and_status(e),
            },
        }
    }

    pub fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        if status.is_server_error() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let detail = self.to_string();
        // Clients print `code: message`, never the detail: where the reason is the news (a
        // mirror refusing a push, an upstream that cannot be asked), it is the message too.
        let message = match &self {
            ApiError::Mirror(MirrorError::ReadOnly { .. } | MirrorError::Upstream { .. })
            | ApiError::Store(StoreError::TagImmutable { .. }) => detail.as_str(),
            _ => code.message(),
        };
        let mut response = error_response_saying(status, code, message, &detail).map(|body| {
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        });
        let headers = response.headers_mut();
        match &self {
            ApiError::RangeNotSatisfiable { size } => {
                headers.insert(header::CONTENT_RANGE, value(format!("bytes */{size}")));
            }
            ApiError::Store(StoreError::UploadOutOfOrder { size, .. }) => {
                headers.insert(header::RANGE, value(upload_range(*size)));
            }
            ApiError::Mirror(MirrorError::Upstream {
                source: UpstreamError::RateLimited { retry_after },
                ..
            }) => {
                let seconds = retry_after.as_secs().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}

/// The code and status of a store error (answered directly or through the mirror).
fn store_code_and_status(e: &StoreError) -> (Code, StatusCode) {
    use StatusCode as S;
    match e {
        StoreError::NameUnknown(_) => (Code::NameUnknown, S::NOT_FOUND),
        StoreError::BlobUnknown(_) => (Code::BlobUnknown, S::NOT_FOUND),
        StoreError::UploadUnknown => (Code::BlobUploadUnknown, S::NOT_FOUND),
        StoreError::UploadOutOfOrder { .. } => (Code::RangeInvalid, S::RANGE_NOT_SATISFIABLE),
        StoreError::UploadInvalid(_) => (Code::BlobUploadInvalid, S::BAD_REQUEST),
        StoreError::DigestMismatch { .. } => (Code::DigestInvalid, S::BAD_REQUEST),
        StoreError::ManifestUnknown(_) => (Code::ManifestUnknown, S::NOT_FOUND),
        StoreError::ManifestInvalid(_) => (Code::ManifestInvalid, S::BAD_REQUEST),
        StoreError::ManifestTooLarge { .. } => (Code::ManifestInvalid, S::PAYLOAD_TOO_LARGE),
        StoreError::ManifestBlobUnknown(_) => (Code::ManifestBlobUnknown, S::BAD_REQUEST),
        StoreError::DeleteDisabled => (Code::Unsupported, S::METHOD_NOT_ALLOWED),
        StoreError::TagImmutable { .. } => (Code::Denied, S::FORBIDDEN),
        StoreError::Body(_) => (Code::BlobUploadInvalid, S::BAD_REQUEST),
        StoreError::BodyStalled(_) => (Code::BlobUploadInvalid, S::REQUEST_TIMEOUT),
        StoreError::Storage(StorageError::Full { .. }) => (Code::Unknown, S::INSUFFICIENT_STORAGE),
        StoreError::Storage(
            StorageError::NotFound { .. } | StorageError::Io { .. } | StorageError::InvalidKey(_),
        ) => (Code::Unknown, S::INTERNAL_SERVER_ERROR),
    }
}

/// The spec's JSON error body: `{"errors":[{"code","message","detail"}]}`. The edge answers
/// 401, 403 and 429 with it too.
/// The spec's JSON error answer: status, `Content-Type`, length, API version header and body.
/// What the engine answers for every error, and the edge for what it refuses itself (401,
/// 403, 429, 431).
pub fn error_response(status: http::StatusCode, code: Code, detail: &str) -> http::Response<Bytes> {
    error_response_saying(status, code, code.message(), detail)
}

/// [`error_response`] with a `message` of its own instead of the code's fixed description.
fn error_response_saying(
    status: http::StatusCode,
    code: Code,
    message: &str,
    detail: &str,
) -> http::Response<Bytes> {
    let body = error_body_saying(code, message, detail);
    let length = HeaderValue::from(body.len());
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, length);
    headers.insert(
        super::response::API_VERSION,
        super::response::API_VERSION_VALUE,
    );
    response
}

fn error_body_saying(code: Code, message: &str, detail: &str) -> bytes::Bytes {
    let body = json!({"errors": [{
        "code": code.as_str(),
        "message": message,
        "detail": detail,
    }]});
    serde_json::to_vec(&body)
        .expect("a JSON value always serialises")
        .into()
}

/// The `Range` header of an upload of `size` bytes, in distribution's form (`0-0` when empty).
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

pub fn value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("header values built here are visible ASCII")
}
