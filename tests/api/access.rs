//! Access rules in the engine: the action every endpoint needs, 401 for clients without
//! credentials and 403 `DENIED` for known users, mounts that fall back to an upload when the
//! source may not be pulled, a filtered and still paginated catalog, and denied pushes that
//! leave nothing in the store.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use regapp::auth::access::{Access, AccessPolicy, PolicySpec, RuleSpec};
use regapp::registry::api::Api;
use serde_json::json;

use super::{image_manifest, sha256, Engine, OCI_MANIFEST};

fn rule(repositories: &str, users: &[&str], actions: &[&str]) -> RuleSpec {
    RuleSpec {
        repositories: repositories.to_owned(),
        users: users.iter().map(|s| (*s).to_owned()).collect(),
        actions: actions.iter().map(|s| (*s).to_owned()).collect(),
        origin: String::new(),
    }
}

fn policy() -> AccessPolicy {
    AccessPolicy::build(&PolicySpec {
        anonymous_pull: true,
        groups: vec![],
        rules: vec![
            rule("team/**", &["reader"], &["pull"]),
            rule("team/**", &["writer"], &["pull", "push"]),
            rule("**", &["admin"], &["pull", "push", "delete"]),
            rule("public/**", &["anonymous", "*"], &["pull"]),
        ],
    })
    .unwrap()
}

/// Images pushed without rules, then the same store behind the rules.
struct Guarded {
    engine: Engine,
    layer: String,
    manifest: String,
}

async fn guarded() -> Guarded {
    let open = Engine::new();
    let (manifest, _) = open.push_image("team/app", "v1", b"team layer").await;
    open.push_image("public/base", "v1", b"public layer").await;
    open.push_image("secret/x", "v1", b"secret layer").await;
    open.push_image("team/b", "v1", b"b layer").await;
    let access = Arc::new(Access::new(policy()));
    let api = Api::new(open.api.store().clone()).enforce_access(access);
    Guarded {
        engine: Engine {
            api,
            _dir: open._dir,
        },
        layer: sha256(b"team layer"),
        manifest,
    }
}

impl Guarded {
    async fn as_user(&self, user: Option<&str>, method: Method, uri: &str) -> (StatusCode, String) {
        let headers: Vec<(&str, &str)> = user.map(|u| ("x-regapp-user", u)).into_iter().collect();
        let body = if method == Method::PUT && uri.contains("/manifests/") {
            image_manifest(&sha256(b"{}"), &self.layer, 10, None)
        } else {
            Bytes::new()
        };
        let mut headers = headers;
        if method == Method::PUT {
            headers.push(("content-type", OCI_MANIFEST));
        }
        let r = self.engine.call(method, uri, &headers, body).await;
        let code = if r.status.is_client_error() || r.status.is_server_error() {
            r.error_code()
        } else {
            String::new()
        };
        (r.status, code)
    }
}

