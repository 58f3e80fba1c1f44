//! The two requests `object_store` has no call for, signed with its `AwsAuthorizer` and sent
//! by its HTTP client (no hand-made signatures):
//!
//! - **Deleting a folder entry** (`DELETE <dir>/`). SeaweedFS stores a key's directories as real
//!   ones: after the last object below one is deleted, a delimited listing still shows it until
//!   a background sweep (minutes later), so a deleted tag or repository would still be listed.
//!   On S3, which has no folders, the same request deletes nothing.
//! - **Copying a range into a part** (`UploadPartCopy`): S3 copies at most 5 GiB in one
//!   request, so a larger blob is moved into place as a multipart upload of copied ranges.

use std::ops::Range;
use std::sync::Arc;

use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{ClientOptions, HttpClient, HttpConnector, HttpRequestBody};
use object_store::path::Path;

use super::S3Settings;

pub(super) struct Signed {
    client: HttpClient,
    store: Arc<AmazonS3>,
    /// `http://host:port/bucket` (path style) or `https://bucket.host` (virtual host).
    base: String,
    bucket: String,
    region: String,
}

impl Signed {
    pub(super) fn new(store: Arc<AmazonS3>, settings: &S3Settings) -> object_store::Result<Signed> {
        let options =
            ClientOptions::new().with_allow_http(settings.endpoint.starts_with("http://"));
        let client = object_store::client::ReqwestConnector::default().connect(&options)?;
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
}
