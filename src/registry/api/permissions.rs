//! Which action each request needs, and whether its caller has it.
//!
//! The engine enforces the access rules because only it knows the route (the repository of an
//! upload, the source of a mount, which catalog entries a caller may see). The caller is the
//! user the front names in `X-Regapp-User` (trusted only with the front token; no header means
//! a client without credentials, which the edge lets through only for anonymous pulls).

use std::sync::Arc;

use http::Method;

use super::errors::ApiError;
use super::routes::Route;
use crate::auth::access::{AccessPolicy, Action};
use crate::registry::types::RepoName;

/// The caller and the policy loaded for this request; or no enforcement at all.
pub(crate) struct Permissions {
    policy: Option<Arc<AccessPolicy>>,
    user: Option<String>,
}

impl Permissions {
    /// The engine without access rules (alone, or behind a proxy of the operator's): anything.
    pub fn unrestricted() -> Permissions {
        Permissions {
            policy: None,
            user: None,
        }
    }

    pub fn of(policy: Arc<AccessPolicy>, user: Option<String>) -> Permissions {
        Permissions {
            policy: Some(policy),
            user,
        }
    }

    pub fn allows(&self, repo: &RepoName, action: Action) -> bool {
        match &self.policy {
            None => true,
            Some(policy) => policy.allows(self.user.as_deref(), repo.as_str(), action),
        }
    }

    /// Ok, or the error to answer: 401 for a client without credentials (so one that has
    /// some retries with them), 403 `DENIED` for a known user.
    pub fn require(&self, repo: &RepoName, action: Action) -> Result<(), ApiError> {
        if self.allows(repo, action) {
            return Ok(());
        }
        let (repo, action) = (repo.to_string(), action);
        Err(match &self.user {
            None => ApiError::AuthenticationRequired { repo, action },
            Some(user) => ApiError::AccessDenied {
                user: user.clone(),
                repo,
                action,
            },
        })
    }
}

/// The repository a request acts on and the action it needs; `None` for `/v2/` and the catalog
/// (which is filtered instead). Uploads need `push` whatever the method (cancelling one's own
/// upload is part of pushing); elsewhere reads need `pull`, DELETE `delete`, anything else
/// `push` — also methods the route does not answer, so a 405 reveals nothing to whom the
/// repository is closed.
pub(crate) fn required_action<'r>(
    route: &'r Route,
    method: &Method,
) -> Option<(&'r RepoName, Action)> {
    let by_method = || match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    match route {
        Route::Base | Route::Catalog => None,
        Route::Uploads(name) | Route::Upload(name, _) => Some((name, Action::Push)),
        Route::Tags(name)
        | Route::Manifest(name, _)
        | Route::Blob(name, _)
        | Route::Referrers(name, _) => Some((name, by_method())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every endpoint of the spec with the action it needs (mounts also need `pull` on the
    /// source: see `handlers::uploads::start`).
    #[test]
    fn every_endpoint_needs_its_action() {
        use Action::*;
        let d = "sha256:abc";
        let table: &[(&str, Method, Option<Action>)] = &[
            ("/v2/", Method::GET, None),
            ("/v2/_catalog", Method::GET, None),
            ("/v2/a/tags/list", Method::GET, Some(Pull)),
            (&format!("/v2/a/referrers/{d}"), Method::GET, Some(Pull)),
            ("/v2/a/manifests/v1", Method::GET, Some(Pull)),
            ("/v2/a/manifests/v1", Method::HEAD, Some(Pull)),
            ("/v2/a/manifests/v1", Method::PUT, Some(Push)),
            ("/v2/a/manifests/v1", Method::DELETE, Some(Delete)),
            (&format!("/v2/a/blobs/{d}"), Method::GET, Some(Pull)),
            (&format!("/v2/a/blobs/{d}"), Method::HEAD, Some(Pull)),
            (&format!("/v2/a/blobs/{d}"), Method::DELETE, Some(Delete)),
            ("/v2/a/blobs/uploads/", Method::POST, Some(Push)),
            ("/v2/a/blobs/uploads/x", Method::GET, Some(Push)),
            ("/v2/a/blobs/uploads/x", Method::PATCH, Some(Push)),
            ("/v2/a/blobs/uploads/x", Method::PUT, Some(Push)),
            ("/v2/a/blobs/uploads/x", Method::DELETE, Some(Push)),
            ("/v2/a/tags/list", Method::POST, Some(Push)),
        ];
        for (path, method, action) in table {
            let route = Route::parse(path).unwrap();
            let needed = required_action(&route, method);
            assert_eq!(needed.map(|(_, a)| a), *action, "{method} {path}");
            if let Some((name, _)) = needed {
                assert_eq!(name.as_str(), "a");
            }
        }
    }
}
