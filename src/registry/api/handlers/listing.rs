//! Lists: `GET /v2/_catalog`, `GET /v2/<name>/tags/list` (both paginated with `n`, `last` and a
//! relative `Link` header) and `GET /v2/<name>/referrers/<digest>`.

use http::{header, StatusCode};
use serde_json::json;

use crate::auth::access::Action;
use crate::registry::api::errors::{value, ApiError};
use crate::registry::api::permissions::Permissions;
use crate::registry::api::response::{self, json_response, Response, OCI_FILTERS_APPLIED};
use crate::registry::api::Request;
use crate::registry::store::Store;
use crate::registry::types::manifest::OCI_INDEX;
use crate::registry::types::{Digest, RepoName};

/// Catalog pages are bounded even when the client names no `n` (registry:2 uses 100).
const CATALOG_DEFAULT_PAGE: usize = 1000;
/// The largest page of either list: a larger `n` gets this many and a `Link` to the rest.
const MAX_PAGE: usize = 10_000;

/// Lists only repositories the caller may pull; `n` and `last` count what is listed, so pages
/// stay full and `last` stays a name the caller has seen.
pub(super) async fn catalog(
    store: &Store,
    req: &Request,
    permissions: &Permissions,
) -> Result<Response, ApiError> {
    let n = page_size(req)?.unwrap_or(CATALOG_DEFAULT_PAGE);
    let last = req.query("last");
    let mut names = store
        .catalog_where(last, Some(n + 1), |name| {
            // Names in the catalog were parsed when they were pushed or walked.
            name.parse()
                .is_ok_and(|name| permissions.allows(&name, Action::Pull))
        })
        .await?;
    let more = names.len() > n;
    names.truncate(n);
    let next = more.then(|| next_link("/v2/_catalog", n, names.last()));
    Ok(with_link(
        json_response(StatusCode::OK, &json!({ "repositories": names })),
        next,
    ))
}

pub(super) async fn tags(
    store: &Store,
    name: &RepoName,
    req: &Request,
) -> Result<Response, ApiError> {
    let n = page_size(req)?;
    let last = req.query("last");
    let mut tags = store.tags(name, last, n.map(|n| n + 1)).await?;
    let next = match n {
        Some(n) if tags.len() > n => {
            tags.truncate(n);
            Some(next_link(&format!("/v2/{name}/tags/list"), n, tags.last()))
        }
        _ => None,
    };
    Ok(with_link(
        json_response(
            StatusCode::OK,
            &json!({ "name": name.as_str(), "tags": tags }),
        ),
        next,
    ))
}

pub(super) async fn referrers(
    store: &Store,
    name: &RepoName,
    subject: &Digest,
    req: &Request,
) -> Result<Response, ApiError> {
    let artifact_type = req.query("artifactType");
    let manifests = store.referrers(name, subject, artifact_type).await?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let body = serde_json::to_vec(&index).expect("a JSON value always serialises");
    let mut response = response::bytes(StatusCode::OK, OCI_INDEX, body.into());
    if artifact_type.is_some() {
        response.headers_mut().insert(
            OCI_FILTERS_APPLIED,
            http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}

/// `n`, at most [`MAX_PAGE`] (so `n + 1`, the one-more that tells whether a next page exists,
/// cannot overflow whatever the client asks).
fn page_size(req: &Request) -> Result<Option<usize>, ApiError> {
    req.query("n")
        .map(|n| {
            n.parse::<usize>()
                .map(|n| n.min(MAX_PAGE))
                .map_err(|_| ApiError::PaginationInvalid(n.to_owned()))
        })
        .transpose()
}

fn next_link(path: &str, n: usize, last: Option<&String>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("n", &n.to_string());
    if let Some(last) = last {
        query.append_pair("last", last);
    }
    format!("<{path}?{}>; rel=\"next\"", query.finish())
}

fn with_link(mut response: Response, next: Option<String>) -> Response {
    if let Some(link) = next {
        response.headers_mut().insert(header::LINK, value(link));
    }
    response
}
