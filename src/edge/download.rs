//! Blob downloads without the loopback hop.
//!
//! A pull is the request whose cost is all bytes. Through the loopback proxy every GiB was read
//! from the file, written to the engine's socket, read back by pingora and only then encrypted:
//! the hop was about a third of the edge's CPU per GiB pulled (BENCHMARKS.md). For a `GET` of a
//! blob the edge calls the engine's request handler in-process instead — the same access rules,
//! metrics and log line as over the socket — and writes the chunks of the engine's file reader
//! straight into the client's TLS stream. Every other request, uploads above all, still goes to
//! the engine over 127.0.0.1.

use bytes::Bytes;
use http::{header, Method};
use http_body_util::{BodyExt, Empty};
use pingora::http::RequestHeader;
use pingora::prelude::Result;
use pingora::{Error, ErrorType};

use crate::registry::api::{Api, Response, ResponseBody, Route};

/// A `GET` of `/v2/<name>/blobs/<digest>` that carries no body (a body on a GET would otherwise
/// be left unread on the connection).
pub fn is_blob_download(request: &RequestHeader) -> bool {
    let no_body = !request.headers.contains_key(header::TRANSFER_ENCODING)
        && request
            .headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|length| length.as_bytes() == b"0");
    request.method == Method::GET
        && no_body
        && matches!(Route::parse(request.uri.path()), Ok(Route::Blob(..)))
}

/// The engine's answer to `request` (headers already as the engine expects them from the edge).
pub async fn ask_engine(api: &Api, request: &RequestHeader) -> Response {
    let request = http::Request::from_parts(request.as_owned_parts(), Empty::<Bytes>::new());
    api.handle(request).await
}

/// The next chunk of the answer's body, or `None` at its end. A read error ends the download
/// with an error, so the client sees a short body, never a wrong one.
pub async fn next_chunk(body: &mut ResponseBody) -> Result<Option<Bytes>> {
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Error::because(ErrorType::ReadError, "reading the blob", e))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}
