//! Upload sessions: POST, PATCH, GET status, PUT, DELETE, and cross-repository mounts.

use bytes::Bytes;
use http::{Method, StatusCode};

use super::{image_manifest, sha256, Engine, Reply, OCI_MANIFEST};

async fn start(e: &Engine, repo: &str) -> String {
    let r = e
        .call(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-0");
    let location = r.header("location").to_owned();
    assert!(location.starts_with(&format!("/v2/{repo}/blobs/uploads/")));
    assert!(location.ends_with(r.header("docker-upload-uuid")));
    location
}

/// PATCHes `head` as an upload's first chunk, with its `Content-Range`.
async fn patch_first_chunk(e: &Engine, location: &str, head: &[u8]) -> Reply {
    let range = format!("0-{}", head.len() - 1);
    e.call(
        Method::PATCH,
        location,
        &[("content-range", &range)],
        Bytes::copy_from_slice(head),
    )
    .await
}

#[tokio::test]
async fn chunked_upload_with_status_and_a_last_chunk_on_put() {
    let e = Engine::new();
    let location = start(&e, "a").await;
    let r = e
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "0-4")],
            "hello",
        )
        .await;
    assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, "0-4"));
    let r = e.call(Method::PATCH, &location, &[], " wor").await;
    assert_eq!(r.header("range"), "0-8");
    let r = e.get(&location).await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::NO_CONTENT, "0-8")
    );
    assert_eq!(r.header("location"), location);
    let digest = sha256(b"hello world");
    let r = e
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            "ld",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/a/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(
        e.get(&format!("/v2/a/blobs/{digest}")).await.body,
        "hello world"
    );
    // The session is gone once finished.
    let r = e.get(&location).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );
}

/// A chunked upload continues on another engine over the same store, as on a restarted node.
/// Its first chunk is over a part, so on S3 its bytes went out as a part that cannot be read
/// back: the second engine continues from the hash state stored with the upload.
#[tokio::test]
async fn an_upload_continues_on_a_restarted_engine() {
    let first = Engine::new();
    let content: Vec<u8> = (0..9 * 1024 * 1024 + 3).map(|i| (i % 253) as u8).collect();
    let (head, tail) = content.split_at(9 * 1024 * 1024);
    let location = start(&first, "a").await;
    let r = patch_first_chunk(&first, &location, head).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    let driver = first.api.store().driver().clone();
    let store = regapp::registry::store::Store::new(driver, Default::default());
    let second = Engine {
        api: regapp::registry::api::Api::new(std::sync::Arc::new(store)),
        _dir: None,
    };
    let digest = sha256(&content);
    let r = second
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            Bytes::copy_from_slice(tail),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let pulled = second.get(&format!("/v2/a/blobs/{digest}")).await.body;
    assert!(pulled == content, "the blob differs");
}

#[tokio::test]
async fn an_out_of_order_chunk_is_416_and_changes_nothing() {
    let e = Engine::new();
    let location = start(&e, "a").await;
    e.call(Method::PATCH, &location, &[("content-range", "0-2")], "abc")
        .await;
    for range in ["0-2", "5-7"] {
        let r = e
            .call(Method::PATCH, &location, &[("content-range", range)], "xyz")
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.error_code(), "RANGE_INVALID");
        assert_eq!(r.header("range"), "0-2");
    }
    assert_eq!(e.get(&location).await.header("range"), "0-2");
}

#[tokio::test]
async fn a_chunk_whose_length_contradicts_its_range_is_size_invalid() {
    let e = Engine::new();
    let location = start(&e, "a").await;
    let r = e
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "0-9"), ("content-length", "3")],
            "abc",
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "SIZE_INVALID".into())
    );
    let r = e
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "nonsense")],
            "abc",
        )
        .await;
    assert_eq!(r.error_code(), "RANGE_INVALID");
}

