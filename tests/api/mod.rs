//! In-process tests of the OCI API: every endpoint and every error code, calling the engine's
//! `Api` directly (and, where hyper's framing matters, through its real HTTP listener).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use regapp::registry::api::Api;
use regapp::registry::store::{Store, StoreOptions};
use regapp::storage::{FsDriver, S3Driver, StorageDriver};
use sha2::{Digest as _, Sha256};

use crate::util::seaweed::Seaweed;

mod access;
mod blobs;
mod errors;
mod listing;
mod manifests;
mod uploads;

/// An engine over a fresh temporary store.
pub struct Engine {
    pub api: Api,
    /// The store's temporary directory, if it has one: removed with the engine (a bucket
    /// stays on the test process's SeaweedFS, which goes with the process).
    pub _dir: Option<tempfile::TempDir>,
}

/// The storage these tests run on: a temporary directory, or with `REGAPP_TEST_STORAGE=s3`
/// (`tests/run-all.sh` runs them both ways) a fresh prefix in a bucket of a real S3 server.
pub fn test_driver() -> (Arc<dyn StorageDriver>, Option<tempfile::TempDir>) {
    match std::env::var("REGAPP_TEST_STORAGE").as_deref() {
        Err(_) | Ok("" | "filesystem") => {
            let dir = tempfile::tempdir().unwrap();
            (Arc::new(FsDriver::new(dir.path())), Some(dir))
        }
        Ok("s3") => (s3_driver(), None),
        Ok(other) => panic!("REGAPP_TEST_STORAGE={other:?}: `filesystem` (the default) or `s3`"),
    }
}

/// A fresh prefix in the bucket of the test process's SeaweedFS.
fn s3_driver() -> Arc<dyn StorageDriver> {
    let server = Seaweed::shared();
    let settings = crate::util::s3_settings(server, server.fresh_prefix());
    Arc::new(S3Driver::new(&settings).expect("an S3 driver"))
}

/// What came back, with the body read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// The OCI error code of an error answer, after checking the body has the spec's shape.
    pub fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", self.body));
        let first = &v["errors"][0];
        assert!(first["message"].is_string(), "no message in {v}");
        first["code"].as_str().expect("no code").to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Engine {
    pub fn new() -> Engine {
        Engine::with_options(StoreOptions::default())
    }

    pub fn with_options(options: StoreOptions) -> Engine {
        let (driver, dir) = test_driver();
        Engine {
            api: Api::new(Arc::new(Store::new(driver, options))),
            _dir: dir,
        }
    }

    /// An engine on S3 whatever `REGAPP_TEST_STORAGE` says.
    pub fn on_s3() -> Engine {
        Engine {
            api: Api::new(Arc::new(Store::new(s3_driver(), StoreOptions::default()))),
            _dir: None,
        }
    }

    /// What the store lists directly below `key` (nothing if there is no such directory).
    pub async fn children(&self, key: &str) -> Vec<String> {
        self.api
            .store()
            .driver()
            .list(key)
            .await
            .unwrap_or_default()
    }

    /// Whether the store holds anything at `key` (an object, or objects below it).
    pub async fn stored(&self, key: &str) -> bool {
        self.api.store().driver().stat(key).await.is_ok()
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let response = self.api.handle(request).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            parts.headers["docker-distribution-api-version"], "registry/2.0",
            "every answer names the API version"
        );
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, &[], Bytes::new()).await
    }

    /// Pushes a blob in one request; returns its digest.
    pub async fn push_blob(&self, repo: &str, content: &[u8]) -> String {
        let digest = sha256(content);
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                Bytes::copy_from_slice(content),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        digest
    }

    /// Pushes a small OCI image (config + one layer) under `reference`; returns the manifest
    /// digest and body.
    pub async fn push_image(&self, repo: &str, reference: &str, layer: &[u8]) -> (String, Bytes) {
        let config = self.push_blob(repo, b"{}").await;
        let layer_digest = self.push_blob(repo, layer).await;
        let manifest = image_manifest(&config, &layer_digest, layer.len(), None);
        let r = self
            .call(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", OCI_MANIFEST)],
                manifest.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (r.header("docker-content-digest").to_owned(), manifest)
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn image_manifest(
    config: &str,
    layer: &str,
    layer_size: usize,
    subject: Option<&str>,
) -> Bytes {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    if let Some(subject) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 1});
        m["artifactType"] = serde_json::json!("application/vnd.example.signature");
        m["annotations"] = serde_json::json!({"org.example.kind": "signature"});
    }
    Bytes::from(serde_json::to_vec(&m).unwrap())
}
