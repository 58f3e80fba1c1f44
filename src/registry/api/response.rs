//! Building responses: bodies, JSON, and the headers every answer carries.

use std::io;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{header, HeaderName, HeaderValue, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;

use crate::storage::ByteStream;

pub type ResponseBody = UnsyncBoxBody<Bytes, io::Error>;
pub type Response = http::Response<ResponseBody>;

pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const API_VERSION_VALUE: HeaderValue = HeaderValue::from_static("registry/2.0");
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

pub fn empty(status: StatusCode) -> Response {
    let mut response =
        http::Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

pub fn bytes(status: StatusCode, content_type: &str, body: Bytes) -> Response {
    let len = body.len();
    let mut response = http::Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    response
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).expect("a JSON value always serialises");
    bytes(status, "application/json", Bytes::from(body))
}

/// A streamed body of known length.
pub fn stream(status: StatusCode, content_type: &str, len: u64, stream: ByteStream) -> Response {
    let body = StreamBody::new(stream.map_ok(Frame::data));
    let mut response = http::Response::new(BodyExt::boxed_unsync(body));
    *response.status_mut() = status;
    set_length_and_type(&mut response, len, content_type);
    response
}

/// A response to HEAD: the headers of the GET, no body.
pub fn head(status: StatusCode, content_type: &str, len: u64) -> Response {
    let mut response = empty(status);
    set_length_and_type(&mut response, len, content_type);
    response
}

fn set_length_and_type(response: &mut Response, len: u64, content_type: &str) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
}
