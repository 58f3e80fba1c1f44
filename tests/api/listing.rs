//! Tag lists, the catalog and the referrers API.

use http::{Method, StatusCode};
use serde_json::json;

use super::{image_manifest, sha256, Engine, OCI_INDEX, OCI_MANIFEST};

#[tokio::test]
async fn tags_are_lexical_and_paginated_with_a_relative_link() {
    let e = Engine::new();
    let (_, manifest) = e.push_image("a", "b", b"layer").await;
    for tag in ["c", "a", "10", "9"] {
        e.call(
            Method::PUT,
            &format!("/v2/a/manifests/{tag}"),
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        )
        .await;
    }
    let all = e.get("/v2/a/tags/list").await;
    assert_eq!(
        all.json(),
        json!({"name": "a", "tags": ["10", "9", "a", "b", "c"]})
    );
    assert!(all.headers.get("link").is_none());
    let page = e.get("/v2/a/tags/list?n=2").await;
    assert_eq!(page.json()["tags"], json!(["10", "9"]));
    assert_eq!(
        page.header("link"),
        r#"</v2/a/tags/list?n=2&last=9>; rel="next""#
    );
    let next = e.get("/v2/a/tags/list?n=2&last=9").await;
    assert_eq!(next.json()["tags"], json!(["a", "b"]));
    let last = e.get("/v2/a/tags/list?n=2&last=b").await;
    assert_eq!(last.json()["tags"], json!(["c"]));
    assert!(last.headers.get("link").is_none());
    assert_eq!(e.get("/v2/a/tags/list?n=0").await.json()["tags"], json!([]));
    // A huge n is clamped: every tag, no wrap-around to an empty page (n + 1 overflowed).
    for huge in ["999999999", "18446744073709551615"] {
        let page = e.get(&format!("/v2/a/tags/list?n={huge}")).await;
        assert_eq!(
            page.json()["tags"],
            json!(["10", "9", "a", "b", "c"]),
            "n={huge}"
        );
        let page = e.get(&format!("/v2/_catalog?n={huge}")).await;
        assert_eq!(page.json()["repositories"], json!(["a"]), "n={huge}");
    }
}

#[tokio::test]
async fn tags_of_an_unknown_repository_are_name_unknown() {
    let e = Engine::new();
    let r = e.get("/v2/nobody/tags/list").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    let r = e.get("/v2/nobody/tags/list?n=x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn catalog_is_lexical_and_paginated() {
    let e = Engine::new();
    for repo in ["b", "a/z", "a", "c"] {
        e.push_blob(repo, b"x").await;
    }
    assert_eq!(
        e.get("/v2/_catalog").await.json(),
        json!({"repositories": ["a", "a/z", "b", "c"]})
    );
    let page = e.get("/v2/_catalog?n=3").await;
    assert_eq!(page.json()["repositories"], json!(["a", "a/z", "b"]));
    assert_eq!(
        page.header("link"),
        r#"</v2/_catalog?n=3&last=b>; rel="next""#
    );
    let rest = e.get("/v2/_catalog?n=3&last=b").await;
    assert_eq!(rest.json()["repositories"], json!(["c"]));
    assert!(rest.headers.get("link").is_none());
}

#[tokio::test]
async fn referrers_list_manifests_whose_subject_is_the_digest() {
    let e = Engine::new();
    let (subject, _) = e.push_image("a", "v1", b"layer").await;
    let config = e.push_blob("a", b"{}").await;
    let layer = e.push_blob("a", b"sig").await;
    let signature = image_manifest(&config, &layer, 3, Some(&subject));
    let sig_digest = sha256(&signature);
    e.call(
        Method::PUT,
        &format!("/v2/a/manifests/{sig_digest}"),
        &[("content-type", OCI_MANIFEST)],
        signature.clone(),
    )
    .await;
    let r = e.get(&format!("/v2/a/referrers/{subject}")).await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (StatusCode::OK, OCI_INDEX)
    );
    assert!(r.headers.get("oci-filters-applied").is_none());
    assert_eq!(
        r.json(),
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": sig_digest, "size": signature.len(),
            "artifactType": "application/vnd.example.signature",
            "annotations": {"org.example.kind": "signature"}}]})
    );
    let filtered = e
        .get(&format!(
            "/v2/a/referrers/{subject}?artifactType=application/vnd.other"
        ))
        .await;
    assert_eq!(filtered.header("oci-filters-applied"), "artifactType");
    assert_eq!(filtered.json()["manifests"], json!([]));
    // An unknown subject has an empty list, not a 404; a malformed digest is DIGEST_INVALID.
    let none = e.get(&format!("/v2/a/referrers/{}", sha256(b"x"))).await;
    assert_eq!(
        (none.status, none.json()["manifests"].clone()),
        (StatusCode::OK, json!([]))
    );
    let bad = e.get("/v2/a/referrers/sha256:nope").await;
    assert_eq!(bad.error_code(), "DIGEST_INVALID");
}
