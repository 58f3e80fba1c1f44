//! Manifests: every supported kind, Accept negotiation, validation, tags and deletes.

use bytes::Bytes;
use http::{Method, StatusCode};
use regapp::registry::store::StoreOptions;
use serde_json::json;

use super::{image_manifest, sha256, Engine, OCI_INDEX, OCI_MANIFEST};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

async fn put(
    e: &Engine,
    repo: &str,
    reference: &str,
    content_type: &str,
    body: Bytes,
) -> super::Reply {
    e.call(
        Method::PUT,
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("content-type", content_type)],
        body,
    )
    .await
}

#[tokio::test]
async fn get_and_head_by_tag_and_digest_return_the_stored_bytes_and_type() {
    let e = Engine::new();
    let (digest, body) = e.push_image("team/app", "1.0", b"layer").await;
    assert_eq!(digest, sha256(&body));
    for reference in ["1.0", digest.as_str()] {
        let uri = format!("/v2/team/app/manifests/{reference}");
        let r = e.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, body);
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), digest);
        let h = e.call(Method::HEAD, &uri, &[], Bytes::new()).await;
        assert_eq!(h.header("content-length"), body.len().to_string());
        assert_eq!(h.header("content-type"), OCI_MANIFEST);
    }
}

#[tokio::test]
async fn docker_schema2_and_manifest_lists_round_trip() {
    let e = Engine::new();
    let config = e.push_blob("d", b"{}").await;
    let layer = e.push_blob("d", b"layer").await;
    let manifest = Bytes::from(
        json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 5}]})
        .to_string(),
    );
    let r = put(&e, "d", "amd64", DOCKER_MANIFEST, manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let child = r.header("docker-content-digest").to_owned();
    let list = Bytes::from(
        json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": child, "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}}]})
        .to_string(),
    );
    let r = put(&e, "d", "latest", DOCKER_LIST, list.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = e
        .call(
            Method::GET,
            "/v2/d/manifests/latest",
            // One media type per Accept line, as skopeo sends them: all lines count.
            &[("accept", DOCKER_MANIFEST), ("accept", DOCKER_LIST)],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (StatusCode::OK, DOCKER_LIST)
    );
    assert_eq!(r.body, list);
}

#[tokio::test]
async fn an_unacceptable_stored_type_is_manifest_unknown() {
    let e = Engine::new();
    e.push_image("a", "v1", b"layer").await;
    let r = e
        .call(
            Method::GET,
            "/v2/a/manifests/v1",
            &[("accept", DOCKER_MANIFEST)],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let r = e
        .call(
            Method::GET,
            "/v2/a/manifests/v1",
            &[("accept", "*/*")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_index_needs_its_children_and_a_manifest_its_blobs() {
    let e = Engine::new();
    let missing = sha256(b"not pushed");
    let index = Bytes::from(
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]})
        .to_string(),
    );
    let r = put(&e, "a", "multi", OCI_INDEX, index).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into())
    );
    let config = e.push_blob("a", b"{}").await;
    let r = put(
        &e,
        "a",
        "v1",
        OCI_MANIFEST,
        image_manifest(&config, &missing, 10, None),
    )
    .await;
    assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN");
    let r = e.get("/v2/a/tags/list").await;
    assert_eq!(r.json()["tags"], json!([]), "nothing was tagged");
}

#[tokio::test]
async fn bad_manifests_are_refused_with_manifest_invalid() {
    let e = Engine::new();
    let schema1 = Bytes::from(r#"{"schemaVersion":1,"name":"a","tag":"v1","fsLayers":[]}"#);
    let cases: [(&str, Bytes); 4] = [
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            schema1.clone(),
        ),
        (OCI_MANIFEST, schema1),
        (OCI_MANIFEST, Bytes::from_static(b"{not json")),
        (
            "text/plain",
            Bytes::from(r#"{"schemaVersion":2,"mediaType":"text/plain"}"#),
        ),
    ];
    for (content_type, body) in cases {
        let r = put(&e, "a", "v1", content_type, body).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
        );
    }
    let r = put(
        &e,
        "a",
        "v1",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        Bytes::from("{}"),
    )
    .await;
    assert!(String::from_utf8_lossy(&r.body).contains("schema1"));
}

