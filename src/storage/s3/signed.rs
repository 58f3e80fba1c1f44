//! The requests `object_store` has no call for, signed with its `AwsAuthorizer` (no hand-made
//! signatures):
//!
//! - **Deleting a folder entry** (`DELETE <dir>/`). SeaweedFS stores a key's directories as real
//!   ones: after the last object below one is deleted, a delimited listing still shows it until
//!   a background sweep (minutes later), so a deleted tag or repository would still be listed.
//!   On S3, which has no folders, the same request deletes nothing.
//! - **Copying a range into a part** (`UploadPartCopy`): S3 copies at most 5 GiB in one
//!   request, so a larger blob is moved into place as a multipart upload of copied ranges.
//! - **A PUT whose body streams** (an object or a part, from a [`spool`](super::spool) file):
//!   `object_store` sends a body that is whole in memory, a part's worth per upload.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody};
use object_store::path::Path;

use super::{with_causes, S3Settings};
use crate::storage::ByteStream;

/// Attempts of a streamed PUT (a failed connection, a 5xx or a 429 is tried again).
const PUT_ATTEMPTS: u32 = 4;

pub(super) struct Signed {
    client: HttpClient,
    /// For streamed bodies, which `HttpClient` does not take.
    streaming: reqwest_s3::Client,
    store: Arc<AmazonS3>,
    /// `http://host:port/bucket` (path style) or `https://bucket.host` (virtual host).
    base: String,
    bucket: String,
    region: String,
}

impl Signed {
    pub(super) fn new(store: Arc<AmazonS3>, settings: &S3Settings) -> object_store::Result<Signed> {
        let options = super::client_options(settings);
        let client = object_store::client::ReqwestConnector::default().connect(&options)?;
        let streaming = reqwest_s3::Client::builder()
            .https_only(!settings.endpoint.starts_with("http://"))
            .connect_timeout(super::CONNECT_TIMEOUT)
            .read_timeout(super::READ_TIMEOUT)
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: e.into(),
            })?;
        let endpoint = match settings.endpoint.as_str() {
            "" => format!("https://s3.{}.amazonaws.com", settings.region),
            endpoint => endpoint.trim_end_matches('/').to_owned(),
        };
        let base = match (settings.path_style, endpoint.split_once("://")) {
            (false, Some((scheme, host))) => format!("{scheme}://{}.{host}", settings.bucket),
            _ => format!("{endpoint}/{}", settings.bucket),
        };
        Ok(Signed {
            client,
            streaming,
            store,
            base,
            bucket: settings.bucket.clone(),
            region: settings.region.clone(),
        })
    }

    /// Signs and sends a bodiless request; returns its status and body.
    async fn send(&self, request: http::request::Builder) -> Result<(u16, String), String> {
        let credential = self
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| e.to_string())?;
        let mut request = request
            .body(HttpRequestBody::from(Vec::new()))
            .map_err(|e| e.to_string())?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Removes the folder entry of `dir`, if the store keeps one.
    pub(super) async fn remove_folder(&self, dir: &Path) -> Result<(), String> {
        let url = format!("{}/{}/", self.base, dir.as_ref());
        match self.send(http::Request::delete(&url)).await? {
            (200..=299 | 404, _) => Ok(()),
            (status, body) => Err(format!("DELETE {url}: {status} {body}")),
        }
    }

    /// Copies `range` of `source` into part `index` (from 0) of the multipart upload `id` of
    /// `target`; returns the part's ETag.
    pub(super) async fn copy_part(
        &self,
        target: &Path,
        id: &str,
        index: usize,
        source: &Path,
        range: Range<u64>,
    ) -> Result<String, String> {
        let url = format!(
            "{}/{}?partNumber={}&uploadId={}",
            self.base,
            target.as_ref(),
            index + 1,
            form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        );
        let request = http::Request::put(&url)
            .header(
                "x-amz-copy-source",
                format!("{}/{}", self.bucket, source.as_ref()),
            )
            .header(
                "x-amz-copy-source-range",
                format!("bytes={}-{}", range.start, range.end - 1),
            );
        let (status, body) = self.send(request).await?;
        let etag = body
            .split_once("<ETag>")
            .and_then(|(_, rest)| rest.split_once("</ETag>"))
            .map(|(etag, _)| etag.replace("&quot;", "\"").replace("&#34;", "\""));
        match (status, etag) {
            (200, Some(etag)) => Ok(etag),
            (status, _) => Err(format!("UploadPartCopy {url}: {status} {body}")),
        }
    }

    /// PUTs the `length` bytes of `body` at `target` plus `query` (`?partNumber=…&uploadId=…`
    /// for a part); returns the ETag. The payload is not signed (S3 checks its length, the
    /// engine its digest); `body` is called again for each attempt.
    pub(super) async fn put_streamed(
        &self,
        target: &Path,
        query: &str,
        length: u64,
        body: impl Fn() -> ByteStream,
    ) -> Result<String, String> {
        let url = format!("{}/{}{query}", self.base, target.as_ref());
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match self.put_once(&url, length, body()).await {
                Ok(etag) => return Ok(etag),
                Err((true, e)) if attempt < PUT_ATTEMPTS => {
                    tracing::debug!(%url, attempt, error = %e, "a streamed PUT failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                    attempt += 1;
                }
                Err((_, e)) => return Err(e),
            }
        }
    }

    /// One attempt; an error says whether another may succeed.
    async fn put_once(
        &self,
        url: &str,
        length: u64,
        body: ByteStream,
    ) -> Result<String, (bool, String)> {
        let credential = self
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| (true, e.to_string()))?;
        let mut request = http::Request::put(url)
            .header(http::header::CONTENT_LENGTH, length)
            .body(HttpRequestBody::from(Vec::new()))
            .map_err(|e| (false, e.to_string()))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .with_sign_payload(false)
            .try_authorize(&mut request, None)
            .map_err(|e| (false, e.to_string()))?;
        let response = self
            .streaming
            .put(url)
            .headers(request.headers().clone())
            .body(reqwest_s3::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| (true, format!("PUT {url}: {}", with_causes(&e))))?;
        let status = response.status();
        if status.is_success() {
            return response
                .headers()
                .get(http::header::ETAG)
                .and_then(|etag| etag.to_str().ok())
                .map(str::to_owned)
                .ok_or((false, format!("PUT {url}: {status} without an ETag")));
        }
        let retry = status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS;
        let text = response.text().await.unwrap_or_default();
        Err((retry, format!("PUT {url}: {status} {text}")))
    }
}