#[tokio::test]
async fn a_wrong_digest_is_digest_invalid_and_leaves_no_blob() {
    let e = Engine::new();
    let location = start(&e, "a").await;
    e.call(Method::PATCH, &location, &[], "content").await;
    let wrong = sha256(b"other");
    let r = e
        .call(
            Method::PUT,
            &format!("{location}?digest={wrong}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    assert_eq!(
        e.get(&format!("/v2/a/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );
    let right = sha256(b"content");
    assert_eq!(
        e.get(&format!("/v2/a/blobs/{right}")).await.status,
        StatusCode::NOT_FOUND
    );
    // Monolithic too.
    let r = e
        .call(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={wrong}"),
            &[],
            "content",
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    // PUT without a digest, or with a malformed one.
    let location = start(&e, "a").await;
    let r = e.call(Method::PUT, &location, &[], Bytes::new()).await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = e
        .call(
            Method::PUT,
            &format!("{location}?digest=sha256:zz"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn cancel_removes_the_session() {
    let e = Engine::new();
    let location = start(&e, "a").await;
    let r = e.call(Method::DELETE, &location, &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = e.call(Method::DELETE, &location, &[], Bytes::new()).await;
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    let r = e.call(Method::PATCH, &location, &[], "x").await;
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn unknown_and_malformed_upload_ids_are_upload_unknown() {
    let e = Engine::new();
    for id in [
        "00000000-0000-4000-8000-000000000000",
        "not-a-uuid",
        "..%2F..%2Fx",
    ] {
        let r = e.get(&format!("/v2/a/blobs/uploads/{id}")).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
        );
    }
}

#[tokio::test]
async fn mount_links_a_blob_from_another_repository_or_opens_a_session() {
    let e = Engine::new();
    let digest = e.push_blob("src", b"shared").await;
    let r = e
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/dst/blobs/{digest}"));
    assert_eq!(
        e.get(&format!("/v2/dst/blobs/{digest}")).await.body,
        "shared"
    );
    // Not in `from`, or no `from`: an ordinary session.
    let missing = sha256(b"nowhere");
    for query in [
        format!("mount={missing}&from=src"),
        format!("mount={digest}"),
    ] {
        let r = e
            .call(
                Method::POST,
                &format!("/v2/other/blobs/uploads/?{query}"),
                &[],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{query}");
        assert!(r.header("location").starts_with("/v2/other/blobs/uploads/"));
    }
    let r = e
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=BAD"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.error_code(), "NAME_INVALID");
}

/// Concurrent pushes of one blob (in chunks, into one repository and into several) and of one
/// manifest under one tag all succeed, and every repository serves the whole blob: on S3 a
/// blob's move into place is a copy, and the first one's must not hide the others'.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_one_blob_and_one_manifest_all_succeed() {
    let e = Engine::new();
    // Two parts and a tail on S3 (5 MiB parts at the least).
    let content: Vec<u8> = (0..11 * 1024 * 1024 + 7).map(|i| (i % 247) as u8).collect();
    let digest = sha256(&content);
    let push = |repo: String| {
        let (e, content, digest) = (&e, &content, &digest);
        async move {
            let location = start(e, &repo).await;
            let (head, tail) = content.split_at(6 * 1024 * 1024);
            let r = patch_first_chunk(e, &location, head).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
            let put = format!("{location}?digest={digest}");
            let r = e
                .call(Method::PUT, &put, &[], Bytes::copy_from_slice(tail))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{repo}: {:?}", r.body);
        }
    };
    futures_util::future::join_all((0..8).map(|i| push(format!("same/r{}", i % 3)))).await;
    for i in 0..3 {
        let r = e.get(&format!("/v2/same/r{i}/blobs/{digest}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body == content, "r{i} serves other bytes");
    }

    let config = e.push_blob("same/r0", b"{}").await;
    let manifest = image_manifest(&config, &digest, content.len(), None);
    let put = |_| {
        let (e, manifest) = (&e, manifest.clone());
        async move {
            e.call(
                Method::PUT,
                "/v2/same/r0/manifests/v1",
                &[("content-type", OCI_MANIFEST)],
                manifest,
            )
            .await
        }
    };
    for r in futures_util::future::join_all((0..8).map(put)).await {
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let r = e.get("/v2/same/r0/manifests/v1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == manifest);
}
