//! Request handlers, one file per resource. Each parses what it needs from the request into
//! registry types, calls the store, and builds the spec's answer.

use http::{Method, StatusCode};
use serde_json::json;

use super::errors::ApiError;
use super::permissions::Permissions;
use super::response::{json_response, Response};
use super::routes::Route;
use super::Request;
use crate::registry::store::{Body, Store, StoreError};
use crate::registry::types::{Digest, Reference, UploadId};

mod blobs;
mod listing;
mod manifests;
pub(super) mod mirrored;
mod uploads;

pub(super) async fn dispatch(
    store: &Store,
    route: Route,
    req: Request,
    body: Body,
    permissions: &Permissions,
) -> Result<Response, ApiError> {
    use Method as M;
    match (route, req.method.clone()) {
        (Route::Base, M::GET | M::HEAD) => Ok(json_response(StatusCode::OK, &json!({}))),
        (Route::Catalog, M::GET) => listing::catalog(store, &req, permissions).await,
        (Route::Tags(name), M::GET) => listing::tags(store, &name, &req).await,
        (Route::Referrers(name, digest), M::GET) => {
            listing::referrers(store, &name, &parse_digest(&digest)?, &req).await
        }
        (Route::Manifest(name, reference), M::GET | M::HEAD | M::DELETE) => {
            // A tag that breaks the grammar can name no manifest: 404, as for any unknown one.
            let reference = match parse_reference(&reference) {
                Err(ApiError::ReferenceInvalid(_)) => {
                    return Err(StoreError::ManifestUnknown(reference).into())
                }
                parsed => parsed?,
            };
            if req.method == M::DELETE {
                manifests::delete(store, &name, &reference).await
            } else {
                manifests::get(store, &name, &reference, &req).await
            }
        }
        (Route::Manifest(name, reference), M::PUT) => {
            manifests::put(store, &name, &parse_reference(&reference)?, &req, body).await
        }
        (Route::Blob(name, digest), M::GET | M::HEAD) => {
            blobs::get(store, &name, &parse_digest(&digest)?, &req).await
        }
        (Route::Blob(name, digest), M::DELETE) => {
            blobs::delete(store, &name, &parse_digest(&digest)?).await
        }
        (Route::Uploads(name), M::POST) => {
            uploads::start(store, &name, &req, body, permissions).await
        }
        (Route::Upload(name, id), M::GET) => {
            uploads::status(store, &name, &parse_upload_id(&id)?).await
        }
        (Route::Upload(name, id), M::PATCH) => {
            uploads::patch(store, &name, &parse_upload_id(&id)?, &req, body).await
        }
        (Route::Upload(name, id), M::PUT) => {
            uploads::finish(store, &name, &parse_upload_id(&id)?, &req, body).await
        }
        (Route::Upload(name, id), M::DELETE) => {
            uploads::cancel(store, &name, &parse_upload_id(&id)?).await
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

pub(super) fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: crate::registry::types::DigestError| ApiError::DigestInvalid(e.to_string()))
}

fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| match e {
        crate::registry::types::reference::ReferenceError::Digest(msg) => {
            ApiError::DigestInvalid(msg)
        }
        crate::registry::types::reference::ReferenceError::Tag(e) => {
            ApiError::ReferenceInvalid(e.to_string())
        }
    })
}

fn parse_upload_id(s: &str) -> Result<UploadId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::UploadIdInvalid(s.to_owned()))
}
