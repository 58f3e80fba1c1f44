//! Errors that belong to no single resource: names, routes, methods and broken bodies.

use bytes::Bytes;
use futures_util::stream;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::{sha256, Engine};

#[tokio::test]
async fn base_endpoint_answers_200() {
    let e = Engine::new();
    let r = e.get("/v2/").await;
    assert_eq!(
        (r.status, r.body.as_ref()),
        (StatusCode::OK, b"{}".as_ref())
    );
}

#[tokio::test]
async fn invalid_names_are_name_invalid_and_touch_no_file() {
    let e = Engine::new();
    let long = "a".repeat(256);
    for name in ["..", "a/../b", "a//b", "A", "_x", "a/-b", long.as_str()] {
        for uri in [
            format!("/v2/{name}/tags/list"),
            format!("/v2/{name}/blobs/uploads/"),
            format!("/v2/{name}/manifests/latest"),
        ] {
            let method = if uri.contains("uploads") {
                Method::POST
            } else {
                Method::GET
            };
            let r = e.call(method, &uri, &[], Bytes::new()).await;
            assert_eq!(
                (r.status, r.error_code()),
                (StatusCode::BAD_REQUEST, "NAME_INVALID".into()),
                "{uri}"
            );
        }
    }
    assert!(!e.stored("docker").await, "nothing was stored");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let e = Engine::new();
    let r = e.get("/v2/a/nothing-here").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "UNSUPPORTED".into())
    );
    let r = e
        .call(Method::PATCH, "/v2/a/tags/list", &[], Bytes::new())
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into())
    );
    let r = e.get("/v2/a/blobs/md5:abc").await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}

/// A client that goes away mid-upload: BLOB_UPLOAD_INVALID, and nothing becomes visible.
#[tokio::test]
async fn a_body_that_fails_midway_is_upload_invalid_and_leaves_no_blob() {
    let e = Engine::new();
    let digest = sha256(b"partial content");
    let chunks = vec![
        Ok(Frame::data(Bytes::from_static(b"partial "))),
        Err(std::io::Error::other("connection reset")),
    ];
    let body = StreamBody::new(stream::iter(chunks)).boxed_unsync();
    let request = http::Request::post(format!("/v2/a/blobs/uploads/?digest={digest}"))
        .body(body)
        .unwrap();
    let response = e.api.handle(request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("BLOB_UPLOAD_INVALID"));
    assert_eq!(
        e.get(&format!("/v2/a/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
}
