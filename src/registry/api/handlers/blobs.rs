//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use http::{header, HeaderValue, Method, StatusCode};

use crate::registry::api::errors::{value, ApiError};
use crate::registry::api::response::{self, Response, CONTENT_DIGEST};
use crate::registry::api::Request;
use crate::registry::store::Store;
use crate::registry::types::range::{parse_range_header, RangeRequest};
use crate::registry::types::ByteRange;
use crate::registry::types::{Digest, RepoName};
use crate::storage::ByteStream;

const OCTET_STREAM: &str = "application/octet-stream";

pub(super) async fn get(
    store: &Store,
    name: &RepoName,
    digest: &Digest,
    req: &Request,
) -> Result<Response, ApiError> {
    let size = store.blob_size(name, digest).await?;
    get_sized(store, size, digest, req).await
}

/// [`get`] of a blob the repository is known to serve, of `size` bytes.
pub(super) async fn get_sized(
    store: &Store,
    size: u64,
    digest: &Digest,
    req: &Request,
) -> Result<Response, ApiError> {
    if req.method == Method::GET {
        if let Some(url) = store.blob_download_url(digest).await? {
            let mut response = response::empty(StatusCode::TEMPORARY_REDIRECT);
            response.headers_mut().insert(header::LOCATION, value(url));
            response
                .headers_mut()
                .insert(CONTENT_DIGEST, value(digest.to_string()));
            return Ok(response);
        }
    }
    answer(size, digest, req, |range| async move {
        Ok(store.blob_read(digest, range).await?)
    })
    .await
}

/// A blob of `size` bytes as the request's method and `Range` want it; `read` opens the
/// bytes (or the range) for a GET.
pub(super) async fn answer<F, Fut>(
    size: u64,
    digest: &Digest,
    req: &Request,
    read: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Option<ByteRange>) -> Fut,
    Fut: std::future::Future<Output = Result<ByteStream, ApiError>>,
{
    let range = match req.header(header::RANGE) {
        None => None,
        Some(value) => match parse_range_header(value, size) {
            RangeRequest::Whole => None,
            RangeRequest::Partial(range) => Some(range),
            RangeRequest::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
        },
    };
    let (status, len) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.len()),
        None => (StatusCode::OK, size),
    };
    let mut response = if req.method == Method::HEAD {
        response::head(status, OCTET_STREAM, len)
    } else {
        response::stream(status, OCTET_STREAM, len, read(range).await?)
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_DIGEST, value(digest.to_string()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, value(format!("\"{digest}\"")));
    // Content-addressed: a blob under a digest never changes.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    if let Some(r) = range {
        headers.insert(
            header::CONTENT_RANGE,
            value(format!("bytes {}-{}/{size}", r.start, r.end)),
        );
    }
    Ok(response)
}

pub(super) async fn delete(
    store: &Store,
    name: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    store.blob_delete(name, digest).await?;
    Ok(response::empty(StatusCode::ACCEPTED))
}
