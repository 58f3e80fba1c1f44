//! Folder entries some S3-compatible stores keep. SeaweedFS stores a key's directories as
//! real ones: after the last object below one is deleted, a delimited listing still shows it
//! until a background sweep (minutes later), so a deleted tag or repository would still be
//! listed. Deleting `<dir>/` removes such an entry at once; on S3, which has no folders, the
//! same request deletes nothing. `object_store` cannot name a key with a trailing `/`, so this
//! one request is signed with its `AwsAuthorizer` and sent by its HTTP client.

use std::sync::Arc;

use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{ClientOptions, HttpClient, HttpConnector, HttpRequestBody};
use object_store::path::Path;

use super::S3Settings;

pub(super) struct Folders {
    client: HttpClient,
    store: Arc<AmazonS3>,
    /// `http://host:port/bucket` (path style) or `https://bucket.host` (virtual host).
    base: String,
    region: String,
}

impl Folders {
    pub(super) fn new(
        store: Arc<AmazonS3>,
        settings: &S3Settings,
    ) -> object_store::Result<Folders> {
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
        Ok(Folders {
            client,
            store,
            base,
            region: settings.region.clone(),
        })
    }

    /// Removes the folder entry of `dir`, if the store keeps one.
    pub(super) async fn remove(&self, dir: &Path) -> Result<(), String> {
        let credential = self
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| e.to_string())?;
        let url = format!("{}/{}/", self.base, dir.as_ref());
        let mut request = http::Request::delete(&url)
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
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            status => Err(format!("DELETE {url}: {status}")),
        }
    }
}
