//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use bytes::BytesMut;
use futures_util::StreamExt;
use http::{header, Method, StatusCode};

use crate::registry::api::errors::{value, ApiError};
use crate::registry::api::response::{self, Response, CONTENT_DIGEST, OCI_SUBJECT};
use crate::registry::api::Request;
use crate::registry::store::{Body, Store, StoreError, StoredManifest};
use crate::registry::types::accept::accepts;
use crate::registry::types::{Reference, RepoName};

pub(super) async fn get(
    store: &Store,
    name: &RepoName,
    reference: &Reference,
    req: &Request,
) -> Result<Response, ApiError> {
    let manifest = store.manifest_get(name, reference).await?;
    answer(manifest, req)
}

/// A stored manifest as the request's method and `Accept` header want it.
pub(super) fn answer(manifest: StoredManifest, req: &Request) -> Result<Response, ApiError> {
    let accept_lines = req
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .map(|v| v.as_bytes());
    if !accepts(accept_lines, manifest.media_type) {
        return Err(ApiError::ManifestNotAcceptable {
            stored: manifest.media_type,
        });
    }
    let len = manifest.body.len() as u64;
    let mut response = if req.method == Method::HEAD {
        response::head(StatusCode::OK, manifest.media_type, len)
    } else {
        response::bytes(StatusCode::OK, manifest.media_type, manifest.body)
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_DIGEST, value(manifest.digest.to_string()));
    headers.insert(header::ETAG, value(format!("\"{}\"", manifest.digest)));
    Ok(response)
}

pub(super) async fn put(
    store: &Store,
    name: &RepoName,
    reference: &Reference,
    req: &Request,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = store.options().manifest_max_bytes;
    let content_type = req.header(header::CONTENT_TYPE).map(str::to_owned);
    let declared = req
        .header(header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(StoreError::ManifestTooLarge { limit }.into());
    }
    let body = read_limited(body, limit).await?;
    let stored = store
        .manifest_put(name, reference, content_type.as_deref(), body)
        .await?;
    let mut response = response::empty(StatusCode::CREATED);
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        value(format!("/v2/{name}/manifests/{}", stored.digest)),
    );
    headers.insert(CONTENT_DIGEST, value(stored.digest.to_string()));
    if let Some(subject) = stored.subject {
        headers.insert(OCI_SUBJECT, value(subject.to_string()));
    }
    Ok(response)
}

pub(super) async fn delete(
    store: &Store,
    name: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    store.manifest_delete(name, reference).await?;
    Ok(response::empty(StatusCode::ACCEPTED))
}

async fn read_limited(mut body: Body, limit: usize) -> Result<bytes::Bytes, StoreError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StoreError::from_body)?;
        if buf.len() + chunk.len() > limit {
            return Err(StoreError::ManifestTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
