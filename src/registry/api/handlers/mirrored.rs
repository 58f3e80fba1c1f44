//! Requests for a mirrored repository (`registry::mirror`): manifests and blobs come from
//! the cache or the upstream, tags from the upstream (the cache's when it cannot be asked),
//! referrers from the cache. Everything that would write is refused: a mirror is read-only.

use std::sync::Arc;

use http::{Method, StatusCode};

use super::{blobs, listing, manifests, parse_digest, parse_reference};
use crate::registry::api::errors::ApiError;
use crate::registry::api::response::{json_response, Response};
use crate::registry::api::routes::Route;
use crate::registry::api::Request;
use crate::registry::mirror::{MirroredBlob, Target};
use crate::registry::store::{Store, StoreError};

pub(in crate::registry::api) async fn dispatch(
    store: &Arc<Store>,
    target: &Target,
    route: Route,
    req: Request,
) -> Result<Response, ApiError> {
    use Method as M;
    match (route, req.method.clone()) {
        (Route::Manifest(_, reference), M::GET | M::HEAD) => {
            let reference = match parse_reference(&reference) {
                Err(ApiError::ReferenceInvalid(_)) => {
                    return Err(StoreError::ManifestUnknown(reference).into())
                }
                parsed => parsed?,
            };
            let manifest = target.manifest(store, &reference).await?;
            manifests::answer(manifest, &req)
        }
        (Route::Blob(_, digest), M::GET) => {
            let digest = parse_digest(&digest)?;
            match target.blob(store, &digest).await? {
                MirroredBlob::Stored(size) => blobs::get_sized(store, size, &digest, &req).await,
                MirroredBlob::Fetching(flight) => {
                    blobs::answer(flight.size, &digest, &req, |range| async move {
                        let (start, end) = range.map_or((0, flight.size), |r| (r.start, r.end + 1));
                        Ok(flight.read(start, end))
                    })
                    .await
                }
            }
        }
        (Route::Blob(_, digest), M::HEAD) => {
            let digest = parse_digest(&digest)?;
            let size = target.blob_size(store, &digest).await?;
            blobs::answer(size, &digest, &req, |_| async {
                unreachable!("a HEAD reads no bytes")
            })
            .await
        }
        (Route::Tags(name), M::GET) => tags(store, target, &name, &req).await,
        (Route::Referrers(name, digest), M::GET) => {
            listing::referrers(store, &name, &parse_digest(&digest)?, &req).await
        }
        (route, M::GET | M::HEAD) if route.name().is_none() => Err(ApiError::NotFound),
        (route, _) => {
            let name = route.name().expect("mirror targets name a repository");
            Err(target.mirror.read_only(name).into())
        }
    }
}

/// The upstream's list (its name replaced by the local one), or the cache's when the upstream
/// cannot be asked.
async fn tags(
    store: &Store,
    target: &Target,
    name: &crate::registry::types::RepoName,
    req: &Request,
) -> Result<Response, ApiError> {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            ["n", "last"]
                .iter()
                .filter_map(|key| Some((*key, req.query(key)?))),
        )
        .finish();
    match target.tags(&query).await {
        Some(mut list) => {
            list["name"] = serde_json::Value::String(target.asked.to_string());
            Ok(json_response(StatusCode::OK, &list))
        }
        None => listing::tags(store, name, req).await,
    }
}
