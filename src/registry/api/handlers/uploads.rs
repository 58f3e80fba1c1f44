//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic, or cross-repository
//! mount) and `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.
//!
//! Locations are relative and carry only the session id, so every Location a session ever
//! handed out stays valid for as long as the session lives, across restarts too.

use http::{header, StatusCode};

use super::parse_digest;
use crate::auth::access::Action;
use crate::registry::api::errors::{upload_range, value, ApiError};
use crate::registry::api::permissions::Permissions;
use crate::registry::api::response::{self, Response, CONTENT_DIGEST, UPLOAD_UUID};
use crate::registry::api::Request;
use crate::registry::store::{Body, Store};
use crate::registry::types::range::parse_upload_content_range;
use crate::registry::types::{Digest, RepoName, UploadId};

pub(super) async fn start(
    store: &Store,
    name: &RepoName,
    req: &Request,
    body: Body,
    permissions: &Permissions,
) -> Result<Response, ApiError> {
    if let Some(mount) = req.query("mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = req.query("from") {
            let from: RepoName = from
                .parse()
                .map_err(|e: crate::registry::types::NameError| {
                    ApiError::NameInvalid(e.to_string())
                })?;
            // A mount reads the source: without `pull` there it is an ordinary upload, and
            // whether the blob exists there is not revealed.
            if permissions.allows(&from, Action::Pull)
                && store.blob_mount(name, &digest, &from).await?
            {
                return Ok(created(name, &digest));
            }
        }
        // Not mountable: the spec's answer is an ordinary upload session.
    } else if let Some(digest) = req.query("digest") {
        let digest = parse_digest(digest)?;
        store.upload_monolithic(name, &digest, body).await?;
        return Ok(created(name, &digest));
    }
    let id = store.upload_start(name).await?;
    Ok(in_progress(StatusCode::ACCEPTED, name, &id, 0))
}

pub(super) async fn status(
    store: &Store,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response, ApiError> {
    let size = store.upload_size(name, id).await?;
    Ok(in_progress(StatusCode::NO_CONTENT, name, id, size))
}

pub(super) async fn patch(
    store: &Store,
    name: &RepoName,
    id: &UploadId,
    req: &Request,
    body: Body,
) -> Result<Response, ApiError> {
    let start = match req.header(header::CONTENT_RANGE) {
        None => None,
        Some(raw) => {
            let range = parse_upload_content_range(raw)
                .ok_or_else(|| ApiError::ContentRangeInvalid(raw.to_owned()))?;
            let length = req
                .header(header::CONTENT_LENGTH)
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(length) = length {
                if length != range.len() {
                    return Err(ApiError::ChunkSizeMismatch {
                        length,
                        start: range.start,
                        end: range.end,
                    });
                }
            }
            Some(range.start)
        }
    };
    let size = store.upload_append(name, id, start, body).await?;
    Ok(in_progress(StatusCode::ACCEPTED, name, id, size))
}

pub(super) async fn finish(
    store: &Store,
    name: &RepoName,
    id: &UploadId,
    req: &Request,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = req
        .query("digest")
        .ok_or_else(|| ApiError::DigestInvalid("the digest query parameter is required".into()))?;
    let digest = parse_digest(digest)?;
    store.upload_finish(name, id, &digest, Some(body)).await?;
    Ok(created(name, &digest))
}

pub(super) async fn cancel(
    store: &Store,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response, ApiError> {
    store.upload_cancel(name, id).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

fn created(name: &RepoName, digest: &Digest) -> Response {
    let mut response = response::empty(StatusCode::CREATED);
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        value(format!("/v2/{name}/blobs/{digest}")),
    );
    headers.insert(CONTENT_DIGEST, value(digest.to_string()));
    response
}

fn in_progress(status: StatusCode, name: &RepoName, id: &UploadId, size: u64) -> Response {
    let mut response = response::empty(status);
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        value(format!("/v2/{name}/blobs/uploads/{id}")),
    );
    headers.insert(header::RANGE, value(upload_range(size)));
    headers.insert(UPLOAD_UUID, value(id.to_string()));
    response
}