#[tokio::test]
async fn a_manifest_over_the_size_limit_is_413() {
    let e = Engine::with_options(StoreOptions {
        manifest_max_bytes: 100,
        ..StoreOptions::default()
    });
    let r = put(&e, "a", "v1", OCI_MANIFEST, Bytes::from(vec![b' '; 101])).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
}

#[tokio::test]
async fn put_by_digest_checks_the_digest_and_reports_the_subject() {
    let e = Engine::new();
    let (subject, _) = e.push_image("a", "v1", b"layer").await;
    let config = e.push_blob("a", b"{}").await;
    let layer = e.push_blob("a", b"sig").await;
    let signature = image_manifest(&config, &layer, 3, Some(&subject));
    let r = put(&e, "a", &sha256(b"other"), OCI_MANIFEST, signature.clone()).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    let r = put(&e, "a", &sha256(&signature), OCI_MANIFEST, signature).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("oci-subject"), subject);
}

#[tokio::test]
async fn deleting_by_tag_keeps_the_manifest_and_by_digest_removes_its_tags() {
    let e = Engine::new();
    let (digest, _) = e.push_image("a", "v1", b"layer").await;
    put(
        &e,
        "a",
        "v2",
        OCI_MANIFEST,
        e.get("/v2/a/manifests/v1").await.body,
    )
    .await;
    let r = e
        .call(Method::DELETE, "/v2/a/manifests/v1", &[], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(e.get("/v2/a/tags/list").await.json()["tags"], json!(["v2"]));
    assert_eq!(
        e.get(&format!("/v2/a/manifests/{digest}")).await.status,
        StatusCode::OK
    );
    let uri = format!("/v2/a/manifests/{digest}");
    let r = e.call(Method::DELETE, &uri, &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(e.get("/v2/a/tags/list").await.json()["tags"], json!([]));
    for reference in ["v1", "v2", digest.as_str()] {
        let r = e.get(&format!("/v2/a/manifests/{reference}")).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
        );
    }
    let r = e.call(Method::DELETE, &uri, &[], Bytes::new()).await;
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn malformed_references_are_404_on_reads_and_400_on_writes() {
    let e = Engine::new();
    let r = e.get("/v2/a/manifests/.INVALID_MANIFEST_NAME").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let r = e.get("/v2/a/manifests/sha256:totallywrong").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    let r = put(&e, "a", "-bad-", OCI_MANIFEST, Bytes::from("{}")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
}

/// A descriptor whose size is not the blob's (17 bytes stored, 99 declared) is refused with
/// `MANIFEST_INVALID` naming the digest: stored, it would fail every pull later (containerd
/// checks the bytes against it). The same holds for an index's child manifest.
#[tokio::test]
async fn a_descriptor_with_the_wrong_size_is_manifest_invalid() {
    let e = Engine::new();
    let config = e.push_blob("s", b"{}").await;
    let layer = e.push_blob("s", b"seventeen bytes!!").await;
    let manifest = |size: usize| {
        Bytes::from(
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}]})
            .to_string(),
        )
    };
    let r = put(&e, "s", "wrong", OCI_MANIFEST, manifest(99)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        text.contains(&layer) && text.contains("99") && text.contains("17"),
        "{text}"
    );
    assert_eq!(
        e.get("/v2/s/manifests/wrong").await.status,
        StatusCode::NOT_FOUND
    );

    let image = put(&e, "s", "right", OCI_MANIFEST, manifest(17)).await;
    assert_eq!(image.status, StatusCode::CREATED);
    let child = image.header("docker-content-digest").to_owned();
    let index = |size: usize| {
        Bytes::from(
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": size}]})
            .to_string(),
        )
    };
    let r = put(&e, "s", "index", OCI_INDEX, index(1)).await;
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    let size = manifest(17).len();
    assert_eq!(
        put(&e, "s", "index", OCI_INDEX, index(size)).await.status,
        StatusCode::CREATED
    );
}