#[tokio::test]
async fn every_endpoint_needs_its_action() {
    let g = guarded().await;
    let (l, m) = (g.layer.clone(), g.manifest.clone());
    let upload = {
        let r = g
            .engine
            .call(
                Method::POST,
                "/v2/team/app/blobs/uploads/",
                &[("x-regapp-user", "writer")],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        r.header("location").to_owned()
    };
    const OK: &str = "";
    const DENIED: &str = "DENIED";
    const UNAUTHORIZED: &str = "UNAUTHORIZED";
    let table: Vec<(Option<&str>, Method, String, &str)> = vec![
        // pull: GET and HEAD of manifests and blobs, tag lists, referrers.
        (
            Some("reader"),
            Method::GET,
            "/v2/team/app/manifests/v1".into(),
            OK,
        ),
        (
            Some("reader"),
            Method::HEAD,
            format!("/v2/team/app/manifests/{m}"),
            OK,
        ),
        (
            Some("reader"),
            Method::GET,
            format!("/v2/team/app/blobs/{l}"),
            OK,
        ),
        (
            Some("reader"),
            Method::HEAD,
            format!("/v2/team/app/blobs/{l}"),
            OK,
        ),
        (
            Some("reader"),
            Method::GET,
            "/v2/team/app/tags/list".into(),
            OK,
        ),
        (
            Some("reader"),
            Method::GET,
            format!("/v2/team/app/referrers/{m}"),
            OK,
        ),
        (
            Some("stranger"),
            Method::GET,
            "/v2/team/app/manifests/v1".into(),
            DENIED,
        ),
        (
            Some("stranger"),
            Method::HEAD,
            format!("/v2/team/app/blobs/{l}"),
            DENIED,
        ),
        (
            Some("stranger"),
            Method::GET,
            "/v2/team/app/tags/list".into(),
            DENIED,
        ),
        (
            Some("stranger"),
            Method::GET,
            format!("/v2/team/app/referrers/{m}"),
            DENIED,
        ),
        (
            Some("stranger"),
            Method::GET,
            "/v2/public/base/tags/list".into(),
            OK,
        ),
        // push: uploads in every step, manifest PUT.
        (
            Some("reader"),
            Method::POST,
            "/v2/team/app/blobs/uploads/".into(),
            DENIED,
        ),
        (Some("reader"), Method::GET, upload.clone(), DENIED),
        (Some("reader"), Method::PATCH, upload.clone(), DENIED),
        (
            Some("reader"),
            Method::PUT,
            format!("{upload}?digest={l}"),
            DENIED,
        ),
        (Some("reader"), Method::DELETE, upload.clone(), DENIED),
        (
            Some("reader"),
            Method::PUT,
            "/v2/team/app/manifests/v2".into(),
            DENIED,
        ),
        (Some("writer"), Method::GET, upload.clone(), OK),
        (
            Some("writer"),
            Method::PUT,
            "/v2/team/app/manifests/v2".into(),
            OK,
        ),
        // delete: manifests and blobs.
        (
            Some("writer"),
            Method::DELETE,
            "/v2/team/app/manifests/v2".into(),
            DENIED,
        ),
        (
            Some("writer"),
            Method::DELETE,
            format!("/v2/team/app/blobs/{l}"),
            DENIED,
        ),
        (
            Some("admin"),
            Method::DELETE,
            "/v2/team/app/manifests/v2".into(),
            OK,
        ),
        // Without credentials: 401 where anonymous may not pull, and never more than pull.
        (None, Method::GET, "/v2/".into(), OK),
        (None, Method::GET, "/v2/public/base/manifests/v1".into(), OK),
        (
            None,
            Method::GET,
            "/v2/team/app/manifests/v1".into(),
            UNAUTHORIZED,
        ),
        (
            None,
            Method::POST,
            "/v2/public/base/blobs/uploads/".into(),
            UNAUTHORIZED,
        ),
        (
            None,
            Method::DELETE,
            "/v2/public/base/manifests/v1".into(),
            UNAUTHORIZED,
        ),
    ];
    for (user, method, uri, expected) in table {
        let (status, code) = g.as_user(user, method.clone(), &uri).await;
        let wanted = match expected {
            DENIED => StatusCode::FORBIDDEN,
            UNAUTHORIZED => StatusCode::UNAUTHORIZED,
            _ => status,
        };
        assert_eq!(
            (status, code.as_str()),
            (wanted, expected),
            "{user:?} {method} {uri}"
        );
        assert!(
            status.is_success() || expected != OK,
            "{user:?} {method} {uri}: {status}"
        );
    }
}

#[tokio::test]
async fn a_mount_needs_pull_on_its_source_or_becomes_an_upload() {
    let g = guarded().await;
    let secret = sha256(b"secret layer");
    let mount = |digest: &str, from: &str| {
        format!("/v2/team/new/blobs/uploads/?mount={digest}&from={from}")
    };
    let writer = [("x-regapp-user", "writer")];
    let r = g
        .engine
        .call(
            Method::POST,
            &mount(&g.layer, "team/app"),
            &writer,
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "may pull team/app: mounted");
    let r = g
        .engine
        .call(
            Method::POST,
            &mount(&secret, "secret/x"),
            &writer,
            Bytes::new(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "may not pull secret/x: an upload session instead"
    );
    assert!(r
        .header("location")
        .starts_with("/v2/team/new/blobs/uploads/"));
    let r = g
        .engine
        .call(
            Method::HEAD,
            &format!("/v2/team/new/blobs/{secret}"),
            &writer,
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nothing was mounted");
}

#[tokio::test]
async fn the_catalog_lists_what_the_caller_may_pull_page_by_page() {
    let g = guarded().await;
    let list = |user: Option<&'static str>, query: &'static str| {
        let g = &g;
        async move {
            let headers: Vec<(&str, &str)> =
                user.map(|u| ("x-regapp-user", u)).into_iter().collect();
            g.engine
                .call(
                    Method::GET,
                    &format!("/v2/_catalog{query}"),
                    &headers,
                    Bytes::new(),
                )
                .await
        }
    };
    let all = list(Some("admin"), "").await;
    assert_eq!(
        all.json()["repositories"],
        json!(["public/base", "secret/x", "team/app", "team/b"])
    );
    let reader = list(Some("reader"), "").await;
    assert_eq!(
        reader.json()["repositories"],
        json!(["public/base", "team/app", "team/b"])
    );
    let anonymous = list(None, "").await;
    assert_eq!(anonymous.json()["repositories"], json!(["public/base"]));
    let stranger = list(Some("stranger"), "").await;
    assert_eq!(stranger.json()["repositories"], json!(["public/base"]));
    // Pages count listed names: secret/x neither fills a page nor shows up as `last`.
    let first = list(Some("reader"), "?n=2").await;
    assert_eq!(
        first.json()["repositories"],
        json!(["public/base", "team/app"])
    );
    assert_eq!(
        first.header("link"),
        r#"</v2/_catalog?n=2&last=team%2Fapp>; rel="next""#
    );
    let second = list(Some("reader"), "?n=2&last=team%2Fapp").await;
    assert_eq!(second.json()["repositories"], json!(["team/b"]));
    assert!(second.headers.get("link").is_none());
}

#[tokio::test]
async fn a_denied_push_leaves_nothing_in_the_store() {
    let g = guarded().await;
    let content = b"pushed by a reader";
    let digest = sha256(content);
    let reader = [("x-regapp-user", "reader")];
    let r = g
        .engine
        .call(
            Method::POST,
            &format!("/v2/team/new/blobs/uploads/?digest={digest}"),
            &reader,
            Bytes::from_static(content),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "DENIED".into())
    );
    let r = g
        .engine
        .call(
            Method::PUT,
            "/v2/team/new/manifests/v1",
            &reader,
            image_manifest(&digest, &digest, 1, None),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let v2 = "docker/registry/v2";
    assert!(
        !g.engine
            .stored(&format!("{v2}/repositories/team/new"))
            .await
    );
    let hex = digest.strip_prefix("sha256:").unwrap();
    let blob = format!("{v2}/blobs/sha256/{}/{hex}", &hex[..2]);
    assert!(!g.engine.stored(&blob).await);
    let uploads = format!("{v2}/repositories/team/app/_uploads");
    assert_eq!(g.engine.children(&uploads).await, [""; 0], "no upload");
}

#[tokio::test]
async fn new_rules_apply_from_the_next_request() {
    let open = Engine::new();
    open.push_image("team/app", "v1", b"layer").await;
    let access = Arc::new(Access::new(AccessPolicy::default()));
    let engine = Engine {
        api: Api::new(open.api.store().clone()).enforce_access(access.clone()),
        _dir: open._dir,
    };
    let tags = |user: &'static str| {
        let engine = &engine;
        async move {
            engine
                .call(
                    Method::GET,
                    "/v2/team/app/tags/list",
                    &[("x-regapp-user", user)],
                    Bytes::new(),
                )
                .await
                .status
        }
    };
    assert_eq!(tags("stranger").await, StatusCode::OK, "no rules: anyone");
    // What a configuration reload does with the re-read rules.
    access.update(policy());
    assert_eq!(tags("stranger").await, StatusCode::FORBIDDEN);
    assert_eq!(tags("reader").await, StatusCode::OK);
}
