//! Which endpoint a path names. Repository names contain slashes, so a route is recognised
//! from the end of the path and what precedes the suffix is the name:
//!
//! ```text
//! /v2/                                   Base
//! /v2/_catalog                           Catalog
//! /v2/<name>/tags/list                   Tags
//! /v2/<name>/manifests/<reference>       Manifest
//! /v2/<name>/blobs/uploads/              Uploads   (the trailing slash is optional)
//! /v2/<name>/blobs/uploads/<id>          Upload
//! /v2/<name>/blobs/<digest>              Blob
//! /v2/<name>/referrers/<digest>          Referrers
//! ```
//!
//! The name is checked against the spec grammar here, before any handler (or file) sees it.

use super::errors::ApiError;
use crate::registry::types::RepoName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, String),
    Uploads(RepoName),
    Upload(RepoName, String),
    Blob(RepoName, String),
    Referrers(RepoName, String),
}

impl Route {
    /// The repository the route acts on, if it names one.
    pub fn name(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(name)
            | Route::Manifest(name, _)
            | Route::Uploads(name)
            | Route::Upload(name, _)
            | Route::Blob(name, _)
            | Route::Referrers(name, _) => Some(name),
        }
    }

    /// The same route on another repository (a mirror's local name for what the client
    /// named).
    pub fn renamed(self, to: RepoName) -> Route {
        match self {
            Route::Base | Route::Catalog => self,
            Route::Tags(_) => Route::Tags(to),
            Route::Manifest(_, r) => Route::Manifest(to, r),
            Route::Uploads(_) => Route::Uploads(to),
            Route::Upload(_, id) => Route::Upload(to, id),
            Route::Blob(_, d) => Route::Blob(to, d),
            Route::Referrers(_, d) => Route::Referrers(to, d),
        }
    }

    pub fn parse(path: &str) -> Result<Route, ApiError> {
        let rest = match path {
            "/v2" | "/v2/" => return Ok(Route::Base),
            "/v2/_catalog" => return Ok(Route::Catalog),
            _ => path.strip_prefix("/v2/").ok_or(ApiError::NotFound)?,
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let tail = |k: usize| segments.get(n.wrapping_sub(k)).copied();
        let name = |k: usize| -> Result<RepoName, ApiError> {
            let joined = segments[..n - k].join("/");
            joined
                .parse()
                .map_err(|e: crate::registry::types::NameError| {
                    ApiError::NameInvalid(e.to_string())
                })
        };
        let route = match (tail(3), tail(2), tail(1)) {
            _ if n < 3 => return Err(ApiError::NotFound),
            (Some("blobs"), Some("uploads"), Some("")) => Route::Uploads(name(3)?),
            (Some("blobs"), Some("uploads"), Some(id)) => Route::Upload(name(3)?, id.to_owned()),
            (_, Some("blobs"), Some("uploads")) => Route::Uploads(name(2)?),
            (_, Some("tags"), Some("list")) => Route::Tags(name(2)?),
            (_, Some("manifests"), Some(r)) if !r.is_empty() => {
                Route::Manifest(name(2)?, r.to_owned())
            }
            (_, Some("blobs"), Some(d)) if !d.is_empty() => Route::Blob(name(2)?, d.to_owned()),
            (_, Some("referrers"), Some(d)) if !d.is_empty() => {
                Route::Referrers(name(2)?, d.to_owned())
            }
            _ => return Err(ApiError::NotFound),
        };
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn recognises_every_endpoint() {
        let d = "sha256:abc";
        assert_eq!(Route::parse("/v2/").unwrap(), Route::Base);
        assert_eq!(Route::parse("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            Route::parse("/v2/a/b/tags/list").unwrap(),
            Route::Tags(name("a/b"))
        );
        assert_eq!(
            Route::parse("/v2/a/manifests/latest").unwrap(),
            Route::Manifest(name("a"), "latest".into())
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads/").unwrap(),
            Route::Uploads(name("a"))
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads").unwrap(),
            Route::Uploads(name("a"))
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads/123").unwrap(),
            Route::Upload(name("a"), "123".into())
        );
        assert_eq!(
            Route::parse(&format!("/v2/a/blobs/{d}")).unwrap(),
            Route::Blob(name("a"), d.into())
        );
        assert_eq!(
            Route::parse(&format!("/v2/x/referrers/{d}")).unwrap(),
            Route::Referrers(name("x"), d.into())
        );
        // Names may contain the words that mark routes.
        assert_eq!(
            Route::parse("/v2/blobs/manifests/tags/list").unwrap(),
            Route::Tags(name("blobs/manifests"))
        );
    }

    #[test]
    fn refuses_bad_names_and_unknown_paths() {
        assert!(matches!(
            Route::parse("/v2/../x/tags/list"),
            Err(ApiError::NameInvalid(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a//b/tags/list"),
            Err(ApiError::NameInvalid(_))
        ));
        assert!(matches!(
            Route::parse("/v2/UPPER/manifests/x"),
            Err(ApiError::NameInvalid(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/unknown"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            Route::parse("/v1/a/tags/list"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            Route::parse("/v2/tags/list"),
            Err(ApiError::NotFound)
        ));
    }
}
