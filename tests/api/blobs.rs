//! Blob reads and deletes.

use bytes::Bytes;
use http::{Method, StatusCode};
use regapp::registry::store::StoreOptions;

use super::Engine;

#[tokio::test]
async fn get_and_head_serve_the_bytes_with_digest_and_length() {
    let e = Engine::new();
    let digest = e.push_blob("team/app", b"hello world").await;
    let r = e.get(&format!("/v2/team/app/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "hello world");
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(r.header("content-length"), "11");
    let h = e
        .call(
            Method::HEAD,
            &format!("/v2/team/app/blobs/{digest}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        (h.status, h.header("content-length")),
        (StatusCode::OK, "11")
    );
    assert!(h.body.is_empty());
}

#[tokio::test]
async fn ranges_give_206_and_out_of_range_gives_416_with_the_size() {
    let e = Engine::new();
    let digest = e.push_blob("a", b"0123456789").await;
    let uri = format!("/v2/a/blobs/{digest}");
    let r = e
        .call(Method::GET, &uri, &[("range", "bytes=2-4")], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, "234");
    assert_eq!(r.header("content-range"), "bytes 2-4/10");
    let r = e
        .call(Method::GET, &uri, &[("range", "bytes=-3")], Bytes::new())
        .await;
    assert_eq!(r.body, "789");
    let r = e
        .call(Method::GET, &uri, &[("range", "bytes=10-")], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), "bytes */10");
    assert_eq!(r.error_code(), "RANGE_INVALID");
}

#[tokio::test]
async fn a_blob_is_served_only_by_repositories_that_link_it() {
    let e = Engine::new();
    let digest = e.push_blob("a", b"mine").await;
    let r = e.get(&format!("/v2/b/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn delete_unlinks_and_a_second_delete_is_blob_unknown() {
    let e = Engine::new();
    let digest = e.push_blob("a", b"bye").await;
    let uri = format!("/v2/a/blobs/{digest}");
    let r = e.call(Method::DELETE, &uri, &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(e.get(&uri).await.status, StatusCode::NOT_FOUND);
    let r = e.call(Method::DELETE, &uri, &[], Bytes::new()).await;
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    // Pushing it again works (the conformance suite re-pushes deleted blobs).
    e.push_blob("a", b"bye").await;
    assert_eq!(e.get(&uri).await.status, StatusCode::OK);
}

#[tokio::test]
async fn deletes_are_unsupported_when_disabled() {
    let e = Engine::with_options(StoreOptions {
        delete_enabled: false,
        ..StoreOptions::default()
    });
    let digest = e.push_blob("a", b"keep").await;
    let r = e
        .call(
            Method::DELETE,
            &format!("/v2/a/blobs/{digest}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "UNSUPPORTED");
    let (manifest, _) = e.push_image("a", "v1", b"layer").await;
    for reference in ["v1", manifest.as_str()] {
        let r = e
            .call(
                Method::DELETE,
                &format!("/v2/a/manifests/{reference}"),
                &[],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.error_code(), "UNSUPPORTED");
    }
    assert_eq!(e.get("/v2/a/manifests/v1").await.status, StatusCode::OK);
}

/// hyper must keep the Content-Length of HEAD answers, which clients read as the blob size.
#[tokio::test]
async fn head_over_a_real_connection_keeps_content_length() {
    let e = Engine::new();
    let digest = e.push_blob("a", b"twelve bytes").await;
    let (_, manifest) = e.push_image("a", "v1", b"layer").await;
    let (listener, addr) = regapp::registry::api::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(regapp::registry::api::server::serve(
        listener,
        e.api.clone(),
        async {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(1),
    ));
    let client = reqwest::Client::new();
    let blob = client
        .head(format!("http://{addr}/v2/a/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(blob.headers()["content-length"], "12");
    let m = client
        .head(format!("http://{addr}/v2/a/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        m.headers()["content-length"],
        manifest.len().to_string().as_str()
    );
    assert_eq!(m.headers()["content-type"], super::OCI_MANIFEST);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
